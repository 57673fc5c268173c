//! The protocol pieces as functions: URL parsing and the opening handshake.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::error::Error;
use crate::handshake::{self, ClientHandshake, HandshakeError, PackedHeaders, RequestOptions};
use crate::{http, url};

use super::errors::to_pyerr;
use super::objects::headers_object;

/// Parses a `ws://` or `wss://` URL into `(scheme, host, port, path)`.
#[pyfunction]
fn parse_url(py: Python<'_>, url: &str) -> PyResult<(String, String, u16, String)> {
    let u = url::parse_url(url).map_err(|e| to_pyerr(py, e.into()))?;
    Ok((u.scheme.as_str().to_string(), u.host, u.port, u.resource))
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded (24 characters).
#[pyfunction]
fn generate_key(py: Python<'_>) -> PyResult<String> {
    handshake::generate_key().map_err(|e| to_pyerr(py, e.into()))
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + RFC 6455 GUID)).
#[pyfunction]
fn accept_key(key: &str) -> String {
    handshake::accept_key(key)
}

/// The HTTP/1.1 upgrade request for `url` and `key`.
#[pyfunction]
#[pyo3(signature = (url, key, headers=None, subprotocols=None))]
fn build_request<'py>(
    py: Python<'py>,
    url: &str,
    key: &str,
    headers: Option<Vec<(String, String)>>,
    subprotocols: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let build = || -> Result<Vec<u8>, Error> {
        let parsed = url::parse_url(url)?;
        let options = RequestOptions {
            headers: headers.unwrap_or_default(),
            subprotocols: subprotocols.unwrap_or_default(),
            origin: None,
            user_agent: None,
            compression: false,
        };
        Ok(handshake::build_request(&parsed, key, &options)?)
    };
    let bytes = build().map_err(|e| to_pyerr(py, e))?;
    Ok(PyBytes::new(py, &bytes))
}

/// The status code of an HTTP/1.x status line (`str` or `bytes`).
#[pyfunction]
fn parse_status_line(py: Python<'_>, line: &Bound<'_, PyAny>) -> PyResult<u16> {
    let text = match line.cast::<PyString>() {
        Ok(s) => s.to_str()?.to_string(),
        Err(_) => String::from_utf8_lossy(line.cast::<PyBytes>()?.as_bytes()).into_owned(),
    };
    http::parse_status_line(&text).map_err(|e| to_pyerr(py, HandshakeError::from(e).into()))
}

/// Checks a complete upgrade response against the key (and the offered subprotocols).
///
/// Returns the response headers as `sigil_ws.Headers`.
#[pyfunction]
#[pyo3(signature = (response, key, subprotocols=None))]
fn validate_response<'py>(
    py: Python<'py>,
    response: &[u8],
    key: &str,
    subprotocols: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyAny>> {
    let check = || -> Result<PackedHeaders, HandshakeError> {
        let mut phase =
            ClientHandshake::new(key.to_string(), subprotocols.unwrap_or_default(), false);
        // At the end of the stream a head cut short is an error: `None` never comes back.
        let (_, headers, _) = phase
            .receive(response, true)?
            .ok_or(HandshakeError::UnexpectedEof)?;
        Ok(headers)
    };
    let headers = check().map_err(|e| to_pyerr(py, e.into()))?;
    headers_object(py, headers.iter())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(parse_url, m)?)?;
    m.add_function(wrap_pyfunction!(generate_key, m)?)?;
    m.add_function(wrap_pyfunction!(accept_key, m)?)?;
    m.add_function(wrap_pyfunction!(build_request, m)?)?;
    m.add_function(wrap_pyfunction!(parse_status_line, m)?)?;
    m.add_function(wrap_pyfunction!(validate_response, m)?)?;
    Ok(())
}

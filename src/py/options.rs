//! Python arguments → Rust option structs, refusing bad values with `ValueError`/`TypeError`.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::handshake::RequestOptions;
use crate::tls::TlsOptions;

/// Seconds as a `Duration`; `None` stays `None`.
pub fn duration(name: &str, seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| PyValueError::new_err(format!("{name} {s} is out of range"))),
        Some(s) => Err(PyValueError::new_err(format!(
            "{name} must be a non-negative number of seconds, not {s}"
        ))),
    }
}

/// The upgrade request's extras.
pub fn request_options(
    headers: Option<Vec<(String, String)>>,
    subprotocols: Option<Vec<String>>,
    origin: Option<String>,
    user_agent: Option<String>,
) -> RequestOptions {
    RequestOptions {
        headers: headers.unwrap_or_default(),
        subprotocols: subprotocols.unwrap_or_default(),
        origin,
        user_agent,
    }
}

/// `max_size`: a positive int or `None`.
pub fn max_size(value: Option<i64>) -> PyResult<Option<usize>> {
    match value {
        None => Ok(None),
        Some(n) if n > 0 => usize::try_from(n)
            .map(Some)
            .map_err(|_| PyValueError::new_err(format!("max_size {n} is too large"))),
        Some(n) => Err(PyValueError::new_err(format!(
            "max_size must be positive or None, not {n}"
        ))),
    }
}

fn optional_path(obj: &Bound<'_, PyAny>, attr: &str) -> PyResult<Option<PathBuf>> {
    let value = obj.getattr(attr)?;
    if value.is_none() {
        return Ok(None);
    }
    let fspath = pyo3::types::PyModule::import(obj.py(), "os")?.getattr("fspath")?;
    Ok(Some(PathBuf::from(
        fspath.call1((value,))?.extract::<String>()?,
    )))
}

/// Reads a `sigil_ws.TLSConfig` (any object with its attributes); `None` is the default
/// verification against the system store.
pub fn tls_options(tls: Option<&Bound<'_, PyAny>>) -> PyResult<TlsOptions> {
    let Some(tls) = tls.filter(|t| !t.is_none()) else {
        return Ok(TlsOptions::system());
    };
    let ca_data = {
        let v = tls.getattr("ca_data")?;
        if v.is_none() {
            None
        } else if let Ok(s) = v.cast::<PyString>() {
            Some(s.to_str()?.as_bytes().to_vec())
        } else if let Ok(b) = v.cast::<PyBytes>() {
            Some(b.as_bytes().to_vec())
        } else {
            return Err(PyTypeError::new_err("ca_data must be str or bytes"));
        }
    };
    let alpn = {
        let v = tls.getattr("alpn")?;
        if v.is_none() {
            Vec::new()
        } else {
            v.extract::<Vec<String>>()?
                .into_iter()
                .map(String::into_bytes)
                .collect()
        }
    };
    Ok(TlsOptions {
        ca_file: optional_path(tls, "ca_file")?,
        ca_data,
        cert_file: optional_path(tls, "cert_file")?,
        key_file: optional_path(tls, "key_file")?,
        verify: tls.getattr("verify")?.is_truthy()?,
        server_hostname: tls.getattr("server_hostname")?.extract()?,
        alpn,
    })
}

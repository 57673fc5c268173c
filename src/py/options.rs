//! Python arguments → the engine's `Options`: one function for every entry point (the sync
//! `connect`, `Protocol(...)` under the asyncio client and custom drivers). The defaults and
//! range checks themselves live in `crate::options`.

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::error::Error;
use crate::options::{self, Options, RequestOptions, TlsOptions};
use crate::proxy::ProxyUrl;

use super::errors::to_pyerr;

/// The options of a connection as `sigil_ws._options.connect_options()` normalises them (a
/// dict), or as `Protocol(...)` takes them as keywords.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct ConnectArgs<'py> {
    pub open_timeout: Option<f64>,
    pub close_timeout: Option<f64>,
    pub headers: Option<Vec<(String, String)>>,
    pub subprotocols: Option<Vec<String>>,
    pub origin: Option<String>,
    pub user_agent: Option<String>,
    pub max_size: Option<i64>,
    pub compression: Option<String>,
    pub tls: Option<Bound<'py, PyAny>>,
    pub ping_interval: Option<f64>,
    pub ping_timeout: Option<f64>,
    /// The sync client's read-ahead bound (asyncio's driver keeps its own queue).
    #[pyo3(default)]
    pub max_queue: Option<i64>,
    /// The proxy URL the Python layer chose (from the environment or the caller); `None`:
    /// direct.
    #[pyo3(default)]
    pub proxy: Option<String>,
    #[pyo3(default)]
    pub max_redirects: Option<i64>,
    #[pyo3(default)]
    pub unix_socket: Option<PathBuf>,
}

/// The options of a connection, checked.
pub fn connect_options(py: Python<'_>, args: ConnectArgs<'_>) -> PyResult<Options> {
    let checked = || -> Result<Options, Error> {
        Ok(Options {
            open_timeout: options::timeout("open_timeout", args.open_timeout)?,
            close_timeout: options::timeout("close_timeout", args.close_timeout)?,
            request: RequestOptions {
                headers: args.headers.clone().unwrap_or_default(),
                subprotocols: args.subprotocols.clone().unwrap_or_default(),
                origin: args.origin.clone(),
                user_agent: args.user_agent.clone(),
                compression: match args.compression.as_deref() {
                    None => false,
                    Some("deflate") => true,
                    Some(other) => {
                        return Err(Error::InvalidArgument(format!(
                            "compression must be \"deflate\" or None, not {other:?}"
                        )))
                    }
                },
            },
            max_size: options::positive("max_size", args.max_size)?,
            tls: None,
            ping_interval: options::interval("ping_interval", args.ping_interval)?,
            max_queue: options::positive("max_queue", args.max_queue)?,
            ping_timeout: options::timeout("ping_timeout", args.ping_timeout)?,
            proxy: match &args.proxy {
                // Checked now, so that a bad proxy URL raises at the call.
                Some(url) => Some(ProxyUrl::parse(url).map(|_| url.clone())?),
                None => None,
            },
            max_redirects: match args.max_redirects {
                None => options::MAX_REDIRECTS,
                Some(n) => options::non_negative("max_redirects", n)?,
            },
            unix_socket: args.unix_socket.clone(),
        })
    };
    let mut options = checked().map_err(|e| to_pyerr(py, e))?;
    options.tls = args
        .tls
        .as_ref()
        .filter(|t| !t.is_none())
        .map(tls_options)
        .transpose()?;
    Ok(options)
}

/// Checks one option or argument by name, as every entry point does: timeouts (NaN and
/// negative refused, infinity is no limit) and sizes. Returns the normalised value.
#[pyfunction]
pub fn check_option<'py>(
    py: Python<'py>,
    name: &str,
    value: Option<Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let result = match name {
        "ping_interval" => options::interval(name, Some(value.extract()?))
            .map(|d| d.map(|d| d.as_secs_f64().into_pyobject(py).map(Bound::into_any))),
        "open_timeout" | "close_timeout" | "timeout" | "ping_timeout" => {
            let seconds: f64 = value.extract()?;
            options::timeout(name, Some(seconds))
                .map(|d| d.map(|d| d.as_secs_f64().into_pyobject(py).map(Bound::into_any)))
        }
        "max_size" | "max_queue" => options::positive(name, Some(value.extract()?))
            .map(|n| n.map(|n| n.into_pyobject(py).map(Bound::into_any))),
        "write_limit" | "max_redirects" => options::non_negative(name, value.extract()?)
            .map(|n| Some(n.into_pyobject(py).map(Bound::into_any))),
        _ => Err(Error::InvalidArgument(format!("unknown option {name:?}"))),
    };
    match result.map_err(|e| to_pyerr(py, e))? {
        None => Ok(None),
        Some(v) => Ok(Some(v?)),
    }
}

/// The defaults of every option, for the Python signatures' tests and docs.
pub fn defaults(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("open_timeout", options::OPEN_TIMEOUT)?;
    d.set_item("close_timeout", options::CLOSE_TIMEOUT)?;
    d.set_item("max_size", options::MAX_SIZE)?;
    d.set_item("max_queue", options::MAX_QUEUE)?;
    d.set_item("ping_interval", options::PING_INTERVAL)?;
    d.set_item("ping_timeout", options::PING_TIMEOUT)?;
    d.set_item("write_limit", options::WRITE_LIMIT)?;
    d.set_item("user_agent", options::USER_AGENT)?;
    d.set_item("compression", "deflate")?;
    d.set_item("max_redirects", options::MAX_REDIRECTS)?;
    Ok(d)
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

/// Reads a `sigil_ws.TLSConfig` (any object with its attributes).
fn tls_options(tls: &Bound<'_, PyAny>) -> PyResult<TlsOptions> {
    let ca_data = {
        let v = tls.getattr("ca_data").map_err(|_| {
            let kind = tls
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            PyTypeError::new_err(format!("tls must be a sigil_ws.TLSConfig, not {kind}"))
        })?;
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

//! `Error` → Python exception: the only place that chooses a Python exception class.

use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::{Error, ProtocolError, Termination};
use crate::handshake::HandshakeError;

use super::{headers_object, str_pairs};

pub(super) use exc::ConnectionClosedOK;

/// The exception classes of `sigil_ws.exceptions`, imported on first use.
pub(super) mod exc {
    pyo3::import_exception!(sigil_ws.exceptions, InvalidURL);
    pyo3::import_exception!(sigil_ws.exceptions, HandshakeError);
    pyo3::import_exception!(sigil_ws.exceptions, InvalidStatus);
    pyo3::import_exception!(sigil_ws.exceptions, ProtocolError);
    pyo3::import_exception!(sigil_ws.exceptions, PayloadTooBig);
    pyo3::import_exception!(sigil_ws.exceptions, ConnectionClosedOK);
    pyo3::import_exception!(sigil_ws.exceptions, ConnectionClosedError);
    pyo3::import_exception!(sigil_ws.exceptions, TLSError);
    pyo3::import_exception!(sigil_ws.exceptions, ConcurrencyError);
    pyo3::import_exception!(socket, gaierror);
}

fn protocol_error(e: &ProtocolError) -> PyErr {
    match e {
        ProtocolError::MessageTooBig { .. } => exc::PayloadTooBig::new_err(e.to_string()),
        _ => exc::ProtocolError::new_err(e.to_string()),
    }
}

/// `ConnectionClosedOK` or `ConnectionClosedError` for a termination, with the protocol
/// violation (if any) as `__cause__`.
pub fn closed_error(py: Python<'_>, t: &Termination) -> PyErr {
    let args = (t.code, t.reason.clone());
    let err = if t.is_normal() {
        exc::ConnectionClosedOK::new_err(args)
    } else {
        exc::ConnectionClosedError::new_err(args)
    };
    if let Some(cause) = &t.cause {
        err.set_cause(py, Some(protocol_error(cause)));
    }
    err
}

/// Maps every error variant onto the exception hierarchy of API.md.
pub fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    match err {
        Error::Url(e) => exc::InvalidURL::new_err(e.to_string()),
        Error::Handshake(HandshakeError::Status {
            status,
            headers,
            body,
        }) => {
            let message = format!("server rejected WebSocket connection: HTTP {status}");
            match headers_object(py, str_pairs(&headers)) {
                Ok(h) => exc::InvalidStatus::new_err((
                    message,
                    status,
                    h.unbind(),
                    PyBytes::new(py, &body).unbind(),
                )),
                Err(e) => e,
            }
        }
        Error::Handshake(e) => exc::HandshakeError::new_err(e.to_string()),
        Error::Protocol(e) => protocol_error(&e),
        Error::Tls(_) | Error::TlsConfig(_) | Error::TlsHandshakeEof => {
            exc::TLSError::new_err(err.to_string())
        }
        Error::Dns { .. } => exc::gaierror::new_err(err.to_string()),
        Error::Io(e) => PyErr::from(e),
        Error::Timeout { .. } => PyTimeoutError::new_err(err.to_string()),
        Error::Closed(t) => closed_error(py, &t),
        Error::Concurrency(m) => exc::ConcurrencyError::new_err(m),
        Error::InvalidArgument(m) => PyValueError::new_err(m),
    }
}

/// Runs a blocking operation with the thread detached from the interpreter.
///
/// On `EINTR` it re-attaches, runs the signal handlers (so Ctrl-C raises `KeyboardInterrupt`
/// inside `recv()`), and retries.
pub fn blocking<T: Send>(
    py: Python<'_>,
    mut op: impl FnMut() -> Result<T, Error> + Send,
) -> PyResult<T> {
    loop {
        match py.detach(&mut op) {
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                py.check_signals()?;
            }
            other => return other.map_err(|e| to_pyerr(py, e)),
        }
    }
}

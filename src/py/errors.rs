//! `Error` → Python exception: the only place that chooses a Python exception class; and the
//! way blocking calls run (detached, with signals checked).

use std::sync::Mutex;

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::blocking::net::Signals;
use crate::blocking::sync::Blocking;
use crate::error::{Error, Failure, ProtocolError, ProxyError, Termination};
use crate::handshake::HandshakeError;

use super::{headers_object, str_pairs};

pub(super) use exc::{ConnectionClosed, ConnectionClosedOK};

/// The exception classes of `sigil_ws.exceptions`, imported on first use.
pub(super) mod exc {
    pyo3::import_exception!(sigil_ws.exceptions, InvalidURL);
    pyo3::import_exception!(sigil_ws.exceptions, HandshakeError);
    pyo3::import_exception!(sigil_ws.exceptions, InvalidStatus);
    pyo3::import_exception!(sigil_ws.exceptions, ProxyError);
    pyo3::import_exception!(sigil_ws.exceptions, ProtocolError);
    pyo3::import_exception!(sigil_ws.exceptions, PayloadTooBig);
    pyo3::import_exception!(sigil_ws.exceptions, ConnectionClosed);
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

/// `ConnectionClosedOK` or `ConnectionClosedError` for a termination, with what failed the
/// connection (a protocol violation, a TLS failure) as `__cause__`.
pub fn closed_error(py: Python<'_>, t: &Termination) -> PyErr {
    let args = (t.code, t.reason.clone());
    let err = if t.is_normal() {
        exc::ConnectionClosedOK::new_err(args)
    } else {
        exc::ConnectionClosedError::new_err(args)
    };
    match &t.cause {
        Some(Failure::Protocol(cause)) => err.set_cause(py, Some(protocol_error(cause))),
        Some(Failure::Tls(cause)) => err.set_cause(
            py,
            Some(exc::TLSError::new_err(format!("TLS error: {cause}"))),
        ),
        None => {}
    }
    err
}

/// An OS error as the standard library raises it: `OSError(errno, strerror)`, which Python
/// turns into the matching subclass (`ConnectionRefusedError`, …) with `errno` set.
fn os_error(e: std::io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(code) => {
            let text = e.to_string();
            let strerror = match text.rfind(" (os error ") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            PyOSError::new_err((code, strerror))
        }
        None => PyErr::from(e),
    }
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
        Error::Proxy(e) => {
            let proxy = match &e {
                ProxyError::InvalidUrl { .. } | ProxyError::TooLong { .. } => None,
                ProxyError::Status { proxy, .. }
                | ProxyError::Http { proxy, .. }
                | ProxyError::SocksReply { proxy, .. }
                | ProxyError::NoAcceptableMethod { proxy, .. }
                | ProxyError::AuthFailed { proxy, .. }
                | ProxyError::InvalidReply { proxy, .. }
                | ProxyError::Closed { proxy, .. } => Some(proxy.clone()),
            };
            exc::ProxyError::new_err((e.to_string(), proxy, e.status(), e.reply_code()))
        }
        Error::Protocol(e) => protocol_error(&e),
        Error::Tls(_) | Error::TlsConfig(_) | Error::TlsHandshakeEof => {
            exc::TLSError::new_err(err.to_string())
        }
        // As socket.getaddrinfo raises it: gaierror(code, strerror), so `errno` is the code.
        Error::Dns { code, .. } => exc::gaierror::new_err((code, err.to_string())),
        Error::Io(e) => os_error(e),
        Error::Timeout { .. } => PyTimeoutError::new_err(err.to_string()),
        Error::Closed(t) => closed_error(py, &t),
        Error::Concurrency(m) => exc::ConcurrencyError::new_err(m),
        Error::InvalidArgument(m) => PyValueError::new_err(m),
        Error::Interrupted => PyKeyboardInterrupt::new_err(()),
    }
}

/// Blocking steps run detached from the interpreter, so other threads run meanwhile.
pub struct Detached<'py>(pub Python<'py>);

impl Blocking for Detached<'_> {
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.0.detach(f)
    }
}

/// Runs a call that may block (its blocking steps detach through [`Detached`]), with the
/// signal handlers run while it waits on the main thread: Ctrl-C raises `KeyboardInterrupt`
/// within a fraction of a second from any wait, as Python's own blocking calls do (PEP 475).
pub fn with_signals<T>(
    py: Python<'_>,
    op: impl FnOnce(Signals<'_>, &Detached<'_>) -> Result<T, Error>,
) -> PyResult<T> {
    let raised: Mutex<Option<PyErr>> = Mutex::new(None);
    let check = || -> Result<(), Error> {
        Python::attach(|py| py.check_signals()).map_err(|e| {
            *raised.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            Error::Interrupted
        })
    };
    op(Signals::on_main_thread(&check), &Detached(py)).map_err(|e| match e {
        Error::Interrupted => raised
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| to_pyerr(py, Error::Interrupted)),
        e => to_pyerr(py, e),
    })
}

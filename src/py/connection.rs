//! `sigil_ws.Connection`: the blocking client, thread-safe, GIL released while it waits.

use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyString};

use crate::blocking::client::{Client, ConnectOptions, Received};
use crate::protocol::Protocol;

use super::buffers::with_bytes;
use super::errors::{blocking, closed_error, to_pyerr, ConnectionClosedOK};
use super::objects::{headers_object, payload_object, state_object, str_pairs};
use super::options::{duration, max_size, request_options, tls_options};

/// A WebSocket connection driven by blocking sockets.
///
/// Every method is safe to call from any thread; `send()` never waits for a `recv()` blocked
/// in another thread. Create it with `sigil_ws.connect()`.
#[pyclass(frozen, weakref, name = "Connection", module = "sigil_ws")]
pub struct PyConnection {
    client: Arc<Client>,
}

/// Opens a connection (the Rust half of `sigil_ws.connect`; options arrive normalised).
#[pyfunction]
#[pyo3(signature = (url, *, open_timeout, close_timeout, headers, subprotocols, origin, user_agent, max_size, tls))]
#[allow(clippy::too_many_arguments)]
pub fn connect(
    py: Python<'_>,
    url: String,
    open_timeout: Option<f64>,
    close_timeout: Option<f64>,
    headers: Option<Vec<(String, String)>>,
    subprotocols: Option<Vec<String>>,
    origin: Option<String>,
    user_agent: Option<String>,
    max_size: Option<i64>,
    tls: Option<Bound<'_, PyAny>>,
) -> PyResult<PyConnection> {
    let options = ConnectOptions {
        open_timeout: duration("open_timeout", open_timeout)?,
        close_timeout: duration("close_timeout", close_timeout)?,
        request: request_options(headers, subprotocols, origin, user_agent),
        max_size: self::max_size(max_size)?,
        tls: tls_options(tls.as_ref())?,
    };
    let client = blocking(py, || Client::connect(&url, &options))?;
    Ok(PyConnection {
        client: Arc::new(client),
    })
}

impl PyConnection {
    /// Takes the engine lock while attached: `try_lock` first; when another thread holds it,
    /// wait for it detached so that no thread ever blocks on a lock while attached.
    fn engine<'a>(&'a self, py: Python<'_>) -> MutexGuard<'a, Protocol> {
        loop {
            match self.client.engine().try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    let client = &self.client;
                    py.detach(|| {
                        drop(client.engine().lock());
                    });
                }
            }
        }
    }

    fn recv_inner(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let deadline = duration("timeout", timeout)?.map(|t| Instant::now() + t);
        let mut reader = self.client.try_reader().map_err(|e| to_pyerr(py, e))?;
        loop {
            let mut needs_flush = false;
            // Fast path: decode a buffered message with the interpreter attached, building the
            // Python object straight from the engine's buffer.
            let received = {
                let mut engine = self.engine(py);
                Client::poll_message(&mut engine, &mut needs_flush, |text, data| {
                    payload_object(py, text, data).unbind()
                })
            };
            if needs_flush {
                let client = &self.client;
                match blocking(py, || client.flush()) {
                    Ok(()) => {}
                    // The peer vanished while we answered: report how the connection ended.
                    Err(e) if matches!(received, Received::Closed(_)) => drop(e),
                    Err(e) => return Err(e),
                }
            }
            match received {
                Received::Message(obj) => return Ok(obj),
                Received::Closed(t) => {
                    let client = &self.client;
                    py.detach(|| client.finish());
                    return Err(closed_error(py, &t));
                }
                Received::NeedData => {
                    let client = &self.client;
                    let reader = &mut *reader;
                    blocking(py, || {
                        client.read_some(reader, deadline, "waiting for a message")
                    })?;
                }
            }
        }
    }
}

#[pymethods]
impl PyConnection {
    /// Receives the next message: `str` for text, `bytes` for binary.
    ///
    /// Blocks with the GIL released. Replies to pings, reassembles fragments and validates
    /// UTF-8 on the way.
    ///
    /// Args:
    ///     timeout: seconds to wait; `None` waits forever.
    ///
    /// Raises:
    ///     TimeoutError: no message within `timeout`; the connection stays usable.
    ///     ConnectionClosedOK: the peer closed normally (1000/1001).
    ///     ConnectionClosedError: the connection failed or closed with another code.
    ///     ConcurrencyError: another thread is already in `recv()`.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        self.recv_inner(py, timeout)
    }

    /// Sends a message: `str` as text, `bytes`/`bytearray`/`memoryview` as binary.
    ///
    /// Raises:
    ///     ConnectionClosed: the connection is closing or closed.
    ///     TypeError: the message is neither text nor a bytes-like object.
    fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<()> {
        let client = &self.client;
        if let Ok(s) = message.cast::<PyString>() {
            let text: PyBackedStr = s.clone().try_into()?;
            return blocking(py, || client.send_text(&text));
        }
        if let Ok(b) = message.cast::<PyBytes>() {
            let data: PyBackedBytes = b.clone().into();
            return blocking(py, || client.send_binary(&data));
        }
        // Other buffers (bytearray, memoryview, array, ...) are framed straight from their
        // memory with the interpreter attached, so nothing changes them meanwhile; the frame
        // is then written detached.
        let kind = message.get_type().name()?;
        with_bytes(message, |data| self.engine(py).send_binary(data))
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "message must be str or a bytes-like object, not {kind}"
                ))
            })?
            .map_err(|e| to_pyerr(py, e))?;
        blocking(py, || client.flush())
    }

    /// Sends a ping (at most 125 bytes); the matching pong updates `latency`.
    #[pyo3(signature = (data=None))]
    fn ping(&self, py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let payload: Vec<u8> = match data {
            None => Vec::new(),
            Some(d) => match d.cast::<PyString>() {
                Ok(s) => s.to_str()?.as_bytes().to_vec(),
                Err(_) => with_bytes(d, <[u8]>::to_vec)?,
            },
        };
        let client = &self.client;
        blocking(py, || client.ping(&payload))
    }

    /// Closes the connection: sends a close frame, waits up to `close_timeout` for the peer's,
    /// then closes the socket. Idempotent.
    ///
    /// Raises:
    ///     ValueError: the code may not be sent or the reason exceeds 123 bytes.
    #[pyo3(signature = (code=1000, reason=""))]
    fn close(&self, py: Python<'_>, code: u16, reason: &str) -> PyResult<()> {
        let client = &self.client;
        blocking(py, || client.close(Some(code), reason))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.close(py, 1000, "")
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.recv_inner(py, None) {
            Ok(message) => Ok(Some(message)),
            Err(e) if e.is_instance_of::<ConnectionClosedOK>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The connection state: `sigil_ws.State`.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.engine(py).state();
        state_object(py, state)
    }

    /// The URL as connected, normalised (`ws://host:port/path?query`).
    #[getter]
    fn url(&self) -> String {
        self.client.url().to_string()
    }

    /// The host of the URL.
    #[getter]
    fn host(&self) -> String {
        self.client.url().host.clone()
    }

    /// The port connected to.
    #[getter]
    fn port(&self) -> u16 {
        self.client.url().port
    }

    /// The resource name: path and query.
    #[getter]
    fn path(&self) -> String {
        self.client.url().resource.clone()
    }

    /// The subprotocol the server chose, or `None`.
    #[getter]
    fn subprotocol(&self, py: Python<'_>) -> Option<String> {
        self.engine(py).subprotocol().map(str::to_string)
    }

    /// The headers of the server's 101 response: `sigil_ws.Headers`.
    #[getter]
    fn response_headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let headers: Vec<(String, String)> = self
            .engine(py)
            .response_headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        headers_object(py, str_pairs(&headers))
    }

    /// The close code once the connection is closed, else `None`.
    #[getter]
    fn close_code(&self, py: Python<'_>) -> Option<u16> {
        self.engine(py).termination().map(|t| t.code)
    }

    /// The close reason once the connection is closed, else `None`.
    #[getter]
    fn close_reason(&self, py: Python<'_>) -> Option<String> {
        self.engine(py).termination().map(|t| t.reason.clone())
    }

    /// Seconds of the last ping/pong round trip; 0.0 before any.
    #[getter]
    fn latency(&self, py: Python<'_>) -> f64 {
        self.engine(py).latency()
    }

    /// `(host, port)` of the local end.
    #[getter]
    fn local_address(&self, py: Python<'_>) -> PyResult<(String, u16)> {
        let a = self.client.local_addr().map_err(|e| to_pyerr(py, e))?;
        Ok((a.ip().to_string(), a.port()))
    }

    /// `(host, port)` of the server.
    #[getter]
    fn remote_address(&self) -> (String, u16) {
        let a = self.client.remote_addr();
        (a.ip().to_string(), a.port())
    }

    /// The socket's file descriptor.
    fn fileno(&self) -> i64 {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            i64::from(self.client.stream().as_raw_fd())
        }
        #[cfg(windows)]
        {
            use std::os::windows::io::AsRawSocket;
            self.client.stream().as_raw_socket() as i64
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = self.engine(py).state();
        format!(
            "<sigil_ws.Connection {} {}>",
            self.client.url(),
            state.name()
        )
    }
}

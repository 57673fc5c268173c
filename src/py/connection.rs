//! `sigil_ws.Connection`: the blocking client, thread-safe, GIL released while it waits.
//!
//! Thin: every loop, lock and deadline is in `crate::blocking::client`.

use std::cell::RefCell;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyList, PyString};

use std::os::fd::OwnedFd;

use crate::blocking::client::Client;
use crate::blocking::open;
use crate::blocking::sync::Blocking;
use crate::error::Error;
use crate::options;
use crate::protocol::{close_code, Message, State};

use super::buffers::{payload_bytes, with_bytes};
use super::errors::{to_pyerr, with_signals, ConnectionClosedOK, Detached};
use super::large::BytesSink;
use super::logging::{log_hops, ConnectionLog};
use super::objects::{extensions_object, headers_object, message_object, state_object};
use super::options::{connect_options, ConnectArgs};
use super::streaming::Fragments;

/// A WebSocket connection driven by blocking sockets.
///
/// Every method is safe to call from any thread; `send()` never waits for a `recv()` blocked
/// in another thread. Create it with `sigil_ws.connect()`.
#[pyclass(frozen, weakref, name = "Connection", module = "sigil_ws")]
pub struct PyConnection {
    client: Arc<Client>,
    /// The connection's logger and what it logged.
    log: Arc<ConnectionLog>,
}

/// Opens a connection (the Rust half of `sigil_ws.connect`; options arrive normalised by
/// `sigil_ws._options.connect_options()`). `logger` is the connection's logger; `journal`
/// what the engine records for it (`sigil_ws._logging.journal_mode`: 0 nothing, 1 keepalive
/// notes, 2 frame headers too).
#[pyfunction]
#[pyo3(signature = (url, options, sock=None, *, logger=None, journal=0))]
pub fn connect(
    py: Python<'_>,
    url: String,
    options: ConnectArgs<'_>,
    sock: Option<std::os::fd::RawFd>,
    logger: Option<Py<PyAny>>,
    journal: u8,
) -> PyResult<PyConnection> {
    if sock.is_some_and(|fd| fd < 0) {
        return Err(to_pyerr(
            py,
            Error::InvalidArgument("sock is closed (no file descriptor)".into()),
        ));
    }
    let sock = sock.map(|fd| {
        // SAFETY: `fd` is non-negative (checked above) and is the descriptor
        // `socket.detach()` returned in `sigil_ws.connect`: the Python socket gave it up, so
        // nothing else owns or closes it; the OwnedFd is from here its one owner (dropped, and
        // so closed, if the connection fails).
        #[allow(unsafe_code)]
        unsafe {
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        }
    });
    let options = connect_options(py, options)?;
    let frames = match journal {
        0 => None,
        1 => Some(false),
        _ => Some(true),
    };
    let mut hops = Vec::new();
    let client = with_signals(py, |signals, blocking| {
        blocking.run(|| open::connect_logged(&url, &options, sock, signals, frames, &mut hops))
    });
    if let Some(logger) = &logger {
        log_hops(py, logger, &hops);
    }
    let client = Arc::new(client?);
    // From here the process's I/O thread serves the connection while nobody receives. If it
    // cannot start (no epoll instance), the connection is served inside recv() and close().
    let _ = client.register();
    Ok(PyConnection {
        client,
        log: Arc::new(ConnectionLog::new(logger, frames.is_some())),
    })
}

impl PyConnection {
    #[inline(always)]
    fn recv_inner(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let timeout = match timeout {
            None => None,
            seconds => options::timeout("timeout", seconds).map_err(|e| to_pyerr(py, e))?,
        };
        match with_signals(py, |signals, blocking| {
            let convert = |m: Message<'_>| message_object(py, m).map(Bound::unbind);
            self.client
                .recv(timeout, signals, blocking, convert, &mut BytesSink(py))
        })
        .and_then(|message| message)
        {
            Ok(message) => {
                self.log.drain(py, &self.client);
                Ok(message)
            }
            Err(e) => {
                self.log.closed(py, &self.client);
                Err(e)
            }
        }
    }

    fn inspect<R>(&self, py: Python<'_>, f: impl FnOnce(&crate::protocol::Protocol) -> R) -> R {
        self.client.inspect(&Detached(py), f)
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
    ///     ConnectionClosedOK: the peer closed normally (1000/1001, or no code).
    ///     ConnectionClosedError: the connection failed or closed with another code.
    ///     ConcurrencyError: another thread is already in `recv()`.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        self.recv_inner(py, timeout)
    }

    /// Sends a message: `str` as text, any bytes-like object as binary.
    ///
    /// Args:
    ///     message: the message.
    ///     compress: with permessage-deflate negotiated, `False` sends this message
    ///         uncompressed.
    ///     timeout: seconds to wait for a peer that does not read; `None` waits forever.
    ///
    /// Raises:
    ///     ConnectionClosed: the connection is closing or closed.
    ///     TimeoutError: `timeout` passed; the connection is then failed, since a frame may
    ///         be half-written.
    ///     TypeError: the message is neither text nor a bytes-like object.
    #[pyo3(signature = (message, *, compress=true, timeout=None))]
    fn send(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        compress: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        self.log.drain(py, &self.client);
        let timeout = options::timeout("timeout", timeout).map_err(|e| to_pyerr(py, e))?;
        let client = &self.client;
        if let Ok(s) = message.cast::<PyString>() {
            let text: PyBackedStr = s.clone().try_into()?;
            return with_signals(py, |signals, blocking| {
                client.send(blocking, signals, timeout, |e, _| {
                    e.send_text(&text, compress)
                })
            });
        }
        if let Ok(b) = message.cast::<PyBytes>() {
            let data: PyBackedBytes = b.clone().into();
            return with_signals(py, |signals, blocking| {
                client.send(blocking, signals, timeout, |e, _| {
                    e.send_binary(&data, compress)
                })
            });
        }
        // Other buffers (bytearray, memoryview, array, ...) are framed straight from their
        // memory, after the engine lock is taken and with the interpreter attached throughout,
        // so nothing changes them meanwhile; the frame is then written detached.
        let refused = RefCell::new(None);
        let result = with_signals(py, |signals, blocking| {
            client.send(blocking, signals, timeout, |engine, _| {
                match with_bytes(message, |data| engine.send_binary(data, compress)) {
                    Ok(result) => result,
                    Err(e) => {
                        *refused.borrow_mut() = Some(e);
                        Err(Error::InvalidArgument(String::new()))
                    }
                }
            })
        });
        if refused.borrow().is_some() {
            return super::streaming::send_fragments(&self.client, py, message, compress, timeout);
        }
        result
    }

    /// Receives the next message in pieces as its frames arrive: an iterator of `str`
    /// pieces for a text message (each ends on a character boundary) or of `bytes` pieces
    /// for a binary one. UTF-8 and `max_size` apply to the whole message, as for `recv()`.
    ///
    /// Stopping before the last piece (leaving the loop, closing the iterator) drops the
    /// rest of that message. While the iteration is under way, `recv()` raises
    /// `ConcurrencyError`.
    ///
    /// Args:
    ///     timeout: seconds to wait for each piece; `None` waits forever.
    ///
    /// Raises (from the iteration):
    ///     TimeoutError: no piece within `timeout`; the iteration may go on.
    ///     ConnectionClosedOK, ConnectionClosedError: as for `recv()`.
    ///     ConcurrencyError: another thread is receiving.
    #[pyo3(signature = (timeout=None))]
    fn recv_streaming(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Fragments> {
        let timeout = options::timeout("timeout", timeout).map_err(|e| to_pyerr(py, e))?;
        Ok(Fragments::new(
            Arc::clone(&self.client),
            Arc::clone(&self.log),
            timeout,
        ))
    }

    /// Sends a ping (at most 125 bytes); the matching pong updates `latency`.
    #[pyo3(signature = (data=None))]
    fn ping(&self, py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let payload = payload_bytes(data)?;
        self.log.drain(py, &self.client);
        with_signals(py, |signals, blocking| {
            self.client
                .send_control(blocking, signals, None, |e, now| e.send_ping(&payload, now))
        })
    }

    /// Closes the connection: sends a close frame, waits up to `close_timeout` for the peer's,
    /// then closes the socket. Idempotent.
    ///
    /// Raises:
    ///     ValueError: the code may not be sent or the reason exceeds 123 bytes.
    #[pyo3(signature = (code=1000, reason=""))]
    fn close(&self, py: Python<'_>, code: i64, reason: &str) -> PyResult<()> {
        let code = close_code(code).map_err(|e| to_pyerr(py, e))?;
        let result = with_signals(py, |signals, blocking| {
            self.client.close(Some(code), reason, signals, blocking)
        });
        self.log.closed(py, &self.client);
        result
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
        let state = self.inspect(py, |e| e.state());
        state_object(py, state)
    }

    /// The URL as connected, normalised (`ws://host:port/path?query`).
    #[getter]
    fn url(&self, py: Python<'_>) -> String {
        self.inspect(py, |e| e.url().to_string())
    }

    /// The host of the URL.
    #[getter]
    fn host(&self, py: Python<'_>) -> String {
        self.inspect(py, |e| e.url().host.clone())
    }

    /// The port connected to.
    #[getter]
    fn port(&self, py: Python<'_>) -> u16 {
        self.inspect(py, |e| e.url().port)
    }

    /// The resource name: path and query.
    #[getter]
    fn path(&self, py: Python<'_>) -> String {
        self.inspect(py, |e| e.url().resource.clone())
    }

    /// The subprotocol the server chose, or `None`.
    #[getter]
    fn subprotocol(&self, py: Python<'_>) -> Option<String> {
        self.inspect(py, |e| e.subprotocol().map(str::to_string))
    }

    /// The headers of the server's 101 response: `sigil_ws.Headers`.
    #[getter]
    fn response_headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let headers: Vec<(String, String)> = self.inspect(py, |e| {
            e.response_headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect()
        });
        headers_object(py, super::str_pairs(&headers))
    }

    /// The close code once the connection is closed, else `None`.
    #[getter]
    fn close_code(&self, py: Python<'_>) -> Option<u16> {
        self.inspect(py, |e| e.termination().map(|t| t.code))
    }

    /// The close reason once the connection is closed, else `None`.
    #[getter]
    fn close_reason(&self, py: Python<'_>) -> Option<String> {
        self.inspect(py, |e| e.termination().map(|t| t.reason.clone()))
    }

    /// Seconds of the last ping/pong round trip; 0.0 before any.
    #[getter]
    fn latency(&self, py: Python<'_>) -> f64 {
        self.inspect(py, |e| e.latency())
    }

    /// The negotiated extensions, e.g. `[("permessage-deflate", {"server_max_window_bits":
    /// "12"})]`; `[]` when none.
    #[getter]
    fn extensions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let deflate = self.inspect(py, |e| e.extensions());
        extensions_object(py, deflate)
    }

    /// `(host, port)` of the local end.
    #[getter]
    fn local_address(&self, py: Python<'_>) -> PyResult<(String, u16)> {
        let a = self.client.local_addr().map_err(|e| to_pyerr(py, e))?;
        Ok(a.host_port())
    }

    /// `(host, port)` of the server.
    #[getter]
    fn remote_address(&self) -> (String, u16) {
        self.client.remote_addr().host_port()
    }

    /// The socket's file descriptor.
    fn fileno(&self) -> i64 {
        use std::os::fd::AsRawFd;
        i64::from(self.client.stream().as_raw_fd())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let (url, state): (String, State) = self.inspect(py, |e| (e.url().to_string(), e.state()));
        format!("<sigil_ws.Connection {url} {}>", state.name())
    }
}

impl Drop for PyConnection {
    /// A connection dropped without `close()`: its end is logged now, if it was not yet.
    fn drop(&mut self) {
        let _ = Python::try_attach(|py| self.log.dropped(py, &self.client));
    }
}

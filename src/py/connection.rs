//! `sigil_ws.Connection`: the blocking client, thread-safe, GIL released while it waits.
//!
//! Thin: every loop, lock and deadline is in `crate::blocking::client`.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyList, PyString};

use std::os::fd::OwnedFd;

use crate::blocking::client::{Blocking, Client};
use crate::blocking::open;
use crate::error::Error;
use crate::options;
use crate::protocol::{close_code, State};

use super::buffers::{payload_bytes, with_bytes};
use super::errors::{to_pyerr, with_signals, ConnectionClosed, ConnectionClosedOK, Detached};
use super::objects::{extensions_object, headers_object, message_object, state_object};
use super::options::{connect_options, ConnectArgs};

/// A WebSocket connection driven by blocking sockets.
///
/// Every method is safe to call from any thread; `send()` never waits for a `recv()` blocked
/// in another thread. Create it with `sigil_ws.connect()`.
#[pyclass(frozen, weakref, name = "Connection", module = "sigil_ws")]
pub struct PyConnection {
    client: Arc<Client>,
}

/// Opens a connection (the Rust half of `sigil_ws.connect`; options arrive normalised by
/// `sigil_ws._options.connect_options()`).
#[pyfunction]
#[pyo3(signature = (url, options, sock=None))]
pub fn connect(
    py: Python<'_>,
    url: String,
    options: ConnectArgs<'_>,
    sock: Option<std::os::fd::RawFd>,
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
    let client = with_signals(py, |signals, blocking| {
        blocking.run(|| open::connect(&url, &options, sock, signals))
    })?;
    let client = Arc::new(client);
    // From here the process's I/O thread serves the connection while nobody receives. If it
    // cannot start (no epoll instance), the connection is served inside recv() and close().
    let _ = client.register();
    Ok(PyConnection { client })
}

/// Where a `recv_streaming()` iteration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    NotStarted,
    Started,
    Done,
}

/// The iterator `Connection.recv_streaming()` returns: the pieces of one message.
#[pyclass(frozen, name = "Fragments", module = "sigil_ws")]
pub struct Fragments {
    client: Arc<Client>,
    timeout: Option<std::time::Duration>,
    state: Mutex<Stream>,
}

impl Fragments {
    fn stop(&self, py: Python<'_>) {
        let state = std::mem::replace(&mut *lock(&self.state), Stream::Done);
        if state == Stream::Started {
            self.client.end_pieces(&Detached(py));
        }
    }
}

#[pymethods]
impl Fragments {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if *lock(&self.state) == Stream::Done {
            return Ok(None);
        }
        let result = with_signals(py, |signals, blocking| {
            self.client
                .recv_piece(self.timeout, signals, blocking, |m| {
                    message_object(py, m).unbind()
                })
        });
        let mut state = lock(&self.state);
        match result {
            Ok((piece, last)) => {
                let started = *state == Stream::Started;
                *state = if last { Stream::Done } else { Stream::Started };
                // A message sent with an empty last frame ends without an empty piece.
                if last && started && piece.bind(py).len().is_ok_and(|n| n == 0) {
                    return Ok(None);
                }
                Ok(Some(piece))
            }
            Err(e) => {
                // The iteration may go on after a timeout or an interruption; a closed
                // connection has ended it.
                if *state == Stream::NotStarted
                    && self.client.inspect(&Detached(py), |e| e.is_streaming())
                {
                    *state = Stream::Started;
                }
                if e.is_instance_of::<ConnectionClosed>(py) {
                    *state = Stream::Done;
                }
                Err(e)
            }
        }
    }

    /// Stops the iteration; the rest of the message is dropped.
    fn close(&self, py: Python<'_>) {
        self.stop(py);
    }
}

impl Drop for Fragments {
    fn drop(&mut self) {
        if *lock(&self.state) == Stream::Started {
            Python::attach(|py| self.stop(py));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PyConnection {
    /// `send()` of an iterable: one message in fragments, each sent as it is produced.
    fn send_fragments(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        timeout: Option<std::time::Duration>,
    ) -> PyResult<()> {
        let not_a_message = || -> PyResult<PyErr> {
            let kind = message.get_type().name()?;
            Ok(PyTypeError::new_err(format!(
                "message must be str, a bytes-like object or an iterable of them, not {kind}"
            )))
        };
        // A mapping iterates over its keys: surely not what was meant.
        if message.is_instance(mapping_type(py)?.as_any())? {
            return Err(not_a_message()?);
        }
        let Ok(mut items) = message.try_iter() else {
            return Err(not_a_message()?);
        };
        let mut started = false;
        let mut text = None;
        // Each fragment goes out as soon as the iterable produces it (a stream of tokens is
        // not held back by one); an empty last frame ends the message.
        loop {
            let item = match items.next().transpose() {
                Ok(item) => item,
                Err(e) => return Err(self.fail_fragments(py, text.is_some(), e)),
            };
            let Some(item) = item else { break };
            let is_text = *text.get_or_insert_with(|| item.is_instance_of::<PyString>());
            let first = !std::mem::replace(&mut started, true);
            match self.send_one_fragment(py, &item, is_text, first, false, timeout)? {
                true => {}
                false => {
                    let kind = item.get_type().name()?;
                    let want = if is_text { "str" } else { "bytes-like" };
                    let e = PyTypeError::new_err(format!(
                        "the fragments of one message must all be {want}, not {kind}"
                    ));
                    return Err(self.fail_fragments(py, !first, e));
                }
            }
        }
        match text {
            None => Ok(()), // An empty iterable: no message.
            Some(is_text) => {
                let empty: Bound<'_, PyAny> = if is_text {
                    PyString::new(py, "").into_any()
                } else {
                    PyBytes::new(py, b"").into_any()
                };
                self.send_one_fragment(py, &empty, is_text, false, true, timeout)
                    .map(drop)
            }
        }
    }

    /// Sends one fragment; `Ok(false)` when it is not of the message's type.
    fn send_one_fragment(
        &self,
        py: Python<'_>,
        fragment: &Bound<'_, PyAny>,
        text: bool,
        first: bool,
        fin: bool,
        timeout: Option<std::time::Duration>,
    ) -> PyResult<bool> {
        let client = &self.client;
        if text {
            let Ok(s) = fragment.cast::<PyString>() else {
                return Ok(false);
            };
            let piece: PyBackedStr = s.clone().try_into()?;
            with_signals(py, |signals, blocking| {
                client.send_fragment(blocking, signals, timeout, first, |e, _| {
                    e.send_fragment(true, piece.as_bytes(), fin)
                })
            })?;
            return Ok(true);
        }
        if fragment.is_instance_of::<PyString>() {
            return Ok(false);
        }
        let refused = RefCell::new(false);
        let result = with_signals(py, |signals, blocking| {
            client.send_fragment(
                blocking,
                signals,
                timeout,
                first,
                |engine, _| match with_bytes(fragment, |data| {
                    engine.send_fragment(false, data, fin)
                }) {
                    Ok(result) => result,
                    Err(_) => {
                        *refused.borrow_mut() = true;
                        Err(Error::InvalidArgument(String::new()))
                    }
                },
            )
        });
        if *refused.borrow() {
            return Ok(false);
        }
        result.map(|()| true)
    }

    /// A message in fragments cannot go on (the iterable raised, or gave a fragment of the
    /// wrong type): once part of it is on the wire, the connection is failed with 1011, as
    /// nothing else can be sent after half a message. Returns `error` to raise.
    fn fail_fragments(&self, py: Python<'_>, started: bool, error: PyErr) -> PyErr {
        if started {
            let _ = with_signals(py, |signals, blocking| {
                self.client.send_control(blocking, signals, None, |e, _| {
                    e.send_close(Some(1011), "error in fragmented message")
                })
            });
        }
        error
    }

    fn recv_inner(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let timeout = match timeout {
            None => None,
            seconds => options::timeout("timeout", seconds).map_err(|e| to_pyerr(py, e))?,
        };
        with_signals(py, |signals, blocking| {
            self.client.recv(timeout, signals, blocking, |m| {
                message_object(py, m).unbind()
            })
        })
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
            return self.send_fragments(py, message, timeout);
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
        Ok(Fragments {
            client: Arc::clone(&self.client),
            timeout,
            state: Mutex::new(Stream::NotStarted),
        })
    }

    /// Sends a ping (at most 125 bytes); the matching pong updates `latency`.
    #[pyo3(signature = (data=None))]
    fn ping(&self, py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let payload = payload_bytes(data)?;
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
        with_signals(py, |signals, blocking| {
            self.client.close(Some(code), reason, signals, blocking)
        })
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

/// `collections.abc.Mapping`, looked up once.
fn mapping_type(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyType>> {
    static MAPPING: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    MAPPING
        .import(py, "collections.abc", "Mapping")
        .map(|t| t.clone())
}

//! `sigil_ws.Protocol`: the sans-IO engine for drivers written in Python (asyncio, trio,
//! gevent, custom loops).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::blocking::net::current_thread;
use crate::error::Error;
use crate::options;
use crate::protocol::{close_code, Event, Protocol, State, TcpClose, STREAM_PAYLOAD};

use super::buffers::{payload_bytes, with_bytes};
use super::errors::{closed_error, to_pyerr};
use super::large::{return_free_memory, PendingLarge, RETURN_TO_SYSTEM};
use super::logging::notes_object;
use super::objects::{
    event_object, extensions_object, fragment_object, headers_object, message_object, state_object,
};
use super::options::{connect_options, ConnectArgs};

/// The sans-IO WebSocket client engine: bytes in, events out; messages in, bytes out.
///
/// Creating it queues the upgrade request. Feed what the socket reads to `receive_data()`
/// (and `receive_eof()` at end of stream), collect `events()`, and after every call write
/// `data_to_send()` to the socket. It does no I/O and starts no threads.
///
/// Threads may share one: its calls are serialised, each running whole (a thread that finds
/// another inside a call waits for it). A call made while the same thread is inside a call
/// already (a finaliser that runs during it) raises `RuntimeError`.
#[pyclass(frozen, weakref, name = "Protocol", module = "sigil_ws")]
pub struct PyProtocol {
    /// The engine and the driver's state: one call at a time, from any thread.
    inner: Mutex<Inner>,
    /// The thread inside a call ([`current_thread`]), 0 when none: a call from inside a call
    /// of the same thread (a finaliser that runs there) is refused, not left to deadlock.
    owner: AtomicUsize,
}

/// What a [`PyProtocol`] holds behind its lock.
struct Inner {
    engine: Protocol,
    origin: Instant,
    /// An error found after some events were already collected, raised by the next call.
    deferred: Option<Error>,
    /// A large payload `receive_messages` receives into its `bytes` object.
    large: Option<PendingLarge>,
    /// Bytes taken from the engine to be handed out in parts (`data_to_send(max_bytes)`),
    /// and how many of them are handed out: they go before anything queued since.
    spill: Vec<u8>,
    spill_pos: usize,
    /// The payload of a message the engine streams (`Protocol::send_streamed`), kept until it
    /// is written. Only immutable objects are kept: `bytes`, and `str` (its UTF-8 is cached in
    /// the object, at a fixed address, for the object's life).
    streamed: Option<Py<PyAny>>,
}

/// A call's hold on a [`PyProtocol`]'s state.
struct Held<'a> {
    inner: MutexGuard<'a, Inner>,
    owner: &'a AtomicUsize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Before the guard unlocks (fields drop after this): no other thread can be the
        // owner yet.
        self.owner.store(0, Ordering::Release);
    }
}

impl Deref for Held<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl PyProtocol {
    /// The state, once no other call holds it. Calls from several threads are serialised:
    /// a thread that must wait does so detached from the interpreter (so that, on a GIL
    /// build, the thread inside a call can take the GIL back). A call made by the thread
    /// that is inside a call already raises `RuntimeError`. A call that panicked left the
    /// state as a `&mut` call would have: it stays usable.
    fn lock(&self, py: Python<'_>) -> PyResult<Held<'_>> {
        let me = current_thread();
        let inner = match self.inner.try_lock() {
            Ok(inner) => inner,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if self.owner.load(Ordering::Acquire) == me {
                    return Err(PyRuntimeError::new_err(
                        "sigil_ws.Protocol called from inside one of its own calls \
                         (a finaliser or callback that runs during the call)",
                    ));
                }
                self.inner
                    .lock_py_attached(py)
                    .unwrap_or_else(PoisonError::into_inner)
            }
        };
        self.owner.store(me, Ordering::Release);
        Ok(Held {
            inner,
            owner: &self.owner,
        })
    }
}

/// The bytes of a streamed payload: a `bytes` object's, or a `str`'s UTF-8 (read as such when
/// it was sent, so this does not fail).
fn payload_of<'a>(object: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    match object.cast::<PyBytes>() {
        Ok(bytes) => Ok(bytes.as_bytes()),
        Err(_) => Ok(object.cast::<PyString>()?.to_str()?.as_bytes()),
    }
}

impl Inner {
    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// The next `max_bytes` bytes for the socket (all of them without it), in order: what
    /// was taken out of the engine before, what the engine queued, the streamed payload
    /// masked as it is copied, and what was queued behind it.
    #[cold]
    fn next_part<'py>(
        &mut self,
        py: Python<'py>,
        max_bytes: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let total = self.spill.len() - self.spill_pos + self.engine.pending_output();
        let n = max_bytes.map_or(total, |max| max.min(total));
        let object = self.streamed.as_ref().map(|s| s.bind(py).clone());
        let payload = object.as_ref().map(payload_of).transpose()?;
        let mut trim = false;
        let part = PyBytes::new_with(py, n, |buf| {
            let mut k = 0;
            while k < buf.len() {
                let rest = self.spill.get(self.spill_pos..).unwrap_or_default();
                if !rest.is_empty() {
                    let m = rest.len().min(buf.len() - k);
                    buf[k..k + m].copy_from_slice(&rest[..m]);
                    self.spill_pos += m;
                    k += m;
                    continue;
                }
                // The bytes taken are written: what the engine queued since comes next.
                if self.spill.capacity() >= RETURN_TO_SYSTEM {
                    self.spill = Vec::new();
                    trim = true;
                }
                self.spill_pos = 0;
                self.engine.take_data_to_send(&mut self.spill);
                if !self.spill.is_empty() {
                    continue;
                }
                let written = match &payload {
                    Some(p) => self.engine.write_streamed(p, &mut buf[k..]),
                    None => 0,
                };
                if written == 0 {
                    // Unreachable: `total` counted no more than there is.
                    break;
                }
                k += written;
            }
            Ok(())
        })?;
        if self.spill_pos == self.spill.len() {
            self.spill.clear();
            self.spill_pos = 0;
            if self.spill.capacity() >= RETURN_TO_SYSTEM {
                self.spill = Vec::new();
                trim = true;
            }
        }
        if self.engine.streamed_left() == 0 {
            self.streamed = None;
        }
        if trim {
            return_free_memory();
        }
        Ok(part)
    }

    /// Queues a large message whose object (`bytes` or `str`: it cannot change) the engine may
    /// leave the payload in until it is written (`Protocol::send_streamed`); `keep` makes the
    /// reference kept meanwhile.
    fn send_kept(
        &mut self,
        py: Python<'_>,
        text: bool,
        payload: &[u8],
        compress: bool,
        keep: impl FnOnce() -> Py<PyAny>,
    ) -> PyResult<()> {
        let streamed = self
            .engine
            .send_streamed(text, payload, compress)
            .map_err(|e| to_pyerr(py, e))?;
        if streamed {
            self.streamed = Some(keep());
        }
        Ok(())
    }

    /// Gives a large payload under way back to the engine, before input is fed or decoded
    /// another way.
    fn abandon_large(&mut self) {
        if let Some(large) = self.large.take() {
            large.abandon(&mut self.engine);
        }
    }
}

#[pymethods]
impl PyProtocol {
    #[new]
    #[pyo3(signature = (url, *, key=None, headers=None, subprotocols=None, origin=None, user_agent=Some(options::USER_AGENT.to_string()), max_size=Some(options::MAX_SIZE as i64), compression=Some("deflate".to_string()), tls=None, ping_interval=Some(options::PING_INTERVAL), ping_timeout=Some(options::PING_TIMEOUT)),
        text_signature = "(url, *, key=None, headers=None, subprotocols=None, origin=None, user_agent=..., max_size=16777216, compression='deflate', tls=None, ping_interval=20.0, ping_timeout=20.0)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: &str,
        key: Option<String>,
        headers: Option<Vec<(String, String)>>,
        subprotocols: Option<Vec<String>>,
        origin: Option<String>,
        user_agent: Option<String>,
        max_size: Option<i64>,
        compression: Option<String>,
        tls: Option<Bound<'_, PyAny>>,
        ping_interval: Option<f64>,
        ping_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let args = ConnectArgs {
            open_timeout: None,
            close_timeout: None,
            headers,
            subprotocols,
            origin,
            user_agent,
            max_size,
            compression,
            tls,
            ping_interval,
            ping_timeout,
            max_queue: None,
            proxy: None,
            max_redirects: None,
            unix_socket: None,
        };
        let options = connect_options(py, args)?;
        let engine = Protocol::client(url, &options, key).map_err(|e| to_pyerr(py, e))?;
        Ok(PyProtocol {
            inner: Mutex::new(Inner {
                engine,
                origin: Instant::now(),
                deferred: None,
                large: None,
                spill: Vec::new(),
                spill_pos: 0,
                streamed: None,
            }),
            owner: AtomicUsize::new(0),
        })
    }

    /// Feeds bytes read from the socket.
    fn receive_data(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        this.abandon_large();
        let now = this.now();
        with_bytes(data, |d| this.engine.receive_data(d, now))?.map_err(|e| to_pyerr(py, e))
    }

    /// Signals that the socket reached end of stream.
    fn receive_eof(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        this.abandon_large();
        this.engine.receive_eof();
        Ok(())
    }

    /// Every event the received bytes complete: `Message`, `Ping`, `Pong` and `Close`.
    ///
    /// Raises:
    ///     HandshakeError: the upgrade was refused or malformed.
    ///     ProtocolError: the peer broke RFC 6455; the close frame is in `data_to_send()`.
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        if let Some(e) = this.deferred.take() {
            return Err(to_pyerr(py, e));
        }
        this.abandon_large();
        let list = PyList::empty(py);
        loop {
            match this.engine.next_event() {
                Ok(Some(event)) => list.append(event_object(py, &event)?)?,
                Ok(None) => return Ok(list),
                Err(e) if list.is_empty() => return Err(to_pyerr(py, e)),
                Err(e) => {
                    this.deferred = Some(e);
                    return Ok(list);
                }
            }
        }
    }

    /// Feeds bytes and returns the messages they complete, as `str` or `bytes`, at most
    /// `limit` of them (`None`: all): the fast path for drivers.
    ///
    /// Decoding is lazy: what is not returned stays buffered, undecoded, for the next call
    /// (with `b""` to feed nothing), so a driver pulls as many messages as it has room for.
    /// Pings, pongs and close frames are handled on the way (their replies wait in
    /// `data_to_send()`). When the peer breaks the protocol, the connection fails (the close
    /// frame is queued, `state` is `CLOSED`) and `closed_exception()` tells why; so does a
    /// TLS failure. A violation that follows messages returned by the same call, or any
    /// violation while `defer_failure` is true (the driver still holds undelivered messages),
    /// is left unread instead and `failure_deferred` turns true: call again once those
    /// messages are consumed, so that the application can answer them first, in order.
    ///
    /// Raises:
    ///     HandshakeError: the upgrade was refused or malformed.
    ///     TLSError: the TLS handshake failed.
    #[pyo3(signature = (data, limit=None, defer_failure=false))]
    fn receive_messages<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        limit: Option<usize>,
        defer_failure: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        let now = this.now();
        let list = PyList::empty(py);
        let (engine, large) = (&mut this.engine, &mut this.large);
        let whole = with_bytes(data, |d| match large {
            // A large payload under way takes the bytes first (see py/large.rs).
            Some(large) => large.feed(engine, d, now),
            None => engine.receive_data(d, now).map(|()| false),
        })?
        .map_err(|e| to_pyerr(py, e))?;
        if whole {
            if let Some(message) = this.large.take().and_then(|l| l.finish(&mut this.engine)) {
                list.append(message)?;
            }
        }
        while this.large.is_none() && limit.is_none_or(|l| list.len() < l) {
            this.engine
                .set_defer_failure(defer_failure || !list.is_empty());
            match this.engine.next_event() {
                Ok(Some(Event::Message(message))) => list.append(message_object(py, message)?)?,
                Ok(Some(Event::Fragment(message))) => list.append(fragment_object(py, message)?)?,
                Ok(Some(_)) => {}
                Ok(None) => {
                    this.large = PendingLarge::begin(py, &mut this.engine);
                    break;
                }
                Err(Error::Protocol(_)) => break,
                Err(e) => {
                    this.engine.set_defer_failure(false);
                    return Err(to_pyerr(py, e));
                }
            }
        }
        this.engine.set_defer_failure(false);
        this.engine.trim();
        Ok(list)
    }

    /// Hands the message under way, or else the next one, out in pieces as its frames arrive:
    /// `events()` reports a `Fragment` for each piece but the last and a `Message` for the
    /// last (`receive_messages()` a `Fragment` and then `str`/`bytes`). Text pieces end on
    /// character boundaries; UTF-8 and `max_size` apply to the whole message. The message
    /// after it is reported whole again.
    fn stream_message(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        this.engine.stream_message();
        Ok(())
    }

    /// Stops streaming: when pieces of the message under way were reported, the rest of it is
    /// dropped as it arrives (still checked); otherwise it is reported whole.
    fn stop_streaming(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        this.engine.stop_streaming();
        Ok(())
    }

    /// True while a message is being sent in fragments (`send_fragment` without `fin` yet).
    #[getter]
    fn sending_fragments(&self, py: Python<'_>) -> PyResult<bool> {
        let this = self.lock(py)?;
        Ok(this.engine.sending_fragments())
    }

    /// Queues one fragment of a message sent in pieces (RFC 6455 §5.4): the first call starts
    /// a text message (`str`) or a binary one (bytes-like), `fin=True` ends it. Until then no
    /// other message can be sent; pings and close can. With permessage-deflate negotiated the
    /// message is compressed (RSV1 on its first frame, each fragment's data flushed as it is
    /// sent), unless the first fragment is sent with `compress=False`.
    ///
    /// Raises:
    ///     ConcurrencyError: another message is being sent in fragments (from `send_text`).
    ///     TypeError: the fragment is neither str nor bytes-like, or not of the message's
    ///         type.
    #[pyo3(signature = (data, fin, *, compress=true))]
    fn send_fragment(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        fin: bool,
        compress: bool,
    ) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        let result = if let Ok(s) = data.cast::<PyString>() {
            this.engine
                .send_fragment(true, s.to_str()?.as_bytes(), fin, compress)
        } else {
            with_bytes(data, |d| this.engine.send_fragment(false, d, fin, compress)).map_err(
                |_| {
                    PyTypeError::new_err(format!(
                        "a fragment must be str or a bytes-like object, not {}",
                        data.get_type()
                            .name()
                            .map(|n| n.to_string())
                            .unwrap_or_default()
                    ))
                },
            )?
        };
        result.map_err(|e| match e {
            Error::InvalidArgument(reason) => PyTypeError::new_err(reason),
            e => to_pyerr(py, e),
        })
    }

    /// True when a frame that breaks the protocol waits unread (see `receive_messages`).
    #[getter]
    fn failure_deferred(&self, py: Python<'_>) -> PyResult<bool> {
        let this = self.lock(py)?;
        Ok(this.engine.failure_deferred())
    }

    /// Bytes received and not decoded yet.
    #[getter]
    fn buffered(&self, py: Python<'_>) -> PyResult<usize> {
        let this = self.lock(py)?;
        Ok(this.engine.buffered_len())
    }

    /// Seconds from now until `handle_timer()` has work (0.0 when it is due), or `None`: the
    /// next keepalive ping, or the end of the wait for its pong.
    fn next_timer(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        let this = self.lock(py)?;
        Ok(this
            .engine
            .next_deadline()
            .map(|due| (due - this.now()).max(0.0)))
    }

    /// Runs the keepalive: queues the ping that is due (write `data_to_send()`), or fails the
    /// connection with 1011 ("keepalive ping timeout") when its pong is overdue and nothing
    /// arrived since it was sent. Feed what the socket holds first, and do not call it while
    /// reading is paused because the application is behind.
    fn handle_timer(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        let now = this.now();
        this.engine
            .handle_deadline(now)
            .map_err(|e| to_pyerr(py, e))
    }

    /// The transport failed or the driver gave up waiting (close timeout): the connection is
    /// closed with 1006 unless it already ended. Messages already received are still returned.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        this.engine.abort();
        Ok(())
    }

    /// The `ConnectionClosedOK`/`ConnectionClosedError` that describes how the connection
    /// ended (with the protocol error as `__cause__`), or `None` while it has not.
    fn closed_exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let this = self.lock(py)?;
        Ok(this
            .engine
            .termination()
            .map(|t| closed_error(py, t).into_value(py).into_any()))
    }

    /// The exception a send on a closing or closed connection raises, or `None` while open.
    fn send_exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let this = self.lock(py)?;
        Ok(match this.engine.state() {
            State::Closing | State::Closed => Some(
                closed_error(py, &this.engine.closed_info())
                    .into_value(py)
                    .into_any(),
            ),
            _ => None,
        })
    }

    /// Queues a text message (compressed when permessage-deflate was negotiated, unless
    /// `compress` is false).
    #[pyo3(signature = (text, compress=true))]
    fn send_text(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyString>,
        compress: bool,
    ) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        let utf8 = text.to_str()?;
        if utf8.len() < STREAM_PAYLOAD {
            return this
                .engine
                .send_text(utf8, compress)
                .map_err(|e| to_pyerr(py, e));
        }
        this.send_kept(py, true, utf8.as_bytes(), compress, || {
            text.clone().into_any().unbind()
        })
    }

    /// Queues a binary message (compressed when permessage-deflate was negotiated, unless
    /// `compress` is false).
    #[pyo3(signature = (data, compress=true))]
    fn send_binary(&self, py: Python<'_>, data: &Bound<'_, PyAny>, compress: bool) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        if let Ok(bytes) = data.cast::<PyBytes>() {
            let payload = bytes.as_bytes();
            if payload.len() < STREAM_PAYLOAD {
                return this
                    .engine
                    .send_binary(payload, compress)
                    .map_err(|e| to_pyerr(py, e));
            }
            return this.send_kept(py, false, payload, compress, || {
                bytes.clone().into_any().unbind()
            });
        }
        with_bytes(data, |d| this.engine.send_binary(d, compress))?.map_err(|e| to_pyerr(py, e))
    }

    /// The negotiated extensions, e.g. `[("permessage-deflate", {})]`; `[]` when none.
    #[getter]
    fn extensions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let this = self.lock(py)?;
        extensions_object(py, this.engine.extensions())
    }

    /// Queues a ping (at most 125 bytes: str, bytes or any bytes-like object); its pong
    /// updates `latency`.
    #[pyo3(signature = (data=None))]
    fn send_ping(&self, py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        let now = this.now();
        let payload = payload_bytes(data)?;
        this.engine
            .send_ping(&payload, now)
            .map_err(|e| to_pyerr(py, e))
    }

    /// Queues a pong (at most 125 bytes).
    #[pyo3(signature = (data=None))]
    fn send_pong(&self, py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        let payload = payload_bytes(data)?;
        this.engine.send_pong(&payload).map_err(|e| to_pyerr(py, e))
    }

    /// Starts the closing handshake; does nothing once closing (the arguments are still
    /// checked).
    #[pyo3(signature = (code=Some(1000), reason=""), text_signature = "(self, code=1000, reason='')")]
    fn send_close(&self, py: Python<'_>, code: Option<i64>, reason: &str) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        let code = code
            .map(close_code)
            .transpose()
            .map_err(|e| to_pyerr(py, e))?;
        this.engine
            .send_close(code, reason)
            .map_err(|e| to_pyerr(py, e))
    }

    /// The bytes to write to the socket, in order; empties the outgoing buffer.
    ///
    /// With `max_bytes`, at most that many (every part but the last is that long): the rest
    /// waits for the next calls, before anything queued meanwhile. A driver that writes a
    /// large message in parts as the socket drains holds one copy of it, not two; a `bytes`
    /// or `str` message of 64 KiB or more sent uncompressed over `ws://` is not copied at all,
    /// but masked part by part from the object sent.
    #[pyo3(signature = (max_bytes=None))]
    fn data_to_send<'py>(
        &self,
        py: Python<'py>,
        max_bytes: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        if max_bytes == Some(0) {
            return Err(to_pyerr(
                py,
                Error::InvalidArgument("max_bytes must be at least 1".into()),
            ));
        }
        if this.spill.is_empty() && this.streamed.is_none() {
            match max_bytes {
                None => return Ok(this.engine.drain_data_to_send(|out| PyBytes::new(py, out))),
                Some(max) if this.engine.pending_output() <= max => {
                    return Ok(this.engine.drain_data_to_send(|out| PyBytes::new(py, out)))
                }
                Some(_) => {}
            }
        }
        this.next_part(py, max_bytes)
    }

    /// True while the peer's close frame is awaited: arm a close timeout.
    fn close_expected(&self, py: Python<'_>) -> PyResult<bool> {
        let this = self.lock(py)?;
        Ok(this.engine.close_expected())
    }

    /// How to close TCP once the connection is over (RFC 6455 §7.1.1); `None` before.
    ///
    /// `"now"`: close the socket. `"after_peer"`: keep reading, discarding what arrives,
    /// until the peer's end of stream (the server closes first) or the close timeout, then
    /// close. `"shut_write"`: the connection failed; shut the write side down once the close
    /// frame is written, then wait as for `"after_peer"` (closing a socket with unread bytes
    /// makes the kernel reset the connection, which can destroy the close frame unread).
    #[getter]
    fn tcp_close(&self, py: Python<'_>) -> PyResult<Option<&'static str>> {
        let this = self.lock(py)?;
        Ok(this.engine.tcp_close().map(|how| match how {
            TcpClose::Now => "now",
            TcpClose::AfterPeer { shut_write: false } => "after_peer",
            TcpClose::AfterPeer { shut_write: true } => "shut_write",
        }))
    }

    /// `sigil_ws.State`.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let this = self.lock(py)?;
        state_object(py, this.engine.state())
    }

    /// True once the upgrade succeeded.
    #[getter]
    fn handshake_complete(&self, py: Python<'_>) -> PyResult<bool> {
        let this = self.lock(py)?;
        Ok(this.engine.handshake_complete())
    }

    /// The subprotocol the server chose, or `None`.
    #[getter]
    fn subprotocol(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let this = self.lock(py)?;
        Ok(this.engine.subprotocol().map(str::to_string))
    }

    /// The headers of the 101 response.
    #[getter]
    fn response_headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let this = self.lock(py)?;
        headers_object(py, this.engine.response_headers())
    }

    /// The close code once closed, else `None`.
    #[getter]
    fn close_code(&self, py: Python<'_>) -> PyResult<Option<u16>> {
        let this = self.lock(py)?;
        Ok(this.engine.termination().map(|t| t.code))
    }

    /// The close reason once closed, else `None`.
    #[getter]
    fn close_reason(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let this = self.lock(py)?;
        Ok(this.engine.termination().map(|t| t.reason.clone()))
    }

    /// Seconds of the last ping/pong round trip; 0.0 before any.
    #[getter]
    fn latency(&self, py: Python<'_>) -> PyResult<f64> {
        let this = self.lock(py)?;
        Ok(this.engine.latency())
    }

    /// The URL, normalised (`ws://host:port/path?query`).
    #[getter]
    fn url(&self, py: Python<'_>) -> PyResult<String> {
        let this = self.lock(py)?;
        Ok(this.engine.url().to_string())
    }

    /// The host of the URL.
    #[getter]
    fn host(&self, py: Python<'_>) -> PyResult<String> {
        let this = self.lock(py)?;
        Ok(this.engine.url().host.clone())
    }

    /// The port of the URL.
    #[getter]
    fn port(&self, py: Python<'_>) -> PyResult<u16> {
        let this = self.lock(py)?;
        Ok(this.engine.url().port)
    }

    /// The resource name: path and query.
    #[getter]
    fn path(&self, py: Python<'_>) -> PyResult<String> {
        let this = self.lock(py)?;
        Ok(this.engine.url().resource.clone())
    }

    // ---- for a driver's log ------------------------------------------------------------

    /// Starts recording notes for a log: keepalive pings and the latency of pongs, and, when
    /// `frames`, the header of every frame received and sent (never a payload). Take them
    /// with `take_notes()`. Without it nothing is recorded.
    fn set_journal(&self, py: Python<'_>, frames: bool) -> PyResult<()> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        this.engine.set_journal(frames);
        Ok(())
    }

    /// True once `set_journal()` was called.
    #[getter]
    fn has_journal(&self, py: Python<'_>) -> PyResult<bool> {
        let this = self.lock(py)?;
        Ok(this.engine.has_journal())
    }

    /// The notes recorded since the last call, oldest first, as tuples:
    /// `("frame", incoming, opcode, fin, rsv, length)`, `("keepalive_ping",)`,
    /// `("pong", latency, keepalive)`, and `("dropped", count)` first when more than 1024
    /// notes waited.
    fn take_notes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut guard = self.lock(py)?;
        let this = &mut *guard;
        notes_object(py, &this.engine.take_notes())
    }

    /// Who ended the connection once it is closed, else `None`: `"us"` (we started the
    /// closing handshake), `"peer"`, `"failure"` (we failed it: a protocol or TLS error, a
    /// keepalive timeout) or `"lost"` (no closing handshake: 1006).
    #[getter]
    fn closer(&self, py: Python<'_>) -> PyResult<Option<&'static str>> {
        let this = self.lock(py)?;
        Ok(this.engine.closer().map(|c| c.as_str()))
    }

    /// The close frame we sent, `(code, reason)`, or `None`.
    #[getter]
    fn close_sent(&self, py: Python<'_>) -> PyResult<Option<(u16, String)>> {
        let this = self.lock(py)?;
        Ok(this.engine.close_sent().map(|(c, r)| (c, r.to_string())))
    }

    /// The close frame the peer sent, `(code, reason)`, or `None`.
    #[getter]
    fn close_received(&self, py: Python<'_>) -> PyResult<Option<(u16, String)>> {
        let this = self.lock(py)?;
        Ok(this
            .engine
            .close_received()
            .map(|(c, r)| (c, r.to_string())))
    }
}

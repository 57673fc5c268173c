//! Streaming on the blocking client: `Connection.recv_streaming()`'s iterator and
//! `Connection.send()` of an iterable. Kept apart from `connection.rs`, whose `recv()` and
//! `send()` are the message path.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBytes, PyString};

use crate::blocking::client::Client;
use crate::blocking::sync::lock;
use crate::error::Error;

use super::buffers::with_bytes;
use super::errors::{with_signals, ConnectionClosed, Detached};
use super::logging::ConnectionLog;
use super::objects::message_object;

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
    log: Arc<ConnectionLog>,
    timeout: Option<Duration>,
    state: Mutex<Stream>,
}

impl Fragments {
    pub(super) fn new(
        client: Arc<Client>,
        log: Arc<ConnectionLog>,
        timeout: Option<Duration>,
    ) -> Self {
        Fragments {
            client,
            log,
            timeout,
            state: Mutex::new(Stream::NotStarted),
        }
    }

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
                    message_object(py, m).map(Bound::unbind)
                })
        })
        .and_then(|(piece, last)| Ok((piece?, last)));
        match &result {
            Ok(_) => self.log.drain(py, &self.client),
            Err(_) => self.log.closed(py, &self.client),
        }
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

/// `send()` of an iterable: one message in fragments, each sent as it is produced.
pub(super) fn send_fragments(
    client: &Client,
    py: Python<'_>,
    message: &Bound<'_, PyAny>,
    compress: bool,
    timeout: Option<Duration>,
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
    // The message's kind, once its first fragment came: a message has started then.
    let mut text = None;
    // Each fragment goes out as soon as the iterable produces it (a stream of tokens is
    // not held back by one); an empty last frame ends the message.
    loop {
        let item = match items.next().transpose() {
            Ok(item) => item,
            Err(e) => return Err(fail_fragments(client, py, text.is_some(), e)),
        };
        let Some(item) = item else { break };
        let first = text.is_none();
        let is_text = *text.get_or_insert_with(|| item.is_instance_of::<PyString>());
        match send_one_fragment(client, py, &item, is_text, first, compress, false, timeout)? {
            true => {}
            false => {
                let kind = item.get_type().name()?;
                let want = if is_text { "str" } else { "bytes-like" };
                let e = PyTypeError::new_err(format!(
                    "the fragments of one message must all be {want}, not {kind}"
                ));
                return Err(fail_fragments(client, py, !first, e));
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
            send_one_fragment(client, py, &empty, is_text, false, compress, true, timeout).map(drop)
        }
    }
}

/// Sends one fragment; `Ok(false)` when it is not of the message's type. `compress` counts on
/// the first fragment only (the engine decides for the whole message there).
#[allow(clippy::too_many_arguments)]
fn send_one_fragment(
    client: &Client,
    py: Python<'_>,
    fragment: &Bound<'_, PyAny>,
    text: bool,
    first: bool,
    compress: bool,
    fin: bool,
    timeout: Option<Duration>,
) -> PyResult<bool> {
    if text {
        let Ok(s) = fragment.cast::<PyString>() else {
            return Ok(false);
        };
        let piece: PyBackedStr = s.clone().try_into()?;
        with_signals(py, |signals, blocking| {
            client.send_fragment(blocking, signals, timeout, first, |e, _| {
                e.send_fragment(true, piece.as_bytes(), fin, compress)
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
                engine.send_fragment(false, data, fin, compress)
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
fn fail_fragments(client: &Client, py: Python<'_>, started: bool, error: PyErr) -> PyErr {
    if started {
        let _ = with_signals(py, |signals, blocking| {
            client.send_control(blocking, signals, None, |e, _| {
                e.send_close(Some(1011), "error in fragmented message")
            })
        });
    }
    error
}

/// `collections.abc.Mapping`, looked up once.
fn mapping_type(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyType>> {
    static MAPPING: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    MAPPING.import(py, "collections.abc", "Mapping").cloned()
}

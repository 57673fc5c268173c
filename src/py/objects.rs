//! The pure-Python types the bindings return (`Headers`, `State`, `Message`, …), imported once.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};

use crate::protocol::{Event, Message, State, Text};

static HEADERS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static STATE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static MESSAGE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static MESSAGE_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static PING: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static PONG: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CLOSE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static FRAGMENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `sigil_ws.Headers` built from header pairs.
pub fn headers_object<'py, 'h>(
    py: Python<'py>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> PyResult<Bound<'py, PyAny>> {
    let pairs = PyList::empty(py);
    for (name, value) in headers {
        pairs.append(PyTuple::new(py, [name, value])?)?;
    }
    HEADERS
        .import(py, "sigil_ws.headers", "Headers")?
        .call1((pairs,))
}

/// Owned header pairs as the borrowed pairs `headers_object` takes.
pub fn str_pairs(headers: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
}

/// `ws.extensions`: `[("permessage-deflate", {parameter: value or None})]`, `[]` when none.
pub fn extensions_object(
    py: Python<'_>,
    deflate: Option<crate::deflate::Params>,
) -> PyResult<Bound<'_, PyList>> {
    let list = PyList::empty(py);
    if let Some(params) = deflate {
        let dict = pyo3::types::PyDict::new(py);
        for (name, value) in params.describe() {
            dict.set_item(name, value)?;
        }
        list.append((crate::deflate::EXTENSION, dict))?;
    }
    Ok(list)
}

/// The four `sigil_ws.State` members, looked up once: drivers read the state often.
static STATE_MEMBERS: PyOnceLock<[Py<PyAny>; 4]> = PyOnceLock::new();

/// `sigil_ws.State` for an engine state.
pub fn state_object(py: Python<'_>, state: State) -> PyResult<Bound<'_, PyAny>> {
    let members = STATE_MEMBERS.get_or_try_init(py, || -> PyResult<[Py<PyAny>; 4]> {
        let class = STATE.import(py, "sigil_ws.state", "State")?;
        let member = |n: u8| class.call1((n,)).map(Bound::unbind);
        Ok([member(0)?, member(1)?, member(2)?, member(3)?])
    })?;
    let index = match state {
        State::Connecting => 0,
        State::Open => 1,
        State::Closing => 2,
        State::Closed => 3,
    };
    Ok(members[index].bind(py).clone())
}

/// A message as `str` (text) or `bytes` (binary), copied once from the engine.
pub fn message_object<'py>(py: Python<'py>, message: Message<'_>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match message {
        Message::Text(text) => text_object(py, text)?.into_any(),
        Message::Binary(data) => PyBytes::new(py, data).into_any(),
    })
}

/// The `str` of a text message. CPython decodes (and so checks) the UTF-8 as it builds the
/// object, the same call `PyString::new` makes: the engine's proof is not relied upon, and an
/// error there would be a `UnicodeDecodeError`, not undefined behaviour.
pub fn text_object<'py>(py: Python<'py>, text: Text<'_>) -> PyResult<Bound<'py, PyString>> {
    PyString::from_bytes(py, text.as_bytes())
}

/// `sigil_ws.events.Fragment`: a piece of a streamed message, more to come.
pub fn fragment_object<'py>(py: Python<'py>, message: Message<'_>) -> PyResult<Bound<'py, PyAny>> {
    let kind = MESSAGE_TYPE
        .import(py, "sigil_ws.events", "MessageType")?
        .getattr(match message {
            Message::Text(_) => "TEXT",
            Message::Binary(_) => "BINARY",
        })?;
    FRAGMENT
        .import(py, "sigil_ws.events", "Fragment")?
        .call1((kind, message_object(py, message)?))
}

/// The Python event object for an engine event (`Message`, `Fragment`, `Ping`, `Pong`,
/// `Close`).
pub fn event_object<'py>(py: Python<'py>, event: &Event<'_>) -> PyResult<Bound<'py, PyAny>> {
    match event {
        Event::Fragment(message) => fragment_object(py, *message),
        Event::Message(Message::Text(text)) => {
            let kind = MESSAGE_TYPE
                .import(py, "sigil_ws.events", "MessageType")?
                .getattr("TEXT")?;
            MESSAGE
                .import(py, "sigil_ws.events", "Message")?
                .call1((kind, text_object(py, *text)?))
        }
        Event::Message(Message::Binary(data)) => {
            let kind = MESSAGE_TYPE
                .import(py, "sigil_ws.events", "MessageType")?
                .getattr("BINARY")?;
            MESSAGE
                .import(py, "sigil_ws.events", "Message")?
                .call1((kind, PyBytes::new(py, data)))
        }
        Event::Ping(data) => PING
            .import(py, "sigil_ws.events", "Ping")?
            .call1((PyBytes::new(py, data),)),
        Event::Pong(data) => PONG
            .import(py, "sigil_ws.events", "Pong")?
            .call1((PyBytes::new(py, data),)),
        Event::Close { code, reason } => CLOSE
            .import(py, "sigil_ws.events", "Close")?
            .call1((*code, *reason)),
    }
}

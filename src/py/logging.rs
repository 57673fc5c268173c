//! Logging for both clients: the engine's notes and close facts, handed to
//! `sigil_ws._logging`, which formats them (redacting secrets) on the connection's logger.
//!
//! The sync client's I/O thread never touches Python: what it observes (keepalive pings,
//! pongs, the peer's close) is recorded by the engine and logged here, from a thread attached
//! to the interpreter, when the application next calls into the connection (`recv()`,
//! `send()`, `ping()`, `close()`) or drops it.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::call::PyCallArgs;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::blocking::client::Client;
use crate::blocking::open::Hop;
use crate::protocol::{opcode_name, Note};

use super::errors::Detached;

/// The Python module that formats every log line.
const MODULE: &str = "sigil_ws._logging";

/// The engine's notes as Python tuples, as `sigil_ws._logging.log_notes` reads them:
/// `("frame", incoming, opcode, fin, rsv, length)`, `("keepalive_ping",)`,
/// `("pong", latency, keepalive)`, `("dropped", count)`.
pub fn notes_object<'py>(py: Python<'py>, notes: &[Note]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for note in notes {
        match *note {
            Note::Frame {
                incoming,
                opcode,
                fin,
                rsv,
                len,
            } => list.append(("frame", incoming, opcode_name(opcode), fin, rsv, len))?,
            Note::KeepalivePing => list.append(("keepalive_ping",))?,
            Note::Pong { latency, keepalive } => list.append(("pong", latency, keepalive))?,
            Note::Dropped(n) => list.append(("dropped", n))?,
        }
    }
    Ok(list)
}

/// Calls `sigil_ws._logging.<function>(*args)`. A failure to log (a broken handler) is
/// reported as an unraisable exception, never raised into the application.
fn call<'py>(py: Python<'py>, function: &str, args: impl PyCallArgs<'py>) {
    let result = py
        .import(MODULE)
        .and_then(|m| m.getattr(function))
        .and_then(|f| f.call1(args));
    if let Err(e) = result {
        e.write_unraisable(py, None);
    }
}

/// Logs the proxy tunnel and redirect hops of an opening, at DEBUG.
pub fn log_hops(py: Python<'_>, logger: &Py<PyAny>, hops: &[Hop]) {
    let logger = logger.bind(py);
    for hop in hops {
        match hop {
            Hop::Tunnel { proxy, host, port } => {
                call(py, "log_tunnel", (logger, proxy, host, *port));
            }
            Hop::Redirect { status, url } => call(py, "log_redirect", (logger, *status, url)),
        }
    }
}

/// The log of one sync connection.
pub struct ConnectionLog {
    /// The connection's logger (resolved by `sigil_ws.connect`); `None` logs nothing.
    logger: Option<Py<PyAny>>,
    /// The engine keeps a journal (DEBUG or TRACE was on at connect time).
    journal: bool,
    /// The "closed" line was logged (it is logged once).
    closed: AtomicBool,
}

impl ConnectionLog {
    /// A log on `logger`; `journal` when the engine records notes for it.
    pub fn new(logger: Option<Py<PyAny>>, journal: bool) -> ConnectionLog {
        ConnectionLog {
            journal: journal && logger.is_some(),
            logger,
            closed: AtomicBool::new(false),
        }
    }

    /// Logs the notes the engine recorded since the last call. Without a journal (DEBUG and
    /// TRACE off at connect time) this is one branch: the message path pays nothing more.
    #[inline]
    pub fn drain(&self, py: Python<'_>, client: &Client) {
        if self.journal {
            self.log_notes(py, client);
        }
    }

    #[cold]
    fn log_notes(&self, py: Python<'_>, client: &Client) {
        let Some(logger) = &self.logger else { return };
        let (notes, url) =
            client.inspect_mut(&Detached(py), |e| (e.take_notes(), e.url().to_string()));
        if notes.is_empty() {
            return;
        }
        match notes_object(py, &notes) {
            Ok(list) => call(py, "log_notes", (logger.bind(py), url, list)),
            Err(e) => e.write_unraisable(py, None),
        }
    }

    /// Logs the end of the connection, once, if it is over (else does nothing: a timeout, or
    /// an error that leaves the connection open).
    #[cold]
    pub fn closed(&self, py: Python<'_>, client: &Client) {
        self.drain(py, client);
        let Some(logger) = &self.logger else { return };
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let found = client.inspect(&Detached(py), |e| {
            let closer = e.closer()?;
            let t = e.termination()?;
            Some((
                e.url().to_string(),
                closer.as_str(),
                t.code,
                t.reason.clone(),
                e.close_sent().map(|(c, r)| (c, r.to_string())),
                e.close_received().map(|(c, r)| (c, r.to_string())),
            ))
        });
        let Some((url, closer, code, reason, sent, received)) = found else {
            return;
        };
        if !self.closed.swap(true, Ordering::AcqRel) {
            let args = (logger.bind(py), url, closer, code, reason, sent, received);
            call(py, "log_closed", args);
        }
    }

    /// The application dropped the connection: logs its end unless that was logged already
    /// (as "dropped" while it was still open).
    pub fn dropped(&self, py: Python<'_>, client: &Client) {
        self.closed(py, client);
        let Some(logger) = &self.logger else { return };
        if !self.closed.swap(true, Ordering::AcqRel) {
            let url = client.inspect(&Detached(py), |e| e.url().to_string());
            let none: Option<(u16, String)> = None;
            let args = (
                logger.bind(py),
                url,
                "dropped",
                1006u16,
                "",
                none.clone(),
                none,
            );
            call(py, "log_closed", args);
        }
    }
}

//! What the engine saw, for a driver's log: frames in and out (for tracing), keepalive pings
//! and the latency of their pongs, and who closed the connection.
//!
//! The engine never logs: it only records small facts in a bounded journal that exists only
//! while a driver asked for it (its logger had DEBUG or TRACE on when the connection was made),
//! and the driver takes them out and logs them where it may call Python. With no journal, the
//! message path pays one branch on a `None` per frame.

use std::collections::VecDeque;

use super::{Protocol, KEEPALIVE_TIMEOUT_REASON};
use crate::frame::OpCode;

/// Notes kept before the oldest are dropped (and counted): a driver that takes them rarely
/// (a sync application that only sends) holds at most this many.
pub const JOURNAL_CAPACITY: usize = 1024;

/// One fact the engine recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Note {
    /// A frame was decoded (`incoming`) or queued for the socket: its header only, never its
    /// payload.
    Frame {
        /// Received (true) or sent (false).
        incoming: bool,
        /// The opcode.
        opcode: OpCode,
        /// FIN.
        fin: bool,
        /// RSV1..RSV3 as the three low bits.
        rsv: u8,
        /// The payload length (as sent on the wire: compressed when RSV1 is set).
        len: u64,
    },
    /// The keepalive sent a ping.
    KeepalivePing,
    /// A pong answered one of our pings after `latency` seconds (`keepalive`: the keepalive's).
    Pong {
        /// Seconds between the ping and its pong.
        latency: f64,
        /// The ping was the keepalive's (not the application's `ping()`).
        keepalive: bool,
    },
    /// The journal was full: this many older notes were dropped.
    Dropped(u64),
}

/// The bounded list of notes; frames are recorded only when `frames` is set (TRACE).
#[derive(Debug, Default)]
pub struct Journal {
    frames: bool,
    notes: VecDeque<Note>,
    dropped: u64,
}

impl Journal {
    fn push(&mut self, note: Note) {
        if self.notes.len() >= JOURNAL_CAPACITY {
            self.notes.pop_front();
            self.dropped += 1;
        }
        self.notes.push_back(note);
    }

    /// Records a frame header (when frames are traced).
    #[inline]
    pub fn frame(&mut self, incoming: bool, opcode: OpCode, fin: bool, rsv: u8, len: u64) {
        if self.frames {
            self.push(Note::Frame {
                incoming,
                opcode,
                fin,
                rsv,
                len,
            });
        }
    }

    /// Records the keepalive's ping.
    pub fn keepalive_ping(&mut self) {
        self.push(Note::KeepalivePing);
    }

    /// Records a pong that answered one of our pings.
    pub fn pong(&mut self, latency: f64, keepalive: bool) {
        self.push(Note::Pong { latency, keepalive });
    }
}

/// Who ended the connection, as a log tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// We started the closing handshake (`close()`).
    Us,
    /// The peer started it.
    Peer,
    /// We failed the connection: the peer broke the protocol, TLS failed, or the keepalive's
    /// pong did not come.
    Failure,
    /// The transport ended or was aborted without a closing handshake (1006).
    Lost,
}

impl Closer {
    /// The word a log line and the Python binding use.
    pub fn as_str(self) -> &'static str {
        match self {
            Closer::Us => "us",
            Closer::Peer => "peer",
            Closer::Failure => "failure",
            Closer::Lost => "lost",
        }
    }
}

/// The name of an opcode, as a trace line shows it.
pub fn opcode_name(opcode: OpCode) -> &'static str {
    match opcode {
        OpCode::Continuation => "CONT",
        OpCode::Text => "TEXT",
        OpCode::Binary => "BINARY",
        OpCode::Close => "CLOSE",
        OpCode::Ping => "PING",
        OpCode::Pong => "PONG",
    }
}

impl Protocol {
    /// Starts recording notes (keepalive pings, pong latency) and, when `frames`, every frame
    /// header in and out. Drivers call it once, when their logger wants DEBUG or TRACE.
    pub fn set_journal(&mut self, frames: bool) {
        self.wire.journal = Some(Box::new(Journal {
            frames,
            ..Journal::default()
        }));
    }

    /// True once [`Protocol::set_journal`] was called.
    pub fn has_journal(&self) -> bool {
        self.wire.journal.is_some()
    }

    /// Takes the notes recorded since the last call (oldest first); a [`Note::Dropped`] leads
    /// when the journal overflowed.
    pub fn take_notes(&mut self) -> Vec<Note> {
        let Some(journal) = self.wire.journal.as_deref_mut() else {
            return Vec::new();
        };
        let mut notes = Vec::with_capacity(journal.notes.len() + 1);
        if journal.dropped > 0 {
            notes.push(Note::Dropped(std::mem::take(&mut journal.dropped)));
        }
        notes.extend(journal.notes.drain(..));
        notes
    }

    /// Who ended the connection, once it ended.
    pub fn closer(&self) -> Option<Closer> {
        let t = self.termination.as_ref()?;
        Some(if t.cause.is_some() {
            Closer::Failure
        } else if self.close_received.is_none() {
            if t.code == 1011 && t.reason == KEEPALIVE_TIMEOUT_REASON {
                Closer::Failure
            } else if t.code == 1006 {
                Closer::Lost
            } else {
                // Closed before the upgrade completed (`send_close` while connecting).
                Closer::Us
            }
        } else if self.closed_by_peer {
            Closer::Peer
        } else {
            Closer::Us
        })
    }

    /// The close frame we sent (code, reason), if any.
    pub fn close_sent(&self) -> Option<(u16, &str)> {
        self.close_sent.as_ref().map(|(c, r)| (*c, r.as_str()))
    }

    /// The close frame the peer sent (code, reason), if any.
    pub fn close_received(&self) -> Option<(u16, &str)> {
        self.close_received.as_ref().map(|(c, r)| (*c, r.as_str()))
    }
}

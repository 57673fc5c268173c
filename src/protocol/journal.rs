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

    /// Records a frame header (when frames are traced). Out of line and cold: the message
    /// path keeps only the test for a journal.
    #[cold]
    #[inline(never)]
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

    /// Records a frame queued for the socket, its payload the concatenation of `parts`.
    #[cold]
    #[inline(never)]
    pub fn frame_out(&mut self, opcode: OpCode, parts: &[&[u8]], rsv1: bool, fin: bool) {
        let len = parts.iter().map(|p| p.len() as u64).sum();
        self.frame(false, opcode, fin, if rsv1 { 4 } else { 0 }, len);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;
    use crate::handshake::accept_key;
    use crate::options::Options;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn open(journal: Option<bool>, ping_interval: Option<f64>) -> Protocol {
        let options = Options {
            ping_interval: ping_interval.map(std::time::Duration::from_secs_f64),
            ..Options::default()
        };
        let mut p = Protocol::client("ws://example.com/", &options, Some(KEY.into())).unwrap();
        if let Some(frames) = journal {
            p.set_journal(frames);
        }
        let mut out = Vec::new();
        p.take_data_to_send(&mut out);
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(KEY)
        );
        p.receive_data(response.as_bytes(), 0.0).unwrap();
        assert_eq!(p.next_event().unwrap(), None);
        p
    }

    fn server_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, opcode, true, &[payload], None);
        out
    }

    fn drain(p: &mut Protocol) {
        while let Ok(Some(_)) = p.next_event() {}
    }

    #[test]
    fn nothing_is_recorded_without_a_journal() {
        let mut p = open(None, None);
        p.send_text("hi", false).unwrap();
        p.receive_data(&server_frame(OpCode::Text, b"yo"), 0.0)
            .unwrap();
        drain(&mut p);
        assert!(!p.has_journal());
        assert_eq!(p.take_notes(), vec![]);
    }

    #[test]
    fn frames_in_and_out_only_when_traced() {
        let frame = |incoming, opcode, len| Note::Frame {
            incoming,
            opcode,
            fin: true,
            rsv: 0,
            len,
        };
        let mut p = open(Some(true), None);
        p.send_text("hello", false).unwrap();
        p.receive_data(&server_frame(OpCode::Binary, b"abc"), 0.0)
            .unwrap();
        drain(&mut p);
        assert_eq!(
            p.take_notes(),
            vec![
                frame(false, OpCode::Text, 5),
                frame(true, OpCode::Binary, 3)
            ]
        );
        assert_eq!(p.take_notes(), vec![]);

        let mut p = open(Some(false), None);
        p.send_text("hello", false).unwrap();
        assert_eq!(p.take_notes(), vec![]);
    }

    #[test]
    fn keepalive_ping_and_pong_latency() {
        let mut p = open(Some(false), Some(1.0));
        p.handle_deadline(1.0).unwrap();
        let mut out = Vec::new();
        p.take_data_to_send(&mut out);
        // The ping's payload: 4 bytes after a 2-byte header and a 4-byte mask.
        let (mask, masked) = (&out[2..6], &out[6..10]);
        let payload: Vec<u8> = masked.iter().zip(mask).map(|(b, m)| b ^ m).collect();
        p.receive_data(&server_frame(OpCode::Pong, &payload), 1.25)
            .unwrap();
        drain(&mut p);
        assert_eq!(
            p.take_notes(),
            vec![
                Note::KeepalivePing,
                Note::Pong {
                    latency: 0.25,
                    keepalive: true
                }
            ]
        );
    }

    #[test]
    fn a_full_journal_drops_the_oldest_and_counts_them() {
        let mut p = open(Some(true), None);
        for _ in 0..JOURNAL_CAPACITY + 3 {
            p.send_binary(b"x", false).unwrap();
        }
        let notes = p.take_notes();
        assert_eq!(notes.len(), JOURNAL_CAPACITY + 1);
        assert_eq!(notes.first(), Some(&Note::Dropped(3)));
        assert_eq!(p.take_notes(), vec![]);
    }

    #[test]
    fn who_closed() {
        let close = |code: u16, reason: &[u8]| {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(reason);
            server_frame(OpCode::Close, &payload)
        };
        // We closed first.
        let mut p = open(None, None);
        assert_eq!(p.closer(), None);
        p.send_close(Some(1000), "bye").unwrap();
        assert_eq!(p.closer(), None);
        p.receive_data(&close(1000, b"ok"), 0.0).unwrap();
        drain(&mut p);
        assert_eq!(p.closer(), Some(Closer::Us));
        assert_eq!(p.close_sent(), Some((1000, "bye")));
        assert_eq!(p.close_received(), Some((1000, "ok")));
        // The peer closed first.
        let mut p = open(None, None);
        p.receive_data(&close(4001, b"gone"), 0.0).unwrap();
        drain(&mut p);
        assert_eq!(p.closer(), Some(Closer::Peer));
        assert_eq!(p.close_sent(), Some((4001, "")));
        // We failed it: a reserved opcode.
        let mut p = open(None, None);
        p.receive_data(&[0x83, 0x00], 0.0).unwrap();
        drain(&mut p);
        assert_eq!(p.closer(), Some(Closer::Failure));
        // The transport dropped.
        let mut p = open(None, None);
        p.abort();
        assert_eq!(p.closer(), Some(Closer::Lost));
        // The keepalive's pong never came.
        let mut p = open(None, Some(1.0));
        p.handle_deadline(1.0).unwrap();
        p.handle_deadline(100.0).unwrap();
        assert_eq!(p.closer(), Some(Closer::Failure));
    }
}

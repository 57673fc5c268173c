//! Bytes in and out of the engine, through the TLS layer when there is one: the only place that
//! knows whether a connection is encrypted.

use crate::buffer::{Filling, InputBuffer, KEEP_CAPACITY};
use crate::error::Error;
use crate::frame::{encode_frame, encode_header, OpCode};
use crate::mask::copy_masked;
use crate::random::mask_key;
use crate::tls::TlsLayer;

use super::journal::Journal;

/// The socket side of the engine: received plaintext, and bytes for the socket.
#[derive(Default)]
pub(super) struct Wire {
    /// Boxed: a rustls connection is about 1 KiB, which a `ws://` connection should not carry.
    tls: Option<Box<TlsLayer>>,
    /// Plaintext received and not yet decoded.
    pub input: InputBuffer,
    /// Bytes for the socket.
    out: Vec<u8>,
    /// Frame scratch when frames go through TLS.
    scratch: Vec<u8>,
    /// A frame whose header is in `out` and whose payload the driver still holds: it is masked
    /// part by part as it is written ([`Wire::stream_into`]). Boxed: rarely there.
    streaming: Option<Box<Streaming>>,
    /// What a driver's log asked the engine to record; `None` (the default) records nothing.
    pub journal: Option<Box<Journal>>,
}

/// The payload of a frame under way in the output.
struct Streaming {
    /// The payload's length, and how much of it is written.
    len: usize,
    done: usize,
    key: [u8; 4],
    /// Frames queued while the payload streams: they go out after it, as they were queued
    /// (RFC 6455 §5.4: control frames may go between the frames of a message, never inside
    /// one).
    held: Vec<u8>,
}

impl Wire {
    pub fn new(tls: Option<TlsLayer>) -> Wire {
        Wire {
            tls: tls.map(Box::new),
            ..Wire::default()
        }
    }

    /// Feeds bytes from the socket. Returns true when TLS reports the end of the stream
    /// (close_notify). A TLS failure is returned after its alert was queued for the peer.
    pub fn receive(&mut self, data: &[u8]) -> Result<bool, Error> {
        if data.is_empty() {
            // A driver pulling what is buffered (`receive_messages(b"")`): moving the
            // undecoded bytes to the front here would copy them once per pull.
            return Ok(false);
        }
        self.input.compact();
        match &mut self.tls {
            Some(tls) => {
                let result = tls.read(data, &mut self.input);
                // Alerts and handshake records go out whether or not reading failed.
                tls.drain(&mut self.out)?;
                Ok(result?.closed)
            }
            None => {
                self.input.extend(data);
                Ok(false)
            }
        }
    }

    /// Feeds ciphertext whose plaintext goes into `direct` first (see `large.rs`), the rest
    /// into the input buffer. Returns the bytes written into `direct`, and whether TLS
    /// reported the end of the stream. Without TLS, `data` is plaintext and is copied the same
    /// way.
    pub fn receive_direct(
        &mut self,
        data: &[u8],
        direct: &mut Filling<'_>,
    ) -> Result<(usize, bool), Error> {
        match &mut self.tls {
            Some(tls) => {
                let result = tls.read_direct(data, direct, &mut self.input);
                tls.drain(&mut self.out)?;
                let (read, n) = result?;
                Ok((n, read.closed))
            }
            None => {
                let k = direct.extend(data);
                self.input.extend(data.get(k..).unwrap_or_default());
                Ok((k, false))
            }
        }
    }

    /// The input buffer for a driver that reads plain TCP straight into it; `None` under TLS,
    /// where ciphertext goes through rustls first.
    pub fn take_input(&mut self) -> Option<InputBuffer> {
        if self.tls.is_some() {
            return None;
        }
        self.input.compact();
        Some(std::mem::take(&mut self.input))
    }

    /// Takes back the buffer of [`Wire::take_input`] with `n` more bytes, or none when
    /// `accept` is false.
    pub fn put_input(&mut self, mut input: InputBuffer, n: usize, accept: bool) {
        if n > 0 && accept {
            input.commit(n);
        }
        self.input = input;
    }

    /// Queues bytes that are not a frame (the upgrade request).
    pub fn write_plain(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match &mut self.tls {
            Some(tls) => {
                tls.write(bytes)?;
                tls.drain(&mut self.out)?;
            }
            None => self.out.extend_from_slice(bytes),
        }
        Ok(())
    }

    /// Queues one frame whose payload is the concatenation of `parts`.
    pub fn write_frame(&mut self, opcode: OpCode, parts: &[&[u8]]) -> Result<(), Error> {
        self.write_frame_rsv1(opcode, parts, false)
    }

    /// Queues one frame, with RSV1 set when `rsv1` (a compressed message, RFC 7692 §6).
    pub fn write_frame_rsv1(
        &mut self,
        opcode: OpCode,
        parts: &[&[u8]],
        rsv1: bool,
    ) -> Result<(), Error> {
        self.write_frame_fin(opcode, parts, rsv1, true)
    }

    /// Queues one frame, the last of its message when `fin`.
    pub fn write_frame_fin(
        &mut self,
        opcode: OpCode,
        parts: &[&[u8]],
        rsv1: bool,
        fin: bool,
    ) -> Result<(), Error> {
        // RFC 6455 §5.3: a client masks every frame with a fresh key.
        let key = mask_key()?;
        if let Some(journal) = self.journal.as_deref_mut() {
            journal.frame_out(opcode, parts, rsv1, fin);
        }
        let rsv1 = if rsv1 { 0x40 } else { 0 };
        match &mut self.tls {
            Some(tls) => {
                self.scratch.clear();
                encode_frame(&mut self.scratch, opcode, fin, parts, Some(key));
                if let Some(first) = self.scratch.first_mut() {
                    *first |= rsv1;
                }
                tls.write(&self.scratch)?;
                tls.drain(&mut self.out)?;
                if self.scratch.capacity() > KEEP_CAPACITY {
                    self.scratch = Vec::new();
                }
            }
            None => {
                let out = match self.streaming.as_deref_mut() {
                    Some(streaming) => &mut streaming.held,
                    None => &mut self.out,
                };
                let start = out.len();
                encode_frame(out, opcode, fin, parts, Some(key));
                if let Some(first) = out.get_mut(start) {
                    *first |= rsv1;
                }
            }
        }
        Ok(())
    }

    /// Queues the header of a frame whose payload, `payload`, the driver keeps and hands back
    /// to [`Wire::stream_into`] as the frame is written: masked there, never copied here.
    /// Returns false (and queues nothing) under TLS, whose records take the whole frame, or
    /// while another payload streams.
    pub fn stream_frame(&mut self, opcode: OpCode, payload: &[u8]) -> Result<bool, Error> {
        if self.tls.is_some() || self.streaming.is_some() {
            return Ok(false);
        }
        // RFC 6455 §5.3: a client masks every frame with a fresh key.
        let key = mask_key()?;
        if let Some(journal) = self.journal.as_deref_mut() {
            journal.frame_out(opcode, &[payload], false, true);
        }
        encode_header(&mut self.out, opcode, true, false, payload.len(), Some(key));
        self.streaming = Some(Box::new(Streaming {
            len: payload.len(),
            done: 0,
            key,
            held: Vec::new(),
        }));
        Ok(true)
    }

    /// The payload bytes of the streaming frame not yet written.
    pub fn stream_left(&self) -> usize {
        self.streaming.as_ref().map_or(0, |s| s.len - s.done)
    }

    /// Writes the next bytes of the streaming payload into `dst`, masked, and returns how
    /// many (`dst.len()` at most). `payload` is the one given to [`Wire::stream_frame`]; the
    /// bytes queued before the frame (its header included) must be taken first. When the
    /// payload is done, what was queued behind it becomes the output.
    pub fn stream_into(&mut self, payload: &[u8], dst: &mut [u8]) -> usize {
        let Some(s) = self.streaming.as_deref_mut() else {
            return 0;
        };
        if payload.len() != s.len || !self.out.is_empty() {
            return 0;
        }
        let n = dst.len().min(s.len - s.done);
        let (Some(out), Some(src)) = (dst.get_mut(..n), payload.get(s.done..s.done + n)) else {
            return 0;
        };
        copy_masked(out, src, s.key, s.done);
        s.done += n;
        if s.done == s.len {
            let held = std::mem::take(&mut s.held);
            self.streaming = None;
            self.out = held;
        }
        n
    }

    /// Ends the TLS stream (close_notify) once the closing handshake is over.
    pub fn close_tls(&mut self) -> Result<(), Error> {
        if let Some(tls) = &mut self.tls {
            tls.close();
            tls.drain(&mut self.out)?;
        }
        Ok(())
    }

    /// True when the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// True while the TLS handshake has not finished.
    pub fn tls_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// The ALPN protocol TLS negotiated.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.as_ref().and_then(|t| t.alpn_protocol())
    }

    /// Bytes waiting for the socket: those queued, the rest of a streaming payload and what
    /// is queued behind it.
    pub fn out_len(&self) -> usize {
        self.out.len()
            + self
                .streaming
                .as_ref()
                .map_or(0, |s| s.len - s.done + s.held.len())
    }

    /// True when no byte waits for the socket.
    pub fn out_is_empty(&self) -> bool {
        self.out.is_empty() && self.streaming.is_none()
    }

    /// The bytes waiting for the socket ahead of a streaming payload (all of them when none
    /// streams).
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Releases the output buffer's memory when it is empty and large, or when `all`.
    pub fn shrink_out(&mut self, all: bool) {
        if self.out.is_empty() && (all || self.out.capacity() > KEEP_CAPACITY) {
            self.out = Vec::new();
        }
    }
}

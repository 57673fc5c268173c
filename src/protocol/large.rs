//! Large payloads received straight into the driver's memory.
//!
//! A message of one large binary frame would otherwise be copied twice on the client: from the
//! socket into the input buffer, then from there into the object the application gets. Once
//! the frame's header has arrived and passed every rule, the engine lets the driver receive
//! the rest of the payload into memory of its own (a Python `bytes` object before it is
//! published): the payload bytes already buffered are copied there, the driver reads the rest
//! from the socket (or, under TLS, the engine decrypts it there), and the engine then consumes
//! the frame. The engine still decides which frame qualifies and checks every rule; the
//! driver only moves bytes. A driver that gives up midway (a timeout, a signal) hands what it
//! received back, and the engine continues as if it had been fed normally.
//!
//! Only binary frames take this path: text must become a `str`, which CPython builds by
//! decoding (one copy from wherever the bytes are), and a compressed or fragmented message is
//! inflated or reassembled in the engine anyway.

use super::{Protocol, RESERVE_AHEAD};
use crate::buffer::Filling;
use crate::error::Error;
use crate::frame::{decode_header, OpCode};

/// Payloads of at least this many bytes may be received straight into the driver's memory:
/// large enough that the saved copy outweighs a read that stops at the frame's end, and above
/// the sizes whose frames usually arrive whole in one read.
pub const LARGE_PAYLOAD: usize = 256 * 1024;

/// A frame whose payload the driver may receive into memory of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LargeFrame {
    /// The payload's length.
    pub len: usize,
    /// Payload bytes already buffered in the engine (copied by [`Protocol::copy_large_prefix`]).
    pub buffered: usize,
    /// The rest comes through TLS: feed the ciphertext with [`Protocol::receive_data_large`]
    /// (without TLS, read the socket into the memory and report it with
    /// [`Protocol::large_progress`]).
    pub tls: bool,
    header_len: usize,
}

impl Protocol {
    /// The frame under way, when its payload may be received into the driver's memory: an
    /// uncompressed binary message in one frame of [`LARGE_PAYLOAD`] bytes to 16 MiB whose
    /// header has arrived and met every rule (size limit included), and whose payload has not
    /// all arrived yet. Ask after [`Protocol::next_event`] returned `None`.
    #[inline]
    pub fn large_frame(&self) -> Option<LargeFrame> {
        // RFC 6455 §5.2: a payload over 65535 bytes has the 64-bit length (127) in the
        // second byte; anything else is no large frame (asked once per read, so this costs
        // a small frame's read one comparison).
        match self.wire.input.pending() {
            [_, b1, ..] if b1 & 0x7f == 127 => self.large_frame_header(),
            _ => None,
        }
    }

    #[inline(never)]
    fn large_frame_header(&self) -> Option<LargeFrame> {
        if !self.opened || !self.decoding || self.eof || self.deferred.is_some() {
            return None;
        }
        // A streamed message is handed out by the engine, which ends the streaming with it.
        if self.is_streaming() {
            return None;
        }
        let pending = self.wire.input.pending();
        let (header, header_len) = decode_header(pending).ok()??;
        // A compressed frame (RSV1) inflates in the engine; a fragment is reassembled there.
        if header.opcode != OpCode::Binary || !header.fin || header.rsv != 0 {
            return None;
        }
        self.reassembly
            .check_header(&header, self.deflate.is_some())
            .ok()?;
        let len = usize::try_from(header.payload_len).ok()?;
        let buffered = pending.len() - header_len;
        // The driver's memory is allocated before the payload arrives: a length no data backs
        // yet gets at most what the engine would reserve for it itself (RESERVE_AHEAD), so a
        // frame longer than that (possible without max_size) takes the engine's buffer.
        let sized = (LARGE_PAYLOAD..=RESERVE_AHEAD).contains(&len);
        (sized && buffered < len).then_some(LargeFrame {
            len,
            buffered,
            tls: self.wire.is_tls(),
            header_len,
        })
    }

    /// The driver takes `frame`'s payload: the memory the engine reserved ahead for it is
    /// given back first (before the driver allocates its own, which may then reuse it).
    pub fn begin_large(&mut self, _frame: &LargeFrame) {
        self.wire.input.release_reserve();
    }

    /// Copies the payload bytes already buffered into `dest` (empty, at least
    /// `frame.buffered` long); they stay buffered until [`Protocol::complete_large`].
    pub fn copy_large_prefix(&self, frame: &LargeFrame, dest: &mut Filling<'_>) {
        let start = frame.header_len;
        let prefix = self
            .wire
            .input
            .pending()
            .get(start..start + frame.buffered)
            .unwrap_or_default();
        dest.extend(prefix);
    }

    /// The driver read more of the large payload at `now`: a sign of life for the keepalive.
    pub fn large_progress(&mut self, now: f64) {
        self.now = now;
        self.reads += 1;
    }

    /// Under TLS: feeds ciphertext read from the socket; the plaintext goes into `dest` (the
    /// rest of the large payload) first, what follows the payload into the input buffer.
    /// Returns the bytes appended to `dest`. A TLS failure fails the connection, as in
    /// [`Protocol::receive_data`].
    pub fn receive_data_large(
        &mut self,
        data: &[u8],
        dest: &mut Filling<'_>,
        now: f64,
    ) -> Result<usize, Error> {
        if self.ignores_input() {
            return Ok(0);
        }
        self.large_progress(now);
        match self.wire.receive_direct(data, dest) {
            Ok((n, closed)) => {
                self.eof |= closed;
                Ok(n)
            }
            Err(e) => self.transport_failed(e).map(|()| 0),
        }
    }

    /// The driver stopped before the payload was whole: `received` (what it read after the
    /// buffered prefix) becomes buffered input, as if it had been fed normally.
    pub fn abandon_large(&mut self, received: &[u8]) {
        if !received.is_empty() {
            self.wire.input.extend(received);
        }
    }

    /// The driver holds the whole payload of `frame` (the buffered prefix, then what it read):
    /// the frame is consumed and its message complete. An error means `frame` is not the
    /// frame under way (a driver bug); nothing is consumed then.
    pub fn complete_large(&mut self, frame: &LargeFrame) -> Result<(), Error> {
        let whole = frame.header_len + frame.buffered <= self.wire.input.pending().len();
        if !whole || self.large_frame_under_way() != Some((frame.len, frame.header_len)) {
            return Err(Error::InvalidArgument(
                "no large frame of this length is under way".into(),
            ));
        }
        self.reassembly.recycle();
        // A message in one frame: streaming, if it was armed meanwhile, ends with it.
        self.reassembly.whole_message_ended();
        let pos = self.wire.input.pos() + frame.header_len + frame.buffered;
        self.wire.input.set_pos(pos);
        Ok(())
    }

    /// The length and header length of the large frame at the start of the input, checked
    /// again (the TLS path may have buffered what follows it meanwhile).
    fn large_frame_under_way(&self) -> Option<(usize, usize)> {
        if !self.decoding || self.deferred.is_some() {
            return None;
        }
        let (header, header_len) = decode_header(self.wire.input.pending()).ok()??;
        if header.opcode != OpCode::Binary || !header.fin || header.rsv != 0 {
            return None;
        }
        self.reassembly
            .check_header(&header, self.deflate.is_some())
            .ok()?;
        let len = usize::try_from(header.payload_len).ok()?;
        (LARGE_PAYLOAD..=RESERVE_AHEAD)
            .contains(&len)
            .then_some((len, header_len))
    }
}

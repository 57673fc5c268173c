//! Data frames into messages: the frame rules of RFC 6455 §5, reassembly of fragments, size
//! limits and UTF-8.
//!
//! UTF-8 is proven once, by `std::str::from_utf8` over the whole message when it completes; an
//! incremental check runs only over the part of a frame or message that has arrived so far, to
//! fail fast (RFC 6455 §8.1) before the rest of a bad message is even received. A text message
//! leaves the engine as [`Text`], bytes rather than `&str`: no unchecked conversion rests on
//! that proof, and whoever needs a string checks again (Python's `str` constructor does as it
//! decodes, at no extra cost).

use crate::buffer::KEEP_CAPACITY;
use crate::deflate::Deflate;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode};
use crate::utf8::Utf8Validator;

/// A complete message, borrowed from the engine until its next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (or a piece of one), which the engine checked to be UTF-8.
    Text(Text<'a>),
    /// A binary message.
    Binary(&'a [u8]),
}

impl Message<'_> {
    /// The payload's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) => data,
        }
    }
}

/// Where a completed message's payload lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Payload {
    /// In the input buffer, at these offsets (a message of one frame, read in place).
    InPlace {
        /// First byte.
        start: usize,
        /// One past the last byte.
        end: usize,
    },
    /// In the reassembly buffer (while streaming, a piece: see [`Reassembly::handed_out`]).
    Reassembled,
}

/// How a message is handed out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Streaming {
    /// Whole, once complete.
    #[default]
    Off,
    /// In pieces as its frames arrive, text split on character boundaries; the last piece
    /// completes the message, and the next message is handed out whole again.
    Pieces,
    /// The rest of a message whose first pieces were handed out is dropped as it arrives
    /// (the application stopped reading it), still checked, inflated and bounded.
    Skip,
}

/// A message that `frame` completed: its kind and where its payload is. Text payloads are
/// proven UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Completed {
    pub text: bool,
    pub payload: Payload,
}

/// Reassembly state between frames.
#[derive(Debug, Default)]
pub(super) struct Reassembly {
    /// What is left of `max_size` for the message under way: less than `limit` by the pieces
    /// of it already handed out (so the checks on the message path need no addition).
    max_size: Option<usize>,
    /// `max_size` as configured.
    limit: Option<usize>,
    /// A fragmented message is under way: `Some(is_text)`.
    fragmented: Option<bool>,
    /// Its payload so far.
    message: Vec<u8>,
    /// The reassembly buffer was handed out and is cleared on the next call.
    delivered: bool,
    /// Fail-fast check of the text that has arrived so far.
    utf8: Utf8Validator,
    /// Bytes of the current, incomplete frame already fed to `utf8`.
    checked: usize,
    /// The message under way is compressed (its first frame had RSV1, RFC 7692 §6).
    compressed: bool,
    /// How the message under way (or the next) is handed out.
    streaming: Streaming,
    /// Bytes of the message under way that are no longer in `message` (handed out or
    /// dropped as pieces): `max_size` was lowered by as much.
    streamed: u64,
    /// The piece handed out last: that many bytes leave `message` on the next call.
    piece: usize,
}

impl Reassembly {
    pub fn new(max_size: Option<usize>) -> Self {
        Reassembly {
            max_size,
            limit: max_size,
            ..Default::default()
        }
    }

    /// What the last `Payload::Reassembled` hands out: the reassembled message, or a piece
    /// of a streamed message (true) when more is to come.
    pub fn handed_out(&self) -> (&[u8], bool) {
        if self.piece > 0 {
            (self.message.get(..self.piece).unwrap_or_default(), true)
        } else {
            (&self.message, false)
        }
    }

    /// Releases the buffer of a message handed out by the previous call.
    #[inline]
    pub fn recycle(&mut self) {
        if self.delivered {
            self.delivered = false;
            if self.piece > 0 {
                // A piece: the unfinished character after it stays for the next one.
                self.message.drain(..self.piece);
                self.piece = 0;
                return;
            }
            self.message.clear();
            if self.message.capacity() > KEEP_CAPACITY {
                self.message = Vec::new();
            }
        }
    }

    /// Forgets an unfinished message (the connection failed).
    pub fn abandon(&mut self) {
        self.fragmented = None;
        self.compressed = false;
        self.message = Vec::new();
        self.checked = 0;
        self.utf8.reset();
        self.streaming = Streaming::Off;
        self.streamed = 0;
        self.max_size = self.limit;
        self.piece = 0;
    }

    /// Hands the message under way, or else the next one, out in pieces as it arrives.
    /// True when frames of the message under way already arrived: [`Reassembly::piece_now`]
    /// hands them out.
    pub fn stream(&mut self) -> bool {
        self.streaming = Streaming::Pieces;
        self.fragmented.is_some() && !self.delivered && !self.message.is_empty()
    }

    /// The piece that the frames of the message under way make (streaming armed after they
    /// arrived), if they hold a whole character.
    pub fn piece_now(&mut self) -> Option<Completed> {
        let text = self.fragmented?;
        if self.streaming != Streaming::Pieces || self.delivered {
            return None;
        }
        self.piece(false, text).ok().flatten()
    }

    /// Ends streaming: a message of which pieces were handed out has the rest dropped as it
    /// arrives; otherwise the message under way (or the next) is handed out whole.
    pub fn stop_streaming(&mut self) {
        if self.streaming == Streaming::Pieces {
            self.streaming = if self.streamed > 0 || self.piece > 0 {
                Streaming::Skip
            } else {
                Streaming::Off
            };
        }
    }

    /// A message in one frame was handed out outside `frame` (the driver received its
    /// payload itself): a streaming armed for it ends with it.
    pub fn whole_message_ended(&mut self) {
        self.streaming = Streaming::Off;
    }

    /// How messages are handed out now.
    pub fn streaming(&self) -> Streaming {
        self.streaming
    }

    #[inline]
    fn in_text(&self, header: &FrameHeader) -> bool {
        match header.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self.fragmented == Some(true),
            _ => false,
        }
    }

    /// True when the frame's payload is compressed: RSV1 on the first frame of a message, or a
    /// later fragment of a compressed message. Valid once `check_header` accepted the frame
    /// (then a set RSV bit can only be RSV1 on a first frame).
    #[inline(always)]
    fn is_compressed(&self, header: &FrameHeader) -> bool {
        self.compressed || header.rsv != 0
    }

    /// The rules a frame header must meet before any of its payload is looked at; `deflate`
    /// says whether permessage-deflate was negotiated.
    #[inline(always)]
    pub fn check_header(&self, header: &FrameHeader, deflate: bool) -> Result<(), ProtocolError> {
        if header.rsv != 0 {
            check_rsv(header, deflate)?;
        }
        // RFC 6455 §5.1: "The client MUST close a connection if it detects a masked frame."
        if header.mask.is_some() {
            return Err(ProtocolError::MaskedFrame);
        }
        if header.opcode.is_control() {
            // RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or
            // less and MUST NOT be fragmented."
            if header.payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong {
                    len: header.payload_len,
                });
            }
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame {
                    opcode: header.opcode.as_u8(),
                });
            }
            return Ok(());
        }
        // RFC 6455 §5.4: fragments of one message are not interleaved with another message.
        match (header.opcode, self.fragmented) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation {
                    opcode: header.opcode.as_u8(),
                })
            }
            _ => {}
        }
        if let Some(limit) = self.max_size {
            if self.is_compressed(header) {
                // max_size counts inflated bytes, checked while inflating. A compressed frame
                // larger than the limit plus DEFLATE's worst-case growth (5 bytes per stored
                // block of at most 65,535 bytes) cannot inflate within it: refuse it before
                // buffering it.
                let bound = (limit as u64).saturating_add(limit as u64 / 8192 + 1024);
                if header.payload_len > bound {
                    return Err(self.too_big(header.payload_len, limit));
                }
            } else {
                let size = (self.message.len() as u64).saturating_add(header.payload_len);
                if size > limit as u64 {
                    return Err(self.too_big(size, limit));
                }
            }
        }
        Ok(())
    }

    /// The message is too big: `size` and `limit` count from the first byte not handed out
    /// as a piece; the error counts the whole message.
    #[cold]
    fn too_big(&self, size: u64, limit: usize) -> ProtocolError {
        ProtocolError::MessageTooBig {
            size: size.saturating_add(self.streamed),
            limit: self.limit.unwrap_or(limit),
        }
    }

    /// Part of a data frame's payload has arrived (`arrived`, from its start): check the new
    /// text in it, so invalid UTF-8 fails before the rest comes.
    pub fn partial(&mut self, header: &FrameHeader, arrived: &[u8]) -> Result<(), ProtocolError> {
        // Compressed text is checked as it inflates, frame by frame.
        if self.in_text(header) && arrived.len() > self.checked && !self.is_compressed(header) {
            if let Some(new) = arrived.get(self.checked..) {
                self.utf8.feed(new).map_err(|_| invalid_text())?;
            }
            self.checked = arrived.len();
        }
        Ok(())
    }

    /// A complete data frame whose payload is `input[start..end]`. Returns the message it
    /// completes, if any.
    // The message path (bench/callgrind.py): inlined into the decoder, its one caller.
    #[inline(always)]
    pub fn frame(
        &mut self,
        header: &FrameHeader,
        input: &[u8],
        start: usize,
        end: usize,
        deflate: Option<&mut Deflate>,
    ) -> Result<Option<Completed>, ProtocolError> {
        let text = self.in_text(header);
        let checked = std::mem::take(&mut self.checked);
        let payload = input.get(start..end).unwrap_or_default();
        if let (true, Some(deflate)) = (self.is_compressed(header), deflate) {
            return self.compressed_frame(header, text, payload, deflate);
        }
        if header.opcode != OpCode::Continuation && header.fin {
            // A whole message in one frame: handed out in place, proven once (also when
            // streaming: its one piece is the message).
            if text {
                self.utf8.reset();
                prove_utf8(payload)?;
            }
            // (Streaming ends with the message; `Skip` cannot be on: a new message cannot
            // start inside a fragmented one.)
            self.streaming = Streaming::Off;
            return Ok(Some(Completed {
                text,
                payload: Payload::InPlace { start, end },
            }));
        }
        self.fragment_frame(header, text, checked, payload)
    }

    /// A frame of a fragmented message (out of line: the message path is one frame a
    /// message).
    #[inline(never)]
    fn fragment_frame(
        &mut self,
        header: &FrameHeader,
        text: bool,
        checked: usize,
        payload: &[u8],
    ) -> Result<Option<Completed>, ProtocolError> {
        if text {
            if let Some(rest) = payload.get(checked..) {
                self.utf8.feed(rest).map_err(|_| invalid_text())?;
            }
        }
        if header.opcode != OpCode::Continuation {
            self.fragmented = Some(text);
        }
        self.message.extend_from_slice(payload);
        if self.streaming != Streaming::Off {
            return self.piece(header.fin, text);
        }
        if !header.fin {
            return Ok(None);
        }
        self.complete(text).map(Some)
    }

    /// A frame of a message handed out in pieces (or being dropped) was added to `message`:
    /// hand out what is complete of it.
    #[cold]
    fn piece(&mut self, fin: bool, text: bool) -> Result<Option<Completed>, ProtocolError> {
        if fin {
            let skip = self.streaming == Streaming::Skip;
            self.streaming = Streaming::Off;
            self.streamed = 0;
            self.max_size = self.limit;
            let done = self.complete(text)?;
            if skip {
                // Nothing is handed out: the dropped rest leaves the buffer now, not on the
                // next call, since the next message may be reassembled (or inflated) into the
                // buffer within this same call.
                self.delivered = false;
                self.message.clear();
                if self.message.capacity() > KEEP_CAPACITY {
                    self.message = Vec::new();
                }
                return Ok(None);
            }
            return Ok(Some(done));
        }
        // A text piece ends on a character boundary: the unfinished character's bytes (the
        // validator holds them too) wait for the next frame.
        let carry = if text { self.utf8.pending_len() } else { 0 };
        let len = self.message.len().saturating_sub(carry);
        if len == 0 {
            return Ok(None);
        }
        self.streamed += len as u64;
        self.max_size = self.max_size.map(|left| left.saturating_sub(len));
        if self.streaming == Streaming::Skip {
            self.message.drain(..len);
            return Ok(None);
        }
        self.piece = len;
        self.delivered = true;
        Ok(Some(Completed {
            text,
            payload: Payload::Reassembled,
        }))
    }

    /// The last frame of a reassembled message has been added: the message is proven and
    /// handed out.
    fn complete(&mut self, text: bool) -> Result<Completed, ProtocolError> {
        self.fragmented = None;
        self.compressed = false;
        if text {
            self.utf8.finish().map_err(|_| invalid_text())?;
            prove_utf8(&self.message)?;
        }
        self.delivered = true;
        Ok(Completed {
            text,
            payload: Payload::Reassembled,
        })
    }
}

/// The rules for a frame with an RSV bit set (the uncommon case, kept off the message path).
#[cold]
fn check_rsv(header: &FrameHeader, deflate: bool) -> Result<(), ProtocolError> {
    // RFC 6455 §5.2: "If a nonzero value is received and none of the negotiated extensions
    // defines the meaning of such a nonzero value, the receiving endpoint MUST _Fail the
    // WebSocket Connection_." permessage-deflate gives RSV1 its meaning (RFC 7692 §6).
    if header.rsv != RSV1 || !deflate {
        return Err(ProtocolError::ReservedBits { bits: header.rsv });
    }
    // RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message Compressed" bit of control
    // frames and non-first fragments of a data message. An endpoint receiving such a frame
    // MUST _Fail the WebSocket Connection_."
    if header.opcode.is_control() {
        return Err(ProtocolError::CompressedControlFrame {
            opcode: header.opcode.as_u8(),
        });
    }
    if header.opcode == OpCode::Continuation {
        return Err(ProtocolError::CompressedContinuation);
    }
    Ok(())
}

impl Reassembly {
    /// A frame of a compressed message: its payload inflates into the reassembly buffer
    /// (RFC 7692 §7.2.2), `max_size` bounding the inflated size as it grows. Kept out of
    /// the uncompressed message path (the inflating dwarfs a call).
    #[inline(never)]
    fn compressed_frame(
        &mut self,
        header: &FrameHeader,
        text: bool,
        payload: &[u8],
        deflate: &mut Deflate,
    ) -> Result<Option<Completed>, ProtocolError> {
        if header.opcode != OpCode::Continuation {
            deflate.begin_message();
            self.compressed = true;
            self.utf8.reset();
            self.fragmented = Some(text);
        }
        let before = self.message.len();
        // The inflater counts the whole message, pieces already handed out included: its limit
        // is the configured one (`max_size` is what is left of it after those pieces).
        let limit = self.limit;
        if header.fin {
            deflate.feed_last(payload, &mut self.message, limit)
        } else {
            deflate.feed(payload, &mut self.message, limit)
        }?;
        // The incremental check fails a bad message before the rest of it arrives; a message
        // in one frame has no rest, and `complete` proves it whole just below (once, not twice).
        let whole_message = header.fin && header.opcode != OpCode::Continuation;
        if text && !whole_message {
            if let Some(inflated) = self.message.get(before..) {
                self.utf8.feed(inflated).map_err(|_| invalid_text())?;
            }
        }
        if self.streaming != Streaming::Off {
            return self.piece(header.fin, text);
        }
        if !header.fin {
            return Ok(None);
        }
        self.complete(text).map(Some)
    }
}

/// The "Per-Message Compressed" bit (RFC 7692 §6), in `FrameHeader::rsv`'s three low bits.
const RSV1: u8 = 0b100;

fn invalid_text() -> ProtocolError {
    ProtocolError::InvalidUtf8 {
        context: "text message",
    }
}

/// RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds that the
/// byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
/// Connection_."
fn prove_utf8(payload: &[u8]) -> Result<(), ProtocolError> {
    std::str::from_utf8(payload)
        .map(drop)
        .map_err(|_| invalid_text())
}

/// The payload of a text message or piece: bytes the engine found to be UTF-8 (a whole message
/// by `std::str::from_utf8`, a piece by the incremental check). Nothing relies on that finding
/// for memory safety: [`Text::to_str`] checks again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<'a>(&'a [u8]);

impl<'a> Text<'a> {
    /// Text the engine (or a driver keeping the engine's text) checked to be UTF-8.
    pub(crate) fn checked(bytes: &'a [u8]) -> Self {
        Text(bytes)
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty text.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text as `&str`, checked again (an error only if the engine's check was wrong).
    pub fn to_str(&self) -> Result<&'a str, std::str::Utf8Error> {
        std::str::from_utf8(self.0)
    }
}

impl std::fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&String::from_utf8_lossy(self.0), f)
    }
}

//! Hostile compressed frames through the sans-IO engine (TLS off), permessage-deflate
//! negotiated with fuzzed parameters (context takeover or not, server_max_window_bits,
//! client_max_window_bits, client_no_context_takeover) and a small or absent max_size.
//!
//! The server stream is built from frames of known kinds: messages of a real compressor
//! (flate2/zlib-rs at the negotiated window, with or without a final block, the server
//! resetting its context when it likes), the same messages mutated (a bit flipped, cut short,
//! garbage after them, BFINAL forced), arbitrary bytes sent as compressed, hand-made DEFLATE
//! (a fixed-Huffman bomb of 258-byte matches, matches reaching up to 32 KiB back, past what the
//! window holds), uncompressed messages, fragments with pings in between, and frames that
//! break RFC 7692 §6.1 (RSV1 on a control frame or a continuation, RSV2/RSV3, RSV1 without the
//! extension). The stream goes to the engine in fuzzed splits.
//!
//! A model walks the same frames and says what must happen: the frame rules of RFC 6455 and
//! RFC 7692, and for each compressed message a reference inflater, zlib-rs raw inflate called
//! directly on the payloads and the 00 00 ff ff tail (RFC 7692 §7.2.2), its context kept from
//! message to message unless server_no_context_takeover.
//!
//! Invariants, beyond "no panic":
//! - the events are exactly the model's: each message equals the reference's output, and a
//!   compressed message from the real compressor equals its plain text while the inflater's
//!   window is in step with the compressor's;
//! - every failure is a protocol failure with the model's close code: 1002 for a framing or
//!   RSV violation, 1007 for data that does not inflate (`DeflateError::InvalidData`) or bad
//!   UTF-8, 1009 for a message past max_size (a compressed frame whose length alone cannot fit
//!   it included); data both too big and invalid may be found to be either (as in the
//!   `inflate` target); the client's close frame carries that code;
//! - no message is larger than max_size, and the memory held during the run stays under a
//!   bound made of the bytes fed, max_size and a constant (counting allocator).
#![no_main]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use libfuzzer_sys::fuzz_target;
use sigil_ws::error::{DeflateError, Failure, ProtocolError};
use sigil_ws::frame::{decode_header, OpCode};
use sigil_ws::handshake::accept_key;
use sigil_ws::mask::apply_mask;
use sigil_ws::options::Options;
use sigil_ws::protocol::{Event, Message, Protocol, State};
use sigil_ws_fuzz::{peak_bytes, reset_peak, splits, Counting, Input};

#[global_allocator]
static ALLOC: Counting = Counting;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MAX_SIZES: [Option<usize>; 8] = [
    Some(0),
    Some(1),
    Some(125),
    Some(1000),
    Some(4096),
    Some(65_536),
    Some(1 << 20),
    None,
];
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// The largest window any permessage-deflate stream may use (RFC 1951: 32 KiB).
const WINDOW: usize = 1 << 15;

/// A received event, owned: messages by hash and length (the target keeps no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(u64, usize),
    Binary(u64, usize),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16),
}

/// How the connection must end.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The stream ended without a close frame: 1006.
    Eof,
    /// The server's close frame with this code.
    Closed(u16),
    /// We fail the connection with one of these (a close code and the kind of error).
    Fail(Vec<Kind>),
}

/// The kind of protocol error behind a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 1002: frame rules (reserved bits, RSV1 where RFC 7692 §6.1 forbids it, continuation).
    Framing,
    /// 1007: the compressed data does not inflate.
    Inflate,
    /// 1007: a text message is not UTF-8.
    Utf8,
    /// 1009: the message is past max_size.
    TooBig,
}

impl Kind {
    fn code(self) -> u16 {
        match self {
            Kind::Framing => 1002,
            Kind::Inflate | Kind::Utf8 => 1007,
            Kind::TooBig => 1009,
        }
    }

    fn of(e: &ProtocolError) -> Kind {
        match e {
            ProtocolError::InvalidUtf8 { .. } => Kind::Utf8,
            ProtocolError::MessageTooBig { .. } => Kind::TooBig,
            ProtocolError::Deflate(DeflateError::InvalidData { .. }) => Kind::Inflate,
            ProtocolError::Deflate(other) => panic!("a deflate error on inflating: {other:?}"),
            _ => Kind::Framing,
        }
    }
}

/// One server frame, as built.
struct Frame {
    b0: u8,
    payload: Vec<u8>,
    /// The plain text of the message this frame ends, when it comes from the real compressor
    /// (then the message must inflate to it while the windows are in step).
    plain: Option<Vec<u8>>,
    /// This frame's message is not the real compressor's output: the inflater's window and the
    /// compressor's part ways, under context takeover.
    foreign: bool,
}

struct Negotiated {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<u8>,
}

impl Negotiated {
    fn header(&self) -> String {
        let mut h = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            h.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            h.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            h.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if let Some(bits) = self.client_max_window_bits {
            h.push_str(&format!("; client_max_window_bits={bits}"));
        }
        h
    }
}

struct Scenario {
    max_size: Option<usize>,
    /// The extension as the server accepted it; `None`: no extension in the response.
    deflate: Option<Negotiated>,
    frames: Vec<Frame>,
    /// Split points of the stream, for delivering it.
    cuts: Vec<u8>,
}

/// The server's compressor: zlib-rs at the negotiated window (zlib makes 8 bits 9).
struct Server {
    z: Compress,
    bits: u8,
    level: u32,
}

impl Server {
    fn new(level: u32, bits: u8) -> Server {
        Server {
            z: Compress::new_with_window_bits(Compression::new(level), false, bits.max(9)),
            bits,
            level,
        }
    }

    fn reset(&mut self) {
        *self = Server::new(self.level, self.bits);
    }

    /// One message: a sync flush with its tail removed (RFC 7692 §7.2.1), or a final block
    /// (then the next message starts a new stream).
    fn compress(&mut self, data: &[u8], final_block: bool) -> Vec<u8> {
        let flush = if final_block {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        let mut out = Vec::with_capacity(data.len() + 64);
        let start = self.z.total_in();
        loop {
            let done = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity() + 64);
            }
            let status = self
                .z
                .compress_vec(&data[done.min(data.len())..], &mut out, flush);
            match status {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) => panic!("the reference compressor failed: {e}"),
            }
            let done = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            if !final_block && done == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        if final_block {
            self.reset();
        } else if out.is_empty() {
            // zlib flushes nothing for nothing after a flush: RFC 7692 §7.2.3.6's empty
            // message then.
            out.push(0x00);
        } else {
            assert!(out.ends_with(&TAIL), "a sync flush without its tail");
            out.truncate(out.len() - TAIL.len());
        }
        out
    }
}

/// Bits written LSB first, as DEFLATE packs them (RFC 1951 §3.1.1).
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code: its bits go most significant first.
    fn code(&mut self, code: u32, len: u32) {
        let reversed = code.reverse_bits() >> (32 - len);
        self.put(reversed, len);
    }

    /// A symbol of the fixed literal/length code (RFC 1951 §3.2.6).
    fn fixed(&mut self, sym: u32) {
        match sym {
            0..=143 => self.code(0x30 + sym, 8),
            144..=255 => self.code(0x190 + sym - 144, 9),
            256..=279 => self.code(sym - 256, 7),
            _ => self.code(0xc0 + sym - 280, 8),
        }
    }

    /// A match of length 258 (symbol 285) or 3 (symbol 257) at `dist` (1..=32768).
    fn matched(&mut self, long: bool, dist: u32) {
        self.fixed(if long { 285 } else { 257 });
        let (code, extra, base) = dist_code(dist);
        self.code(code, 5);
        if extra > 0 {
            self.put(dist - base, extra);
        }
    }

    /// Ends the fixed block, then the empty stored block of a sync flush without its 4 bytes
    /// of LEN/NLEN (the tail the receiver appends).
    fn finish(mut self) -> Vec<u8> {
        self.fixed(256);
        self.put(0, 3);
        if self.n > 0 {
            self.put(0, 8 - self.n);
        }
        self.out
    }
}

/// The distance code of `dist`, its extra bits and its base (RFC 1951 §3.2.5).
fn dist_code(dist: u32) -> (u32, u32, u32) {
    let mut base = 1;
    for code in 0..30 {
        let extra = if code < 4 { 0 } else { code / 2 - 1 };
        let next = base + (1 << extra);
        if dist < next {
            return (code, extra, base);
        }
        base = next;
    }
    (29, 13, 24_577)
}

/// A fixed-Huffman block: one literal then `matches` copies of 258 bytes at distance 1 (a
/// bomb: 13 bits for 258 bytes), or first a 3-byte match `dist` back (past the window if the
/// history is shorter).
fn crafted(literal: u8, matches: usize, dist: Option<u32>) -> Vec<u8> {
    let mut b = Bits::default();
    b.put(0, 1); // BFINAL = 0
    b.put(1, 2); // BTYPE = 01, fixed codes
    if let Some(dist) = dist {
        b.matched(false, dist);
    }
    b.fixed(u32::from(literal));
    for _ in 0..matches {
        b.matched(true, 1);
    }
    b.finish()
}

fn push_frame(stream: &mut Vec<u8>, b0: u8, payload: &[u8]) {
    stream.push(b0);
    match payload.len() {
        n if n < 126 => stream.push(n as u8),
        n if n < 65_536 => {
            stream.push(126);
            stream.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            stream.push(127);
            stream.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    stream.extend_from_slice(payload);
}

/// A message's payload cut into `pieces` frames (the first carrying `first`, RSV1 when
/// compressed), pings between them when asked.
fn message_frames(
    frames: &mut Vec<Frame>,
    first: u8,
    payload: &[u8],
    pieces: usize,
    pings: bool,
    plain: Option<Vec<u8>>,
    foreign: bool,
) {
    let size = payload.len().div_ceil(pieces.max(1)).max(1);
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(size).collect()
    };
    let last = chunks.len() - 1;
    let mut plain = plain;
    for (i, c) in chunks.iter().enumerate() {
        let fin = if i == last { 0x80 } else { 0 };
        let b0 = if i == 0 { first } else { 0 };
        if pings && i > 0 {
            frames.push(control(0x89, vec![i as u8]));
        }
        frames.push(Frame {
            b0: fin | b0,
            payload: c.to_vec(),
            plain: if i == last { plain.take() } else { None },
            foreign,
        });
    }
}

fn control(b0: u8, payload: Vec<u8>) -> Frame {
    Frame {
        b0,
        payload,
        plain: None,
        foreign: false,
    }
}

fn scenario(data: &[u8]) -> Scenario {
    let mut input = Input::new(data);
    let c0 = input.byte();
    let c1 = input.byte();
    let max_size = MAX_SIZES[usize::from(c0 & 7)];
    let server_bits = match c0 >> 5 {
        0 => None,
        b => Some(7 + b),
    };
    let client_bits = match c1 & 15 {
        b @ 8..=15 => Some(b),
        _ => None,
    };
    let negotiated = Negotiated {
        server_no_context_takeover: c0 & 8 != 0,
        client_no_context_takeover: c0 & 16 != 0,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    };
    let no_context = negotiated.server_no_context_takeover;
    // One in eight scenarios: the server does not accept the extension (RSV1 is then a
    // reserved bit like the others).
    let deflate = (c1 & 0x70 != 0x70).then_some(negotiated);
    let level = u32::from(c1 >> 7) * 8 + 1;
    let mut server = Server::new(level, server_bits.unwrap_or(15));
    let cuts = input.chunk().to_vec();
    let mut frames = Vec::new();
    // Bombs inflate 258 bytes per 13 bits: at most 8192 matches (2 MiB) per input keeps an
    // execution well under a second.
    let mut bomb_budget = 8192usize;
    while !input.is_empty() {
        let op = input.byte();
        let flags = input.byte();
        let first = if flags & 1 == 0 { 0x41 } else { 0x42 };
        let text = first == 0x41;
        let pieces = usize::from(flags >> 1 & 3) + 1;
        let pings = flags & 8 != 0;
        match op % 10 {
            // A message of the real compressor; its text made UTF-8 unless the flags say not.
            0 | 1 => {
                let chunk = input.chunk();
                let repeat = usize::from(input.byte() % 64) + 1;
                let mut plain = chunk.repeat(repeat);
                if text && flags & 16 == 0 {
                    plain = String::from_utf8_lossy(&plain).into_owned().into_bytes();
                }
                if flags & 32 != 0 || no_context {
                    server.reset();
                }
                let payload = server.compress(&plain, flags & 64 != 0);
                message_frames(
                    &mut frames,
                    first,
                    &payload,
                    pieces,
                    pings,
                    Some(plain),
                    false,
                );
            }
            // The same, mutated.
            2 => {
                let chunk = input.chunk();
                let how = input.byte();
                let at = usize::from(input.u16());
                if no_context {
                    server.reset();
                }
                let mut payload = server.compress(chunk, flags & 64 != 0);
                let n = payload.len();
                match how % 4 {
                    0 if n > 0 => payload[at % n] ^= 1 << (how >> 5),
                    1 => payload.truncate(at % (n + 1)),
                    2 => payload.extend_from_slice(input.chunk()),
                    _ if n > 0 => payload[0] |= 1,
                    _ => {}
                }
                message_frames(&mut frames, first, &payload, pieces, pings, None, true);
            }
            // Any bytes, marked compressed.
            3 => {
                let payload = input.chunk().to_vec();
                message_frames(&mut frames, first, &payload, pieces, pings, None, true);
            }
            // A bomb: up to 2 MiB from a few hundred bytes.
            4 => {
                let literal = input.byte() & 0x7f;
                let matches = usize::from(input.u16()).min(bomb_budget);
                bomb_budget -= matches;
                let payload = crafted(literal, matches, None);
                let plain = vec![literal; 1 + 258 * matches];
                let plain = (!pings || matches < 64).then_some(plain);
                message_frames(&mut frames, first, &payload, pieces, pings, plain, true);
            }
            // A match reaching back into the window (earlier messages, under context
            // takeover) or past it.
            5 => {
                let dist = u32::from(input.u16()) % 32_768 + 1;
                let payload = crafted(b'a', usize::from(input.byte() % 4), Some(dist));
                message_frames(&mut frames, first, &payload, pieces, pings, None, true);
            }
            // An uncompressed message.
            6 => {
                let payload = input.chunk().to_vec();
                message_frames(
                    &mut frames,
                    first & 0x0f,
                    &payload,
                    pieces,
                    pings,
                    None,
                    false,
                );
            }
            // A control frame, reserved bits fuzzed (RSV1 on it breaks RFC 7692 §6.1).
            7 => {
                let opcode = if flags & 16 == 0 { 0x9 } else { 0xa };
                let rsv = flags & 0x70;
                let n = usize::from(input.byte() % 126);
                frames.push(control(0x80 | rsv | opcode, input.bytes(n).to_vec()));
            }
            // A frame with any first byte: continuations with RSV1, RSV2/RSV3, a new message
            // inside a fragmented one, an unfinished message.
            8 => {
                let b0 = (input.byte() & 0xf3) | (0x80 * u8::from(flags & 16 != 0));
                frames.push(control(b0, input.chunk().to_vec()));
            }
            // The server closes: nothing after it is read.
            _ => {
                let payload = if flags & 16 == 0 {
                    Vec::new()
                } else {
                    1000u16.to_be_bytes().to_vec()
                };
                frames.push(control(0x88, payload));
            }
        }
    }
    Scenario {
        max_size,
        deflate,
        frames,
        cuts,
    }
}

fn digest(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// The reference inflater: zlib-rs raw inflate, driven as RFC 7692 §7.2.2 says.
struct Reference {
    z: Decompress,
    /// A final block ended the stream and no byte was inflated since (see the engine's
    /// `Inflater::restart`: the next block starts a new stream whose window is the message
    /// so far).
    restarted: bool,
    /// Compressed bytes of the current message inflated so far.
    consumed: u64,
}

/// Why the reference stopped a message.
enum Stop {
    Invalid,
    /// More output than the cap.
    Full,
}

impl Reference {
    fn new() -> Reference {
        Reference {
            z: Decompress::new(false),
            restarted: false,
            consumed: 0,
        }
    }

    /// Inflates `input` onto `out`; `Full` once `out` holds `cap` bytes.
    fn run(&mut self, mut input: &[u8], out: &mut Vec<u8>, cap: usize) -> Result<(), Stop> {
        loop {
            if out.len() >= cap {
                return Err(Stop::Full);
            }
            let mut buf = Vec::with_capacity((cap - out.len()).min(1 << 16));
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress_vec(input, &mut buf, FlushDecompress::Sync);
            let full = buf.len() == buf.capacity();
            out.extend_from_slice(&buf);
            let used = usize::try_from(self.z.total_in() - in0).unwrap_or(usize::MAX);
            let made = self.z.total_out() - out0;
            self.consumed += used as u64;
            if used > 0 {
                self.restarted = false;
            }
            input = &input[used.min(input.len())..];
            match status {
                Err(_) => return Err(Stop::Invalid),
                Ok(Status::StreamEnd) => {
                    self.z.reset(false);
                    let window = &out[out.len().saturating_sub(WINDOW)..];
                    if !window.is_empty() && self.z.set_dictionary(window).is_err() {
                        panic!("a raw inflater refused a dictionary after a reset");
                    }
                    self.restarted = true;
                }
                Ok(_) if !full && (input.is_empty() || (used == 0 && made == 0)) => {
                    return Ok(());
                }
                Ok(_) => {}
            }
        }
    }
}

/// The model's walk over the frames: the events, then how it ends.
fn model(s: &Scenario) -> (Vec<Ev>, End) {
    let deflate = s.deflate.as_ref();
    let no_context = deflate.is_some_and(|d| d.server_no_context_takeover);
    let mut reference = Reference::new();
    // Whether the inflater's window is the compressor's (no foreign message under takeover).
    let mut in_step = true;
    let mut events = Vec::new();
    // The message under way: text, compressed, its output, whether the windows were in step
    // when it started.
    let mut message: Option<(bool, bool, Vec<u8>, bool)> = None;
    // Cap on a message's reference output: the limit plus one, or 8 MiB (the bomb's 2 MiB
    // fits) without one.
    let cap = s.max_size.map_or(8 << 20, |m| m + 1);
    let fail = |kinds: &[Kind]| End::Fail(kinds.to_vec());
    for f in &s.frames {
        let fin = f.b0 & 0x80 != 0;
        let rsv = (f.b0 >> 4) & 7;
        let opcode = f.b0 & 0x0f;
        let control = opcode >= 8;
        if matches!(opcode, 3..=7 | 11..=15) {
            // Reserved opcodes (RFC 6455 §5.2).
            return (events, fail(&[Kind::Framing]));
        }
        // RFC 6455 §5.2 and RFC 7692 §6.1.
        if rsv != 0 && (rsv != 4 || deflate.is_none() || control || opcode == 0) {
            return (events, fail(&[Kind::Framing]));
        }
        if control {
            match opcode {
                0x9 => events.push(Ev::Ping(f.payload.clone())),
                0xa => events.push(Ev::Pong(f.payload.clone())),
                _ => {
                    let code = match f.payload.as_slice() {
                        [a, b] => u16::from_be_bytes([*a, *b]),
                        _ => 1005,
                    };
                    events.push(Ev::Close(code));
                    return (events, End::Closed(code));
                }
            }
            continue;
        }
        match (opcode, &message) {
            (0, None) | (1 | 2, Some(_)) => return (events, fail(&[Kind::Framing])),
            _ => {}
        }
        if opcode != 0 {
            message = Some((opcode == 1, rsv == 4, Vec::new(), in_step));
            if rsv == 4 {
                reference.consumed = 0;
            }
        }
        let Some((text, compressed, out, was_in_step)) = message.as_mut() else {
            unreachable!("a continuation without a message was refused above");
        };
        let (text, compressed, was_in_step) = (*text, *compressed, *was_in_step);
        let len = f.payload.len();
        if compressed {
            if let Some(limit) = s.max_size {
                if len as u64 > limit as u64 + limit as u64 / 8192 + 1024 {
                    return (events, fail(&[Kind::TooBig]));
                }
            }
            let near = |out: &Vec<u8>| s.max_size.is_some_and(|m| out.len() + 600 > m);
            let mut r = if len > 0 {
                reference.run(&f.payload, out, cap)
            } else {
                Ok(())
            };
            if r.is_ok() && fin && reference.consumed > 0 && !reference.restarted {
                r = reference.run(&TAIL, out, cap);
            }
            let too_big = s.max_size.is_some_and(|m| out.len() > m);
            match r {
                Err(Stop::Invalid) if near(out) => {
                    return (events, fail(&[Kind::Inflate, Kind::TooBig]))
                }
                Err(Stop::Invalid) => return (events, fail(&[Kind::Inflate])),
                Err(Stop::Full) => return (events, fail(&[Kind::TooBig, Kind::Inflate])),
                Ok(()) if too_big => return (events, fail(&[Kind::TooBig, Kind::Inflate])),
                Ok(()) => {}
            }
            if f.foreign && !no_context {
                in_step = false;
            }
        } else {
            if let Some(limit) = s.max_size {
                if out.len() + len > limit {
                    return (events, fail(&[Kind::TooBig]));
                }
            }
            out.extend_from_slice(&f.payload);
        }
        if text {
            if let Err(e) = std::str::from_utf8(out) {
                if fin || e.error_len().is_some() {
                    return (events, fail(&[Kind::Utf8]));
                }
            }
        }
        if !fin {
            continue;
        }
        if compressed {
            if no_context {
                reference.z.reset(false);
                reference.restarted = false;
            }
            if let (Some(plain), true) = (&f.plain, was_in_step) {
                assert!(
                    out == plain,
                    "the reference inflates the compressor's message to other bytes"
                );
            }
        }
        events.push(if text {
            Ev::Text(digest(out), out.len())
        } else {
            Ev::Binary(digest(out), out.len())
        });
        message = None;
    }
    (events, End::Eof)
}

/// The engine fed the stream in the scenario's splits: its events, how it ended and what it
/// wrote.
fn run(s: &Scenario, stream: &[u8]) -> (Vec<Ev>, (u16, Option<Kind>), Vec<u8>) {
    let mut options = Options {
        max_size: s.max_size,
        ..Options::default()
    };
    options.request.compression = true;
    let mut p = match Protocol::client("ws://example.com/chat", &options, Some(KEY.into())) {
        Ok(p) => p,
        Err(e) => panic!("a valid URL and options are refused: {e}"),
    };
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut failed = None;
    let pieces = splits(stream.len(), &s.cuts);
    // (`take_data_to_send` swaps buffers: what `buf` held is gone.)
    let take = |p: &mut Protocol, out: &mut Vec<u8>| {
        let mut buf = Vec::new();
        p.take_data_to_send(&mut buf);
        out.extend_from_slice(&buf);
    };
    let poll = |p: &mut Protocol, events: &mut Vec<Ev>, failed: &mut Option<Kind>| {
        for _ in 0..1_000_000 {
            let ev = match p.next_event() {
                Ok(None) => return,
                Ok(Some(Event::Message(Message::Text(t)))) => {
                    Ev::Text(digest(t.as_bytes()), t.len())
                }
                Ok(Some(Event::Message(Message::Binary(b)))) => Ev::Binary(digest(b), b.len()),
                Ok(Some(Event::Ping(b))) => Ev::Ping(b.to_vec()),
                Ok(Some(Event::Pong(b))) => Ev::Pong(b.to_vec()),
                Ok(Some(Event::Close { code, .. })) => Ev::Close(code),
                Ok(Some(Event::Fragment(_))) => panic!("a piece of a message not streamed"),
                Err(sigil_ws::error::Error::Protocol(e)) => {
                    assert!(failed.is_none(), "a second failure: {e:?}");
                    *failed = Some(Kind::of(&e));
                    continue;
                }
                Err(e) => panic!("not a protocol error: {e}"),
            };
            if let (Some(limit), Ev::Text(_, n) | Ev::Binary(_, n)) = (s.max_size, &ev) {
                assert!(*n <= limit, "a {n} byte message over max_size {limit}");
            }
            events.push(ev);
            p.trim();
        }
        panic!("next_event() never returned None");
    };
    for (a, b) in pieces {
        let _ = p.receive_data(&stream[a..b], 0.0);
        poll(&mut p, &mut events, &mut failed);
        take(&mut p, &mut out);
    }
    p.receive_eof();
    poll(&mut p, &mut events, &mut failed);
    take(&mut p, &mut out);
    assert_eq!(
        p.state(),
        State::Closed,
        "the stream ended, the engine is open"
    );
    let Some(t) = p.termination() else {
        panic!("closed without a termination");
    };
    let kind = match &t.cause {
        Some(Failure::Protocol(e)) => {
            assert_eq!(t.code, e.close_code(), "terminated with another code");
            let k = Kind::of(e);
            assert_eq!(
                Some(k),
                failed,
                "the failure returned is not the termination's"
            );
            Some(k)
        }
        Some(other) => panic!("a failure other than a protocol error: {other:?}"),
        None => {
            assert!(failed.is_none(), "a failure without a termination cause");
            None
        }
    };
    (events, (t.code, kind), out)
}

/// The close frame the client wrote, if any: its code.
fn close_written(out: &[u8]) -> Option<u16> {
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let mut rest = &out[end + 4..];
    let mut code = None;
    while !rest.is_empty() {
        let Ok(Some((h, len))) = decode_header(rest) else {
            panic!("an undecodable client frame");
        };
        let n = usize::try_from(h.payload_len).unwrap_or(usize::MAX);
        assert!(rest.len() >= len + n, "a truncated client frame");
        let Some(key) = h.mask else {
            panic!("an unmasked client frame");
        };
        let mut payload = rest[len..len + n].to_vec();
        apply_mask(&mut payload, key, 0);
        if h.opcode == OpCode::Close {
            assert!(code.is_none(), "two close frames");
            code = Some(match payload.as_slice() {
                [a, b, ..] => u16::from_be_bytes([*a, *b]),
                _ => 1005,
            });
        }
        rest = &rest[len + n..];
    }
    code
}

fuzz_target!(|data: &[u8]| {
    let s = scenario(data);
    let mut stream = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(KEY)
    )
    .into_bytes();
    if let Some(d) = &s.deflate {
        stream
            .extend_from_slice(format!("Sec-WebSocket-Extensions: {}\r\n", d.header()).as_bytes());
    }
    stream.extend_from_slice(b"\r\n");
    for f in &s.frames {
        push_frame(&mut stream, f.b0, &f.payload);
    }
    let (want, end) = model(&s);
    let input_len = stream.len();
    let bound = match s.max_size {
        // Reassembly and the frame reserved ahead (max_size each, up to twice that as buffers
        // grow), inflater state and buffers, the input kept until decoded, the events kept.
        Some(m) => 3 * m + 8 * input_len + (1 << 20),
        // Without a limit: a frame reserved ahead, and a message inflated at up to 1032:1
        // (twice that as its buffer grows).
        None => (32 << 20) + 2100 * input_len + (2 << 20),
    };
    let base = reset_peak();
    let (events, termination, out) = run(&s, &stream);
    let used = peak_bytes().saturating_sub(base);
    assert!(
        used <= bound,
        "{used} bytes held for {input_len} bytes of input"
    );
    assert_eq!(
        events, want,
        "the events differ from the model's (end: {end:?})"
    );
    let (code, kind) = termination;
    let written = close_written(&out);
    match &end {
        End::Eof => {
            assert_eq!((code, kind), (1006, None), "expected the end of the stream");
            assert_eq!(written, None, "a close frame after the stream just ended");
        }
        End::Closed(c) => {
            assert_eq!((code, kind), (*c, None), "expected the server's close");
            let echo = if *c == 1005 { 1005 } else { *c };
            assert_eq!(written, Some(echo), "the close frame was not echoed");
        }
        End::Fail(kinds) => {
            let Some(kind) = kind else {
                panic!("expected a failure among {kinds:?}, ended with {code}");
            };
            assert!(
                kinds.contains(&kind),
                "failed with {kind:?}, expected {kinds:?}"
            );
            assert_eq!(code, kind.code(), "{kind:?} with close code {code}");
            assert_eq!(written, Some(code), "the close frame does not carry {code}");
        }
    }
});

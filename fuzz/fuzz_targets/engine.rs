//! The sans-IO engine (TLS off) fed an arbitrary server stream in arbitrary splits, with sends,
//! pings and closes interleaved.
//!
//! Invariants, beyond "no panic":
//! - the state never goes backwards (CONNECTING < OPEN < CLOSING < CLOSED);
//! - the events (and the final termination) are the same for any split of the same bytes and
//!   whatever the client sent meanwhile: the stream is also fed whole and byte by byte;
//! - what the client writes is the upgrade request, then well-formed frames: every one masked,
//!   FIN set, no reserved bit but RSV1 on a compressed message, control payloads of at most 125
//!   bytes, at most one close frame and nothing after it; data frames carry exactly the
//!   messages sent (inflated, when compressed), pings exactly the pings sent, pongs the payload
//!   of a ping received;
//! - a send succeeds exactly when the state is OPEN;
//! - no message is larger than max_size, and the memory held stays under a bound made of the
//!   bytes fed, max_size and a constant.
#![no_main]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use libfuzzer_sys::fuzz_target;
use sigil_ws::deflate::{Deflate, Params};
use sigil_ws::frame::{decode_header, OpCode};
use sigil_ws::handshake::accept_key;
use sigil_ws::mask::apply_mask;
use sigil_ws::options::Options;
use sigil_ws::protocol::{Event, Message, Protocol, State};
use sigil_ws_fuzz::{peak_bytes, reset_peak, splits, Counting, Input};

#[global_allocator]
static ALLOC: Counting = Counting;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MAX_SIZES: [Option<usize>; 4] = [Some(125), Some(4096), Some(1 << 20), None];

/// An owned event, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    /// Hash and length: the target keeps no copy of large messages.
    Text(u64, usize),
    Binary(u64, usize),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
    Error(String),
}

/// What the client did, in order, for checking its output.
#[derive(Debug)]
enum Sent {
    Data {
        text: bool,
        payload: Vec<u8>,
        compressed: bool,
    },
    Ping(Vec<u8>),
    Close,
}

#[derive(Debug)]
enum Op<'a> {
    /// Deliver the stream built so far.
    Deliver,
    /// Deliver it as the sync driver reads plain TCP: into the engine's own input buffer
    /// (`take_input`, `receive_into`), this many bytes per read.
    DeliverInto(usize),
    /// Hold violations back (`set_defer_failure`), as the asyncio driver does while it holds
    /// undelivered messages.
    Defer(bool),
    /// Drain the events.
    Poll,
    Text(String, bool),
    Binary(&'a [u8], bool),
    Ping(&'a [u8]),
    Close(Option<u16>),
}

struct Scenario<'a> {
    max_size: Option<usize>,
    offer_deflate: bool,
    subprotocol: bool,
    stream: Vec<u8>,
    /// Ops, each with how much of the stream exists when it runs.
    ops: Vec<(usize, Op<'a>)>,
}

fn params_for(variant: u8) -> (Params, &'static str) {
    match variant % 4 {
        0 => (Params::default(), "permessage-deflate"),
        1 => (
            Params {
                server_no_context_takeover: true,
                ..Params::default()
            },
            "permessage-deflate; server_no_context_takeover",
        ),
        2 => (
            Params {
                client_no_context_takeover: true,
                client_max_window_bits: Some(9),
                ..Params::default()
            },
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=9",
        ),
        _ => (
            Params {
                server_max_window_bits: Some(10),
                ..Params::default()
            },
            "permessage-deflate; server_max_window_bits=10",
        ),
    }
}

fn scenario(data: &[u8]) -> Scenario<'_> {
    let mut input = Input::new(data);
    let config = input.byte();
    let max_size = MAX_SIZES[usize::from(config & 3)];
    let offer_deflate = config & 4 != 0;
    let accept_deflate = offer_deflate && config & 8 != 0;
    let (params, ext_header) = params_for(config >> 4);
    let raw_handshake = config & 0x40 != 0;
    let subprotocol = config & 0x80 != 0;
    let mut stream = Vec::new();
    if !raw_handshake {
        let mut head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            accept_key(KEY)
        );
        if accept_deflate {
            head.push_str(&format!("Sec-WebSocket-Extensions: {ext_header}\r\n"));
        }
        if subprotocol {
            head.push_str("Sec-WebSocket-Protocol: chat\r\n");
        }
        head.push_str("\r\n");
        stream.extend_from_slice(head.as_bytes());
    }
    // The server's compressor: its context is the one the client's inflater follows.
    let mut server_deflate = Deflate::new(Params {
        client_no_context_takeover: params.server_no_context_takeover,
        ..Params::default()
    });
    let mut ops = Vec::new();
    while !input.is_empty() {
        match input.byte() % 13 {
            // Raw bytes: anything at all, including half frames and a raw handshake.
            0 => stream.extend_from_slice(input.chunk()),
            // A frame with a fuzzed first byte and a correct length.
            1 | 2 => {
                let b0 = input.byte();
                let mask = input.byte() & 0x80 != 0 && input.byte() == 0;
                let payload = input.chunk();
                push_frame(&mut stream, b0, payload, mask);
            }
            // A frame header declaring a fuzzed 64-bit length, maybe followed by some bytes.
            3 => {
                let b0 = input.byte();
                stream.push(b0);
                stream.push(127);
                stream.extend_from_slice(input.bytes(8));
            }
            // A compressed message (RSV1), fragmented in up to 3 frames.
            4 => {
                let b0 = input.byte();
                let payload = input.chunk();
                let mut compressed = Vec::new();
                if server_deflate.compress(&[payload], &mut compressed).is_ok() {
                    let opcode = if b0 & 1 == 0 { 1 } else { 2 };
                    let pieces = usize::from(b0 >> 1 & 3).max(1);
                    let size = compressed.len().div_ceil(pieces).max(1);
                    let chunks: Vec<&[u8]> = compressed.chunks(size).collect();
                    let last = chunks.len().saturating_sub(1);
                    if chunks.is_empty() {
                        push_frame(&mut stream, 0x80 | 0x40 | opcode, &[], false);
                    }
                    for (i, c) in chunks.iter().enumerate() {
                        let fin = if i == last { 0x80 } else { 0 };
                        let first = if i == 0 { 0x40 | opcode } else { 0 };
                        push_frame(&mut stream, fin | first, c, false);
                    }
                }
            }
            5 => ops.push((stream.len(), Op::Deliver)),
            6 => {
                let read_size = usize::from(input.byte()) + 1;
                ops.push((stream.len(), Op::DeliverInto(read_size)));
            }
            12 => ops.push((stream.len(), Op::Defer(input.byte() & 1 != 0))),
            7 => ops.push((stream.len(), Op::Poll)),
            8 => {
                let compress = input.byte() & 1 != 0;
                let text = String::from_utf8_lossy(input.chunk()).into_owned();
                ops.push((stream.len(), Op::Text(text, compress)));
            }
            9 => {
                let compress = input.byte() & 1 != 0;
                ops.push((stream.len(), Op::Binary(input.chunk(), compress)));
            }
            10 => {
                let n = usize::from(input.byte() % 126);
                ops.push((stream.len(), Op::Ping(input.bytes(n))));
            }
            11 => {
                let code = input.u16();
                let code = match code % 3 {
                    0 => None,
                    1 => Some(1000),
                    _ => Some(code),
                };
                ops.push((stream.len(), Op::Close(code)));
            }
            _ => unreachable!("an op byte is taken modulo 13"),
        }
    }
    Scenario {
        max_size,
        offer_deflate,
        subprotocol,
        stream,
        ops,
    }
}

fn push_frame(stream: &mut Vec<u8>, b0: u8, payload: &[u8], mask: bool) {
    stream.push(b0);
    let bit = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => stream.push(bit | n as u8),
        n => {
            stream.push(bit | 126);
            stream.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if mask {
        let key = [1, 2, 3, 4];
        stream.extend_from_slice(&key);
        let mut masked = payload.to_vec();
        apply_mask(&mut masked, key, 0);
        stream.extend_from_slice(&masked);
    } else {
        stream.extend_from_slice(payload);
    }
}

fn engine(s: &Scenario<'_>) -> Protocol {
    let mut options = Options {
        max_size: s.max_size,
        ..Options::default()
    };
    options.request.compression = s.offer_deflate;
    if s.subprotocol {
        options.request.subprotocols = vec!["chat".into()];
    }
    match Protocol::client("ws://example.com/chat", &options, Some(KEY.into())) {
        Ok(p) => p,
        Err(e) => panic!("a valid URL and options are refused: {e}"),
    }
}

fn rank(state: State) -> u8 {
    state as u8
}

/// Drains the events; checks the state only moves forward and messages respect max_size.
fn poll(p: &mut Protocol, events: &mut Vec<Ev>, last: &mut u8, max_size: Option<usize>) {
    // Each event consumes at least two bytes of input (or ends the stream): this bounds the loop.
    for _ in 0..1_000_000 {
        let ev = match p.next_event() {
            Ok(None) => {
                check_state(p, last);
                return;
            }
            Ok(Some(ev)) => match ev {
                Event::Message(Message::Text(t)) => Ev::Text(digest(t.as_bytes()), t.len()),
                Event::Message(Message::Binary(b)) => Ev::Binary(digest(b), b.len()),
                Event::Ping(b) => Ev::Ping(b.to_vec()),
                Event::Pong(b) => Ev::Pong(b.to_vec()),
                Event::Close { code, reason } => Ev::Close(code, reason.to_string()),
                // This target never calls `stream_message`: a piece would be an engine bug.
                Event::Fragment(_) => panic!("a piece of a message that was not streamed"),
            },
            Err(e) => {
                let text = e.to_string();
                // Refusing a non-HTTP answer quotes the bytes that had arrived: the one
                // error whose text depends on the split.
                match text.find("non-HTTP data") {
                    Some(i) => Ev::Error(text[..i].to_string()),
                    None => Ev::Error(text),
                }
            }
        };
        if let (Some(limit), Ev::Text(_, n) | Ev::Binary(_, n)) = (max_size, &ev) {
            assert!(*n <= limit, "a {n} byte message over max_size {limit}");
        }
        events.push(ev);
        check_state(p, last);
        p.trim();
    }
    panic!("next_event() never returned None");
}

fn digest(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

fn check_state(p: &Protocol, last: &mut u8) {
    let now = rank(p.state());
    assert!(now >= *last, "state went back from {} to {}", *last, now);
    *last = now;
}

type Outcome = (Vec<Ev>, Option<(u16, String, bool)>, bool);

fn finish(
    p: &mut Protocol,
    events: &mut Vec<Ev>,
    last: &mut u8,
    max_size: Option<usize>,
) -> Outcome {
    p.receive_eof();
    poll(p, events, last, max_size);
    assert!(
        p.finished().is_some(),
        "the stream ended but the engine is not finished"
    );
    assert_eq!(p.state(), State::Closed);
    let t = p
        .termination()
        .map(|t| (t.code, t.reason.clone(), t.cause.is_some()));
    (std::mem::take(events), t, p.handshake_complete())
}

/// The stream fed in the given pieces, with no client operation.
fn passive(s: &Scenario<'_>, pieces: &[(usize, usize)]) -> Outcome {
    let mut p = engine(s);
    let (mut events, mut last) = (Vec::new(), 0);
    for &(a, b) in pieces {
        let _ = p.receive_data(&s.stream[a..b], 0.0);
        poll(&mut p, &mut events, &mut last, s.max_size);
    }
    finish(&mut p, &mut events, &mut last, s.max_size)
}

/// The scenario as the fuzzer wrote it: deliveries, polls and client operations interleaved.
fn active(s: &Scenario<'_>) -> (Outcome, Vec<u8>, Vec<Sent>, Option<Params>) {
    let mut p = engine(s);
    let (mut events, mut last) = (Vec::new(), 0);
    let mut out = Vec::new();
    let mut sent = Vec::new();
    let mut delivered = 0;
    let take = |p: &mut Protocol, out: &mut Vec<u8>| {
        let mut buf = Vec::new();
        p.take_data_to_send(&mut buf);
        out.extend_from_slice(&buf);
    };
    let mut extensions = None;
    for (at, op) in &s.ops {
        let open = p.state() == State::Open;
        match op {
            Op::Deliver => {
                let _ = p.receive_data(&s.stream[delivered..*at], 0.0);
                delivered = *at;
            }
            Op::DeliverInto(read_size) => {
                while delivered < *at {
                    let n = (*at - delivered).min(*read_size);
                    let Some(mut buf) = p.take_input() else {
                        // Input is ignored (closed, failed or a violation held back).
                        delivered = *at;
                        break;
                    };
                    buf.free_space(*read_size)[..n]
                        .copy_from_slice(&s.stream[delivered..delivered + n]);
                    p.receive_into(buf, n, 0.0);
                    delivered += n;
                }
            }
            Op::Defer(on) => p.set_defer_failure(*on),
            Op::Poll => poll(&mut p, &mut events, &mut last, s.max_size),
            Op::Text(t, compress) => {
                let r = p.send_text(t, *compress);
                assert_eq!(r.is_ok(), open, "send_text in {:?}: {r:?}", p.state());
                if r.is_ok() {
                    let compressed = *compress && p.extensions().is_some();
                    sent.push(Sent::Data {
                        text: true,
                        payload: t.as_bytes().to_vec(),
                        compressed,
                    });
                }
            }
            Op::Binary(b, compress) => {
                let r = p.send_binary(b, *compress);
                assert_eq!(r.is_ok(), open, "send_binary in {:?}: {r:?}", p.state());
                if r.is_ok() {
                    let compressed = *compress && p.extensions().is_some();
                    sent.push(Sent::Data {
                        text: false,
                        payload: b.to_vec(),
                        compressed,
                    });
                }
            }
            Op::Ping(b) => {
                let r = p.send_ping(b, 0.0);
                assert_eq!(r.is_ok(), open, "send_ping in {:?}: {r:?}", p.state());
                if r.is_ok() {
                    sent.push(Sent::Ping(b.to_vec()));
                }
            }
            Op::Close(code) => {
                // Closing before the upgrade ends the engine at once: the passive runs would
                // see other events, so only close once the handshake is over.
                if p.handshake_complete() {
                    let closing = p.state() == State::Open;
                    if p.send_close(*code, "").is_ok() && closing {
                        sent.push(Sent::Close);
                    }
                }
            }
        }
        if p.extensions().is_some() {
            extensions = p.extensions();
        }
        take(&mut p, &mut out);
        check_state(&p, &mut last);
    }
    p.set_defer_failure(false);
    let _ = p.receive_data(&s.stream[delivered..], 0.0);
    poll(&mut p, &mut events, &mut last, s.max_size);
    let outcome = finish(&mut p, &mut events, &mut last, s.max_size);
    if p.extensions().is_some() {
        extensions = p.extensions();
    }
    take(&mut p, &mut out);
    (outcome, out, sent, extensions)
}

/// Checks the client's bytes: the request head, then masked, well-formed frames that carry
/// what was sent.
fn check_output(out: &[u8], sent: &[Sent], events: &[Ev], extensions: Option<Params>) {
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        panic!("no complete request head in the output");
    };
    let head = &out[..end + 2];
    for line in head.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        assert_eq!(line.last(), Some(&b'\r'), "a request line without CRLF");
        assert!(
            !line[..line.len() - 1].contains(&b'\r'),
            "a bare CR in the request"
        );
    }
    let mut rest = &out[end + 4..];
    // The client's compressed messages, inflated as a server would.
    let mut inflater = extensions.map(|params| {
        Deflate::new(Params {
            server_no_context_takeover: params.client_no_context_takeover,
            ..Params::default()
        })
    });
    let pings_received: Vec<&Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            Ev::Ping(b) => Some(b),
            _ => None,
        })
        .collect();
    let mut expected = sent.iter();
    let mut closed = false;
    while !rest.is_empty() {
        assert!(!closed, "bytes after the close frame");
        let (header, len) = match decode_header(rest) {
            Ok(Some(h)) => h,
            other => panic!("the client wrote an undecodable frame: {other:?}"),
        };
        let Some(key) = header.mask else {
            panic!("an unmasked client frame: {header:?}");
        };
        assert!(header.fin, "a fragmented client frame: {header:?}");
        let n = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        assert!(rest.len() >= len + n, "a truncated client frame");
        let mut payload = rest[len..len + n].to_vec();
        apply_mask(&mut payload, key, 0);
        rest = &rest[len + n..];
        let opcode = header.opcode;
        if opcode.is_control() {
            assert!(n <= 125, "a control frame of {n} bytes");
            assert_eq!(header.rsv, 0, "reserved bits on a control frame");
        }
        match opcode {
            OpCode::Text | OpCode::Binary => {
                let Some(Sent::Data {
                    text,
                    payload: want,
                    compressed,
                }) = expected.next()
                else {
                    panic!("a data frame nobody sent: {opcode:?}");
                };
                assert_eq!(*text, opcode == OpCode::Text);
                // Asked to compress, the engine may still send a message as it is (RFC 7692
                // §2: incompressible contents, or its back-off after such messages); the
                // payload must then be the message itself.
                if *compressed && header.rsv != 0 {
                    assert_eq!(header.rsv, 4, "a compressed message without RSV1 alone");
                    let Some(inflater) = inflater.as_mut() else {
                        panic!("compressed without an extension");
                    };
                    let mut plain = Vec::new();
                    if let Err(e) = inflater.decompress(&payload, &mut plain, None) {
                        panic!("the client's compressed message does not inflate: {e}");
                    }
                    assert_eq!(&plain, want, "a compressed message changed");
                } else {
                    assert_eq!(header.rsv, 0, "reserved bits on an uncompressed message");
                    assert_eq!(&payload, want, "a message changed");
                }
            }
            OpCode::Ping => {
                let Some(Sent::Ping(want)) = expected.next() else {
                    panic!("a ping nobody sent");
                };
                assert_eq!(&payload, want);
            }
            OpCode::Pong => {
                assert!(
                    pings_received.iter().any(|p| **p == payload),
                    "a pong for no ping received"
                );
            }
            OpCode::Close => {
                closed = true;
                if let Some(Sent::Close) = expected.as_slice().first() {
                    expected.next();
                }
            }
            OpCode::Continuation => panic!("a continuation frame from the client"),
        }
    }
    let left: Vec<&Sent> = expected.filter(|s| !matches!(s, Sent::Close)).collect();
    assert!(left.is_empty(), "sent but not written: {left:?}");
}

fuzz_target!(|data: &[u8]| {
    let s = scenario(data);
    let input_len = s.stream.len();
    let bound = match s.max_size {
        // Reassembly (max_size), a frame reserved ahead (max_size, which the input buffer may
        // round up to twice its size as it grows), inflater state and buffers; the input kept
        // until decoded; the copies this target keeps.
        Some(m) => 3 * m + 8 * input_len + (1 << 20),
        // Without a limit: a frame reserved ahead (16 MiB, up to twice that as the buffer
        // grows by doubling) and what a deflate bomb inflates to (at most 1032:1).
        None => (32 << 20) + 1100 * input_len + (2 << 20),
    };
    let base = reset_peak();
    let (outcome, out, sent, extensions) = active(&s);
    let used = peak_bytes() - base;
    assert!(
        used <= bound,
        "{used} bytes held for {input_len} bytes of input"
    );
    check_output(&out, &sent, &outcome.0, extensions);
    let whole = passive(&s, &[(0, input_len)]);
    assert_eq!(
        whole, outcome,
        "feeding the stream whole changes the events"
    );
    if input_len <= 1024 {
        let bytewise: Vec<(usize, usize)> = (0..input_len).map(|i| (i, i + 1)).collect();
        assert_eq!(
            passive(&s, &bytewise),
            outcome,
            "feeding byte by byte changes the events"
        );
    }
    let cuts: Vec<(usize, usize)> = splits(input_len, &data[data.len() / 2..]);
    assert_eq!(
        passive(&s, &cuts),
        outcome,
        "another split changes the events"
    );
});

//! Engine tests: bytes in, events and `data_to_send` out, grouped by RFC section.

use super::*;
use crate::frame::{decode_header, encode_frame};
use crate::handshake::{accept_key, HandshakeError};
use crate::mask::apply_mask;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn response() -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(KEY)
    )
    .into_bytes()
}

fn engine_with(config: Config) -> Protocol {
    let options = Options {
        max_size: config.max_size,
        ..Options::default()
    };
    Protocol::client("ws://example.com/chat", &options, Some(KEY.into())).unwrap()
}

/// The engine settings these tests vary.
struct Config {
    max_size: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_size: Options::default().max_size,
        }
    }
}

/// An engine past the handshake, with the request already taken.
fn open() -> Protocol {
    open_with(Config::default())
}

fn open_with(config: Config) -> Protocol {
    let mut p = engine_with(config);
    take(&mut p);
    p.receive_data(&response(), 0.0).unwrap();
    assert_eq!(p.next_event().unwrap(), None);
    assert_eq!(p.state(), State::Open);
    p
}

fn take(p: &mut Protocol) -> Vec<u8> {
    let mut out = Vec::new();
    p.take_data_to_send(&mut out);
    out
}

/// A server frame (unmasked).
fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(
        &mut out,
        OpCode::from_u8(opcode).unwrap(),
        fin,
        &[payload],
        None,
    );
    out
}

/// Owned copy of an event, for comparing sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
    /// A piece of a streamed message, more to come.
    TextPiece(String),
    BinaryPiece(Vec<u8>),
}

fn events(p: &mut Protocol) -> Result<Vec<Ev>, Error> {
    let mut all = Vec::new();
    while let Some(e) = p.next_event()? {
        all.push(match e {
            Event::Message(Message::Text(t)) => Ev::Text(t.to_str().unwrap().to_string()),
            Event::Message(Message::Binary(b)) => Ev::Binary(b.to_vec()),
            Event::Fragment(Message::Text(t)) => Ev::TextPiece(t.to_str().unwrap().to_string()),
            Event::Fragment(Message::Binary(b)) => Ev::BinaryPiece(b.to_vec()),
            Event::Ping(b) => Ev::Ping(b.to_vec()),
            Event::Pong(b) => Ev::Pong(b.to_vec()),
            Event::Close { code, reason } => Ev::Close(code, reason.to_string()),
        });
    }
    Ok(all)
}

/// Feeds `stream` in two reads cut at `split`, collecting the events after each.
fn fed_in_two(mut p: Protocol, stream: &[u8], split: usize) -> (Protocol, Vec<Ev>) {
    p.receive_data(&stream[..split], 0.0).unwrap();
    let mut got = events(&mut p).unwrap();
    p.receive_data(&stream[split..], 0.0).unwrap();
    got.extend(events(&mut p).unwrap());
    (p, got)
}

/// Decodes the client frames in `bytes`, checking each is masked, and unmasks them.
fn client_frames(mut bytes: &[u8]) -> Vec<(OpCode, bool, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = decode_header(bytes).unwrap().unwrap();
        let key = h.mask.expect("client frames are masked");
        let len = h.payload_len as usize;
        let mut payload = bytes[n..n + len].to_vec();
        apply_mask(&mut payload, key, 0);
        frames.push((h.opcode, h.fin, payload));
        bytes = &bytes[n + len..];
    }
    frames
}

fn expect_failure(p: &mut Protocol, data: &[u8], code: u16) -> ProtocolError {
    p.receive_data(data, 0.0).unwrap();
    let err = loop {
        match p.next_event() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no failure"),
            Err(Error::Protocol(e)) => break e,
            Err(e) => panic!("unexpected error {e}"),
        }
    };
    assert_eq!(err.close_code(), code, "{err}");
    assert_eq!(p.state(), State::Closed);
    let sent = client_frames(&take(p));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, OpCode::Close);
    assert_eq!(&sent[0].2[..2], &code.to_be_bytes());
    let t = p.termination().unwrap();
    assert_eq!(t.code, code);
    assert_eq!(t.cause.as_ref(), Some(&Failure::Protocol(err.clone())));
    // Input after the failure is ignored.
    p.receive_data(&frame(1, true, b"late"), 0.0).unwrap();
    assert_eq!(p.next_event().unwrap(), None);
    err
}

mod rfc6455_4_handshake {
    use super::*;

    #[test]
    fn request_is_queued_at_creation() {
        let mut p = engine_with(Config::default());
        let req = String::from_utf8(take(&mut p)).unwrap();
        assert!(req.starts_with("GET /chat HTTP/1.1\r\n"));
        assert!(req.contains(&format!("Sec-WebSocket-Key: {KEY}\r\n")));
        assert_eq!(p.state(), State::Connecting);
    }

    #[test]
    fn response_split_at_every_byte_then_frames_in_the_same_read() {
        let mut stream = response();
        stream.extend(frame(1, true, b"first"));
        stream.extend(frame(2, true, b"second"));
        for split in 0..stream.len() {
            let (p, got) = fed_in_two(engine_with(Config::default()), &stream, split);
            assert_eq!(
                got,
                vec![Ev::Text("first".into()), Ev::Binary(b"second".to_vec())],
                "split {split}"
            );
            assert_eq!(p.state(), State::Open);
        }
    }

    #[test]
    fn bad_accept_fails_the_handshake() {
        let mut p = engine_with(Config::default());
        p.receive_data(
            b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
              Sec-WebSocket-Accept: nope\r\n\r\n",
            0.0,
        )
        .unwrap();
        assert!(matches!(
            p.next_event(),
            Err(Error::Handshake(HandshakeError::AcceptMismatch { .. }))
        ));
        assert_eq!(p.state(), State::Closed);
        assert_eq!(p.next_event().unwrap(), None);
    }

    #[test]
    fn eof_during_handshake() {
        let mut p = engine_with(Config::default());
        p.receive_data(b"HTTP/1.1 101 OK\r\n", 0.0).unwrap();
        p.receive_eof();
        assert!(matches!(
            p.next_event(),
            Err(Error::Handshake(HandshakeError::IncompleteResponse {
                received: 17
            }))
        ));
    }

    #[test]
    fn sending_before_open_is_refused() {
        let mut p = engine_with(Config::default());
        assert!(matches!(
            p.send_text("x", true),
            Err(Error::InvalidArgument(_))
        ));
    }
}

mod rfc6455_5_data_frames {
    use super::*;

    #[test]
    fn client_frames_are_masked_with_fresh_keys() {
        let mut p = open();
        p.send_text("hello", true).unwrap();
        p.send_binary(&[1, 2, 3], true).unwrap();
        let out = take(&mut p);
        let (h1, n1) = decode_header(&out).unwrap().unwrap();
        let (h2, _) = decode_header(&out[n1 + 5..]).unwrap().unwrap();
        assert_ne!(h1.mask, h2.mask);
        assert_eq!(
            client_frames(&out),
            vec![
                (OpCode::Text, true, b"hello".to_vec()),
                (OpCode::Binary, true, vec![1, 2, 3])
            ]
        );
    }

    #[test]
    fn large_messages_use_extended_lengths() {
        let mut p = open();
        let big = vec![0xabu8; 70_000];
        p.send_binary(&big, true).unwrap();
        let frames = client_frames(&take(&mut p));
        assert_eq!(frames[0].2, big);
        let mut incoming = frame(2, true, &big);
        incoming.extend(frame(2, true, &big[..300]));
        p.receive_data(&incoming, 0.0).unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![Ev::Binary(big.clone()), Ev::Binary(big[..300].to_vec())]
        );
    }

    #[test]
    fn frames_split_at_every_byte() {
        let mut stream = frame(1, false, "héllo ".as_bytes());
        stream.extend(frame(9, true, b"ping!"));
        stream.extend(frame(0, true, "wörld".as_bytes()));
        stream.extend(frame(2, true, &[0, 1, 2]));
        for split in 0..stream.len() {
            let (_, got) = fed_in_two(open(), &stream, split);
            assert_eq!(
                got,
                vec![
                    Ev::Ping(b"ping!".to_vec()),
                    Ev::Text("héllo wörld".into()),
                    Ev::Binary(vec![0, 1, 2])
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte() {
        let mut stream = frame(2, false, b"ab");
        stream.extend(frame(0, false, b""));
        stream.extend(frame(0, true, b"cd"));
        let mut p = open();
        let mut got = Vec::new();
        for b in &stream {
            p.receive_data(&[*b], 0.0).unwrap();
            got.extend(events(&mut p).unwrap());
        }
        assert_eq!(got, vec![Ev::Binary(b"abcd".to_vec())]);
    }

    #[test]
    fn empty_messages() {
        let mut p = open();
        let mut stream = frame(1, true, b"");
        stream.extend(frame(2, true, b""));
        p.receive_data(&stream, 0.0).unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![Ev::Text(String::new()), Ev::Binary(Vec::new())]
        );
    }

    #[test]
    fn reserved_bits_fail_with_1002() {
        for bits in 1..8u8 {
            let mut p = open();
            let mut f = frame(1, true, b"x");
            f[0] |= bits << 4;
            let e = expect_failure(&mut p, &f, 1002);
            assert_eq!(e, ProtocolError::ReservedBits { bits });
        }
    }

    #[test]
    fn reserved_opcodes_fail_with_1002() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            let mut p = open();
            let e = expect_failure(&mut p, &[0x80 | op, 0], 1002);
            assert_eq!(e, ProtocolError::ReservedOpcode { opcode: op });
        }
    }

    #[test]
    fn masked_server_frame_fails_with_1002() {
        let mut p = open();
        let e = expect_failure(&mut p, &[0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1], 1002);
        assert_eq!(e, ProtocolError::MaskedFrame);
    }

    #[test]
    fn continuation_without_start_fails() {
        let mut p = open();
        let e = expect_failure(&mut p, &frame(0, true, b"x"), 1002);
        assert_eq!(e, ProtocolError::UnexpectedContinuation);
    }

    #[test]
    fn new_message_inside_fragmented_one_fails() {
        let mut p = open();
        let mut stream = frame(1, false, b"a");
        stream.extend(frame(2, true, b"b"));
        let e = expect_failure(&mut p, &stream, 1002);
        assert_eq!(e, ProtocolError::ExpectedContinuation { opcode: 2 });
    }

    #[test]
    fn msb_of_64_bit_length_fails() {
        let mut p = open();
        let e = expect_failure(&mut p, &[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1], 1002);
        assert!(matches!(e, ProtocolError::InvalidLength { .. }));
    }
}

mod rfc6455_5_5_control_frames {
    use super::*;

    #[test]
    fn ping_gets_an_automatic_pong_with_the_same_payload() {
        let mut p = open();
        p.receive_data(&frame(9, true, b"are you there"), 0.0)
            .unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![Ev::Ping(b"are you there".to_vec())]
        );
        assert_eq!(
            client_frames(&take(&mut p)),
            vec![(OpCode::Pong, true, b"are you there".to_vec())]
        );
    }

    #[test]
    fn only_the_latest_ping_is_answered_while_output_waits() {
        // RFC 6455 §5.5.3: a flood of pings the driver cannot write out yet costs one pong.
        let mut p = open();
        let payload = |i: u32| {
            let mut data = vec![b'p'; 125];
            data[..4].copy_from_slice(&i.to_be_bytes());
            data
        };
        for i in 0..1000u32 {
            p.receive_data(&frame(9, true, &payload(i)), 0.0).unwrap();
            assert_eq!(events(&mut p).unwrap().len(), 1);
        }
        assert!(p.has_data_to_send());
        let pongs = client_frames(&take(&mut p));
        // Each ping is answered while the output is small, then only the latest one.
        assert!(pongs.len() > 100 && pongs.len() < 200, "{}", pongs.len());
        assert_eq!(pongs[0], (OpCode::Pong, true, payload(0)));
        assert_eq!(pongs.last(), Some(&(OpCode::Pong, true, payload(999))));
        assert!(!p.has_data_to_send());
    }

    #[test]
    fn the_owed_pong_goes_before_our_close_frame() {
        let mut p = open();
        p.receive_data(&frame(9, true, b"p"), 0.0).unwrap();
        events(&mut p).unwrap();
        p.send_close(Some(1000), "").unwrap();
        let sent = client_frames(&take(&mut p));
        assert_eq!(sent[0], (OpCode::Pong, true, b"p".to_vec()));
        assert_eq!(sent[1].0, OpCode::Close);
    }

    #[test]
    fn control_frames_over_125_bytes_fail() {
        for op in [8u8, 9, 10] {
            let mut p = open();
            let mut f = vec![0x80 | op, 126, 0, 126];
            f.extend([b'a'; 126]);
            let e = expect_failure(&mut p, &f, 1002);
            assert_eq!(e, ProtocolError::ControlFrameTooLong { len: 126 });
        }
    }

    #[test]
    fn fragmented_control_frames_fail() {
        for op in [8u8, 9, 10] {
            let mut p = open();
            let e = expect_failure(&mut p, &[op, 0], 1002);
            assert_eq!(e, ProtocolError::FragmentedControlFrame { opcode: op });
        }
    }

    #[test]
    fn pong_matches_ping_and_sets_latency() {
        let mut p = open();
        p.send_ping(b"1", 10.0).unwrap();
        p.send_ping(b"2", 10.5).unwrap();
        assert_eq!(p.latency(), 0.0);
        p.receive_data(&frame(10, true, b"unsolicited"), 11.0)
            .unwrap();
        events(&mut p).unwrap();
        assert_eq!(p.latency(), 0.0);
        p.receive_data(&frame(10, true, b"2"), 10.75).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::Pong(b"2".to_vec())]);
        assert!((p.latency() - 0.25).abs() < 1e-9);
        // Ping 1 was dropped with 2: a late pong for it changes nothing.
        p.receive_data(&frame(10, true, b"1"), 20.0).unwrap();
        events(&mut p).unwrap();
        assert!((p.latency() - 0.25).abs() < 1e-9);
    }

    #[test]
    fn ping_payload_limit() {
        let mut p = open();
        assert!(matches!(
            p.send_ping(&[0; 126], 0.0),
            Err(Error::InvalidArgument(m)) if m.contains("126")
        ));
        p.send_ping(&[0; 125], 0.0).unwrap();
    }
}

mod rfc6455_7_closing {
    use super::*;

    #[test]
    fn client_initiated_close() {
        let mut p = open();
        p.send_close(Some(1000), "bye").unwrap();
        assert_eq!(p.state(), State::Closing);
        assert!(p.close_expected());
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend(b"bye");
        assert_eq!(
            client_frames(&take(&mut p)),
            vec![(OpCode::Close, true, payload.clone())]
        );
        // Idempotent.
        p.send_close(Some(1000), "again").unwrap();
        assert!(take(&mut p).is_empty());
        // Messages cannot be sent while closing.
        assert!(matches!(p.send_text("x", true), Err(Error::Closed(t)) if t.code == 1000));
        // Data the server sent before its close is still delivered.
        let mut stream = frame(1, true, b"late");
        stream.extend(frame(8, true, &payload));
        p.receive_data(&stream, 0.0).unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![Ev::Text("late".into()), Ev::Close(1000, "bye".into())]
        );
        assert_eq!(p.state(), State::Closed);
        assert!(take(&mut p).is_empty(), "no second close frame");
        let t = p.termination().unwrap();
        assert_eq!((t.code, t.reason.as_str()), (1000, "bye"));
        assert!(t.is_normal());
    }

    #[test]
    fn server_initiated_close_is_echoed() {
        let mut p = open();
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend(b"going away");
        p.receive_data(&frame(8, true, &payload), 0.0).unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![Ev::Close(1001, "going away".into())]
        );
        assert_eq!(
            client_frames(&take(&mut p)),
            vec![(OpCode::Close, true, 1001u16.to_be_bytes().to_vec())]
        );
        assert_eq!(p.state(), State::Closed);
        // Frames after the close are ignored.
        p.receive_data(&frame(1, true, b"x"), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![]);
    }

    #[test]
    fn empty_close_is_1005_and_echoed_empty() {
        let mut p = open();
        p.receive_data(&frame(8, true, b""), 0.0).unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![Ev::Close(1005, String::new())]
        );
        assert_eq!(
            client_frames(&take(&mut p)),
            vec![(OpCode::Close, true, vec![])]
        );
        // A close frame without a code is a normal closure (ConnectionClosedOK).
        assert!(p.termination().unwrap().is_normal());
    }

    #[test]
    fn invalid_close_payloads() {
        let mut p = open();
        assert_eq!(
            expect_failure(&mut p, &frame(8, true, &[3]), 1002),
            ProtocolError::ClosePayloadTooShort
        );
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let mut p = open();
            assert_eq!(
                expect_failure(&mut p, &frame(8, true, &code.to_be_bytes()), 1002),
                ProtocolError::InvalidCloseCode { code }
            );
        }
        let mut p = open();
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend([
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
        ]);
        assert_eq!(
            expect_failure(&mut p, &frame(8, true, &payload), 1007),
            ProtocolError::InvalidUtf8 {
                context: "close reason"
            }
        );
    }

    #[test]
    fn eof_without_close_is_1006() {
        let mut p = open();
        p.receive_data(&frame(1, true, b"x")[..2], 0.0).unwrap();
        p.receive_eof();
        assert_eq!(events(&mut p).unwrap(), vec![]);
        assert_eq!(p.state(), State::Closed);
        let t = p.termination().unwrap();
        assert_eq!(t.code, 1006);
        assert!(!t.is_normal());
    }

    /// RFC 6455 §7.1.1: the client waits for the server's TCP close; after failing, it shuts
    /// its write side down first.
    #[test]
    fn how_tcp_closes() {
        let close = |code: u16| frame(8, true, &code.to_be_bytes());
        let after_peer = |shut_write| Some(TcpClose::AfterPeer { shut_write });
        // Open: no answer yet.
        let mut p = open();
        assert_eq!(p.tcp_close(), None);
        // We closed, the server answered: wait for its end of stream, then close.
        p.send_close(Some(1000), "").unwrap();
        assert_eq!(p.tcp_close(), None, "the close frame is awaited");
        p.receive_data(&close(1000), 0.0).unwrap();
        events(&mut p).unwrap();
        assert_eq!(p.tcp_close(), after_peer(false));
        p.receive_eof();
        assert_eq!(p.tcp_close(), Some(TcpClose::Now));
        // The server closed and we answered: the same.
        let mut p = open();
        p.receive_data(&close(1001), 0.0).unwrap();
        events(&mut p).unwrap();
        assert_eq!(p.tcp_close(), after_peer(false));
        // Failed: shut the write side, then wait (the peer's bytes still flow in).
        for (data, code) in [
            (frame(1, true, &[0xff]), 1007),
            (frame(0, true, b"x"), 1002),
        ] {
            let mut p = open();
            expect_failure(&mut p, &data, code);
            assert_eq!(p.tcp_close(), after_peer(true));
            p.receive_eof();
            assert_eq!(p.tcp_close(), Some(TcpClose::Now));
        }
        let mut p = open_with(Config { max_size: Some(10) });
        expect_failure(&mut p, &frame(2, true, &[0; 11])[..4], 1009);
        assert_eq!(p.tcp_close(), after_peer(true));
        // A violation after our close frame: nothing more is sent, the write side still shuts.
        let mut p = open();
        p.send_close(Some(1000), "").unwrap();
        take(&mut p);
        p.receive_data(&frame(0, true, b"x"), 0.0).unwrap();
        assert!(p.next_event().is_err());
        assert_eq!(p.tcp_close(), after_peer(true));
        // Abandoned (a close timeout) or cut off: close now.
        let mut p = open();
        p.send_close(Some(1000), "").unwrap();
        p.abort();
        assert_eq!(p.tcp_close(), Some(TcpClose::Now));
        let mut p = open();
        p.receive_eof();
        events(&mut p).unwrap();
        assert_eq!(p.tcp_close(), Some(TcpClose::Now));
        // Closed before the upgrade: nothing was sent.
        let mut p = engine_with(Config::default());
        p.send_close(Some(1000), "").unwrap();
        assert_eq!(p.tcp_close(), Some(TcpClose::Now));
    }

    #[test]
    fn send_close_validates_arguments() {
        let mut p = open();
        for code in [999u16, 1004, 1005, 1006, 1015, 2000, 5000] {
            assert!(matches!(
                p.send_close(Some(code), ""),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert!(matches!(
            p.send_close(Some(1000), &"x".repeat(124)),
            Err(Error::InvalidArgument(m)) if m.contains("124")
        ));
        assert!(matches!(
            p.send_close(None, "why"),
            Err(Error::InvalidArgument(_))
        ));
        p.send_close(Some(4000), &"x".repeat(123)).unwrap();
        assert_eq!(p.state(), State::Closing);
    }
}

mod rfc6455_8_1_utf8 {
    use super::*;

    #[test]
    fn invalid_text_fails_with_1007() {
        let mut p = open();
        let e = expect_failure(&mut p, &frame(1, true, &[b'a', 0xff]), 1007);
        assert_eq!(
            e,
            ProtocolError::InvalidUtf8 {
                context: "text message"
            }
        );
    }

    #[test]
    fn fails_fast_in_a_partial_frame() {
        let mut p = open();
        let mut f = frame(1, true, &[b'a'; 1000]);
        f[10] = 0xff;
        // Only the first 20 bytes have arrived: the error is found already.
        let e = expect_failure(&mut p, &f[..20], 1007);
        assert!(matches!(e, ProtocolError::InvalidUtf8 { .. }));
    }

    #[test]
    fn fails_fast_in_an_unfinished_fragmented_message() {
        let mut p = open();
        let mut stream = frame(1, false, "κόσμε".as_bytes());
        stream.extend(frame(0, false, &[0xce, 0xb5, 0xed, 0xa0, 0x80]));
        let e = expect_failure(&mut p, &stream, 1007);
        assert!(matches!(e, ProtocolError::InvalidUtf8 { .. }));
    }

    #[test]
    fn code_point_split_across_fragments_is_valid() {
        let mut p = open();
        let euro = "€".as_bytes();
        let mut stream = frame(1, false, &euro[..1]);
        stream.extend(frame(0, false, &euro[1..2]));
        stream.extend(frame(0, true, &euro[2..]));
        p.receive_data(&stream, 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::Text("€".into())]);
    }

    #[test]
    fn unfinished_code_point_at_message_end_fails() {
        let mut p = open();
        let mut stream = frame(1, false, b"a");
        stream.extend(frame(0, true, &[0xe2, 0x82]));
        expect_failure(&mut p, &stream, 1007);
    }
}

mod deferred_failure {
    use super::*;

    /// Every kind of violation, each after a valid message in the same read.
    fn violations() -> Vec<(Vec<u8>, u16)> {
        let mut bad_utf8_fragments = frame(1, false, "€".as_bytes());
        bad_utf8_fragments.extend(frame(0, true, &[0xe2, 0x82]));
        vec![
            (
                {
                    let mut f = frame(1, true, b"x");
                    f[0] |= 0x20;
                    f
                },
                1002,
            ),
            (vec![0x85, 0], 1002),
            (frame(0, true, b"lone"), 1002),
            (frame(1, true, &[0xff]), 1007),
            (bad_utf8_fragments, 1007),
            (frame(8, true, &[3]), 1002),
            (frame(2, true, &[0; 300]), 1009),
        ]
    }

    #[test]
    fn violation_waits_unread_then_fails_the_same_way() {
        for (bad, code) in violations() {
            let mut p = open_with(Config {
                max_size: Some(200),
            });
            let mut stream = frame(1, true, b"first");
            stream.extend(&bad);
            p.receive_data(&stream, 0.0).unwrap();
            p.set_defer_failure(true);
            assert_eq!(events(&mut p).unwrap(), vec![Ev::Text("first".into())]);
            assert!(p.failure_deferred());
            assert_eq!(p.state(), State::Open, "{bad:?}");
            assert!(take(&mut p).is_empty());
            // The application answers while the failure is deferred.
            p.send_text("echo", true).unwrap();
            assert_eq!(p.next_event().unwrap(), None);
            assert!(p.failure_deferred());
            p.set_defer_failure(false);
            let err = p.next_event().unwrap_err();
            assert!(
                matches!(err, Error::Protocol(ref e) if e.close_code() == code),
                "{err}"
            );
            let sent = client_frames(&take(&mut p));
            assert_eq!(sent[0], (OpCode::Text, true, b"echo".to_vec()));
            assert_eq!(sent[1].0, OpCode::Close);
            assert_eq!(&sent[1].2[..2], &code.to_be_bytes());
        }
    }
}

mod transport_loss {
    use super::*;

    #[test]
    fn messages_that_arrived_are_delivered_after_an_abort() {
        let mut p = open();
        let mut stream = frame(9, true, b"p");
        stream.extend(frame(1, true, b"one"));
        stream.extend(frame(1, true, b"two"));
        p.receive_data(&stream, 0.0).unwrap();
        assert_eq!(p.next_event().unwrap(), Some(Event::Ping(b"p")));
        // Writing the pong failed: the driver aborts.
        p.abort();
        assert_eq!(p.state(), State::Closed);
        assert_eq!(p.finished(), None, "bytes may still arrive before the end");
        assert_eq!(
            events(&mut p).unwrap(),
            vec![Ev::Text("one".into()), Ev::Text("two".into())]
        );
        p.receive_eof();
        assert_eq!(events(&mut p).unwrap(), vec![]);
        assert_eq!(p.finished().map(|t| t.code), Some(1006));
    }

    #[test]
    fn a_large_message_does_not_pin_memory_once_consumed() {
        let mut p = open_with(Config { max_size: None });
        let payload = vec![7u8; 8 * 1024 * 1024];
        p.receive_data(&frame(2, true, &payload), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap().len(), 1);
        p.trim();
        assert!(p.wire.input.capacity() <= crate::buffer::KEEP_CAPACITY);
        let mut fragmented = frame(2, false, &payload);
        fragmented.extend(frame(0, true, b"end"));
        p.receive_data(&fragmented, 0.0).unwrap();
        assert!(matches!(p.next_event(), Ok(Some(Event::Message(_)))));
        p.trim();
        assert_eq!(p.reassembly.handed_out().0.len(), 0);
    }
}

mod max_size {
    use super::*;

    #[test]
    fn declared_length_over_limit_fails_before_the_payload_arrives() {
        let mut p = open_with(Config {
            max_size: Some(1000),
        });
        let f = [0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let e = expect_failure(&mut p, &f, 1009);
        assert!(matches!(
            e,
            ProtocolError::MessageTooBig { limit: 1000, .. }
        ));
    }

    #[test]
    fn fragments_adding_up_over_limit_fail() {
        let mut p = open_with(Config { max_size: Some(10) });
        let mut stream = frame(2, false, &[0; 6]);
        stream.extend(frame(0, true, &[0; 5]));
        let e = expect_failure(&mut p, &stream, 1009);
        assert_eq!(
            e,
            ProtocolError::MessageTooBig {
                size: 11,
                limit: 10
            }
        );
    }

    #[test]
    fn exactly_at_limit_is_fine_and_none_is_unlimited() {
        let mut p = open_with(Config { max_size: Some(10) });
        p.receive_data(&frame(2, true, &[0; 10]), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::Binary(vec![0; 10])]);
        let mut p = open_with(Config { max_size: None });
        p.receive_data(&frame(2, true, &[0; 100_000]), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap().len(), 1);
    }
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any message sequence, fragmented any way and split at any point, comes out whole.
        #[test]
        fn reassembly(msgs in proptest::collection::vec(("\\PC{0,40}", 1usize..5, any::<bool>()), 1..6), cut in any::<prop::sample::Index>()) {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for (text, pieces, binary) in &msgs {
                let bytes = text.as_bytes();
                let chunk = bytes.len().div_ceil(*pieces).max(1);
                let parts: Vec<&[u8]> = if bytes.is_empty() { vec![&[][..]] } else { bytes.chunks(chunk).collect() };
                for (i, part) in parts.iter().enumerate() {
                    let op = if i > 0 { 0 } else if *binary { 2 } else { 1 };
                    stream.extend(frame(op, i + 1 == parts.len(), part));
                    if i == 0 { stream.extend(frame(9, true, b"p")); }
                }
                expected.push(Ev::Ping(b"p".to_vec()));
                expected.push(if *binary { Ev::Binary(bytes.to_vec()) } else { Ev::Text(text.clone()) });
            }
            let split = cut.index(stream.len() + 1);
            let mut p = open();
            p.receive_data(&stream[..split], 0.0).unwrap();
            let mut got = events(&mut p).unwrap();
            p.receive_data(&stream[split..], 0.0).unwrap();
            got.extend(events(&mut p).unwrap());
            // Pings come out where they sit in the stream: compare messages and pings apart.
            let (gp, gm): (Vec<_>, Vec<_>) = got.into_iter().partition(|e| matches!(e, Ev::Ping(_)));
            let (ep, em): (Vec<_>, Vec<_>) = expected.into_iter().partition(|e| matches!(e, Ev::Ping(_)));
            prop_assert_eq!(gm, em);
            prop_assert_eq!(gp, ep);
        }

        /// Feeding by copy (`receive_data`) or in place (`take_input` / `receive_into`), in
        /// any mix of chunk sizes and with events taken between chunks, gives the same events
        /// as feeding the whole stream at once.
        #[test]
        fn in_place_reads_match_copied_reads(
            sizes in proptest::collection::vec(0usize..3000, 1..8),
            cuts in proptest::collection::vec((1usize..4000, any::<bool>(), any::<bool>()), 1..40),
        ) {
            let mut stream = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let payload: Vec<u8> = (0..*size).map(|b| (b + i) as u8).collect();
                stream.extend(frame(2, true, &payload));
                stream.extend(frame(9, true, &[i as u8]));
            }
            let mut whole = open();
            whole.receive_data(&stream, 0.0).unwrap();
            let expected = events(&mut whole).unwrap();

            let mut p = open();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            for (len, in_place, drain) in cuts.iter().cycle().take(10_000) {
                if rest.is_empty() {
                    break;
                }
                let n = (*len).min(rest.len());
                if *in_place {
                    let mut input = p.take_input().unwrap();
                    input.free_space(n)[..n].copy_from_slice(&rest[..n]);
                    p.receive_into(input, n, 0.0);
                } else {
                    p.receive_data(&rest[..n], 0.0).unwrap();
                }
                rest = &rest[n..];
                if *drain {
                    got.extend(events(&mut p).unwrap());
                }
            }
            got.extend(events(&mut p).unwrap());
            prop_assert_eq!(got, expected);
        }

        /// Arbitrary bytes never panic; they end in events, a need for more, or a failure.
        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut p = open_with(Config { max_size: Some(200) });
            p.receive_data(&data, 0.0).unwrap();
            let _ = events(&mut p);
            p.receive_eof();
            let _ = events(&mut p);
        }
    }
}

mod rfc7692_permessage_deflate {
    use super::*;
    use crate::deflate::{Deflate, Params};
    use flate2::{Compress, Compression, FlushCompress};

    /// The sync flush's last four octets, removed from every compressed message (RFC 7692 §7.2.1).
    const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

    /// An engine that negotiated permessage-deflate with `extension` as the server's answer.
    fn negotiated(extension: &str, config: Config) -> Protocol {
        let mut p = engine_with(config);
        take(&mut p);
        let head = String::from_utf8(response()).unwrap();
        let head = head.replace(
            "\r\n\r\n",
            &format!("\r\nSec-WebSocket-Extensions: {extension}\r\n\r\n"),
        );
        p.receive_data(head.as_bytes(), 0.0).unwrap();
        assert_eq!(p.next_event().unwrap(), None);
        assert_eq!(p.state(), State::Open);
        p
    }

    /// A server frame with RSV1 set.
    fn compressed(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = frame(opcode, fin, payload);
        f[0] |= 0x40;
        f
    }

    #[test]
    fn compressed_messages_stream_in_pieces_within_max_size() {
        // RFC 7692 §7.2.3.1's fragmented "Hello", streamed.
        let stream = [
            0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
        ];
        let mut p = negotiated("permessage-deflate", Config::default());
        p.stream_message();
        p.receive_data(&stream, 0.0).unwrap();
        let got = events(&mut p).unwrap();
        assert!(matches!(got[0], Ev::TextPiece(_)), "{got:?}");
        let text: String = got
            .iter()
            .map(|e| match e {
                Ev::TextPiece(t) | Ev::Text(t) => t.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(text, "Hello");
        // The pieces handed out count towards max_size: 5 bytes > 4; 5 bytes fit in 5, each
        // counted once, in a piece or in what inflates after it.
        let mut p = negotiated("permessage-deflate", Config { max_size: Some(4) });
        p.stream_message();
        expect_failure(&mut p, &stream, 1009);
        let mut p = negotiated("permessage-deflate", Config { max_size: Some(5) });
        p.stream_message();
        p.receive_data(&stream[..6], 0.0).unwrap();
        let first = events(&mut p).unwrap();
        assert!(matches!(first[..], [Ev::TextPiece(_)]), "{first:?}");
        p.receive_data(&stream[6..], 0.0).unwrap();
        let rest = events(&mut p).unwrap();
        let text: String = first
            .iter()
            .chain(&rest)
            .map(|e| match e {
                Ev::TextPiece(t) | Ev::Text(t) => t.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(text, "Hello");
    }

    #[test]
    fn the_offer_is_in_the_request_and_the_answer_is_reported() {
        let mut p = engine_with(Config::default());
        let request = String::from_utf8(take(&mut p)).unwrap();
        assert!(request.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        ));
        let p = negotiated(
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
            Config::default(),
        );
        let params = p.extensions().unwrap();
        assert!(params.server_no_context_takeover);
        assert_eq!(params.client_max_window_bits, Some(10));
    }

    #[test]
    fn an_invalid_answer_fails_the_handshake() {
        let mut p = engine_with(Config::default());
        take(&mut p);
        let head = String::from_utf8(response()).unwrap().replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n\r\n",
        );
        p.receive_data(head.as_bytes(), 0.0).unwrap();
        let e = p.next_event().unwrap_err();
        assert!(e.to_string().contains("server_max_window_bits"), "{e}");
        assert_eq!(p.state(), State::Closed);
    }

    #[test]
    fn section_7_2_3_1_examples_single_and_fragmented() {
        // RFC 7692 §7.2.3.1: "Hello" compressed, in one frame and in two.
        let mut p = negotiated("permessage-deflate", Config::default());
        let mut stream = vec![0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        stream.extend([
            0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
        ]);
        for split in 0..stream.len() {
            let q = negotiated("permessage-deflate", Config::default());
            let (_, got) = fed_in_two(q, &stream, split);
            let hello = Ev::Text("Hello".into());
            assert_eq!(got, vec![hello.clone(), hello], "split {split}");
        }
        p.receive_data(&stream, 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap().len(), 2);
    }

    #[test]
    fn sent_messages_are_compressed_with_rsv1_unless_asked_not_to() {
        let mut p = negotiated("permessage-deflate", Config::default());
        p.send_text("Hello", true).unwrap();
        p.send_text("Hello", false).unwrap();
        let out = take(&mut p);
        // RSV1 on the first, not on the second.
        assert_eq!(out[0], 0xc1);
        let second = 2 + 4 + 7;
        assert_eq!(out[second], 0x81);
        let frames = client_frames(&out);
        // RFC 7692 §7.2.3.1: "Hello" compresses to f2 48 cd c9 c9 07 00.
        assert_eq!(frames[0].2, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        assert_eq!(frames[1].2, b"Hello");
        let mut inflater = Deflate::new(Params::default());
        let mut text = Vec::new();
        inflater.decompress(&frames[0].2, &mut text, None).unwrap();
        assert_eq!(text, b"Hello");
    }

    #[test]
    fn large_incompressible_messages_are_sent_without_rsv1() {
        let mut p = negotiated("permessage-deflate", Config::default());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..40_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        p.send_binary(&noise, true).unwrap();
        // Text is judged apart from binary (which now backs off): it is compressed.
        p.send_text(&"7".repeat(40_000), true).unwrap();
        let out = take(&mut p);
        let (first, n) = decode_header(&out).unwrap().unwrap();
        assert_eq!(first.rsv, 0, "RSV1 clear: sent as it is");
        let end = n + first.payload_len as usize;
        let (second, _) = decode_header(&out[end..]).unwrap().unwrap();
        assert_eq!(second.rsv, 0b100, "RSV1 set: compressed");
        let frames = client_frames(&out);
        assert_eq!(frames[0].2, noise);
        assert!(frames[1].2.len() < 1000);
    }

    #[test]
    fn rsv1_misuse_fails_with_1002() {
        // RFC 7692 §6.1: not on control frames, not on continuation frames.
        let mut p = negotiated("permessage-deflate", Config::default());
        expect_failure(&mut p, &compressed(9, true, b""), 1002);
        let mut p = negotiated("permessage-deflate", Config::default());
        let mut stream = frame(1, false, b"a");
        stream.extend(compressed(0, true, b"b"));
        expect_failure(&mut p, &stream, 1002);
        // Without the extension, RSV1 means nothing (RFC 6455 §5.2).
        let mut p = open();
        expect_failure(
            &mut p,
            &compressed(1, true, &[0xf2, 0x48, 0x05, 0x00]),
            1002,
        );
        // RSV2 stays reserved.
        let mut p = negotiated("permessage-deflate", Config::default());
        let mut f = frame(1, true, b"x");
        f[0] |= 0x20;
        expect_failure(&mut p, &f, 1002);
    }

    /// `data` deflated with a sync flush after each offset of `cuts` and at its end: the
    /// payloads of `cuts.len() + 1` frames of one message (RFC 7692 §7.2.1, tail removed).
    fn deflated_in_parts(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut deflater = Compress::new(Compression::new(6), false);
        let mut parts = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([&data.len()]) {
            let mut out = Vec::with_capacity(cut - at + 64);
            deflater
                .compress_vec(&data[at..cut], &mut out, FlushCompress::Sync)
                .unwrap();
            parts.push(out);
            at = cut;
        }
        let last = parts.last_mut().unwrap();
        last.truncate(last.len() - 4);
        parts
    }

    #[test]
    fn the_dropped_rest_of_a_streamed_message_stays_out_of_the_next() {
        // Each message is its own DEFLATE stream (no context takeover), so that each can be
        // deflated on its own here.
        let mut p = negotiated(
            "permessage-deflate; server_no_context_takeover",
            Config::default(),
        );
        p.stream_message();
        let first = deflated_in_parts(b"first middle rest", &[6, 13]);
        p.receive_data(&compressed(1, false, &first[0]), 0.0)
            .unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![Ev::TextPiece("first ".into())]
        );
        p.stop_streaming();
        // The rest and the next message arrive in one read: the rest is dropped within the
        // call that reassembles the next one into the same buffer.
        let mut rest = frame(0, false, &first[1]);
        rest.extend(frame(0, true, &first[2]));
        let after = deflated_in_parts(b"after", &[]);
        rest.extend(compressed(1, true, &after[0]));
        p.receive_data(&rest, 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::Text("after".into())]);
    }

    #[test]
    fn fragmented_messages_are_compressed_as_one_stream_flushed_per_fragment() {
        use flate2::{Decompress, FlushDecompress};
        for extension in [
            "permessage-deflate",
            "permessage-deflate; client_no_context_takeover",
        ] {
            let mut p = negotiated(extension, Config::default());
            let parts = ["Hello, ", "", "Hello, Hello, world", ""];
            for (i, part) in parts.iter().enumerate() {
                p.send_fragment(true, part.as_bytes(), i == parts.len() - 1, true)
                    .unwrap();
            }
            // Then a whole message, which may refer to the fragmented one.
            p.send_text("Hello, world", true).unwrap();
            let out = take(&mut p);
            let mut rsv = Vec::new();
            let mut at = 0;
            while at < out.len() {
                let (h, n) = decode_header(&out[at..]).unwrap().unwrap();
                rsv.push(h.rsv);
                at += n + h.payload_len as usize;
            }
            // RFC 7692 §6.1: RSV1 on the first frame of each compressed message only.
            assert_eq!(rsv, [0b100, 0, 0, 0, 0b100], "{extension}");
            let frames = client_frames(&out);
            // The server's view: each fragment inflates whole as soon as it arrives.
            let mut z = Decompress::new(false);
            let mut inflate = |data: &[u8]| {
                let mut got = Vec::with_capacity(256);
                z.decompress_vec(data, &mut got, FlushDecompress::Sync)
                    .unwrap();
                String::from_utf8(got).unwrap()
            };
            assert_eq!(inflate(&frames[0].2), "Hello, ");
            assert!(frames[1].2.is_empty(), "an empty fragment adds nothing");
            assert_eq!(inflate(&frames[2].2), "Hello, Hello, world");
            let mut last = frames[3].2.clone();
            last.extend(TAIL);
            assert_eq!(inflate(&last), "");
            if extension.ends_with("client_no_context_takeover") {
                // The next message starts from an empty window (§7.1.1.2).
                z = Decompress::new(false);
            }
            let mut whole = frames[4].2.clone();
            whole.extend(TAIL);
            let mut got = Vec::with_capacity(64);
            z.decompress_vec(&whole, &mut got, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(got, b"Hello, world", "{extension}");
        }
        // `compress=False` on the first fragment: the message goes as it is.
        let mut p = negotiated("permessage-deflate", Config::default());
        p.send_fragment(false, b"ab", false, false).unwrap();
        p.send_fragment(false, b"cd", true, true).unwrap();
        let out = take(&mut p);
        assert_eq!(out[0] & 0x40, 0);
        let frames = client_frames(&out);
        assert_eq!(
            (frames[0].2.as_slice(), frames[1].2.as_slice()),
            (&b"ab"[..], &b"cd"[..])
        );
    }

    #[test]
    fn compressed_text_must_be_utf8() {
        // RFC 6455 §8.1, after inflating: a message in one frame is proven whole.
        let bad = deflated_in_parts(b"caf\xc3 au lait", &[])[0].clone();
        let mut p = negotiated("permessage-deflate", Config::default());
        let err = expect_failure(&mut p, &compressed(1, true, &bad), 1007);
        assert!(matches!(err, ProtocolError::InvalidUtf8 { .. }), "{err:?}");
        // A fragmented one fails with its first bad fragment, before the last arrives.
        let mut text = vec![0xffu8];
        text.extend(b"x".repeat(4000));
        let parts = deflated_in_parts(&text, &[1]);
        let mut p = negotiated("permessage-deflate", Config::default());
        expect_failure(&mut p, &compressed(1, false, &parts[0]), 1007);
        // A character cut between two compressed frames is whole once they are joined.
        let text = "prix: 3 €, soit 3 €".as_bytes();
        let cut = text.iter().position(|&b| b == 0xe2).unwrap() + 1;
        let parts = deflated_in_parts(text, &[cut]);
        let mut stream = compressed(1, false, &parts[0]);
        stream.extend(frame(0, true, &parts[1]));
        let mut p = negotiated("permessage-deflate", Config::default());
        p.receive_data(&stream, 0.0).unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![Ev::Text("prix: 3 €, soit 3 €".into())]
        );
    }

    #[test]
    fn invalid_deflate_data_fails_with_1007() {
        let mut p = negotiated("permessage-deflate", Config::default());
        // Block type 11 is reserved (RFC 1951 §3.2.3).
        let err = expect_failure(&mut p, &compressed(2, true, &[0xff, 0xff, 0xff]), 1007);
        assert!(matches!(err, ProtocolError::Deflate(_)), "{err:?}");
    }

    #[test]
    fn max_size_counts_inflated_bytes_and_stops_a_bomb() {
        // 64 MiB of zeros deflate to about 64 KiB: the limit holds while inflating.
        let limit = 1024 * 1024;
        // Built at level 9, as an attacker would: our level 1 packs zeros 100:1, not 1000:1.
        let mut deflater = Compress::new(Compression::best(), false);
        let mut payload = Vec::with_capacity(256 * 1024);
        deflater
            .compress_vec(
                &vec![0u8; 64 * 1024 * 1024],
                &mut payload,
                FlushCompress::Sync,
            )
            .unwrap();
        payload.truncate(payload.len() - 4);
        assert!(payload.len() < 256 * 1024, "{}", payload.len());
        let mut p = negotiated(
            "permessage-deflate",
            Config {
                max_size: Some(limit),
            },
        );
        let err = expect_failure(&mut p, &compressed(2, true, &payload), 1009);
        assert!(
            matches!(err, ProtocolError::MessageTooBig { .. }),
            "{err:?}"
        );
        assert!(p.reassembly.handed_out().0.len() <= limit + 1);
        // Under the limit, the same data inflates.
        let mut p = negotiated("permessage-deflate", Config { max_size: None });
        p.receive_data(&compressed(2, true, &payload), 0.0).unwrap();
        match p.next_event().unwrap() {
            Some(Event::Message(Message::Binary(data))) => {
                assert_eq!(data.len(), 64 * 1024 * 1024);
            }
            other => panic!("{other:?}"),
        }
    }
}

mod keepalive {
    //! Keepalive pings (`ping_interval`, `ping_timeout`): deadlines the driver runs.
    use super::*;
    use std::time::Duration;

    fn engine(interval: Option<f64>, timeout: Option<f64>, opened_at: f64) -> Protocol {
        let options = Options {
            ping_interval: interval.map(Duration::from_secs_f64),
            ping_timeout: timeout.map(Duration::from_secs_f64),
            ..Options::default()
        };
        let mut p = Protocol::client("ws://example.com/", &options, Some(KEY.into())).unwrap();
        assert_eq!(p.next_deadline(), None, "no deadline before the upgrade");
        take(&mut p);
        p.receive_data(&response(), opened_at).unwrap();
        assert_eq!(p.next_event().unwrap(), None);
        p
    }

    /// The keepalive ping in `out`, checked to be the only frame.
    fn ping_payload(out: &[u8]) -> Vec<u8> {
        let frames = client_frames(out);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].0, OpCode::Ping);
        assert_eq!(frames[0].2.len(), 4);
        frames[0].2.clone()
    }

    #[test]
    fn pings_every_interval_and_measures_the_round_trip() {
        let mut p = engine(Some(20.0), Some(10.0), 5.0);
        assert_eq!(p.next_deadline(), Some(25.0));
        p.handle_deadline(24.9).unwrap();
        assert!(!p.has_data_to_send(), "not due yet");
        p.handle_deadline(25.0).unwrap();
        let payload = ping_payload(&take(&mut p));
        assert_eq!(p.next_deadline(), Some(35.0), "the pong is due 10 s later");
        p.receive_data(&frame(10, true, &payload), 25.25).unwrap();
        assert_eq!(events(&mut p).unwrap(), [Ev::Pong(payload)]);
        assert!((p.latency() - 0.25).abs() < 1e-9);
        assert_eq!(
            p.next_deadline(),
            Some(45.0),
            "the next ping, 20 s after the last"
        );
        p.handle_deadline(45.0).unwrap();
        let second = ping_payload(&take(&mut p));
        assert_eq!(second.len(), 4);
    }

    #[test]
    fn a_missing_pong_fails_the_connection_with_1011() {
        let mut p = engine(Some(1.0), Some(2.0), 0.0);
        p.handle_deadline(1.0).unwrap();
        ping_payload(&take(&mut p));
        // The next ping is due before the pong: a wake-up then finds the pong still awaited.
        assert_eq!(p.next_deadline(), Some(2.0));
        p.handle_deadline(2.0).unwrap();
        assert!(!p.has_data_to_send(), "no second ping while one waits");
        assert_eq!(p.next_deadline(), Some(3.0));
        // Bytes that arrived before the ping are no sign of life after it.
        p.handle_deadline(2.9).unwrap();
        assert_eq!(p.state(), State::Open);
        p.handle_deadline(3.0).unwrap();
        assert_eq!(p.state(), State::Closed);
        let frames = client_frames(&take(&mut p));
        assert_eq!(frames[0].0, OpCode::Close);
        assert_eq!(frames[0].2[..2], 1011u16.to_be_bytes());
        assert_eq!(&frames[0].2[2..], KEEPALIVE_TIMEOUT_REASON.as_bytes());
        let t = p.finished().unwrap();
        assert_eq!(
            (t.code, t.reason.as_str()),
            (1011, KEEPALIVE_TIMEOUT_REASON)
        );
        assert!(!t.is_normal());
        assert_eq!(p.next_deadline(), None);
        // Nothing more is decoded (RFC 6455 §7.1.7).
        p.receive_data(&frame(1, true, b"late"), 3.1).unwrap();
        assert_eq!(events(&mut p).unwrap(), []);
    }

    #[test]
    fn bytes_after_the_ping_end_the_wait_like_its_pong() {
        let mut p = engine(Some(1.0), Some(2.0), 0.0);
        p.handle_deadline(1.0).unwrap();
        let payload = ping_payload(&take(&mut p));
        // A long message under way (the pong queues behind it): the peer is alive.
        p.receive_data(&frame(2, false, b"part"), 2.5).unwrap();
        assert_eq!(events(&mut p).unwrap(), []);
        p.handle_deadline(3.0).unwrap();
        assert_eq!(p.state(), State::Open);
        // The next ping went out at once (it was due at 2.0).
        let second = ping_payload(&take(&mut p));
        assert_eq!(p.next_deadline(), Some(4.0));
        // The first ping is forgotten (a peer that never answers cannot make the list of
        // pings grow): its late pong neither measures nor ends the second one's wait...
        p.receive_data(&frame(10, true, &payload), 3.5).unwrap();
        events(&mut p).unwrap();
        assert_eq!(p.latency(), 0.0);
        // ...so no third ping goes at 4.0: it waits for the second's pong, until 5.0 at most.
        p.handle_deadline(4.0).unwrap();
        assert!(!p.has_data_to_send());
        assert_eq!(p.next_deadline(), Some(5.0));
        p.receive_data(&frame(10, true, &second), 4.5).unwrap();
        events(&mut p).unwrap();
        assert!((p.latency() - 1.5).abs() < 1e-9);
        p.handle_deadline(5.0).unwrap();
        ping_payload(&take(&mut p));
        // Then silence: the third ping fails the connection.
        p.handle_deadline(6.0).unwrap();
        assert_eq!(p.state(), State::Open);
        assert!(!p.has_data_to_send());
        assert_eq!(p.next_deadline(), Some(7.0));
        p.handle_deadline(7.0).unwrap();
        assert_eq!(p.state(), State::Closed);
        assert_eq!(p.finished().unwrap().code, 1011);
    }

    #[test]
    fn a_pong_for_a_later_ping_answers_the_keepalive_too() {
        // RFC 6455 §5.5.3: a peer may answer only the most recent ping.
        let mut p = engine(Some(1.0), Some(5.0), 0.0);
        p.handle_deadline(1.0).unwrap();
        take(&mut p);
        p.send_ping(b"mine", 1.5).unwrap();
        take(&mut p);
        p.receive_data(&frame(10, true, b"mine"), 2.0).unwrap();
        events(&mut p).unwrap();
        assert_eq!(p.next_deadline(), Some(2.0), "the next ping, no pong wait");
    }

    #[test]
    fn without_a_timeout_a_ping_waits_for_its_pong_forever() {
        let mut p = engine(Some(1.0), None, 0.0);
        p.handle_deadline(1.0).unwrap();
        ping_payload(&take(&mut p));
        assert_eq!(
            p.next_deadline(),
            Some(2.0),
            "wakes at the interval, to no effect"
        );
        p.handle_deadline(1e9).unwrap();
        assert_eq!(p.state(), State::Open);
        assert!(!p.has_data_to_send(), "one ping in flight at most");
    }

    #[test]
    fn off_without_an_interval_and_once_closing() {
        let mut p = engine(None, Some(1.0), 0.0);
        assert_eq!(p.next_deadline(), None);
        p.handle_deadline(100.0).unwrap();
        assert!(!p.has_data_to_send());
        let mut p = engine(Some(1.0), Some(1.0), 0.0);
        p.send_close(Some(1000), "").unwrap();
        take(&mut p);
        assert_eq!(p.next_deadline(), None);
        p.handle_deadline(100.0).unwrap();
        assert!(!p.has_data_to_send());
        assert_eq!(p.state(), State::Closing);
    }
}

mod streaming {
    //! Messages handed out in pieces as their frames arrive, and messages sent in fragments.
    use super::*;

    fn text_pieces(got: &[Ev]) -> String {
        got.iter()
            .map(|e| match e {
                Ev::TextPiece(t) | Ev::Text(t) => t.as_str(),
                other => panic!("not text: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn pieces_end_on_character_boundaries_at_every_split() {
        // "é€😀" cut inside each character by the frame boundaries.
        let text = "aé€😀z".as_bytes();
        let mut stream = Vec::new();
        for (i, cut) in [(0, 2), (2, 5), (5, 9), (9, text.len())].iter().enumerate() {
            let opcode = if i == 0 { 1 } else { 0 };
            stream.extend(frame(opcode, cut.1 == text.len(), &text[cut.0..cut.1]));
        }
        for split in 0..stream.len() {
            let mut p = open();
            p.stream_message();
            let (_, got) = fed_in_two(p, &stream, split);
            assert_eq!(text_pieces(&got), "aé€😀z", "split {split}");
            assert!(matches!(got.last(), Some(Ev::Text(_))), "{got:?}");
            assert!(got[..got.len() - 1]
                .iter()
                .all(|e| matches!(e, Ev::TextPiece(t) if !t.is_empty())));
        }
        let mut p = open();
        p.stream_message();
        p.receive_data(&stream, 0.0).unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![
                Ev::TextPiece("a".into()),
                Ev::TextPiece("é".into()),
                Ev::TextPiece("€".into()),
                Ev::Text("😀z".into()),
            ]
        );
    }

    #[test]
    fn one_message_is_streamed_then_messages_are_whole_again() {
        let mut p = open();
        p.stream_message();
        let mut stream = frame(2, false, b"ab");
        stream.extend(frame(0, true, b"cd"));
        stream.extend(frame(2, false, b"ef"));
        stream.extend(frame(0, true, b"gh"));
        stream.extend(frame(1, true, b"whole"));
        p.receive_data(&stream, 0.0).unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![
                Ev::BinaryPiece(b"ab".to_vec()),
                Ev::Binary(b"cd".to_vec()),
                Ev::Binary(b"efgh".to_vec()),
                Ev::Text("whole".into()),
            ]
        );
        assert!(!p.is_streaming());
        // A message of one frame is its own last piece.
        p.stream_message();
        p.receive_data(&frame(1, true, b"one"), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::Text("one".into())]);
        assert!(!p.is_streaming());
    }

    #[test]
    fn streaming_from_the_middle_of_a_message_hands_out_what_came_first() {
        let mut p = open();
        p.receive_data(&frame(1, false, b"early "), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![]);
        p.stream_message();
        p.receive_data(&frame(0, false, b"middle "), 0.0).unwrap();
        p.receive_data(&frame(0, true, b"late"), 0.0).unwrap();
        assert_eq!(
            events(&mut p).unwrap(),
            vec![
                Ev::TextPiece("early middle ".into()),
                Ev::Text("late".into())
            ]
        );
    }

    #[test]
    fn frames_that_arrived_before_streaming_are_the_first_piece_at_once() {
        let mut p = open();
        p.receive_data(&frame(1, false, b"a\xc3\xa9\xe2"), 0.0)
            .unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![]);
        p.stream_message();
        // No other frame arrives: what came is handed out now, up to the unfinished "€".
        assert_eq!(events(&mut p).unwrap(), vec![Ev::TextPiece("aé".into())]);
        p.receive_data(&frame(0, true, b"\x82\xac"), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::Text("€".into())]);
    }

    #[test]
    fn stopping_drops_the_rest_of_a_started_message_only() {
        let mut p = open();
        p.stream_message();
        p.receive_data(&frame(1, false, b"seen "), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::TextPiece("seen ".into())]);
        p.stop_streaming();
        let mut rest = frame(0, false, b"dropped ");
        rest.extend(frame(0, true, b"too"));
        rest.extend(frame(1, true, b"next"));
        p.receive_data(&rest, 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::Text("next".into())]);
        // Nothing handed out yet: stopping leaves the message whole.
        p.stream_message();
        p.stop_streaming();
        let mut whole = frame(2, false, b"ke");
        whole.extend(frame(0, true, b"pt"));
        p.receive_data(&whole, 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::Binary(b"kept".to_vec())]);
    }

    #[test]
    fn the_dropped_rest_stays_out_of_a_fragmented_next_message() {
        let mut p = open();
        p.stream_message();
        p.receive_data(&frame(1, false, b"seen "), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::TextPiece("seen ".into())]);
        p.stop_streaming();
        let mut rest = frame(0, true, b"dropped");
        rest.extend(frame(2, false, b"ne"));
        rest.extend(frame(0, true, b"xt"));
        p.receive_data(&rest, 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::Binary(b"next".to_vec())]);
    }

    #[test]
    fn the_dropped_rest_is_still_checked() {
        let mut p = open();
        p.stream_message();
        p.receive_data(&frame(1, false, b"ok"), 0.0).unwrap();
        events(&mut p).unwrap();
        p.stop_streaming();
        expect_failure(&mut p, &frame(0, true, b"\xff"), 1007);
    }

    #[test]
    fn max_size_counts_the_pieces_handed_out() {
        let mut p = open_with(Config { max_size: Some(10) });
        p.stream_message();
        p.receive_data(&frame(2, false, b"123456"), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap().len(), 1);
        expect_failure(&mut p, &frame(0, true, b"78901"), 1009);
        let mut p = open_with(Config { max_size: Some(10) });
        p.stream_message();
        let mut fits = frame(2, false, b"123456");
        fits.extend(frame(0, true, b"7890"));
        p.receive_data(&fits, 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap().len(), 2);
    }

    #[test]
    fn invalid_text_in_a_later_piece_fails_with_1007() {
        let mut p = open();
        p.stream_message();
        p.receive_data(&frame(1, false, "aé".as_bytes()), 0.0)
            .unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::TextPiece("aé".into())]);
        expect_failure(&mut p, &frame(0, true, b"\xc3\x28"), 1007);
        let mut p = open();
        p.stream_message();
        // An unfinished character at the end of the message.
        p.receive_data(&frame(1, false, b"a\xe2\x82"), 0.0).unwrap();
        assert_eq!(events(&mut p).unwrap(), vec![Ev::TextPiece("a".into())]);
        expect_failure(&mut p, &frame(0, true, b""), 1007);
    }

    #[test]
    fn fragments_go_out_in_order_and_nothing_interleaves() {
        let mut p = open();
        p.send_fragment(true, "ab".as_bytes(), false, true).unwrap();
        assert!(p.sending_fragments());
        assert!(matches!(
            p.send_text("other", true),
            Err(Error::Concurrency(_))
        ));
        assert!(matches!(
            p.send_binary(b"other", false),
            Err(Error::Concurrency(_))
        ));
        assert!(matches!(
            p.send_fragment(false, b"x", true, true),
            Err(Error::InvalidArgument(_))
        ));
        p.send_ping(b"between", 0.0).unwrap();
        p.send_fragment(true, "cd".as_bytes(), false, true).unwrap();
        p.send_fragment(true, b"", true, true).unwrap();
        assert!(!p.sending_fragments());
        p.send_binary(b"after", false).unwrap();
        let frames = client_frames(&take(&mut p));
        let got: Vec<(OpCode, bool, &[u8])> = frames
            .iter()
            .map(|(o, f, d)| (*o, *f, d.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (OpCode::Text, false, &b"ab"[..]),
                (OpCode::Ping, true, &b"between"[..]),
                (OpCode::Continuation, false, &b"cd"[..]),
                (OpCode::Continuation, true, &b""[..]),
                (OpCode::Binary, true, &b"after"[..]),
            ]
        );
    }

    #[test]
    fn a_close_ends_a_message_sent_in_fragments() {
        let mut p = open();
        p.send_fragment(false, b"half", false, true).unwrap();
        p.send_close(Some(1011), "error in fragmented message")
            .unwrap();
        assert!(!p.sending_fragments());
        assert!(matches!(
            p.send_fragment(false, b"rest", true, true),
            Err(Error::Closed(_))
        ));
    }
}

#[test]
fn streamed_payload_is_masked_in_parts_and_frames_queued_meanwhile_follow_it() {
    let mut p = open();
    let payload: Vec<u8> = (0..STREAM_PAYLOAD as u32 + 1001)
        .map(|i| (i * 31 + 7) as u8)
        .collect();
    p.send_text("first", true).unwrap();
    assert!(p.send_streamed(false, &payload, true).unwrap());
    assert_eq!(p.streamed_left(), payload.len());
    // A ping answered and a close queued while the payload streams wait behind it.
    p.receive_data(&frame(9, true, b"hi"), 0.0).unwrap();
    assert_eq!(events(&mut p).unwrap(), vec![Ev::Ping(b"hi".to_vec())]);
    p.send_close(Some(1000), "").unwrap();
    // Nothing streams before what was queued ahead of the payload is taken.
    let mut part = [0u8; 4096];
    assert_eq!(p.write_streamed(&payload, &mut part), 0);
    let mut out = take(&mut p);
    // The wrong payload writes nothing either.
    assert_eq!(p.write_streamed(&payload[1..], &mut part), 0);
    while p.streamed_left() > 0 {
        let n = p.write_streamed(&payload, &mut part[..4093]);
        out.extend_from_slice(&part[..n]);
    }
    out.extend(take(&mut p));
    let mut close = Vec::new();
    close.extend_from_slice(&1000u16.to_be_bytes());
    assert_eq!(
        client_frames(&out),
        vec![
            (OpCode::Text, true, b"first".to_vec()),
            (OpCode::Binary, true, payload.clone()),
            (OpCode::Pong, true, b"hi".to_vec()),
            (OpCode::Close, true, close),
        ]
    );
    // A short payload, or one while another streams, is queued the usual way.
    let mut p = open();
    assert!(!p.send_streamed(true, b"short", true).unwrap());
    assert!(p.send_streamed(false, &payload, true).unwrap());
    assert!(!p.send_streamed(false, &payload, true).unwrap());
    assert_eq!(p.pending_output(), 11 + 2 * (payload.len() + 14));
}

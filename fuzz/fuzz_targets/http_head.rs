//! The HTTP response head parser and the upgrade validation, on arbitrary bytes in arbitrary
//! splits.
//!
//! Invariants: polling growing prefixes finds the same head at the same offset as one poll of
//! the whole (and fails when the whole fails, never on a prefix of a good head); a head ends
//! with a line feed, within `MAX_HEADER_BYTES`, with at most `MAX_HEADERS` token-named
//! headers whose values hold no line feed; an accepted upgrade is a 101 with `Upgrade:
//! websocket`, a `Connection` naming upgrade, the right `Sec-WebSocket-Accept`, a subprotocol
//! that was offered and window bits in 8..=15; validation is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_ws::handshake::{accept_key, validate_response, ClientHandshake};
use sigil_ws::http::{is_token, HeadReader, MAX_HEADERS, MAX_HEADER_BYTES};
use sigil_ws_fuzz::{splits, Input};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.byte();
    let cuts = input.bytes(usize::from(mode >> 4));
    let fuzzed = input.rest();
    let buf: Vec<u8> = if mode & 1 == 0 {
        fuzzed.to_vec()
    } else {
        // A valid upgrade with fuzzed header lines after the required ones: reaches the
        // validation of extensions and subprotocols.
        let mut b = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            accept_key(KEY)
        )
        .into_bytes();
        b.extend_from_slice(fuzzed);
        b.extend_from_slice(b"\r\n\r\n");
        b
    };

    let whole = HeadReader::new().poll(&buf);
    let mut reader = HeadReader::new();
    let mut incremental = Ok(None);
    for (_, end) in splits(buf.len(), cuts) {
        incremental = reader.poll(&buf[..end]);
        match &incremental {
            Ok(None) => {}
            Ok(Some((_, used))) => {
                assert!(*used <= end);
                break;
            }
            Err(_) => break,
        }
    }
    match (&whole, &incremental) {
        (Ok(Some((a, n))), Ok(Some((b, m)))) => {
            assert_eq!((a, n), (b, m), "a split changed the head");
        }
        (Ok(None), Ok(None)) => {}
        (Err(a), Err(b)) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "a split changed the error"
        ),
        (a, b) => panic!("whole {a:?} but in pieces {b:?}"),
    }
    // Polling again with the same bytes gives the same answer.
    assert_eq!(HeadReader::new().poll(&buf), whole);

    if let Ok(Some((response, used))) = &whole {
        assert!(*used <= buf.len().min(MAX_HEADER_BYTES));
        assert_eq!(buf[used - 1], b'\n', "a head that does not end a line");
        assert!(response.headers.len() <= MAX_HEADERS);
        assert!((100..=599).contains(&response.status));
        for (name, value) in &response.headers {
            assert!(is_token(name), "header name {name:?}");
            assert!(!value.contains('\n'), "header value {value:?}");
            assert_eq!(value.trim_matches([' ', '\t']), value);
        }
        let offered = ["chat".to_string(), "superchat".to_string()];
        let body = &buf[*used..];
        let verdict = validate_response(response, KEY, &offered, true, body);
        assert_eq!(
            validate_response(response, KEY, &offered, true, body),
            verdict
        );
        if let Ok(accepted) = &verdict {
            assert_eq!(response.status, 101);
            let upgrade = response.header("Upgrade").map(str::trim);
            assert!(upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")));
            assert!(response
                .header_values("Connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
            let accepts: Vec<&str> = response.header_values("Sec-WebSocket-Accept").collect();
            assert_eq!(accepts.len(), 1);
            assert_eq!(accepts[0].trim(), accept_key(KEY));
            if let Some(p) = &accepted.subprotocol {
                assert!(offered.contains(p), "subprotocol {p:?} was not offered");
            }
            if let Some(params) = accepted.deflate {
                for bits in [params.server_max_window_bits, params.client_max_window_bits]
                    .into_iter()
                    .flatten()
                {
                    assert!((8..=15).contains(&bits), "window bits {bits}");
                }
            }
            // Without the offer of compression, an extension in the answer is refused.
            let plain = validate_response(response, KEY, &offered, false, body);
            if accepted.deflate.is_some() {
                assert!(plain.is_err(), "an unoffered extension accepted");
            }
        }
        // The engine's phase agrees with the pure functions.
        let mut phase = ClientHandshake::new(KEY.into(), offered.to_vec(), true);
        match (phase.receive(&buf, true), &verdict) {
            (Ok(Some((accepted, _, n))), Ok(want)) => {
                assert_eq!((&accepted, n), (want, *used));
            }
            (Err(_), Err(_)) => {}
            (got, want) => panic!("ClientHandshake gave {got:?}, validate_response {want:?}"),
        }
    }
});

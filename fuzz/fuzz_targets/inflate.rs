//! permessage-deflate inflation with a max_size, in arbitrary frame splits.
//!
//! Invariants: arbitrary compressed bytes inflate to the same message however it is split into
//! frames, or fail however it is split (data both too big and invalid may be found to be
//! either first); past the limit the codec fails with `TooBig` and its
//! output never grew past `limit + 1` bytes of the message; below it nothing fails for size;
//! the codec wrapped by src/deflate.rs agrees with zlib-rs called directly: what we inflate
//! zlib-rs inflates to the same bytes, and what it refuses we refuse; what our compressor makes
//! inflates back to the original, message after message, under
//! every context-takeover setting, also in a zlib-rs inflater set to the negotiated
//! client_max_window_bits, as a server's (zlib-rs keeps 32 KiB of window whatever the bits, so
//! the distance bound itself is checked by the unit tests' reference inflater).
#![no_main]

use flate2::{Decompress, FlushDecompress};
use libfuzzer_sys::fuzz_target;
use sigil_ws::deflate::{Deflate, Params};
use sigil_ws::error::DeflateError;
use sigil_ws_fuzz::{splits, Input};

const LIMITS: [Option<usize>; 4] = [Some(0), Some(100), Some(65_536), None];

fn params(bits: u8) -> Params {
    Params {
        server_no_context_takeover: bits & 1 != 0,
        client_no_context_takeover: bits & 2 != 0,
        server_max_window_bits: None,
        client_max_window_bits: if bits & 4 != 0 {
            Some(8 + (bits >> 3) % 8)
        } else {
            None
        },
    }
}

/// Inflates one message fed in the given frames.
fn inflate(
    d: &mut Deflate,
    payload: &[u8],
    frames: &[(usize, usize)],
    limit: Option<usize>,
) -> (Vec<u8>, Result<(), DeflateError>) {
    let mut out = Vec::new();
    d.begin_message();
    for &(a, b) in frames {
        if let Err(e) = d.feed(&payload[a..b], &mut out, limit) {
            return (out, Err(e));
        }
    }
    let r = d.finish(&mut out, limit);
    (out, r)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let config = input.byte();
    let limit = LIMITS[usize::from(config & 3)];
    let p = params(config >> 2);
    let ncuts = usize::from(input.byte() % 16);
    let cuts = input.bytes(ncuts);
    let payload = input.rest();

    // 1. Arbitrary bytes as a compressed message: any split gives the same verdict.
    let mut whole = Deflate::new(p);
    let (a, ra) = inflate(&mut whole, payload, &[(0, payload.len())], limit);
    let mut pieces = Deflate::new(p);
    let (b, rb) = inflate(&mut pieces, payload, &splits(payload.len(), cuts), limit);
    match (&ra, &rb) {
        (Ok(()), Ok(())) => assert_eq!(a, b, "a split changed the inflated message"),
        // Data that is both too big and invalid may be found to be either first, depending on
        // where a frame ends (zlib stops when its output is full): both fail the message.
        (Err(DeflateError::TooBig { .. } | DeflateError::InvalidData { .. }), Err(_)) => {
            assert!(!matches!(rb, Err(DeflateError::Compress { .. })));
        }
        _ => panic!("whole: {ra:?}, in pieces: {rb:?}"),
    }
    for (out, r) in [(&a, &ra), (&b, &rb)] {
        if let Some(limit) = limit {
            assert!(out.capacity() <= limit + 1, "grew to {}", out.capacity());
            match r {
                Err(DeflateError::TooBig { size, .. }) => assert!(*size > limit as u64),
                Ok(()) => assert!(
                    out.len() <= limit,
                    "{} bytes past the limit {limit}",
                    out.len()
                ),
                Err(_) => assert!(out.len() <= limit + 1),
            }
        }
    }

    // 2. Against zlib-rs called directly on the same bytes and the tail (RFC 7692 §7.2.2):
    // the same output. After a block with BFINAL zlib-rs reads nothing more (we go on with the
    // next blocks), so then only its output so far is compared.
    if ra.is_ok() && !payload.is_empty() {
        let mut z = Decompress::new(false);
        let mut input = payload.to_vec();
        input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
        let mut inflated = Vec::with_capacity(a.len() + 64);
        match z.decompress_vec(&input, &mut inflated, FlushDecompress::Sync) {
            Ok(flate2::Status::StreamEnd) => {
                assert!(a.starts_with(&inflated), "zlib-rs inflates to other bytes");
            }
            Ok(_) => assert_eq!(inflated, a, "zlib-rs inflates to other bytes"),
            Err(e) => panic!("we inflated what zlib-rs refuses: {e}"),
        }
    }

    // 3. Our compressor's messages (the payload cut at the split points) inflate back.
    let mut tx = Deflate::new(Params {
        client_no_context_takeover: p.server_no_context_takeover,
        client_max_window_bits: p.client_max_window_bits,
        ..Params::default()
    });
    let mut rx = Deflate::new(p);
    // zlib-rs inflates raw streams with 9..=15 bits of window; 8 is left to the unit tests.
    let mut zlib = p
        .client_max_window_bits
        .filter(|bits| *bits >= 9)
        .map(|bits| Decompress::new_with_window_bits(false, bits));
    for (start, end) in splits(payload.len(), cuts).into_iter().chain([(0, 0)]) {
        let message = &payload[start..end];
        let mut compressed = Vec::new();
        if let Err(e) = tx.compress(&[message], &mut compressed) {
            panic!("compressing {} bytes failed: {e}", message.len());
        }
        let frames = splits(compressed.len(), &[3, 0, 17]);
        let (out, r) = inflate(&mut rx, &compressed, &frames, None);
        assert!(r.is_ok(), "our own message does not inflate: {r:?}");
        assert_eq!(out, message, "a round trip changed the message");
        if let Some(z) = zlib.as_mut() {
            if p.server_no_context_takeover {
                z.reset(false);
            }
            let mut input = compressed.clone();
            input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
            let mut inflated = Vec::with_capacity(message.len() + 64);
            let before = z.total_in();
            let status = z.decompress_vec(&input, &mut inflated, FlushDecompress::Sync);
            assert!(
                status.is_ok(),
                "zlib with the negotiated window refuses: {status:?}"
            );
            assert_eq!(
                z.total_in() - before,
                input.len() as u64,
                "zlib stopped early"
            );
            assert_eq!(
                inflated, message,
                "zlib-rs set to the negotiated window differs"
            );
        }
    }
});

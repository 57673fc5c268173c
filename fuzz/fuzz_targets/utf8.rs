//! The incremental UTF-8 validator against `std::str::from_utf8`, in arbitrary splits.
//!
//! Invariants: fed in any pieces, it accepts exactly what `from_utf8` accepts; it fails no
//! later than the piece that completes the shortest prefix that no continuation can make
//! valid, and never earlier; `reset` gives a fresh validator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_ws::utf8::Utf8Validator;
use sigil_ws_fuzz::{splits, Input};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let ncuts = usize::from(input.byte() % 32);
    let cuts = input.bytes(ncuts);
    let text = input.rest();
    let expected = std::str::from_utf8(text);
    // The shortest prefix that is invalid whatever follows: by then the validator must fail.
    let fails_by = match &expected {
        Ok(_) => None,
        Err(e) => (e.valid_up_to() + 1..=text.len()).find(
            |n| matches!(std::str::from_utf8(&text[..*n]), Err(e) if e.error_len().is_some()),
        ),
    };
    let mut v = Utf8Validator::new();
    // Garbage first, then reset: the state must not leak into the message.
    let _ = v.feed(&[0xf0, 0x9f]);
    v.reset();
    let mut failed_at = None;
    for (start, end) in splits(text.len(), cuts) {
        if v.feed(&text[start..end]).is_err() {
            failed_at = Some((start, end));
            break;
        }
        if let Some(by) = fails_by {
            // An error the input already shows must be reported within this piece.
            assert!(
                end < by,
                "accepted {end} bytes of {text:?}, invalid by byte {by}"
            );
        }
    }
    let verdict = match failed_at {
        Some((_, end)) => {
            // Failing early is wrong: a prefix that may still become valid is not an error.
            assert!(expected.is_err(), "rejected valid UTF-8 {text:?}");
            let by = fails_by.unwrap_or(usize::MAX);
            assert!(
                end >= by,
                "failed after {end} bytes, invalid only by {by}: {text:?}"
            );
            Err(())
        }
        None => v.finish().map_err(|_| ()),
    };
    assert_eq!(verdict.is_ok(), expected.is_ok(), "{text:?}");
});

//! Frame header decoding and encoding.
//!
//! Invariants: a decoded header is re-encoded (with its payload) and decodes to the same
//! header; no prefix of a header decodes; an encoded frame decodes to its opcode, FIN, mask and
//! length, and unmasking gives the payload back; lengths use the shortest form; the 64-bit
//! length has its top bit clear.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_ws::frame::{decode_header, encode_frame, OpCode, MAX_HEADER_LEN};
use sigil_ws::mask::apply_mask;
use sigil_ws_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    // 1. Arbitrary bytes as a header.
    if let Ok(Some((header, len))) = decode_header(data) {
        assert!((2..=MAX_HEADER_LEN).contains(&len));
        assert!(header.payload_len >> 63 == 0);
        assert!(header.rsv <= 7);
        for short in 0..len {
            assert_eq!(
                decode_header(&data[..short]),
                Ok(None),
                "a prefix of {short} decoded"
            );
        }
        // Any bytes after the header do not change it.
        let mut longer = data[..len].to_vec();
        longer.extend_from_slice(b"trailing");
        assert_eq!(decode_header(&longer), Ok(Some((header, len))));
        if header.payload_len <= 70_000 && header.rsv == 0 {
            let payload = vec![0x5a; header.payload_len as usize];
            let mut out = Vec::new();
            encode_frame(
                &mut out,
                header.opcode,
                header.fin,
                &[&payload],
                header.mask,
            );
            match decode_header(&out) {
                Ok(Some((again, n))) => {
                    assert_eq!(again, header);
                    assert!(n <= len, "re-encoding used a longer header");
                    assert_eq!(out.len(), n + payload.len());
                }
                other => panic!("re-encoded header does not decode: {other:?}"),
            }
        }
    } else if decode_header(data).is_err() {
        // An error is final: more bytes do not turn it into a header.
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0; 16]);
        assert!(decode_header(&longer).is_err());
    }

    // 2. An encoded frame from fuzzed fields, payload split in parts.
    let mut input = Input::new(data);
    let b = input.byte();
    let Ok(opcode) = OpCode::from_u8(b & 0x0f) else {
        return;
    };
    let fin = b & 0x80 != 0;
    let mask = if b & 0x40 != 0 {
        Some([input.byte(), input.byte(), input.byte(), input.byte()])
    } else {
        None
    };
    let split = usize::from(input.byte());
    let mut payload = input.rest().to_vec();
    if input.is_empty() && b & 0x20 != 0 {
        // Reach the 16- and 64-bit length forms.
        payload.resize(if b & 0x10 != 0 { 65_536 + 3 } else { 300 }, 7);
    }
    let (a, c) = payload.split_at(split.min(payload.len()));
    let mut out = vec![0xee; 3];
    encode_frame(&mut out, opcode, fin, &[a, c], mask);
    let frame = &out[3..];
    let (header, len) = match decode_header(frame) {
        Ok(Some(h)) => h,
        other => panic!("an encoded frame does not decode: {other:?}"),
    };
    assert_eq!(
        (
            header.opcode,
            header.fin,
            header.mask,
            header.payload_len,
            header.rsv
        ),
        (opcode, fin, mask, payload.len() as u64, 0)
    );
    let shortest = match payload.len() {
        n if n < 126 => 2,
        n if n <= 0xffff => 4,
        _ => 10,
    } + if mask.is_some() { 4 } else { 0 };
    assert_eq!(len, shortest);
    let mut body = frame[len..].to_vec();
    if let Some(key) = mask {
        apply_mask(&mut body, key, 0);
    }
    assert_eq!(body, payload);
});

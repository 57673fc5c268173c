//! Client-to-server masking (RFC 6455 §5.3); the keys come from `random.rs`.

/// The key stream from byte `offset` on: its next four bytes, and them twice as a word.
#[inline(always)]
fn key_stream(key: [u8; 4], offset: usize) -> ([u8; 4], u64) {
    let mut rotated = [0u8; 4];
    for (i, slot) in rotated.iter_mut().enumerate() {
        *slot = key[(offset + i) % 4];
    }
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    (rotated, word)
}

/// XORs `data` with `key`, starting at byte `offset` of the key stream.
///
/// Works a machine word (8 bytes) at a time in safe code.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let (rotated, word) = key_stream(key, offset);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= rotated[i % 4];
    }
}

/// Appends `src` masked with `key` to `dst`: one pass, no intermediate copy. The masked
/// words are written straight into `dst`'s spare capacity (a copy followed by an in-place XOR
/// would read and write a large payload twice).
pub fn extend_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    let start = dst.len();
    let len = src.len();
    dst.reserve(len);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let Some(spare) = dst.spare_capacity_mut().get_mut(..len) else {
        return; // unreachable: `reserve(len)` made room for `len` more bytes
    };
    let mut out = spare.chunks_exact_mut(8);
    let mut data = src.chunks_exact(8);
    for (o, d) in (&mut out).zip(&mut data) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(d);
        let masked = (u64::from_ne_bytes(bytes) ^ word).to_ne_bytes();
        for (o, m) in o.iter_mut().zip(masked) {
            *o = std::mem::MaybeUninit::new(m);
        }
    }
    // Whole words keep the key stream aligned: the tail starts at key byte 0.
    for (i, (o, d)) in out
        .into_remainder()
        .iter_mut()
        .zip(data.remainder())
        .enumerate()
    {
        *o = std::mem::MaybeUninit::new(d ^ key[i % 4]);
    }
    // SAFETY: `spare` (the first `len` bytes of spare capacity) was written in full above:
    // the whole 8-byte chunks by the first loop, the remainder (`len % 8` bytes, matched by
    // `data.remainder()`) by the second; so `start + len` bytes are initialised, within the
    // capacity that `reserve(len)` guaranteed.
    #[allow(unsafe_code)]
    unsafe {
        dst.set_len(start + len);
    }
}

/// Copies `src` into `dst` (of the same length) masked with `key`, starting at byte `offset` of
/// the key stream: one pass, for a payload masked part by part as it is written.
pub fn copy_masked(dst: &mut [u8], src: &[u8], key: [u8; 4], offset: usize) {
    let (rotated, word) = key_stream(key, offset);
    let mut out = dst.chunks_exact_mut(8);
    let mut data = src.chunks_exact(8);
    for (o, d) in (&mut out).zip(&mut data) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(d);
        o.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, (o, d)) in out
        .into_remainder()
        .iter_mut()
        .zip(data.remainder())
        .enumerate()
    {
        *o = d ^ rotated[i % 4];
    }
}

/// The byte-at-a-time definition of masking, kept as the reference for tests.
pub fn apply_mask_bytewise(data: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn matches_bytewise_at_every_alignment_and_offset() {
        let source: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let key = [0xde, 0xad, 0xbe, 0xef];
        for start in 0..16 {
            for len in [0, 1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200] {
                for offset in 0..4 {
                    let mut fast = source[start..start + len].to_vec();
                    let mut slow = fast.clone();
                    apply_mask(&mut fast, key, offset);
                    apply_mask_bytewise(&mut slow, key, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn extend_masked_appends_after_what_is_there() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let mut out = b"head".to_vec();
            extend_masked(&mut out, &data, key);
            let mut expected = data.clone();
            apply_mask_bytewise(&mut expected, key, 0);
            assert_eq!(&out[..4], b"head");
            assert_eq!(&out[4..], &expected[..], "len {len}");
        }
    }

    #[test]
    fn copy_masked_matches_bytewise_at_every_offset() {
        let key = [0x9a, 0x0b, 0x7c, 0xe1];
        let source: Vec<u8> = (0..100u32).map(|i| (i * 13 + 5) as u8).collect();
        for len in [0, 1, 5, 8, 9, 31, 64, 100] {
            for offset in 0..9 {
                let mut fast = vec![0u8; len];
                copy_masked(&mut fast, &source[..len], key, offset);
                let mut slow = source[..len].to_vec();
                apply_mask_bytewise(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    proptest! {
        #[test]
        fn mask_is_an_involution(data in proptest::collection::vec(any::<u8>(), 0..512), key in any::<[u8; 4]>()) {
            let mut masked = Vec::new();
            extend_masked(&mut masked, &data, key);
            let mut slow = data.clone();
            apply_mask_bytewise(&mut slow, key, 0);
            prop_assert_eq!(&masked, &slow);
            apply_mask(&mut masked, key, 0);
            prop_assert_eq!(masked, data);
        }
    }
}

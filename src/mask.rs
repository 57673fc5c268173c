//! Client-to-server masking (RFC 6455 §5.3); the keys come from `random.rs`.

/// XORs `data` with `key`, starting at byte `offset` of the key stream.
///
/// Works a machine word (8 bytes) at a time in safe code.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let mut rotated = [0u8; 4];
    for (i, slot) in rotated.iter_mut().enumerate() {
        *slot = key[(offset + i) % 4];
    }
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
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

/// Appends `src` masked with `key` to `dst`: one pass, no intermediate copy.
pub fn extend_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    let start = dst.len();
    dst.extend_from_slice(src);
    if let Some(tail) = dst.get_mut(start..) {
        apply_mask(tail, key, 0);
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

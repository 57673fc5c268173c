//! Incremental UTF-8 validation across frames and partial reads (RFC 6455 §8.1).
//!
//! RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds that the
//! byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
//! Connection_." The validator fails on the first byte that cannot start or continue a valid
//! sequence, so a bad message is refused before the rest of it arrives.

/// The input is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates a text message chunk by chunk, keeping an unfinished code point between chunks.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: usize,
}

/// Length of the sequence that `lead` starts, or `None` when it cannot start one.
fn sequence_len(lead: u8) -> Option<usize> {
    match lead {
        0x00..=0x7f => Some(1),
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

/// Checks a chunk; `Ok(tail)` gives how many trailing bytes are an unfinished but so far valid
/// sequence.
fn check_chunk(chunk: &[u8]) -> Result<usize, InvalidUtf8> {
    match std::str::from_utf8(chunk) {
        Ok(_) => Ok(0),
        // `error_len() == None`: the input ended inside a sequence that may still be completed.
        Err(e) if e.error_len().is_none() => Ok(chunk.len() - e.valid_up_to()),
        Err(_) => Err(InvalidUtf8),
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next chunk of the message.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let need = sequence_len(self.pending[0]).ok_or(InvalidUtf8)?;
            let take = (need - self.pending_len).min(chunk.len());
            let mut seq = [0u8; 4];
            seq[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
            seq[self.pending_len..self.pending_len + take].copy_from_slice(&chunk[..take]);
            let have = self.pending_len + take;
            let tail = check_chunk(&seq[..have])?;
            if tail > 0 {
                // Still unfinished: the whole chunk was consumed into the pending sequence.
                self.pending = seq;
                self.pending_len = have;
                return Ok(());
            }
            self.pending_len = 0;
            chunk = &chunk[take..];
        }
        let tail = check_chunk(chunk)?;
        self.pending[..tail].copy_from_slice(&chunk[chunk.len() - tail..]);
        self.pending_len = tail;
        Ok(())
    }

    /// Ends the message: an unfinished sequence is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let unfinished = self.pending_len > 0;
        self.pending_len = 0;
        if unfinished {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }

    /// Bytes of an unfinished character at the end of what was fed so far.
    pub fn pending_len(&self) -> usize {
        self.pending_len
    }

    /// Forgets any state, for the next message.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunked(data: &[u8], sizes: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len()).max(1);
            v.feed(&rest[..n])?;
            rest = &rest[n..];
            i += 1;
        }
        v.finish()
    }

    #[test]
    fn valid_text_split_anywhere() {
        let text = "κόσμε a€𝄞 ascii \u{10ffff}".as_bytes();
        for size in 1..8 {
            assert_eq!(chunked(text, &[size]), Ok(()), "size {size}");
        }
    }

    #[test]
    fn fails_fast_mid_message() {
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        // 0xed 0xa0 0x80 is a UTF-16 surrogate: invalid as soon as 0xa0 arrives.
        v.feed(&[0xce, 0xb5, 0xed]).unwrap();
        assert_eq!(v.feed(&[0xa0]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[b'a', 0xff]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        v.feed(&[0xf4]).unwrap();
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8), "above U+10FFFF");
    }

    #[test]
    fn unfinished_sequence_fails_at_finish() {
        let mut v = Utf8Validator::new();
        v.feed(&[b'a', 0xe2, 0x82]).unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2]).unwrap();
        v.feed(&[0x82]).unwrap();
        v.feed(&[0xac]).unwrap();
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn overlong_and_invalid_leads() {
        for bad in [
            &[0xc0u8, 0x80][..],
            &[0xe0, 0x80, 0x80],
            &[0x80],
            &[0xf5, 0x80, 0x80, 0x80],
        ] {
            assert_eq!(chunked(bad, &[1]), Err(InvalidUtf8), "{bad:?}");
            assert_eq!(chunked(bad, &[4]), Err(InvalidUtf8), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_std(data in proptest::collection::vec(any::<u8>(), 0..64), sizes in proptest::collection::vec(1usize..6, 1..4)) {
            let expected = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(chunked(&data, &sizes).is_ok(), expected);
        }

        #[test]
        fn valid_strings_pass(s in "\\PC*", sizes in proptest::collection::vec(1usize..6, 1..4)) {
            prop_assert_eq!(chunked(s.as_bytes(), &sizes), Ok(()));
        }
    }
}

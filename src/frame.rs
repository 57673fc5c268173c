//! Frame headers, opcodes and close codes (RFC 6455 §5.2, §7.4).

use crate::error::ProtocolError;
use crate::mask::extend_masked;

/// A frame's opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: a later fragment of a message.
    Continuation,
    /// 0x1: a text message (UTF-8).
    Text,
    /// 0x2: a binary message.
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a ping.
    Ping,
    /// 0xA: a pong.
    Pong,
}

impl OpCode {
    /// Decodes the low nibble of the first header byte.
    pub fn from_u8(value: u8) -> Result<OpCode, ProtocolError> {
        Ok(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            // RFC 6455 §5.2: "If an unknown opcode is received, the receiving endpoint MUST
            // _Fail the WebSocket Connection_."
            opcode => return Err(ProtocolError::ReservedOpcode { opcode }),
        })
    }

    /// The opcode's wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: the last frame of a message.
    pub fin: bool,
    /// RSV1..RSV3 as the three low bits.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length as declared.
    pub payload_len: u64,
}

/// Largest header: 2 bytes, 8 bytes of extended length, 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Decodes a header from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` is too short (nothing is consumed), or the header and its
/// length in bytes.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x07;
    let opcode = OpCode::from_u8(b0 & 0x0f)?;
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut pos) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut word = [0u8; 8];
                word.copy_from_slice(b);
                let len = u64::from_be_bytes(word);
                // RFC 6455 §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength { len });
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        match buf.get(pos..pos + 4) {
            Some(b) => {
                pos += 4;
                Some([b[0], b[1], b[2], b[3]])
            }
            None => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some((
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        },
        pos,
    )))
}

/// Appends a frame header to `out`: FIN, RSV1 when `rsv1` (a compressed message, RFC 7692 §6),
/// the opcode, a payload length of `len`, and the masking key when given.
#[inline(always)]
pub fn encode_header(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    len: usize,
    mask: Option<[u8; 4]>,
) {
    out.push(u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode.as_u8());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        // `len < 126` fits in the 7-bit field.
        out.push(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// Appends a complete frame to `out`: header, then the payload masked with `mask` when given.
///
/// `payload` is the concatenation of `parts` (so a close code and reason are framed without
/// first joining them).
pub fn encode_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    parts: &[&[u8]],
    mask: Option<[u8; 4]>,
) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(MAX_HEADER_LEN + len);
    encode_header(out, opcode, fin, false, len, mask);
    match mask {
        Some(key) => {
            let mut offset = 0;
            for part in parts {
                // Each part continues the key stream where the previous one stopped.
                let rotated = [
                    key[offset % 4],
                    key[(offset + 1) % 4],
                    key[(offset + 2) % 4],
                    key[(offset + 3) % 4],
                ];
                extend_masked(out, part, rotated);
                offset += part.len();
            }
        }
        None => {
            for part in parts {
                out.extend_from_slice(part);
            }
        }
    }
}

/// Close codes a peer may send (RFC 6455 §7.4.1, §7.4.2 and the IANA registry).
///
/// 1004, 1005, 1006 and 1015 are reserved and "MUST NOT be set as a status code in a Close
/// control frame by an endpoint" (§7.4.1); 0–999 and unassigned 1xxx codes are not valid.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_5_7_examples() {
        // A single-frame unmasked text message.
        let (h, n) = decode_header(&[0x81, 0x05, b'H', b'e']).unwrap().unwrap();
        assert_eq!(n, 2);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.mask, None);
        // A single-frame masked text message.
        let buf = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = decode_header(&buf).unwrap().unwrap();
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            OpCode::Text,
            true,
            &[b"Hello"],
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        assert_eq!(out, buf);
        // 256 bytes binary message in a single unmasked frame.
        let (h, n) = decode_header(&[0x82, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        // 64KiB binary message in a single unmasked frame.
        let buf = [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        let (h, n) = decode_header(&buf).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn short_buffers_need_more() {
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            OpCode::Binary,
            true,
            &[&[0u8; 70000]],
            Some([1, 2, 3, 4]),
        );
        for cut in 0..14 {
            assert_eq!(decode_header(&out[..cut]).unwrap(), None, "cut {cut}");
        }
        assert!(decode_header(&out[..14]).unwrap().is_some());
    }

    #[test]
    fn length_encodings_round_trip() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 100_000] {
            let payload = vec![7u8; len];
            let mut out = Vec::new();
            encode_frame(&mut out, OpCode::Binary, false, &[&payload], None);
            let (h, n) = decode_header(&out).unwrap().unwrap();
            assert_eq!(h.payload_len, len as u64);
            assert!(!h.fin);
            assert_eq!(out.len() - n, len);
        }
    }

    #[test]
    fn parts_share_one_key_stream() {
        let key = [9, 8, 7, 6];
        let mut joined = Vec::new();
        encode_frame(
            &mut joined,
            OpCode::Close,
            true,
            &[b"\x03\xe8abcdefg"],
            Some(key),
        );
        let mut split = Vec::new();
        encode_frame(
            &mut split,
            OpCode::Close,
            true,
            &[b"\x03\xe8a", b"bcdefg"],
            Some(key),
        );
        assert_eq!(joined, split);
    }

    #[test]
    fn rejects_reserved_opcodes_and_msb() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                decode_header(&[0x80 | op, 0]),
                Err(ProtocolError::ReservedOpcode { opcode: op })
            );
        }
        let buf = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            decode_header(&buf),
            Err(ProtocolError::InvalidLength { .. })
        ));
    }

    #[test]
    fn close_codes() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }
}

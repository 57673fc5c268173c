//! permessage-deflate (RFC 7692) for the benchmark server and the native inflate floor.
//!
//! Context takeover in both directions and 15-bit windows, what websockets and most servers
//! negotiate by default; zlib's default level 6 for what the server compresses.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Every compressed message ends with this sync-flush tail, removed by the sender (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The first permessage-deflate offer of a request's Sec-WebSocket-Extensions value, if any.
pub fn offer(value: &str) -> Option<&str> {
    value
        .split(',')
        .find(|ext| ext.split(';').next().map(str::trim) == Some("permessage-deflate"))
}

/// Whether an offer asks for server_no_context_takeover (RFC 7692 §7.1.1.1: a server accepts
/// it by including the parameter in its response, and then compresses every message on its
/// own).
pub fn asks_server_no_context_takeover(offer: &str) -> bool {
    offer
        .split(';')
        .skip(1)
        .any(|param| param.trim() == "server_no_context_takeover")
}

pub struct Deflater(Compress);

impl Deflater {
    pub fn new() -> Deflater {
        Deflater(Compress::new(Compression::new(6), false))
    }

    /// Appends the compressed payload of `message` (tail removed) to `out`.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.reserve(message.len() / 2 + 64);
        let mut input = message;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.0.total_in();
            self.0.compress_vec(input, out, FlushCompress::Sync)?;
            input = &input[(self.0.total_in() - before) as usize..];
            // The flush is complete once it leaves output space unused.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if !out[start..].ends_with(&TAIL) {
            return Err("sync flush did not end with 00 00 ff ff".into());
        }
        out.truncate(out.len() - TAIL.len());
        Ok(())
    }

    /// Forgets the window: the next message refers to nothing before it.
    pub fn reset(&mut self) {
        self.0.reset();
    }
}

pub struct Inflater(Decompress);

impl Inflater {
    pub fn new() -> Inflater {
        Inflater(Decompress::new(false))
    }

    /// Replaces `out` with the inflated message whose compressed payload is `payload`.
    pub fn inflate(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        for mut input in [payload, &TAIL[..]] {
            loop {
                if out.capacity() - out.len() < 1024 {
                    out.reserve(out.capacity().max(4096));
                }
                let before = self.0.total_in();
                let status = self.0.decompress_vec(input, out, FlushDecompress::Sync)?;
                input = &input[(self.0.total_in() - before) as usize..];
                if status == Status::StreamEnd {
                    return Err("unexpected end of the deflate stream".into());
                }
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// A JSON-like market-data message of exactly `size` bytes: trade records with a random-walk
/// price, random quantities and growing ids and timestamps, padded with spaces. The shape
/// compresses about 5x at 1 KiB (6x at 16 KiB) with a 32 KiB window (what a real feed of this kind gives).
pub fn market_message(rng: &mut u64, seq: u64, size: usize) -> Vec<u8> {
    let mut out = format!("{{\"stream\":\"btcusdt@trade\",\"seq\":{seq},\"data\":[").into_bytes();
    let mut first = true;
    loop {
        let r = next(rng);
        let id = 3_000_000_000 + seq * 16 + (r & 15);
        let record = format!(
            "{}{{\"e\":\"trade\",\"E\":{},\"s\":\"BTCUSDT\",\"t\":{},\"p\":\"{}.{:02}\",\
             \"q\":\"0.{:08}\",\"b\":{},\"T\":{},\"m\":{}}}",
            if first { "" } else { "," },
            1_764_000_000_000 + seq * 7,
            id,
            43_000 + (r >> 8) % 400,
            (r >> 20) % 100,
            (r >> 28) % 100_000_000,
            9_000_000_000 + r.wrapping_mul(7919) % 999_999_999,
            1_764_000_000_000 + seq * 7 - (r >> 60),
            if r & 1 == 1 { "true" } else { "false" },
        );
        if out.len() + record.len() + 2 > size {
            break;
        }
        out.extend_from_slice(record.as_bytes());
        first = false;
    }
    out.extend_from_slice(b"]}");
    out.resize(size.max(out.len()), b' ');
    out
}

/// xorshift64*: a small deterministic generator, so every run sends the same messages.
pub fn next(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_deflate_offer_and_its_context_parameter() {
        // websocket-rs 0.7.10's offer.
        let rs = "permessage-deflate; client_no_context_takeover; server_no_context_takeover";
        assert!(offer(rs).is_some_and(asks_server_no_context_takeover));
        // websockets' offer: the server keeps its window.
        let ws = "permessage-deflate; client_max_window_bits";
        assert!(offer(ws).is_some_and(|o| !asks_server_no_context_takeover(o)));
        // Only the first permessage-deflate offer counts; other extensions are skipped.
        let two = "x-foo; server_no_context_takeover, permessage-deflate, \
                   permessage-deflate; server_no_context_takeover";
        assert!(offer(two).is_some_and(|o| !asks_server_no_context_takeover(o)));
        assert_eq!(offer("x-webkit-deflate-frame"), None);
    }

    #[test]
    fn round_trip_with_context_takeover() {
        let (mut d, mut i) = (Deflater::new(), Inflater::new());
        let mut rng = 0x9e37_79b9_7f4a_7c15;
        let (mut raw, mut packed, mut back) = (0, 0, Vec::new());
        for seq in 0..200 {
            let m = market_message(&mut rng, seq, 1024);
            assert_eq!(m.len(), 1024);
            let mut c = Vec::new();
            d.compress(&m, &mut c).unwrap();
            i.inflate(&c, &mut back).unwrap();
            assert_eq!(back, m);
            raw += m.len();
            packed += c.len();
        }
        let ratio = raw as f64 / packed as f64;
        assert!((4.5..5.5).contains(&ratio), "ratio {ratio}");
    }
}

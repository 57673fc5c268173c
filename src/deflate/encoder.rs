//! Our DEFLATE compressor (RFC 1951): greedy LZ77 with one hash probe per position, coded in one
//! block with the fixed Huffman codes (§3.2.6), or as stored blocks (§3.2.4) when that is
//! shorter. It writes exactly the payload RFC 7692 §7.2.1 asks for: the message's blocks, then
//! the header of the empty stored block a sync flush ends with, padded to a byte, without its
//! four length octets.
//!
//! Why our own and not zlib's level 1, which codes the same way: zlib keeps a hash table of 2^16
//! window offsets (zlib-rs whatever memLevel says) and slides all of it each time its window
//! fills, so with a 9-bit window (Autobahn 13.3, 13.5) it rewrites 128 KiB of table every 256
//! bytes of input and costs twice what a 15-bit window does. Here the table (2^14 slots, of
//! which a window uses two per byte) is only a hint: it holds the low 16 bits of positions in
//! the history, a candidate is taken only when it lies in the history, within the window, and
//! its bytes are compared, so a stale or wrong hint costs a missed match, never a wrong one.
//! Nothing slides, a reset clears the history only, and a window of 8 bits is honoured exactly
//! instead of being rounded up to zlib's 9.
//!
//! RFC 7692 §7.1.2.2: the server inflates our messages with a window of 2^client_max_window_bits
//! bytes, so no distance here exceeds `window` (checked where a match is taken).

use super::{DISTANCE_BASE, DISTANCE_EXTRA, LENGTH_BASE, LENGTH_EXTRA};
/// The shortest match we take: a 4-byte hash finds it, and a 3-byte match saves nothing in the
/// fixed codes once its distance is past a few hundred bytes.
const MIN_MATCH: usize = 4;

/// The longest match DEFLATE can code (RFC 1951 §3.2.5: lengths 3..258).
const MAX_MATCH: usize = 258;

/// The hash table's size: two slots per byte of the largest window (2^15). Every window uses
/// all of it: a smaller window leaves more hints stale (each is checked), but a constant size
/// lets the hash be a multiply and a shift by a constant.
const TABLE_SLOTS: usize = 1 << 14;

/// A 4-byte hash's shift: the top 14 bits of the product index the table.
const HASH_SHIFT: u32 = 32 - TABLE_SLOTS.trailing_zeros();

/// Input is appended to the history and coded this much at a time, so the history never holds
/// more than the window plus two chunks, whatever the size of a message.
const CHUNK: usize = 32 * 1024;

/// A stored block holds at most 65,535 bytes (RFC 1951 §3.2.4: LEN is 16 bits).
const STORED_MAX: usize = 65_535;

/// The history drops its oldest bytes this many at a time, so that the positions the table
/// holds modulo 2^16 keep their meaning.
const DROP: usize = 1 << 16;

/// The fixed literal/length code of RFC 1951 §3.2.6, bit-reversed for an LSB-first writer
/// (Huffman codes are "packed starting with the most-significant bit of the code"):
///
/// ```text
/// Lit Value    Bits        Codes
/// 0 - 143       8          00110000 through 10111111
/// 144 - 255     9          110010000 through 111111111
/// 256 - 279     7          0000000 through 0010111
/// 280 - 287     8          11000000 through 11000111
/// ```
const fn fixed_code(symbol: u32) -> (u32, u32) {
    let (code, len) = match symbol {
        0..=143 => (0x30 + symbol, 8),
        144..=255 => (0x190 + symbol - 144, 9),
        256..=279 => (symbol - 256, 7),
        _ => (0xc0 + symbol - 280, 8),
    };
    (reverse(code, len), len)
}

/// The low `len` bits of `code` in reverse order.
const fn reverse(code: u32, len: u32) -> u32 {
    let mut out = 0;
    let mut i = 0;
    while i < len {
        out |= ((code >> i) & 1) << (len - 1 - i);
        i += 1;
    }
    out
}

/// A code and its length in bits, ready for the bit writer.
#[derive(Clone, Copy)]
struct Code {
    bits: u32,
    len: u32,
}

/// The 256 literals' codes.
const LITERALS: [Code; 256] = {
    let mut t = [Code { bits: 0, len: 0 }; 256];
    let mut i = 0;
    while i < 256 {
        let (bits, len) = fixed_code(i as u32);
        t[i] = Code { bits, len };
        i += 1;
    }
    t
};

/// End of block, symbol 256 (seven zero bits).
const END_OF_BLOCK: Code = {
    let (bits, len) = fixed_code(256);
    Code { bits, len }
};

/// Every match length 3..=258 (indexed up to 511, so that `len & 511` needs no bounds check) as one code: the length symbol's fixed code followed by
/// its extra bits (at most 8 + 5 bits).
const LENGTHS: [Code; 512] = {
    let mut t = [Code { bits: 0, len: 0 }; 512];
    let mut sym = 0;
    while sym < 29 {
        let (bits, len) = fixed_code(257 + sym as u32);
        let last = if sym == 28 {
            258
        } else {
            LENGTH_BASE[sym + 1] - 1
        };
        // Symbol 284 covers 227..=257 only: 258 has its own, 285 (RFC 1951 §3.2.5).
        let mut length = LENGTH_BASE[sym];
        while length <= last {
            let extra = length - LENGTH_BASE[sym];
            t[length as usize] = Code {
                bits: bits | (extra << len),
                len: len + LENGTH_EXTRA[sym],
            };
            length += 1;
        }
        sym += 1;
    }
    t
};

/// The distance code of `distance - 1`: direct for 0..256, then by `(distance - 1) >> 7` (every
/// code from 16 on spans a multiple of 128 distances).
const DISTANCE_CODE: [u8; 512] = {
    let mut t = [0u8; 512];
    let mut code = 0;
    while code < 30 {
        let first = DISTANCE_BASE[code] - 1;
        let last = first + (1 << DISTANCE_EXTRA[code]) - 1;
        let mut d = first;
        while d <= last {
            if d < 256 {
                t[d as usize] = code as u8;
            } else {
                t[256 + (d >> 7) as usize] = code as u8;
            }
            d += 1;
        }
        code += 1;
    }
    t
};

/// Distance codes are five fixed bits (RFC 1951 §3.2.6), reversed like every Huffman code.
const DISTANCE_BITS: [u32; 30] = {
    let mut t = [0; 30];
    let mut i = 0;
    while i < 30 {
        t[i] = reverse(i as u32, 5);
        i += 1;
    }
    t
};

/// The code of a distance 1..=32768, its extra bits included (at most 5 + 13 bits).
#[inline(always)]
fn distance_code(distance: usize) -> Code {
    let d = distance - 1;
    let index = if d < 256 { d } else { 256 + (d >> 7) };
    let code = usize::from(DISTANCE_CODE[index & 511]) & 31;
    let (bits, base, extra) = DISTANCES[code];
    Code {
        bits: bits | ((d as u32 + 1 - base) << 5),
        len: 5 + extra,
    }
}

/// Per distance code (32 entries, so that `code & 31` needs no bounds check): its five fixed
/// bits reversed (RFC 1951 §3.2.6), base distance and number of extra bits.
const DISTANCES: [(u32, u32, u32); 32] = {
    let mut t = [(0, 1, 0); 32];
    let mut i = 0;
    while i < 30 {
        t[i] = (DISTANCE_BITS[i], DISTANCE_BASE[i], DISTANCE_EXTRA[i]);
        i += 1;
    }
    t
};

/// The bit writer (RFC 1951 §3.1.1: least significant bit first) over `out`, which is zero-filled
/// ahead of `pos` by [`Bits::room`]: each code is stored as 8 bytes at once and `pos` moves past
/// the whole bytes, so writing costs no branch.
struct Bits {
    /// Bits not yet in whole bytes at `pos` (fewer than 8 between calls).
    buf: u64,
    len: u32,
    pos: usize,
}

impl Bits {
    /// Makes sure `out` holds 8 + `bytes` bytes from `pos`, so that codes of `8 * bytes` bits in
    /// all can follow without a check that fails.
    fn room(&self, out: &mut Vec<u8>, bytes: usize) {
        let need = self.pos + bytes + 8;
        if out.len() < need {
            out.resize(need, 0);
        }
    }

    /// Adds a code of at most 32 bits (with `len < 8` before, at most 39 are pending).
    #[inline(always)]
    fn put(&mut self, code: Code, out: &mut [u8]) {
        self.add(code);
        // `room` left 8 bytes past every position that the codes announced to it can reach.
        if let Some(dst) = out.get_mut(self.pos..self.pos + 8) {
            dst.copy_from_slice(&self.buf.to_le_bytes());
        }
        self.advance();
    }

    /// [`Bits::put`] without the bounds check, for the compressor's inner loop (the check was 5
    /// of its instructions per input position).
    ///
    /// # Safety
    ///
    /// `self.pos + 8 <= out.len()`.
    #[inline(always)]
    #[allow(unsafe_code)]
    unsafe fn put_unchecked(&mut self, code: Code, out: &mut [u8]) {
        debug_assert!(
            self.pos + 8 <= out.len(),
            "Bits::room was asked for too little"
        );
        self.add(code);
        // SAFETY: the caller guarantees that the 8 bytes at `pos` lie in `out`; an array of `u8`
        // has alignment 1.
        unsafe {
            out.as_mut_ptr()
                .add(self.pos)
                .cast::<[u8; 8]>()
                .write(self.buf.to_le_bytes());
        }
        self.advance();
    }

    /// Appends `code` to the pending bits.
    #[inline(always)]
    fn add(&mut self, code: Code) {
        self.buf |= u64::from(code.bits) << self.len;
        self.len += code.len;
    }

    /// Moves `pos` past the whole bytes stored.
    #[inline(always)]
    fn advance(&mut self) {
        let whole = self.len >> 3;
        self.pos += whole as usize;
        self.buf >>= whole << 3;
        self.len &= 7;
    }

    /// Ends the stream: the last byte padded with zero bits, `out` cut after it.
    fn finish(&mut self, out: &mut Vec<u8>) {
        self.room(out, 1);
        if let Some(dst) = out.get_mut(self.pos..self.pos + 8) {
            dst.copy_from_slice(&self.buf.to_le_bytes());
        }
        out.truncate(self.pos + self.len.div_ceil(8) as usize);
    }
}

/// The compressor of one connection: the history the server's window holds and the hash table.
pub(super) struct Encoder {
    /// The largest distance the server's window allows: 2^client_max_window_bits.
    window: usize,
    /// The end of earlier messages (at least the last `window` bytes of them, when context is
    /// kept) followed by the part of the current message coded so far.
    history: Vec<u8>,
    /// Per hash of 4 bytes, where in `history` they last started, modulo 2^16: a hint, checked
    /// before use. 2 bytes a slot keep the table within the L1 cache; the type's fixed size
    /// lets the hot loop index it with a mask, without a bounds check.
    table: Box<[u16; TABLE_SLOTS]>,
}

impl Encoder {
    /// A compressor for a window of 2^`bits` bytes (8..=15).
    pub(super) fn new(bits: u8) -> Encoder {
        let bits = u32::from(bits.clamp(8, 15));
        let table = vec![0u16; TABLE_SLOTS].into_boxed_slice();
        Encoder {
            window: 1 << bits,
            history: Vec::new(),
            table: table
                .try_into()
                .unwrap_or_else(|_| unreachable!("TABLE_SLOTS long")),
        }
    }

    /// Forgets the history: the next message refers to nothing before it. The table's hints
    /// stay; they are checked against the new history before any is used.
    pub(super) fn reset(&mut self) {
        self.history.clear();
    }

    /// Appends the payload of the message made of `parts` (RFC 7692 §7.2.1, tail removed) to
    /// `out`; the history then holds the message.
    pub(super) fn compress(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) {
        let start = out.len();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            // §7.2.3.6: an empty message is the empty stored block's header, 0x00.
            out.push(0x00);
            return;
        }
        let mut bits = Bits {
            buf: 0,
            len: 0,
            pos: start,
        };
        // BFINAL = 0, BTYPE = 01 (fixed Huffman codes).
        bits.room(out, 1);
        bits.put(
            Code {
                bits: 0b010,
                len: 3,
            },
            out,
        );
        let all = parts;
        let mut parts = parts.iter().copied().filter(|p| !p.is_empty());
        let mut current: &[u8] = &[];
        loop {
            // Drop 2^16 bytes at a time once the window stays behind: positions keep their
            // value modulo 2^16, so the table's hints stay right.
            if self.history.len() >= DROP + self.window {
                self.history.drain(..DROP);
            }
            let begin = self.history.len();
            while self.history.len() - begin < CHUNK {
                if current.is_empty() {
                    match parts.next() {
                        Some(p) => current = p,
                        None => break,
                    }
                }
                let take = current.len().min(CHUNK - (self.history.len() - begin));
                let (now, later) = current.split_at(take);
                self.history.extend_from_slice(now);
                current = later;
            }
            if self.history.len() == begin {
                break;
            }
            self.code(begin, &mut bits, out);
        }
        // End of block, then the header of an empty stored block (BFINAL = 0, BTYPE = 00),
        // padded: the sync flush of §7.2.1 without its "0x00 0x00 0xff 0xff".
        bits.room(out, 2);
        bits.put(END_OF_BLOCK, out);
        bits.put(Code { bits: 0, len: 3 }, out);
        bits.finish(out);
        // Stored blocks cost 5 bytes per 65,535 plus the final 0x00: when that is shorter (data
        // that does not compress), send those. The window is the same either way: the server's
        // inflater keeps the message's bytes, however they were coded.
        if out.len() - start > stored_size(total) {
            out.truncate(start);
            write_stored(all, total, out);
        }
    }

    /// Codes `history[begin..]` (the window's bytes before `begin` may be referred to).
    #[allow(unsafe_code)]
    fn code(&mut self, begin: usize, bits: &mut Bits, out: &mut Vec<u8>) {
        let history = self.history.as_slice();
        let end = history.len();
        // Room for the worst case, which every store below relies on: a literal codes 1 byte in
        // at most 9 bits and a match of at least 4 bytes in at most 31 (fewer than 4 x 9), so
        // once k of the n bytes are coded, `pos` has moved at most (7 + 9k) / 8 <= k + k/8 + 1
        // bytes (fewer than 8 bits were pending before), and 8 bytes from there lie in `out`.
        let n = end - begin;
        bits.room(out, n + n / 8 + 1);
        let out = out.as_mut_slice();
        let window = self.window;
        let table = &mut *self.table;
        let mut i = begin;
        // A hash needs 4 bytes: the last 3 positions go as literals.
        while i + MIN_MATCH <= end {
            // SAFETY: the loop runs while `i + 4 <= end`, and `end` is `history.len()`.
            let v = unsafe { load32_unchecked(history, i) };
            let h = (v.wrapping_mul(0x9e37_79b1) >> HASH_SHIFT) as usize;
            let here = i as u16;
            let hint = std::mem::replace(&mut table[h], here);
            // The candidate is `back` bytes behind: a hint older than 2^16 bytes, or left by a
            // message the history no longer holds, may point anywhere, so it must lie in the
            // history (back <= i), within the window, and its 4 bytes must equal these. Back 0
            // (a hint 2^16 old, or none) is no match.
            let back = usize::from(here.wrapping_sub(hint));
            // One branch per position, not one per condition: the candidate's bytes are read
            // at a position clamped into the history (a distance out of range is `refused`
            // whatever they hold), and the conditions are combined as bits, without
            // short-circuits, which text would mispredict (as booleans, the compiler made three
            // branches of them: 16 % fewer instructions, 4 % more time on prose).
            let c = i - back.min(i);
            let refused = u32::from(!((back.wrapping_sub(1) < window) & (back <= i)));
            // SAFETY: `c <= i` (it is `i` minus at most `i`), so `c + 4 <= i + 4 <= end`.
            let candidate = unsafe { load32_unchecked(history, c) };
            if (candidate ^ v) | refused == 0 {
                let max = (end - i).min(MAX_MATCH);
                // SAFETY: a match has `back >= 1`, so `c < i`; `max >= 4` as `i + 4 <= end`, and
                // `i + 4 + max - 4 <= end` as `max <= end - i`.
                let len = MIN_MATCH
                    + unsafe { common_prefix(history, c + MIN_MATCH, i + MIN_MATCH, max) };
                // At most 8 + 5 bits of length and 5 + 13 of distance: one code of 31 bits.
                let length = LENGTHS[len & 511];
                let distance = distance_code(i - c);
                let code = Code {
                    bits: length.bits | (distance.bits << length.len),
                    len: length.len + distance.len,
                };
                // SAFETY: the room made above (this match codes bytes of the n).
                unsafe { bits.put_unchecked(code, out) };
                i += len;
            } else {
                // The byte at `i` is the low byte of `v` (read little-endian).
                // SAFETY: the room made above (this literal codes a byte of the n).
                unsafe { bits.put_unchecked(LITERALS[(v & 0xff) as usize], out) };
                i += 1;
            }
        }
        for &literal in history.get(i..).unwrap_or_default() {
            bits.put(LITERALS[usize::from(literal)], out);
        }
    }
}

/// The size of a message of `total` bytes as stored blocks and §7.2.1's final 0x00.
fn stored_size(total: usize) -> usize {
    total + 5 * total.div_ceil(STORED_MAX) + 1
}

/// The message made of `parts` (`total` bytes) as stored blocks (RFC 1951 §3.2.4), then §7.2.1's
/// empty stored block header.
fn write_stored(parts: &[&[u8]], total: usize, out: &mut Vec<u8>) {
    out.reserve(stored_size(total));
    let mut parts = parts.iter().copied();
    let mut current: &[u8] = &[];
    let mut left = total;
    while left > 0 {
        let len = left.min(STORED_MAX);
        left -= len;
        // BFINAL = 0, BTYPE = 00, padded to the byte; LEN and NLEN, least significant first.
        let len16 = len as u16;
        out.push(0x00);
        out.extend_from_slice(&len16.to_le_bytes());
        out.extend_from_slice(&(!len16).to_le_bytes());
        let mut need = len;
        while need > 0 {
            if current.is_empty() {
                match parts.next() {
                    Some(p) => current = p,
                    // `total` is the parts' length: never reached.
                    None => break,
                }
            }
            let (now, later) = current.split_at(need.min(current.len()));
            out.extend_from_slice(now);
            need -= now.len();
            current = later;
        }
    }
    out.push(0x00);
}

/// Four bytes at `i`, little-endian, read without a bounds check: the hot loop reads two per
/// input position, and the compiler cannot see that the candidate's position is never past the
/// current one (the checks were 7 of the loop's 46 instructions per position).
///
/// # Safety
///
/// `i + 4 <= data.len()`.
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn load32_unchecked(data: &[u8], i: usize) -> u32 {
    debug_assert!(i.checked_add(4).is_some_and(|e| e <= data.len()));
    // SAFETY: the caller guarantees `i + 4 <= data.len()`, so the 4 bytes lie in `data`; an
    // array of `u8` has alignment 1, so the read needs no alignment.
    u32::from_le_bytes(unsafe { data.as_ptr().add(i).cast::<[u8; 4]>().read() })
}

/// Eight bytes at `i`, little-endian, read without a bounds check.
///
/// # Safety
///
/// `i + 8 <= data.len()`.
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn load64_unchecked(data: &[u8], i: usize) -> u64 {
    debug_assert!(i.checked_add(8).is_some_and(|e| e <= data.len()));
    // SAFETY: the caller guarantees `i + 8 <= data.len()`; alignment 1, as above.
    u64::from_le_bytes(unsafe { data.as_ptr().add(i).cast::<[u8; 8]>().read() })
}

/// How many bytes from `a` equal those from `b`, at most `max - 4` (the 4 already compared).
///
/// # Safety
///
/// `4 <= max`, `a < b` and `b + max - 4 <= data.len()`.
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn common_prefix(data: &[u8], a: usize, b: usize, max: usize) -> usize {
    debug_assert!(MIN_MATCH <= max && a < b && b + max - MIN_MATCH <= data.len());
    let limit = max - MIN_MATCH;
    // Most matches end within the next 8 bytes: one comparison, before setting up the loop.
    if limit >= 8 {
        // SAFETY: `a < b` and `b + 8 <= b + limit <= data.len()`.
        let (x, y) = unsafe { (load64_unchecked(data, a), load64_unchecked(data, b)) };
        if x != y {
            return ((x ^ y).trailing_zeros() / 8) as usize;
        }
    }
    let (Some(x), Some(y)) = (data.get(a..a + limit), data.get(b..b + limit)) else {
        return 0;
    };
    let (xs, ys) = (x.chunks_exact(8), y.chunks_exact(8));
    let (x_tail, y_tail) = (xs.remainder(), ys.remainder());
    let mut n = 0;
    for (p, q) in xs.zip(ys) {
        // chunks_exact(8): both conversions succeed.
        let p = <[u8; 8]>::try_from(p).map_or(0, u64::from_le_bytes);
        let q = <[u8; 8]>::try_from(q).map_or(0, u64::from_le_bytes);
        let diff = p ^ q;
        if diff != 0 {
            return n + (diff.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + x_tail
        .iter()
        .zip(y_tail)
        .take_while(|(p, q)| p == q)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a fixed literal/length symbol back from LSB-first bits, as RFC 1951 §3.2.6 defines
    /// the code (not from our tables): returns the symbol and the bits it took.
    fn read_symbol(bits: u32) -> (u32, u32) {
        let msb = |len: u32| reverse(bits & ((1 << len) - 1), len);
        match msb(7) {
            v @ 0..=0b0010111 => (256 + v, 7),
            _ => match msb(8) {
                v @ 0x30..=0xbf => (v - 0x30, 8),
                v @ 0xc0..=0xc7 => (280 + v - 0xc0, 8),
                _ => (144 + msb(9) - 0x190, 9),
            },
        }
    }

    #[test]
    fn literal_codes_are_rfc1951_fixed_codes() {
        for (literal, code) in LITERALS.iter().enumerate() {
            assert_eq!(
                read_symbol(code.bits),
                (literal as u32, code.len),
                "{literal}"
            );
        }
        assert_eq!(read_symbol(END_OF_BLOCK.bits), (256, 7));
    }

    #[test]
    fn every_length_codes_to_itself() {
        for length in 3..=258u32 {
            let code = LENGTHS[length as usize];
            let (symbol, used) = read_symbol(code.bits);
            assert!((257..=285).contains(&symbol), "{length}: {symbol}");
            let i = (symbol - 257) as usize;
            let extra = code.bits >> used;
            assert_eq!(code.len, used + LENGTH_EXTRA[i], "{length}");
            assert!(extra < 1 << LENGTH_EXTRA[i], "{length}");
            assert_eq!(LENGTH_BASE[i] + extra, length, "{length}");
        }
        // RFC 1951 §3.2.5: 258 is symbol 285, not 284 with extra bits 31.
        assert_eq!(read_symbol(LENGTHS[258].bits).0, 285);
    }

    #[test]
    fn every_distance_codes_to_itself() {
        for distance in 1..=32_768usize {
            let code = distance_code(distance);
            let symbol = reverse(code.bits & 31, 5) as usize;
            assert!(symbol < 30, "{distance}");
            let extra = code.bits >> 5;
            assert_eq!(code.len, 5 + DISTANCE_EXTRA[symbol], "{distance}");
            assert!(extra < 1 << DISTANCE_EXTRA[symbol], "{distance}");
            assert_eq!((DISTANCE_BASE[symbol] + extra) as usize, distance);
        }
    }

    #[test]
    fn any_hint_gives_a_valid_stream() {
        // The table is only a hint: filled with anything, the encoder still writes a stream
        // that inflates with exactly its window (a wrong hint can only cost a match).
        let text: Vec<u8> = b"Hello, Hello, Hello! ".repeat(200);
        for bits in [8u8, 9, 12, 15] {
            for fill in [0u16, 1, 7, 255, 256, 257, 4096, 32768, 65535] {
                let mut e = Encoder::new(bits);
                let mut out = Vec::new();
                e.compress(&[&text], &mut out);
                e.reset();
                e.table.fill(fill);
                out.clear();
                e.compress(&[&text[..3000]], &mut out);
                let mut d = flate2::Decompress::new_with_window_bits(false, bits.max(9));
                let mut inflated = Vec::with_capacity(4000);
                out.extend_from_slice(&[0, 0, 0xff, 0xff]);
                d.decompress_vec(&out, &mut inflated, flate2::FlushDecompress::Sync)
                    .unwrap();
                assert!(inflated == text[..3000], "{bits} {fill}");
                assert!(out.len() < 300, "{bits} {fill}: {}", out.len());
            }
        }
    }

    #[test]
    fn reset_forgets_the_history_only() {
        let mut e = Encoder::new(15);
        let mut out = Vec::new();
        e.compress(&[b"Hello"], &mut out);
        let table = e.table.to_vec();
        e.reset();
        assert!(e.history.is_empty());
        assert!(*e.table == *table, "no slot is written");
        out.clear();
        // The hint for "Hell" points 5 bytes back, before the start: not taken.
        e.compress(&[b"Hello"], &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn the_history_drops_whole_multiples_of_2_16() {
        // After a drop, hints still point at the same bytes: a long message keeps compressing.
        let mut e = Encoder::new(15);
        let block: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let message = block.repeat(300);
        let mut out = Vec::new();
        e.compress(&[&message], &mut out);
        assert!(e.history.len() < DROP + e.window + CHUNK);
        assert!(out.len() < message.len() / 50, "{}", out.len());
    }
}

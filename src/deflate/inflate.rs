//! Our DEFLATE decoder (RFC 1951) for the server's messages: fed frame by frame, keeping the
//! window across frames and messages, writing straight into the engine's message buffer.
//!
//! Why our own and not zlib-rs: a permessage-deflate message is usually short and starts a new
//! block with its own Huffman codes. zlib builds its decoding tables with a general routine
//! that costs more than decoding a 1 KiB message, and its state machine is re-entered for the
//! payload and again for the 4-octet tail. Here the tables are filled by doubling (each code
//! written once, the rest memory copies), the fixed codes' tables are kept while blocks keep
//! using them, and a block is decoded in one loop that takes one table lookup per literal and
//! up to three literals per refill of its 64-bit bit buffer.
//!
//! How input arrives in pieces: the decoder stops only between two items (a literal, a
//! length/distance pair, a block header, the end of a block), never inside one. What is left of
//! a frame after its last whole item (a few bytes, or a block header cut by the frame's end) is
//! kept in `pending`, and the next frame's first bytes are appended to a copy of it until the
//! item that straddled the two frames is decoded; then decoding goes on in the frame itself.
//! The main loop reads the frame 8 bytes at a time and checks nothing inside an item, so it
//! stops 16 bytes before the frame's end; a loop that checks each item takes over to 8 bytes
//! before it, and the last bytes are decoded from `pending` with zeros after them, where an item
//! that would read into the zeros waits for more input.
//!
//! The window: distances reach into the output of this frame in the message buffer, and past its
//! start into `history`, a ring holding the last 32 KiB the decoder produced before this frame
//! (earlier frames of the message, earlier messages). A frame's output goes to the ring when the
//! frame has been decoded, because the engine may hand it out (streamed pieces) before the next.
//!
//! Every rule of RFC 1951 that zlib enforces is enforced here with zlib's diagnosis (the tests
//! compare both on valid, damaged and arbitrary data); one more comes from RFC 7692: a message
//! must end on a block boundary.

use super::{DISTANCE_BASE, DISTANCE_EXTRA, LENGTH_BASE, LENGTH_EXTRA};
use crate::error::DeflateError;

/// The largest window, 32 KiB (RFC 1951 §3.2.5: distances are at most 32,768).
pub(super) const WINDOW: usize = 1 << 15;

/// Bits of the literal/length code resolved by the first table lookup; longer codes take a
/// second lookup in a subtable. 10 keeps the table at 4 KiB, quick to fill for a short message,
/// and covers almost every code of text.
const LIT_ROOT: u32 = 10;
/// The same for the distance code.
const DIST_ROOT: u32 = 8;
/// The code length code has at most 7 bits (RFC 1951 §3.2.7: 3-bit lengths): one lookup.
const CODELEN_ROOT: u32 = 7;

/// Zeros after the copy of a frame's last bytes, so that the 8-byte reads never leave it.
const PAD: usize = 8;
/// How much of a new frame is appended to the pending bytes of the previous one: more than the
/// longest block header (3 + 14 bits, 19 code length codes of 3 bits, 316 code lengths of at
/// most 7 bits: 2,286 bits, 286 bytes) and the longest item (48 bits).
const JOIN: usize = 1024;
/// A match is copied up to 32 bytes at a time and may write that much past its end.
const OVERCOPY: usize = 32;
/// The output the main loop makes room for before an item: two literals and a match.
const ROOM: usize = 2 + 258 + OVERCOPY;
/// The smallest step by which the output's capacity grows.
const GROW: usize = 1024;
/// The step by which the zeroed output grows (see `Sink::reserve`).
const ZERO_STEP: usize = 2016;

// A table entry is a u32: bits 0-7 the code's length in bits (the whole code, also in a
// subtable), bits 8-11 the number of extra bits (or a subtable's index bits), bits 12-15 the
// kind, bits 16-31 the value: a literal byte, a base length or distance, a code length symbol,
// or a subtable's offset in the table.
const BAD: u32 = 1 << 12;
const LIT: u32 = 1 << 13;
const SUB: u32 = 1 << 14;
const END: u32 = 1 << 15;

/// RFC 1951 §3.2.7: the order in which the code length code's lengths are sent.
const CODELEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between blocks: a block header comes next.
    Header,
    /// Inside a stored block, this many bytes still to copy.
    Stored(u32),
    /// Inside a block coded with the tables.
    Codes,
}

#[derive(Clone, Copy)]
enum Alphabet {
    LitLen,
    Dist,
    CodeLen,
}

/// The decoder of one connection's incoming messages.
pub(super) struct Inflater {
    state: State,
    /// The current block has BFINAL set.
    last: bool,
    /// A block with BFINAL set ended and nothing has followed yet.
    ended: bool,
    lit: LitTable,
    dist: DistTable,
    codelen: Table<{ 1 << CODELEN_ROOT }>,
    /// `lit` and `dist` hold the fixed codes (RFC 1951 §3.2.6).
    fixed: bool,
    /// Bytes of input not yet decoded (the last item's start is in the first byte), and how
    /// many bits of that first byte were used.
    pending: Vec<u8>,
    pending_bit: u8,
    /// The ring of the last bytes produced before the current frame (allocated on first use).
    history: Vec<u8>,
    history_len: usize,
    history_end: usize,
    /// Bytes of the current message produced so far.
    produced: usize,
    /// Bytes of the current message's compressed payload fed so far.
    consumed: u64,
    /// Where the buffer being decoded starts in the message's payload (for error offsets).
    base: u64,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("state", &self.state)
            .field("produced", &self.produced)
            .field("consumed", &self.consumed)
            .finish_non_exhaustive()
    }
}

/// Where the output of one call goes, and its bounds.
struct Sink {
    /// Where this call's output starts in the buffer (the window before it is in the ring).
    start: usize,
    /// The write position (the buffer's length beyond it is scratch, cut off on return).
    w: usize,
    /// Bytes of the message produced before this call.
    before: usize,
    limit: Option<usize>,
    /// A guess of the output still to come (from the input left), to grow the buffer in few steps.
    hint: usize,
}

impl Sink {
    /// Where the message's output still in the buffer starts: the caller keeps what earlier
    /// calls produced at the end of the buffer, or a suffix of it (`Deflate::feed`), so at most
    /// `before` bytes before `start`. A match within it is copied from the buffer.
    #[inline(always)]
    fn kept(&self) -> usize {
        self.start - self.before.min(self.start)
    }

    /// Makes `need` bytes writable at the write position, or fails when the message would pass
    /// the limit. The buffer never grows past the limit's worth of message.
    #[cold]
    #[inline(never)]
    fn grow(&self, out: &mut Vec<u8>, need: usize) -> Result<(), DeflateError> {
        let total = (self.before + (self.w - self.start)).saturating_add(need);
        if let Some(limit) = self.limit {
            if total > limit {
                return Err(DeflateError::TooBig {
                    size: total as u64,
                    limit,
                });
            }
        }
        self.reserve(out, need);
        Ok(())
    }

    /// Makes up to `need` bytes writable at the write position, as many as the limit leaves;
    /// true when all of them are.
    #[cold]
    #[inline(never)]
    fn reserve(&self, out: &mut Vec<u8>, need: usize) -> bool {
        // The capacity grows geometrically, never past the limit's worth of message.
        let mut capacity = self
            .w
            .saturating_add(need)
            .saturating_add(self.hint.max(self.w - self.start).max(GROW));
        if let Some(limit) = self.limit {
            capacity = capacity.min(self.start + limit.saturating_sub(self.before));
        }
        if capacity > out.capacity() {
            out.reserve_exact(capacity - out.len());
        }
        // The zeroed length grows by steps under 2 KiB: above that glibc's memset switches to a
        // string instruction that callgrind counts per byte (it is not faster), and the
        // zeroing would weigh in bench/callgrind.py's counts far more than it costs.
        let target = (self.w + need.max(ZERO_STEP)).min(capacity);
        if target > out.len() {
            out.resize(target, 0);
        }
        self.w + need <= out.len()
    }
}

/// A reader of the bit stream (RFC 1951 §3.1.1: bits are taken from each byte's least
/// significant end), 8 bytes at a time.
///
/// `bitbuf` holds the next bits, `bitcnt` of them counted as read from `buf`; the bits above
/// `bitcnt` are those of `buf[byte..]` or zeros, so a refill may OR them in again.
#[derive(Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    byte: usize,
    bitbuf: u64,
    bitcnt: u32,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], pos: usize) -> Reader<'a> {
        let mut r = Reader {
            buf,
            byte: pos / 8,
            bitbuf: 0,
            bitcnt: 0,
        };
        r.refill();
        r.consume((pos % 8) as u32);
        r
    }

    /// The bit position of the next unread bit.
    #[inline(always)]
    fn pos(&self) -> usize {
        self.byte * 8 - self.bitcnt as usize
    }

    /// At least 56 bits in `bitbuf`, for the main loop: the 8 bytes are read without a bounds
    /// check (the loop checks its input once per item; 3 of its instructions per item).
    ///
    /// # Safety
    ///
    /// `self.byte + 8 <= self.buf.len()`.
    #[inline(always)]
    #[allow(unsafe_code)]
    unsafe fn refill_fast(&mut self) {
        debug_assert!(self.byte + 8 <= self.buf.len());
        // SAFETY: the caller guarantees that the 8 bytes at `byte` lie in `buf`; an array of
        // `u8` has alignment 1.
        let word = unsafe { self.buf.as_ptr().add(self.byte).cast::<[u8; 8]>().read() };
        self.bitbuf |= u64::from_le_bytes(word) << self.bitcnt;
        self.byte += (63 - self.bitcnt as usize) >> 3;
        self.bitcnt |= 56;
    }

    /// At least 56 bits in `bitbuf`, or all that are left.
    #[inline(always)]
    fn refill(&mut self) {
        if let Some(word) = self
            .buf
            .get(self.byte..self.byte + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
        {
            self.bitbuf |= u64::from_le_bytes(word) << self.bitcnt;
            // Whole bytes only: 56 + the odd bits that were left.
            self.byte += (63 - self.bitcnt as usize) >> 3;
            self.bitcnt |= 56;
        } else {
            *self = self.refill_slowly();
        }
    }

    /// By value, so that a caller's reader may live in registers: only this cold call needs it
    /// in memory.
    #[cold]
    fn refill_slowly(mut self) -> Self {
        while self.bitcnt <= 56 {
            let Some(&b) = self.buf.get(self.byte) else {
                break;
            };
            self.bitbuf |= u64::from(b) << self.bitcnt;
            self.byte += 1;
            self.bitcnt += 8;
        }
        self
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.bitbuf >>= n;
        self.bitcnt = self.bitcnt.saturating_sub(n);
    }

    /// `consume` where `n <= bitcnt` is known: after `refill_fast`, at most 48 bits.
    #[inline(always)]
    fn take(&mut self, n: u32) {
        self.bitbuf >>= n;
        self.bitcnt = self.bitcnt.wrapping_sub(n);
    }

    /// The next `n` bits (at most 16), if they lie before `end`.
    fn bits(&mut self, n: u32, end: usize) -> Option<u32> {
        if self.pos() + n as usize > end {
            return None;
        }
        if self.bitcnt < n {
            self.refill();
        }
        let v = (self.bitbuf & ((1 << n) - 1)) as u32;
        self.consume(n);
        Some(v)
    }

    /// Skips to the next byte boundary.
    fn align(&mut self) {
        self.consume(self.bitcnt & 7);
    }
}

/// Reverses the `len` low bits of `code` (at most 15): Huffman codes are "packed starting with
/// the most-significant bit of the code" (RFC 1951 §3.1.1), and the table is indexed by the
/// bits in the order they are read. Two lookups, where `reverse_bits` takes a dozen
/// instructions on x86-64.
#[inline(always)]
fn reverse(code: u32, len: u32) -> usize {
    let low = u32::from(REVERSED_BYTES[(code & 0xff) as usize]);
    let high = u32::from(REVERSED_BYTES[((code >> 8) & 0xff) as usize]);
    ((low << 8 | high) >> (16 - len)) as usize
}

/// Each byte with its bits in the opposite order.
const REVERSED_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).reverse_bits();
        i += 1;
    }
    t
};

/// The table entries of each alphabet's symbols, but for the code length (added when built).
const LITLEN_ENTRIES: [u32; 288] = {
    let mut t = [0u32; 288];
    let mut symbol = 0;
    while symbol < 288 {
        t[symbol] = match symbol {
            0..=255 => (symbol as u32) << 16 | LIT,
            256 => END,
            257..=285 => LENGTH_BASE[symbol - 257] << 16 | LENGTH_EXTRA[symbol - 257] << 8,
            // 286 and 287 "will never actually occur in the compressed data" (§3.2.6).
            _ => BAD,
        };
        symbol += 1;
    }
    t
};
const DIST_ENTRIES: [u32; 32] = {
    let mut t = [BAD; 32];
    let mut symbol = 0;
    // Distance codes 30-31 "will never actually occur in the compressed data" (§3.2.6).
    while symbol < 30 {
        t[symbol] = DISTANCE_BASE[symbol] << 16 | DISTANCE_EXTRA[symbol] << 8;
        symbol += 1;
    }
    t
};
const CODELEN_ENTRIES: [u32; 19] = {
    let mut t = [0u32; 19];
    let mut symbol = 0;
    while symbol < 19 {
        t[symbol] = (symbol as u32) << 16;
        symbol += 1;
    }
    t
};

impl Alphabet {
    fn entries(self) -> &'static [u32] {
        match self {
            Alphabet::LitLen => &LITLEN_ENTRIES,
            Alphabet::Dist => &DIST_ENTRIES,
            Alphabet::CodeLen => &CODELEN_ENTRIES,
        }
    }
}

/// A decoding table: `N` entries indexed by the next `log2(N)` bits of input (an array, so that
/// a lookup needs no bounds check), and the subtables of the longer codes.
struct Table<const N: usize> {
    root: [u32; N],
    sub: Vec<u32>,
}

impl<const N: usize> Table<N> {
    const BITS: u32 = N.trailing_zeros();

    fn new() -> Table<N> {
        Table {
            root: [BAD; N],
            sub: Vec::new(),
        }
    }

    /// The entry for the next bits: the root table, then a subtable for a longer code.
    #[inline(always)]
    fn lookup(&self, bitbuf: u64) -> u32 {
        let e = self.root(bitbuf);
        if e & SUB == 0 {
            return e;
        }
        self.sub(e, bitbuf)
    }

    /// The root table's entry for the next bits: the code's own entry, or a subtable's (`SUB`).
    #[inline(always)]
    fn root(&self, bitbuf: u64) -> u32 {
        self.root[(bitbuf as usize) & (N - 1)]
    }

    /// The entry for the next bits in the subtable that the root entry `e` names.
    #[inline(always)]
    fn sub(&self, e: u32, bitbuf: u64) -> u32 {
        let index = (bitbuf >> Self::BITS) as usize & ((1 << ((e >> 8) & 15)) - 1);
        self.sub
            .get((e >> 16) as usize + index)
            .copied()
            .unwrap_or(BAD)
    }
}

type LitTable = Table<{ 1 << LIT_ROOT }>;
type DistTable = Table<{ 1 << DIST_ROOT }>;

/// `build` from every code length of an alphabet, zeros included.
fn build_lengths<const N: usize>(
    table: &mut Table<N>,
    lengths: &[u8],
    alphabet: Alphabet,
) -> Result<(), &'static str> {
    let mut used = [0u16; 288];
    let mut k = 0;
    for (symbol, &len) in lengths.iter().enumerate() {
        if len != 0 {
            used[k] = (symbol as u16) << 4 | u16::from(len & 15);
            k += 1;
        }
    }
    build(table, &used[..k], 0, alphabet)
}

/// Fills `table` for the canonical Huffman code (RFC 1951 §3.2.2) whose used symbols are
/// `used`, each `(symbol + base) << 4 | length`, by increasing symbol (a dynamic block uses a
/// fraction of its 288 + 32 symbols: the others cost nothing here): the root entries, then the
/// subtables of the longer codes, each sized for the codes that share its first bits.
fn build<const N: usize>(
    table: &mut Table<N>,
    used: &[u16],
    base: usize,
    alphabet: Alphabet,
) -> Result<(), &'static str> {
    let root = Table::<N>::BITS;
    let entries = alphabet.entries();
    let mut count = [0u16; 16];
    for &u in used {
        count[usize::from(u & 15)] += 1;
    }
    count[0] = 0;
    let root_size = N;
    table.sub.clear();
    let Some(max) = (1..16).rev().find(|&len| count[len] != 0) else {
        // No codes at all: only a distance code may be empty (§3.2.7: "One distance code of
        // zero bits means that there are no distance codes used at all"); every lookup fails.
        table.root.fill(BAD);
        return Ok(());
    };
    let mut left: i32 = 1;
    for &c in &count[1..] {
        left = (left << 1) - i32::from(c);
        if left < 0 {
            return Err("over-subscribed");
        }
    }
    // An incomplete code is allowed only as a single code of one bit (a block that uses one
    // distance code, or one literal/length symbol), as zlib allows it; the other bit pattern
    // stays invalid.
    let incomplete = left > 0;
    if incomplete && (matches!(alphabet, Alphabet::CodeLen) || max != 1) {
        return Err("incomplete");
    }
    // The symbols in code order: by length, then by value.
    let mut offsets = [0u16; 16];
    for len in 1..15 {
        offsets[len + 1] = offsets[len] + count[len];
    }
    let mut sorted = [0u16; 320];
    for &u in used {
        let len = usize::from(u & 15);
        sorted[usize::from(offsets[len])] = (usize::from(u >> 4) - base) as u16;
        offsets[len] += 1;
    }
    // Codes up to `root` bits, by doubling: once the codes of `len` bits are written,
    // `table[..1 << len]` is right for every code of at most `len` bits (an entry whose code is
    // longer is rewritten when its length comes), and copying it up makes `table[..2 << len]`
    // right for them too. Each code is written once, the rest is memory copies.
    let mut code: u32 = 0;
    let mut next = 0usize;
    let mut size = 1usize;
    let short = max.min(root as usize);
    // (Not `enumerate().skip(1)`: its skip is an out-of-line call.)
    for (&n, len) in count[1..=short].iter().zip(1u32..) {
        table.root.copy_within(0..size, size);
        size <<= 1;
        for _ in 0..n {
            // A code of `len <= root` bits reversed is below `N`: the mask only spares a check.
            table.root[reverse(code, len) & (N - 1)] = entries
                .get(usize::from(sorted[next]))
                .map_or(BAD, |e| e | len);
            next += 1;
            code += 1;
        }
        code <<= 1;
    }
    if incomplete {
        // The one code is 0: the pattern 1 decodes nothing.
        table.root[1] = BAD;
    }
    while size < root_size {
        table.root.copy_within(0..size, size);
        size <<= 1;
    }
    let mut remaining = count;
    // Longer codes: a subtable per value of the first `root` bits, as large as the codes
    // sharing them need (the sizing of zlib's inflate_table: grow while the codes of the next
    // length do not fill it).
    let mut sub_low = usize::MAX;
    let mut sub_start = 0usize;
    let mut sub_bits = 0u32;
    for len in (root as usize + 1)..=max {
        for _ in 0..count[len] {
            let rev = reverse(code, len as u32);
            let low = rev & (root_size - 1);
            if low != sub_low {
                let mut bits = len as u32 - root;
                let mut room: i32 = 1 << bits;
                while (bits + root) < max as u32 {
                    room -= i32::from(remaining[(bits + root) as usize]);
                    if room <= 0 {
                        break;
                    }
                    bits += 1;
                    room <<= 1;
                }
                sub_start = table.sub.len();
                table.sub.resize(sub_start + (1 << bits), BAD);
                table.root[low] = (sub_start as u32) << 16 | SUB | bits << 8 | root;
                sub_low = low;
                sub_bits = bits;
            }
            let e = entries
                .get(usize::from(sorted[next]))
                .map_or(BAD, |e| e | len as u32);
            next += 1;
            let mut i = rev >> root;
            while i < (1 << sub_bits) {
                table.sub[sub_start + i] = e;
                i += 1 << (len as u32 - root);
            }
            remaining[len] -= 1;
            code += 1;
        }
        code <<= 1;
    }
    Ok(())
}

/// The window before the current frame, for the distances that reach past its start.
struct History<'a> {
    ring: &'a [u8],
    len: usize,
    end: usize,
}

impl History<'_> {
    /// Copies a match of `len` bytes at `distance` that starts before the frame's output
    /// (`out[start..]`): its first bytes from the ring, the rest (if it runs into the frame's
    /// output) from `out`. `out[w..w + len]` must be writable; with `room`, 32 bytes more.
    #[inline(always)]
    fn copy(
        &self,
        out: &mut [u8],
        start: usize,
        w: usize,
        distance: usize,
        len: usize,
        room: bool,
    ) {
        let back = distance - (w - start);
        let from_ring = back.min(len);
        let first = (self.end + WINDOW - back) % WINDOW;
        if room && first + from_ring.next_multiple_of(32) <= WINDOW {
            // Unbroken in the ring: 32 bytes at a time, past the end into scratch.
            let (mut from, mut to) = (first, w);
            while to < w + from_ring {
                let chunk: [u8; 32] = self.ring[from..from + 32].try_into().unwrap_or_default();
                out[to..to + 32].copy_from_slice(&chunk);
                from += 32;
                to += 32;
            }
        } else {
            let n = from_ring.min(WINDOW - first);
            out[w..w + n].copy_from_slice(&self.ring[first..first + n]);
            out[w + n..w + from_ring].copy_from_slice(&self.ring[..from_ring - n]);
        }
        if from_ring < len {
            // The rest starts at the frame's first byte.
            let w = w + from_ring;
            if room {
                copy_match(out, w, distance, len - from_ring);
            } else {
                for i in w..w + len - from_ring {
                    out[i] = out[i - distance];
                }
            }
        }
    }
}

/// Copies a match within the frame's output: `distance <= w`, `out[w..w + len + OVERCOPY]`
/// writable (the bytes past `w + len` are scratch).
#[inline(always)]
fn copy_match(out: &mut [u8], w: usize, distance: usize, len: usize) {
    let end = w + len;
    if distance >= 16 {
        let (mut from, mut to) = (w - distance, w);
        while to < end {
            let chunk: [u8; 16] = out[from..from + 16].try_into().unwrap_or_default();
            out[to..to + 16].copy_from_slice(&chunk);
            from += 16;
            to += 16;
        }
    } else if distance >= 8 {
        let (mut from, mut to) = (w - distance, w);
        while to < end {
            let chunk: [u8; 8] = out[from..from + 8].try_into().unwrap_or_default();
            out[to..to + 8].copy_from_slice(&chunk);
            from += 8;
            to += 8;
        }
    } else if distance == 1 {
        let b = out[w - 1];
        out[w..end].fill(b);
    } else {
        for i in w..end {
            out[i] = out[i - distance];
        }
    }
}

/// Why decoding failed.
enum Fail {
    /// Invalid data, found before this bit position of the input.
    Invalid(&'static str, usize),
    /// The message passes the limit.
    Limit(DeflateError),
}

/// Why the decoding of a run of items stopped.
enum Stop {
    /// At the end of the block.
    BlockEnd,
    /// Before an item that needs bits past the end of the input (or starts at `stop_at`), or,
    /// in a frame read in place, fewer than 8 bytes before its end.
    More,
}

/// Decodes a match: its length from the length entry `e` (looked up, its bits not yet taken)
/// and the extra bits, then its distance; None for an invalid distance code. At most 48 bits,
/// which a refill leaves in `bitbuf` (15 + 5 for the length, 15 + 13 for the distance).
#[inline(always)]
fn length_distance(r: &mut Reader<'_>, e: u32, dist: &DistTable) -> Option<(usize, usize)> {
    let n = e & 0xff;
    let extra = (e >> 8) & 15;
    let len = (e >> 16) as usize + ((r.bitbuf >> n) as usize & ((1 << extra) - 1));
    r.take(n + extra);
    let d = dist.lookup(r.bitbuf);
    if d & BAD != 0 {
        return None;
    }
    let n = d & 0xff;
    let extra = (d >> 8) & 15;
    let distance = (d >> 16) as usize + ((r.bitbuf >> n) as usize & ((1 << extra) - 1));
    r.take(n + extra);
    Some((len, distance))
}

/// The main loop, over a frame read in place: one refill per item, up to three literals per
/// refill, no end-of-input checks inside an item. Stops (`Stop::More`) when fewer than 16 bytes
/// are left to read, or when the output has no room for the next item.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
#[allow(unsafe_code)]
fn codes_fast(
    lit: &LitTable,
    dist: &DistTable,
    history: &History<'_>,
    buf: &[u8],
    pos: usize,
    out: &mut [u8],
    start: usize,
    kept: usize,
    w: &mut usize,
) -> Result<(usize, Stop), Fail> {
    let mut r = Reader::new(buf, pos);
    let mut at = *w;
    // 16 bytes: the refill here and the one before a length (each advances at most 7).
    let (Some(last_byte), Some(last_at)) = (buf.len().checked_sub(16), out.len().checked_sub(ROOM))
    else {
        return Ok((pos, Stop::More));
    };
    let result = loop {
        if r.byte > last_byte || at > last_at {
            break Ok((r.pos(), Stop::More));
        }
        // SAFETY: `byte <= last_byte`, which is 16 bytes before the end of `buf`.
        unsafe { r.refill_fast() };
        // Literals first, from the root table alone (a root entry is a literal's or a
        // subtable's, never both): most items of text and images are literals of codes of 10
        // bits or fewer.
        let mut e = lit.root(r.bitbuf);
        if e & LIT != 0 {
            // A refill leaves at least 56 bits; a literal takes at most 15. `at + 3` is
            // within `out` (the room checked above), so one bounds check serves three writes.
            let three: &mut [u8; 3] = match (&mut out[at..at + 3]).try_into() {
                Ok(three) => three,
                Err(_) => break Ok((r.pos(), Stop::More)),
            };
            r.take(e & 0xff);
            three[0] = (e >> 16) as u8;
            e = lit.root(r.bitbuf);
            if e & LIT == 0 {
                at += 1;
            } else {
                r.take(e & 0xff);
                three[1] = (e >> 16) as u8;
                e = lit.root(r.bitbuf);
                if e & LIT == 0 {
                    at += 2;
                } else {
                    r.take(e & 0xff);
                    three[2] = (e >> 16) as u8;
                    at += 3;
                    continue;
                }
            }
            // A length and distance take up to 48 bits (the entry's bits stay in place).
            // SAFETY: the refill above moved `byte` at most 7 bytes past `last_byte`, so 9 are
            // left after it.
            unsafe { r.refill_fast() };
        }
        if e & SUB != 0 {
            // A code longer than the root's bits: its entry is in a subtable.
            e = lit.sub(e, r.bitbuf);
            if e & LIT != 0 {
                let Some(slot) = out.get_mut(at) else {
                    break Ok((r.pos(), Stop::More));
                };
                r.take(e & 0xff);
                *slot = (e >> 16) as u8;
                at += 1;
                continue;
            }
        }
        if e & (END | BAD) != 0 {
            if e & BAD != 0 {
                break Err(Fail::Invalid("invalid literal/length code", r.pos()));
            }
            r.take(e & 0xff);
            break Ok((r.pos(), Stop::BlockEnd));
        }
        let Some((len, distance)) = length_distance(&mut r, e, dist) else {
            break Err(Fail::Invalid("invalid distance code", r.pos()));
        };
        if distance > at - kept {
            // Before the message's output in `out`: from the ring, which holds everything
            // before this call's output (`start`).
            let have = at - start;
            if distance - have > history.len {
                break Err(Fail::Invalid("invalid distance too far back", r.pos()));
            }
            history.copy(out, start, at, distance, len, true);
        } else {
            copy_match(out, at, distance, len);
        }
        at += len;
    };
    *w = at;
    result
}

/// Decodes the items of a block coded with `lit` and `dist` from bit `pos` of `buf`, until the
/// block ends, an item would pass `end` (the end of the real input) or start at `stop_at`, or,
/// when `buf` is the frame itself (`padded` false), fewer than 8 bytes are left to read.
#[allow(clippy::too_many_arguments)]
fn codes(
    lit: &LitTable,
    dist: &DistTable,
    history: &History<'_>,
    buf: &[u8],
    pos: usize,
    end: usize,
    stop_at: usize,
    padded: bool,
    out: &mut Vec<u8>,
    sink: &mut Sink,
) -> Result<(usize, Stop), Fail> {
    let mut r = Reader::new(buf, pos);
    let stop = end.min(stop_at);
    let mut w = sink.w;
    let kept = sink.kept();
    let result = loop {
        let item = r.pos();
        if item >= stop || (!padded && r.byte + 8 > buf.len()) {
            break Ok((item, Stop::More));
        }
        r.refill();
        let e = lit.lookup(r.bitbuf);
        if e & LIT != 0 {
            r.consume(e & 0xff);
            if r.pos() > end {
                break Ok((item, Stop::More));
            }
            if w >= out.len() {
                sink.w = w;
                if let Err(e) = sink.grow(out, 1) {
                    break Err(Fail::Limit(e));
                }
            }
            out[w] = (e >> 16) as u8;
            w += 1;
            continue;
        }
        if e & (END | BAD) != 0 {
            if e & BAD != 0 {
                // Read from the zeros after the input the code may be cut: wait for more.
                if padded && item + 48 > end {
                    break Ok((item, Stop::More));
                }
                break Err(Fail::Invalid("invalid literal/length code", r.pos()));
            }
            r.consume(e & 0xff);
            if r.pos() > end {
                break Ok((item, Stop::More));
            }
            break Ok((r.pos(), Stop::BlockEnd));
        }
        let Some((len, distance)) = length_distance(&mut r, e, dist) else {
            if padded && item + 48 > end {
                break Ok((item, Stop::More));
            }
            break Err(Fail::Invalid("invalid distance code", r.pos()));
        };
        if r.pos() > end {
            break Ok((item, Stop::More));
        }
        if w + len + OVERCOPY > out.len() {
            sink.w = w;
            if let Err(e) = sink.grow(out, len) {
                break Err(Fail::Limit(e));
            }
        }
        if distance > w - kept {
            let have = w - sink.start;
            if distance - have > history.len {
                break Err(Fail::Invalid("invalid distance too far back", r.pos()));
            }
            let room = w + len + OVERCOPY <= out.len();
            history.copy(out, sink.start, w, distance, len, room);
        } else if w + len + OVERCOPY <= out.len() {
            copy_match(out, w, distance, len);
        } else {
            // Near the limit the buffer has no room to copy past the match.
            for i in w..w + len {
                out[i] = out[i - distance];
            }
        }
        w += len;
    };
    sink.w = w;
    result
}

/// The empty stored block a sync flush ends with, without its first three bits: stripped by the
/// sender and appended by the receiver (RFC 7692 §7.2.1, §7.2.2).
pub(super) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

impl Inflater {
    pub(super) fn new() -> Inflater {
        Inflater {
            state: State::Header,
            last: false,
            ended: false,
            lit: Table::new(),
            dist: Table::new(),
            codelen: Table::new(),
            fixed: false,
            pending: Vec::new(),
            pending_bit: 0,
            history: Vec::new(),
            history_len: 0,
            history_end: 0,
            produced: 0,
            consumed: 0,
            base: 0,
        }
    }

    /// Starts a message.
    pub(super) fn begin(&mut self) {
        self.state = State::Header;
        self.last = false;
        self.ended = false;
        self.pending.clear();
        self.pending_bit = 0;
        self.produced = 0;
        self.consumed = 0;
    }

    /// Inflates the payload of a frame of the message that is not its last, appending to `out`
    /// (which may end with the message's earlier output, see `Deflate::feed`). `limit` bounds
    /// the decompressed size of the whole message: past it the call fails with
    /// [`DeflateError::TooBig`], and `out` never grew past the limit's worth of message.
    pub(super) fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: Option<usize>,
    ) -> Result<(), DeflateError> {
        let mut sink = self.sink(out, limit, input.len());
        let result = self.decode(input, out, &mut sink, false);
        self.consumed += input.len() as u64;
        self.settle(out, &sink);
        result?;
        // The next frame may refer to this one's output, which the engine may hand out first.
        self.remember(out.get(sink.start..).unwrap_or_default());
        Ok(())
    }

    /// Inflates the last frame's payload and the tail RFC 7692 §7.2.2 appends, and ends the
    /// message; `keep` tells whether the next message may refer to this one.
    pub(super) fn finish(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: Option<usize>,
        keep: bool,
    ) -> Result<(), DeflateError> {
        let mut sink = self.sink(out, limit, input.len());
        let result = self.decode(input, out, &mut sink, true).and_then(|()| {
            self.consumed += input.len() as u64;
            if self.consumed == 0 {
                // An empty payload (which §7.2.1 never produces: an empty message is 0x00) is an
                // empty message: the tail alone would start a stored block of 65,280 bytes.
                return Ok(());
            }
            self.finish_tail(out, &mut sink)
        });
        self.settle(out, &sink);
        result?;
        if keep {
            self.remember(out.get(sink.start..).unwrap_or_default());
        } else {
            // §7.2.2: with server_no_context_takeover the client may inflate each new message
            // with an empty window; the server compressed it with one.
            self.history_len = 0;
            self.history_end = 0;
        }
        self.begin();
        Ok(())
    }

    /// Decodes the pending end of the payload and RFC 7692 §7.2.2's tail: "1. Append 4 octets
    /// of 0x00 0x00 0xff 0xff to the tail end of the payload of the message. 2. Decompress the
    /// resulting data using DEFLATE."
    fn finish_tail(&mut self, out: &mut Vec<u8>, sink: &mut Sink) -> Result<(), DeflateError> {
        let mut joined = std::mem::take(&mut self.pending);
        let held = joined.len() * 8;
        joined.extend_from_slice(&TAIL);
        let real = joined.len() * 8;
        joined.resize(joined.len() + PAD, 0);
        self.base = self.consumed - (held / 8) as u64;
        let start = usize::from(self.pending_bit);
        // First the payload's own bits (items that start in them may end in the tail).
        let mut pos = self.run(&joined, start, real, held, true, out, sink)?;
        // Not after a payload that ended right after a block with BFINAL set: that message is
        // complete, and the tail would start a block of its own.
        let complete = self.ended && pos == held;
        if !complete && pos >= held {
            pos = self.run(&joined, pos, real, usize::MAX, true, out, sink)?;
        }
        joined.clear();
        self.pending = joined;
        self.pending_bit = 0;
        // §7.2.1 makes every message end on a block boundary (the tail completes an empty
        // stored block): data left inside a block is a truncated message.
        if !complete && (pos != real || self.state != State::Header) {
            self.base = self.consumed;
            return Err(self.invalid("the message ends inside a deflate block", 0));
        }
        Ok(())
    }

    fn sink(&self, out: &[u8], limit: Option<usize>, input: usize) -> Sink {
        Sink {
            start: out.len(),
            w: out.len(),
            before: self.produced,
            limit,
            hint: input.saturating_mul(4),
        }
    }

    /// Cuts the scratch bytes past the write position and counts the output.
    fn settle(&mut self, out: &mut Vec<u8>, sink: &Sink) {
        out.truncate(sink.w);
        self.produced += sink.w - sink.start;
    }

    /// Invalid data found before bit `pos` of the buffer being decoded.
    fn invalid(&self, reason: &str, pos: usize) -> DeflateError {
        DeflateError::InvalidData {
            offset: self.base + pos.div_ceil(8) as u64,
            reason: reason.to_string(),
        }
    }

    /// Appends bytes produced to the window ring.
    fn remember(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.history.is_empty() {
            self.history = vec![0; WINDOW];
        }
        let data = &data[data.len().saturating_sub(WINDOW)..];
        // By pieces under 2 KiB, for the reason given at `Sink::reserve` (memcpy likewise).
        for piece in data.chunks(ZERO_STEP) {
            let first = (WINDOW - self.history_end).min(piece.len());
            let (head, tail) = piece.split_at(first);
            self.history[self.history_end..self.history_end + first].copy_from_slice(head);
            self.history[..tail.len()].copy_from_slice(tail);
            self.history_end = (self.history_end + piece.len()) % WINDOW;
        }
        self.history_len = (self.history_len + data.len()).min(WINDOW);
    }

    /// Decodes what it can of `input` after the pending bytes; keeps the rest pending (in the
    /// `last` frame, its last bytes without trying them).
    fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        sink: &mut Sink,
        last: bool,
    ) -> Result<(), DeflateError> {
        let mut start = 0;
        if !self.pending.is_empty() {
            // The item cut by the last frame's end: decode it from its bytes and this frame's
            // first ones, then go on in this frame.
            let take = input.len().min(JOIN);
            let mut joined = std::mem::take(&mut self.pending);
            let held = joined.len() * 8;
            joined.extend_from_slice(&input[..take]);
            let real = joined.len();
            joined.resize(real + PAD, 0);
            self.base = self.consumed - (held / 8) as u64;
            let pos = self.run(
                &joined,
                usize::from(self.pending_bit),
                real * 8,
                held,
                true,
                out,
                sink,
            )?;
            if pos < held {
                if take < input.len() {
                    // Never: JOIN holds any item or header.
                    return Err(self.invalid("a block header longer than DEFLATE allows", pos));
                }
                self.hold(joined, pos, real);
                return Ok(());
            }
            start = pos - held;
            joined.clear();
            self.pending = joined;
            self.pending_bit = 0;
        }
        let end = input.len() * 8;
        if start >= end {
            return Ok(());
        }
        self.base = self.consumed;
        let pos = self.run(input, start, end, usize::MAX, false, out, sink)?;
        if pos < end {
            // The frame's last bytes, with zeros after them. In the last frame they wait for
            // the tail, and are decoded with it.
            let mut rest = std::mem::take(&mut self.pending);
            rest.clear();
            rest.extend_from_slice(&input[pos / 8..]);
            let real = rest.len();
            if last {
                self.pending_bit = (pos % 8) as u8;
                self.pending = rest;
                return Ok(());
            }
            rest.resize(real + PAD, 0);
            self.base = self.consumed + (pos / 8) as u64;
            let p = self.run(&rest, pos % 8, real * 8, usize::MAX, true, out, sink)?;
            self.hold(rest, p, real);
        }
        Ok(())
    }

    /// Keeps `buf[pos / 8..real]` pending, the first `pos % 8` bits used.
    fn hold(&mut self, mut buf: Vec<u8>, pos: usize, real: usize) {
        buf.truncate(real);
        buf.drain(..(pos / 8).min(real));
        self.pending_bit = if buf.is_empty() { 0 } else { (pos % 8) as u8 };
        self.pending = buf;
    }

    /// Decodes blocks and items from bit `pos` of `buf` until the input (`end`) or `stop_at`
    /// is reached; returns where it stopped, always between two items.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        buf: &[u8],
        mut pos: usize,
        end: usize,
        stop_at: usize,
        padded: bool,
        out: &mut Vec<u8>,
        sink: &mut Sink,
    ) -> Result<usize, DeflateError> {
        loop {
            if pos >= end || pos >= stop_at {
                return Ok(pos);
            }
            match self.state {
                State::Header => {
                    self.ended = false;
                    match self.header(buf, pos, end) {
                        Ok(Some(p)) => pos = p,
                        Ok(None) => return Ok(pos),
                        Err((reason, at)) => return Err(self.invalid(reason, at)),
                    }
                    if self.state == State::Stored(0) {
                        self.block_end(&mut pos);
                    }
                }
                State::Stored(left) => {
                    // A stored block's bytes start on a byte boundary (§3.2.4).
                    let k = (left as usize).min((end - pos) / 8);
                    let from = pos / 8;
                    if sink.w + k > out.len() {
                        sink.grow(out, k)?;
                    }
                    out[sink.w..sink.w + k].copy_from_slice(&buf[from..from + k]);
                    sink.w += k;
                    pos += 8 * k;
                    let left = left - k as u32;
                    if left > 0 {
                        self.state = State::Stored(left);
                        return Ok(pos);
                    }
                    self.block_end(&mut pos);
                }
                State::Codes => {
                    let history = History {
                        ring: &self.history,
                        len: self.history_len,
                        end: self.history_end,
                    };
                    if !padded {
                        let fast = codes_fast(
                            &self.lit,
                            &self.dist,
                            &history,
                            buf,
                            pos,
                            out,
                            sink.start,
                            sink.kept(),
                            &mut sink.w,
                        );
                        match fast {
                            Ok((p, Stop::BlockEnd)) => {
                                pos = p;
                                self.block_end(&mut pos);
                                continue;
                            }
                            Ok((p, Stop::More)) => {
                                pos = p;
                                if sink.w + ROOM > out.len() && sink.reserve(out, ROOM) {
                                    continue;
                                }
                                // Near the end of the frame, or of the room the limit leaves.
                            }
                            Err(Fail::Invalid(reason, at)) => return Err(self.invalid(reason, at)),
                            Err(Fail::Limit(e)) => return Err(e),
                        }
                    }
                    let stopped = codes(
                        &self.lit, &self.dist, &history, buf, pos, end, stop_at, padded, out, sink,
                    );
                    match stopped {
                        Ok((p, Stop::BlockEnd)) => {
                            pos = p;
                            self.block_end(&mut pos);
                        }
                        Ok((p, Stop::More)) => return Ok(p),
                        Err(Fail::Invalid(reason, at)) => return Err(self.invalid(reason, at)),
                        Err(Fail::Limit(e)) => return Err(e),
                    }
                }
            }
        }
    }

    fn block_end(&mut self, pos: &mut usize) {
        self.state = State::Header;
        if self.last {
            // RFC 7692 §7.2.1: "When any DEFLATE block with the "BFINAL" bit set to 1 doesn't
            // end at a byte boundary, an endpoint MUST add minimal padding bits of 0 to make it
            // end at a byte boundary. The next DEFLATE block follows the padded data if any."
            *pos = pos.div_ceil(8) * 8;
            self.last = false;
            self.ended = true;
        }
    }

    /// Reads a block header at bit `pos` (RFC 1951 §3.2.3) and prepares for the block's data:
    /// the new position, or None when the input ends inside the header.
    fn header(
        &mut self,
        buf: &[u8],
        pos: usize,
        end: usize,
    ) -> Result<Option<usize>, (&'static str, usize)> {
        let mut r = Reader::new(buf, pos);
        let Some(h) = r.bits(3, end) else {
            return Ok(None);
        };
        match h >> 1 {
            0 => {
                // §3.2.4: "Any bits of input up to the next byte boundary are ignored. The rest
                // of the block consists of the following information: LEN, NLEN".
                r.align();
                let (Some(len), Some(nlen)) = (r.bits(16, end), r.bits(16, end)) else {
                    return Ok(None);
                };
                if len != !nlen & 0xffff {
                    return Err(("invalid stored block lengths", r.pos()));
                }
                self.state = State::Stored(len);
            }
            1 => {
                if !self.fixed {
                    self.fixed_codes().map_err(|e| (e, r.pos()))?;
                }
                self.state = State::Codes;
            }
            2 => {
                if !self.dynamic_codes(&mut r, end).map_err(|e| (e, r.pos()))? {
                    return Ok(None);
                }
                self.state = State::Codes;
            }
            _ => return Err(("invalid block type", r.pos())),
        }
        self.last = h & 1 != 0;
        Ok(Some(r.pos()))
    }

    /// The fixed codes of §3.2.6; kept until a block brings its own.
    fn fixed_codes(&mut self) -> Result<(), &'static str> {
        let mut lengths = [8u8; 288];
        lengths[144..256].fill(9);
        lengths[256..280].fill(7);
        build_lengths(&mut self.lit, &lengths, Alphabet::LitLen)?;
        build_lengths(&mut self.dist, &[5; 32], Alphabet::Dist)?;
        self.fixed = true;
        Ok(())
    }

    /// Reads the code lengths of a block with dynamic codes (§3.2.7) and builds its tables;
    /// false when the input ends first.
    #[inline(never)]
    fn dynamic_codes(&mut self, r: &mut Reader<'_>, end: usize) -> Result<bool, &'static str> {
        let (Some(hlit), Some(hdist), Some(hclen)) =
            (r.bits(5, end), r.bits(5, end), r.bits(4, end))
        else {
            return Ok(false);
        };
        let (nlit, ndist) = (hlit as usize + 257, hdist as usize + 1);
        if nlit > 286 || ndist > 30 {
            return Err("too many length or distance symbols");
        }
        let mut codelen = [0u8; 19];
        for &symbol in &CODELEN_ORDER[..hclen as usize + 4] {
            let Some(len) = r.bits(3, end) else {
                return Ok(false);
            };
            codelen[symbol] = len as u8;
        }
        build_lengths(&mut self.codelen, &codelen, Alphabet::CodeLen)
            .map_err(|_| "invalid code lengths set")?;
        let total = nlit + ndist;
        // The used symbols as `build` takes them, literal/length and distance symbols in one
        // sequence (a repeat may run from one into the other, §3.2.7: "the code length repeat
        // codes can cross from HLIT + 257 to the HDIST + 1 code lengths").
        let mut used = [0u16; 512];
        // The reader by value, so that its state stays in registers through the loop.
        let (after, read) = code_lengths(&self.codelen.root, *r, end, total, &mut used);
        *r = after;
        let Some(k) = read? else {
            return Ok(false);
        };
        let used = &used[..k.min(used.len())];
        let lit = used.partition_point(|&u| usize::from(u >> 4) < nlit);
        if used[..lit].binary_search_by_key(&256, |&u| u >> 4).is_err() {
            return Err("invalid code -- missing end-of-block");
        }
        self.fixed = false;
        build(&mut self.lit, &used[..lit], 0, Alphabet::LitLen)
            .map_err(|_| "invalid literal/lengths set")?;
        build(&mut self.dist, &used[lit..], nlit, Alphabet::Dist)
            .map_err(|_| "invalid distances set")?;
        Ok(true)
    }
}

/// Reads the `total` code lengths of a dynamic block (§3.2.7) with the code length code
/// `codelen`, writing each used symbol to `used` as `build` takes them; with the reader after
/// them, the number of used symbols, or None when the input (`end`) ends first.
#[inline(always)]
fn code_lengths<'a>(
    codelen: &[u32; 1 << CODELEN_ROOT],
    mut r: Reader<'a>,
    end: usize,
    total: usize,
    used: &mut [u16; 512],
) -> (Reader<'a>, Result<Option<usize>, &'static str>) {
    let mut k = 0;
    let mut previous = 0;
    let mut n = 0;
    let mut left = end as isize - r.pos() as isize;
    while n < total {
        if r.bitcnt < 14 {
            r.refill();
        }
        // Code length codes are at most 7 bits (§3.2.7: "3 bits each"), the root's size:
        // no subtables.
        let e = codelen[(r.bitbuf as usize) & ((1 << CODELEN_ROOT) - 1)];
        let len = (e & 0xff) as usize;
        if e & BAD != 0 {
            if r.pos() + 7 > end {
                return (r, Ok(None));
            }
            return (r, Err("invalid code lengths set"));
        }
        // `left`: the bits before `end`, kept without recomputing the position.
        left -= len as isize;
        if left < 0 {
            return (r, Ok(None));
        }
        r.consume(len as u32);
        let (value, repeat) = match e >> 16 {
            symbol @ 0..=15 => {
                // The common case, without a branch: written always, kept when not 0
                // (`k <= n < total <= 316`: the mask only spares a bounds check).
                let value = symbol as u16;
                used[k & 511] = (n as u16) << 4 | value;
                k += usize::from(value != 0);
                previous = value;
                n += 1;
                continue;
            }
            16 => {
                if n == 0 {
                    return (r, Err("invalid bit length repeat"));
                }
                let Some(x) = r.bits(2, end) else {
                    return (r, Ok(None));
                };
                (previous, 3 + x as usize)
            }
            17 => {
                let Some(x) = r.bits(3, end) else {
                    return (r, Ok(None));
                };
                (0, 3 + x as usize)
            }
            _ => {
                let Some(x) = r.bits(7, end) else {
                    return (r, Ok(None));
                };
                (0, 11 + x as usize)
            }
        };
        if n + repeat > total {
            return (r, Err("invalid bit length repeat"));
        }
        if value != 0 {
            // Each symbol once, so `k <= n`.
            for symbol in n..n + repeat {
                if let Some(slot) = used.get_mut(k) {
                    *slot = (symbol as u16) << 4 | value;
                }
                k += 1;
            }
        }
        previous = value;
        n += repeat;
        left = end as isize - r.pos() as isize;
    }
    (r, Ok(Some(k)))
}

#[cfg(test)]
mod tests {
    //! Our decoder against zlib-rs: the same output for every valid stream however it is framed,
    //! and a failure wherever zlib-rs finds the data invalid.
    use super::*;
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
    use proptest::prelude::*;

    /// Text with long and short repeats, rare bytes (long codes) and runs.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 8 {
                0 => out.push((x >> 8) as u8),
                1 => out.extend(std::iter::repeat_n(
                    b'a' + (x >> 16) as u8 % 3,
                    (x >> 20) as usize % 300,
                )),
                2..=4 => out.extend_from_slice(
                    format!("{{\"k\":{},\"v\":\"{}\"}}", x % 97, x % 13).as_bytes(),
                ),
                _ => {
                    let back = ((x >> 24) as usize % 40_000).min(out.len());
                    let n = ((x >> 40) as usize % 270).min(back);
                    let from = out.len() - back;
                    for i in 0..n {
                        out.push(out[from + i]);
                    }
                }
            }
        }
        out.truncate(len);
        out
    }

    /// Messages compressed as a server does (sync flush, tail removed), context kept or not.
    fn compress(messages: &[Vec<u8>], level: u32, keep: bool) -> Vec<Vec<u8>> {
        let mut c = Compress::new(Compression::new(level), false);
        messages
            .iter()
            .map(|m| {
                if !keep {
                    c.reset();
                }
                let mut out = Vec::with_capacity(m.len() + 64);
                let mut input: &[u8] = m;
                loop {
                    if out.len() == out.capacity() {
                        out.reserve(out.capacity());
                    }
                    let before = c.total_in();
                    c.compress_vec(input, &mut out, FlushCompress::Sync)
                        .unwrap();
                    input = &input[(c.total_in() - before) as usize..];
                    if input.is_empty() && out.len() < out.capacity() {
                        break;
                    }
                }
                // An empty message after a flush adds nothing: an empty payload, which
                // inflates to an empty message.
                if !out.is_empty() {
                    assert!(out.ends_with(&TAIL));
                    out.truncate(out.len() - 4);
                }
                out
            })
            .collect()
    }

    /// Inflates one message in frames cut at `cuts`, handing each frame's output out (draining
    /// the buffer but for a suffix, as the engine does when it streams) unless `drain` is
    /// false; then the output goes after bytes of another message, which the decoder must
    /// never copy from.
    fn inflate(
        d: &mut Inflater,
        payload: &[u8],
        cuts: &[usize],
        drain: bool,
        keep: bool,
        limit: Option<usize>,
    ) -> Result<Vec<u8>, DeflateError> {
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
        bounds.sort_unstable();
        bounds.push(payload.len());
        let mut got = Vec::new();
        let foreign = if drain { 0 } else { 300 };
        let mut out = vec![0xa5; foreign];
        let mut from = 0;
        d.begin();
        for (i, &to) in bounds.iter().enumerate() {
            let frame = &payload[from..to];
            if i + 1 == bounds.len() {
                d.finish(frame, &mut out, limit, keep)?;
            } else {
                d.feed(frame, &mut out, limit)?;
            }
            if drain {
                // As the engine hands out pieces: all but a suffix (a text piece's cut
                // character), which the next frame's matches may copy from.
                let rest = out.len() - out.len() / 3;
                got.extend(out.drain(..rest));
            }
            from = to;
        }
        got.extend_from_slice(&out[foreign.min(out.len())..]);
        Ok(got)
    }

    /// What zlib-rs makes of a message.
    #[derive(Debug, PartialEq)]
    enum Zlib {
        /// Valid, ending on a block boundary.
        Complete(Vec<u8>),
        /// A block with BFINAL set ended before the end of the data: zlib-rs reads nothing
        /// after it (we go on with the next blocks), so only this output can be compared.
        Ended(Vec<u8>),
        /// Invalid data.
        Invalid,
        /// The data ends inside a block (zlib-rs waits for more).
        Truncated,
    }

    /// zlib-rs on the message with the tail, then an empty final block with the fixed codes
    /// (bits 1, 01, then end-of-block 0000000): it ends the stream exactly when the message
    /// ended on a block boundary.
    fn zlib(payload: &[u8]) -> Zlib {
        let mut d = Decompress::new(false);
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let marker = input.len();
        input.extend_from_slice(&[0x03, 0x00]);
        let mut out = Vec::with_capacity(4 * input.len() + 1024);
        let mut rest: &[u8] = &input;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let before = d.total_in();
            let result = d.decompress_vec(rest, &mut out, FlushDecompress::Sync);
            rest = &rest[(d.total_in() - before) as usize..];
            match result {
                Err(_) => return Zlib::Invalid,
                Ok(Status::StreamEnd) if rest.is_empty() => return Zlib::Complete(out),
                Ok(Status::StreamEnd) if input.len() - rest.len() <= marker => {
                    return Zlib::Ended(out)
                }
                Ok(Status::StreamEnd) => return Zlib::Truncated,
                Ok(_) if rest.is_empty() && out.len() < out.capacity() => return Zlib::Truncated,
                Ok(_) => {}
            }
        }
    }

    /// Our verdict agrees with zlib-rs's.
    fn agrees(ours: &Result<Vec<u8>, DeflateError>, zlib: &Zlib) -> Result<(), String> {
        match (ours, zlib) {
            (Ok(got), Zlib::Complete(expected)) if got == expected => Ok(()),
            (Ok(got), Zlib::Ended(expected)) if got.starts_with(expected) => Ok(()),
            (Err(DeflateError::TooBig { .. }), _) => Ok(()),
            (Err(_), Zlib::Invalid | Zlib::Truncated | Zlib::Ended(_)) => Ok(()),
            // A last block that ends inside a byte of the tail: zlib-rs takes the next data
            // from that bit on, which RFC 7692 never makes (a message ends on a byte).
            (Err(DeflateError::InvalidData { reason, .. }), Zlib::Complete(_))
                if reason.contains("ends inside") =>
            {
                Ok(())
            }
            (ours, zlib) => Err(format!("ours {ours:?}, zlib-rs {zlib:?}")),
        }
    }

    #[test]
    fn every_level_and_framing_inflates_back() {
        for level in [0, 1, 6, 9] {
            for keep in [true, false] {
                let messages: Vec<Vec<u8>> = [10usize, 1000, 5000, 40_000, 1, 70_000, 300]
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| sample(n, i as u64 + 7))
                    .collect();
                let payloads = compress(&messages, level, keep);
                for cuts in [
                    vec![],
                    vec![1],
                    vec![3, 5, 7, 100],
                    (0..4000).step_by(13).collect(),
                ] {
                    let mut d = Inflater::new();
                    for (i, (m, p)) in messages.iter().zip(&payloads).enumerate() {
                        let got = inflate(&mut d, p, &cuts, i % 2 == 0, keep, None).unwrap();
                        assert!(got == *m, "level {level} keep {keep} cuts {}", cuts.len());
                    }
                }
            }
        }
    }

    #[test]
    fn long_codes_use_subtables() {
        // Skewed frequencies give codes of up to 15 bits (past the 10-bit and 8-bit roots).
        let mut data = Vec::new();
        let mut x = 1u64;
        for i in 0..200_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) as u32;
            // Byte b appears with weight about 2^-(b/16): a long tail of rare symbols.
            let b = (r.leading_zeros() * 16 + (r & 15)) as u8;
            data.push(b);
            if i % 97 == 0 {
                let back = ((x >> 20) % 30_000) as usize;
                if back < data.len() {
                    let from = data.len() - back;
                    for k in 0..((x >> 50) % 200) as usize {
                        data.push(data[from + k % back.max(1)]);
                    }
                }
            }
        }
        let payload = &compress(std::slice::from_ref(&data), 9, true)[0];
        let mut d = Inflater::new();
        let got = inflate(&mut d, payload, &[], false, true, None).unwrap();
        assert!(got == data);
        assert!(
            !d.lit.sub.is_empty(),
            "no literal/length subtable was built"
        );
    }

    #[test]
    fn the_window_reaches_into_earlier_messages_and_frames() {
        // Many small messages with context takeover: most matches reach into the ring, which
        // wraps many times; frames cut everywhere and drained.
        let messages: Vec<Vec<u8>> = (0..300).map(|i| sample(700 + i * 13, i as u64)).collect();
        let payloads = compress(&messages, 6, true);
        let mut d = Inflater::new();
        for (i, (m, p)) in messages.iter().zip(&payloads).enumerate() {
            let cuts: Vec<usize> = (0..i % 5).map(|k| k * 37 + i).collect();
            assert!(
                inflate(&mut d, p, &cuts, true, true, None).unwrap() == *m,
                "message {i}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_framing_inflates_back(
            sizes in prop::collection::vec(0usize..20_000, 1..6),
            seed in any::<u64>(),
            level in 0u32..10,
            keep in any::<bool>(),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let messages: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| sample(n, seed ^ i as u64)).collect();
            let payloads = compress(&messages, level, keep);
            let mut d = Inflater::new();
            for (m, p) in messages.iter().zip(&payloads) {
                let got = inflate(&mut d, p, &cuts, keep, keep, None).unwrap();
                prop_assert!(got == *m);
            }
        }

        #[test]
        fn damaged_data_fails_where_zlib_fails(
            size in 1usize..5000,
            seed in any::<u64>(),
            level in 0u32..10,
            flips in prop::collection::vec((any::<usize>(), 0u8..8), 1..4),
            cut in any::<usize>(),
            cuts in prop::collection::vec(any::<usize>(), 0..6),
        ) {
            let message = sample(size, seed);
            let mut payload = compress(std::slice::from_ref(&message), level, true).remove(0);
            for (at, bit) in flips {
                let i = at % payload.len();
                payload[i] ^= 1 << bit;
            }
            payload.truncate(payload.len() - cut % 3);
            let whole = inflate(&mut Inflater::new(), &payload, &[], false, true, None);
            let split = inflate(&mut Inflater::new(), &payload, &cuts, true, true, None);
            // Framing never changes the verdict or the output.
            prop_assert_eq!(&whole, &split);
            let verdict = agrees(&whole, &zlib(&payload));
            prop_assert!(verdict.is_ok(), "{}", verdict.unwrap_err());
        }

        #[test]
        fn arbitrary_bytes_fail_where_zlib_fails(
            payload in prop::collection::vec(any::<u8>(), 1..300),
            cuts in prop::collection::vec(any::<usize>(), 0..6),
        ) {
            let whole = inflate(&mut Inflater::new(), &payload, &[], false, true, Some(1 << 20));
            let split = inflate(&mut Inflater::new(), &payload, &cuts, true, true, Some(1 << 20));
            prop_assert_eq!(&whole, &split);
            let verdict = agrees(&whole, &zlib(&payload));
            prop_assert!(verdict.is_ok(), "{}", verdict.unwrap_err());
        }
    }
}

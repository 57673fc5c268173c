//! The engine's input buffer: received bytes not yet decoded.
//!
//! The buffer stays initialised past the data it holds, so a driver can read from the socket
//! straight into its free space (no copy from a separate read buffer) without `unsafe`.

use std::mem::MaybeUninit;

/// Received bytes in `buf[pos..end]`; `buf[end..]` is initialised free space.
#[derive(Debug, Default)]
pub struct InputBuffer {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

/// Buffers above this capacity are released once empty, so one big message does not pin memory;
/// below it they are kept, so a stream of messages up to a few MiB reuses warm memory instead of
/// faulting in fresh pages for each one.
pub const KEEP_CAPACITY: usize = 4 * 1024 * 1024;

impl InputBuffer {
    /// Where the undecoded bytes start, as an index into [`InputBuffer::bytes`].
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Every byte up to the end of the data; decoded bytes come before `pos`.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.end]
    }

    /// The undecoded bytes.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Marks everything before `pos` as decoded.
    pub fn set_pos(&mut self, pos: usize) {
        debug_assert!(pos <= self.end);
        self.pos = pos;
    }

    /// The memory the buffer holds.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// True when no undecoded byte is left.
    pub fn is_drained(&self) -> bool {
        self.pos == self.end
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        let n = data.len();
        self.free_space(n)[..n].copy_from_slice(data);
        self.end += n;
    }

    /// At least `min` bytes of free space to read into; then [`InputBuffer::commit`] what
    /// was written.
    pub fn free_space(&mut self, min: usize) -> &mut [u8] {
        if self.buf.len() - self.end < min {
            // Zero-fills only what was never initialised; a reused buffer costs nothing here.
            self.buf.resize(self.end + min, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Adds `n` bytes written into the free space to the data.
    pub fn commit(&mut self, n: usize) {
        assert!(
            self.end + n <= self.buf.len(),
            "committed beyond the free space"
        );
        self.end += n;
    }

    /// Makes room for `additional` more bytes without initialising them yet.
    pub fn reserve(&mut self, additional: usize) {
        let wanted = self.end + additional;
        if wanted > self.buf.capacity() {
            self.buf.reserve(wanted - self.buf.len());
        }
    }

    /// Gives back capacity reserved ahead (by [`InputBuffer::reserve`]) beyond `KEEP_CAPACITY`
    /// and never written: for a frame whose payload goes elsewhere.
    pub fn release_reserve(&mut self) {
        if self.buf.capacity() - self.buf.len() > KEEP_CAPACITY {
            self.buf.shrink_to(self.buf.len());
        }
    }

    /// Moves the undecoded bytes to the front; a drained buffer over `KEEP_CAPACITY` is
    /// released.
    pub fn compact(&mut self) {
        if self.pos == 0 {
            return;
        }
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        } else {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
    }

    /// Frees the memory of a drained buffer (an idle connection keeps none).
    pub fn release_if_drained(&mut self) {
        if self.is_drained() {
            *self = InputBuffer::default();
        }
    }
}

/// Memory filled from its start that need not be initialised beyond what was written: a large
/// payload received straight into its final object (`blocking/large.rs`). Only this type's
/// methods write the memory, and each counts what it wrote, so `memory[..filled]` is
/// initialised at all times: [`Filling::filled`] relies on nothing else.
#[derive(Debug)]
pub struct Filling<'a> {
    memory: &'a mut [MaybeUninit<u8>],
    filled: usize,
}

impl<'a> Filling<'a> {
    /// Nothing written yet.
    pub fn new(memory: &'a mut [MaybeUninit<u8>]) -> Self {
        Filling { memory, filled: 0 }
    }

    /// The bytes written.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// The memory's length.
    pub fn capacity(&self) -> usize {
        self.memory.len()
    }

    /// True while nothing is written.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// True once every byte is written.
    pub fn is_full(&self) -> bool {
        self.filled == self.memory.len()
    }

    /// Appends as much of `src` as fits; returns the bytes taken.
    pub fn extend(&mut self, src: &[u8]) -> usize {
        let free = self.memory.get_mut(self.filled..).unwrap_or_default();
        let n = src.len().min(free.len());
        // One `memcpy` once optimised.
        for (slot, &byte) in free.iter_mut().zip(src) {
            slot.write(byte);
        }
        self.filled += n;
        n
    }

    /// Lends the free memory to `write` (a `recv` into uninitialised memory) and appends what
    /// it returns as written: initialised bytes (it is a `&mut [u8]`) that must be the start
    /// of the free memory, else nothing is counted. Returns the bytes appended.
    pub fn fill_with<E>(
        &mut self,
        write: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<&mut [u8], E>,
    ) -> Result<usize, E> {
        let free = self.memory.get_mut(self.filled..).unwrap_or_default();
        let (start, room) = (free.as_ptr().cast::<u8>(), free.len());
        let written = write(free)?;
        if !std::ptr::eq(written.as_ptr(), start) || written.len() > room {
            debug_assert!(false, "a write returned memory it was not lent");
            return Ok(0);
        }
        let n = written.len();
        self.filled += n;
        Ok(n)
    }

    /// The bytes written, from the start.
    pub fn filled(&self) -> &[u8] {
        let part = self.memory.get(..self.filled).unwrap_or_default();
        // SAFETY: `part` is `memory[..filled]`, which is initialised: `filled` starts at 0 and
        // grows only in `extend`, by the bytes it has just written, and in `fill_with`, by the
        // length of a `&mut [u8]` (initialised, by that type's rules) at the start of the
        // unwritten memory, bounds checked. Nothing else can write `memory`: the field is
        // private, the borrow unique, and no method stores an uninitialised byte.
        // `MaybeUninit<u8>` has `u8`'s layout.
        #[allow(unsafe_code)]
        unsafe {
            &*(part as *const [MaybeUninit<u8>] as *const [u8])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_survives_compaction_and_reads_in_place() {
        let mut input = InputBuffer::default();
        input.extend(b"hello world");
        input.set_pos(6);
        assert_eq!(input.pending(), b"world");
        input.compact();
        assert_eq!((input.pos(), input.pending()), (0, &b"world"[..]));
        let space = input.free_space(4);
        assert!(space.len() >= 4);
        space[..4].copy_from_slice(b"!!!!");
        input.commit(4);
        assert_eq!(input.pending(), b"world!!!!");
        assert_eq!(input.bytes(), b"world!!!!");
        input.set_pos(9);
        assert!(input.is_drained());
        input.compact();
        assert_eq!(input.bytes(), b"");
        input.release_if_drained();
        assert_eq!(input.buf.capacity(), 0);
    }

    #[test]
    fn fills_uninitialised_memory_from_its_start() {
        let mut memory = [MaybeUninit::<u8>::uninit(); 6];
        let mut filling = Filling::new(&mut memory);
        assert!(filling.is_empty());
        assert_eq!(filling.extend(b"abc"), 3);
        assert_eq!(filling.filled(), b"abc");
        // A write that initialises the first free byte and returns it.
        let n = filling.fill_with(|free| {
            let first = free.first_mut().ok_or(())?;
            Ok::<_, ()>(std::slice::from_mut(first.write(b'd')))
        });
        assert_eq!((n, filling.filled()), (Ok(1), &b"abcd"[..]));
        assert_eq!(filling.fill_with(|_| Err("failed")), Err("failed"));
        assert_eq!(filling.extend(b"efgh"), 2);
        assert!(filling.is_full());
        assert_eq!(filling.filled(), b"abcdef");
        assert_eq!(filling.extend(b"more"), 0);
        assert_eq!(filling.len(), 6);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a system call")]
    fn fills_from_a_socket() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"hello").unwrap();
        let mut memory = [MaybeUninit::<u8>::uninit(); 8];
        let mut filling = Filling::new(&mut memory);
        filling.extend(b">");
        let n = filling.fill_with(|free| {
            rustix::net::recv(&b, free, rustix::net::RecvFlags::empty()).map(|((init, _), _)| init)
        });
        assert_eq!((n, filling.filled()), (Ok(5), &b">hello"[..]));
    }

    #[test]
    #[cfg_attr(
        debug_assertions,
        should_panic(expected = "a write returned memory it was not lent")
    )]
    fn counts_nothing_a_write_did_not_store_at_the_start() {
        let mut memory = [MaybeUninit::<u8>::uninit(); 4];
        let mut filling = Filling::new(&mut memory);
        // The second byte, not the first: refused (a panic in debug builds, else 0 counted).
        let n = filling.fill_with(|free| {
            let second = free.get_mut(1).ok_or(())?;
            Ok::<_, ()>(std::slice::from_mut(second.write(b'x')))
        });
        assert_eq!(n, Ok(0));
        assert!(filling.is_empty());
    }

    #[test]
    fn reserve_does_not_initialise() {
        let mut input = InputBuffer::default();
        input.extend(b"ab");
        input.reserve(1000);
        assert!(input.buf.capacity() >= 1002);
        assert_eq!(input.buf.len(), 2);
    }

    #[test]
    #[should_panic(expected = "committed beyond the free space")]
    fn commit_past_the_free_space_panics() {
        let mut input = InputBuffer::default();
        let n = input.free_space(8).len();
        input.commit(n + 1);
    }
}

//! The engine's input buffer: received bytes not yet decoded.
//!
//! The buffer stays initialised past the data it holds, so a driver can read from the socket
//! straight into its free space (no copy from a separate read buffer) without `unsafe`.

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

/// Copies `src` into the start of `dest` (memory that need not be initialised yet), as much
/// as fits; returns the bytes copied. (`<[MaybeUninit<u8>]>::write_copy_of_slice` needs a
/// newer Rust than the crate's minimum.)
pub fn copy_to_uninit(dest: &mut [std::mem::MaybeUninit<u8>], src: &[u8]) -> usize {
    let n = src.len().min(dest.len());
    // SAFETY: both regions are valid for `n` bytes (`n` is at most either length), they
    // cannot overlap (`dest` is a unique borrow, `src` a shared one), and `MaybeUninit<u8>`
    // has `u8`'s layout; writing initialised bytes into `MaybeUninit` memory is always sound.
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dest.as_mut_ptr().cast::<u8>(), n);
    }
    n
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
    fn copies_into_uninitialised_memory() {
        let mut dest = [std::mem::MaybeUninit::<u8>::uninit(); 4];
        assert_eq!(copy_to_uninit(&mut dest, b"abcdef"), 4);
        assert_eq!(copy_to_uninit(&mut dest[1..], b"Z"), 1);
        // SAFETY: every byte was written above.
        #[allow(unsafe_code)]
        let bytes = dest.map(|b| unsafe { b.assume_init() });
        assert_eq!(&bytes, b"aZcd");
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

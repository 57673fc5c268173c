//! Large binary messages received straight into the `bytes` object `recv()` returns (see
//! `blocking/large.rs`): the object is made uninitialised, filled with the interpreter
//! detached, and published only once every byte is written.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::blocking::large::{LargeSink, LargeTarget};
use crate::buffer::Filling;
use crate::error::Error;
use crate::protocol::{LargeFrame, Protocol};

/// Makes the `bytes` objects large payloads are received into.
pub struct BytesSink<'py>(pub Python<'py>);

/// A `bytes` object of the payload's length, not yet published.
pub struct BytesTarget {
    /// The one reference to the object until `finish` hands it out.
    object: Py<PyBytes>,
    /// Its first byte (`PyBytes_AsString`), `len` bytes long.
    data: NonNull<MaybeUninit<u8>>,
    len: usize,
    /// Every byte is written: set only from a [`Filling`] over all of [`BytesTarget::memory`]
    /// (in `receive`) or from [`PendingLarge`]'s count.
    full: bool,
}

// SAFETY: `BytesTarget` is `Py<PyBytes>` (which is `Send`) plus a pointer into that same
// object's storage. The pointer is only dereferenced through `&mut self` (`memory`), so at
// most one thread uses it at a time, and the storage it points to lives as long as `object`
// does: a `bytes` object's bytes are inline in the object and never move or resize. Writing
// them needs no interpreter lock: no other code can reach the object, whose only reference is
// `object`, until `finish` publishes it.
#[allow(unsafe_code)]
unsafe impl Send for BytesTarget {}

impl LargeSink<PyResult<Py<PyAny>>> for BytesSink<'_> {
    type Target = BytesTarget;

    fn target(&mut self, len: usize) -> Option<BytesTarget> {
        let size = isize::try_from(len).ok()?;
        // SAFETY: attached (`self.0`). `PyBytes_FromStringAndSize(NULL, size)` returns a new
        // reference to a bytes object of `size` bytes whose contents are left uninitialised
        // for the caller to write before the object is used, or NULL with an exception set
        // (MemoryError), which is cleared here: the payload then takes the engine's buffer.
        // `PyBytes_AsString` on that bytes object returns a pointer to its `size` bytes and
        // cannot fail.
        #[allow(unsafe_code)]
        let (object, data) = unsafe {
            let raw = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
            let object = Bound::from_owned_ptr_or_err(self.0, raw)
                .ok()?
                .cast_into_unchecked::<PyBytes>();
            let data = pyo3::ffi::PyBytes_AsString(object.as_ptr());
            (object, data)
        };
        let data = NonNull::new(data.cast::<MaybeUninit<u8>>())?;
        Some(BytesTarget {
            object: object.unbind(),
            data,
            len,
            full: false,
        })
    }
}

impl BytesTarget {
    /// The `bytes` object, once every byte is written: a valid object from then on, and
    /// handing it out publishes it. The receive loop's mutexes order those writes before this,
    /// on whichever thread wrote them.
    fn into_bytes(self) -> Option<Py<PyAny>> {
        self.full.then(|| self.object.into_any())
    }

    /// The object's bytes, not necessarily initialised.
    fn memory(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: `data` points to the `len` bytes of `object`, which `self` keeps alive and
        // which nothing else can reach (see the `Send` proof); `&mut self` makes this borrow
        // the only one. `MaybeUninit<u8>` asks nothing of the bytes' contents.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len)
        }
    }
}

impl LargeTarget<PyResult<Py<PyAny>>> for BytesTarget {
    fn receive<R>(&mut self, receive: impl FnOnce(&mut Filling<'_>) -> R) -> R {
        let mut memory = Filling::new(self.memory());
        let result = receive(&mut memory);
        self.full = memory.is_full();
        result
    }

    fn finish(self) -> Option<PyResult<Py<PyAny>>> {
        self.into_bytes().map(Ok)
    }
}

/// Below this, a large buffer is not worth a walk of the allocator's heap.
pub const RETURN_TO_SYSTEM: usize = 1 << 20;

/// Gives the allocator's free memory back to the system. glibc keeps a large buffer freed
/// from its heap (its mmap threshold rises after the first large free), so the next large
/// allocation would add to the process' memory instead of taking its place once anything
/// else was allocated in the freed space.
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims glibc's own heaps; it takes no pointer.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A large binary payload that `Protocol.receive_messages` receives into its `bytes` object
/// (the sans-IO binding's large-payload path): the bytes a driver feeds fill the payload
/// first, the engine copying the rest to its buffer. One copy from the driver's `bytes` to the
/// message, instead of two through the engine's buffer.
pub struct PendingLarge {
    frame: LargeFrame,
    target: BytesTarget,
    /// `target.memory()[..filled]` is written: `filled` only grows, by the count of a
    /// [`Filling`] over `target.memory()[filled..]`, and nothing else writes the memory.
    filled: usize,
}

impl PendingLarge {
    /// Starts one when the frame under way is a large one (the engine decides), after
    /// `next_event` found no message in what the engine holds.
    pub fn begin(py: Python<'_>, engine: &mut Protocol) -> Option<PendingLarge> {
        let frame = engine.large_frame()?;
        engine.begin_large(&frame);
        if frame.len >= RETURN_TO_SYSTEM {
            // The bytes objects a driver feeds (asyncio's reads) take small pieces of the
            // memory a previous large message freed, so it no longer holds this one: given
            // back first, it does not count twice in the process' memory (2x seen, on glibc,
            // echoing 16 MiB messages).
            return_free_memory();
        }
        let mut target = BytesSink(py).target(frame.len)?;
        let mut prefix = Filling::new(target.memory());
        engine.copy_large_prefix(&frame, &mut prefix);
        let filled = prefix.len();
        Some(PendingLarge {
            frame,
            filled,
            target,
        })
    }

    /// Feeds bytes from the socket received at `now`; true once the payload is whole.
    pub fn feed(&mut self, engine: &mut Protocol, data: &[u8], now: f64) -> Result<bool, Error> {
        let free = self
            .target
            .memory()
            .get_mut(self.filled..)
            .unwrap_or_default();
        let mut rest = Filling::new(free);
        let result = engine.receive_data_large(data, &mut rest, now);
        self.filled += rest.len();
        result?;
        self.target.full = self.filled == self.frame.len;
        Ok(self.target.full)
    }

    /// The message, once [`PendingLarge::feed`] returned true; `None` (the bytes handed back)
    /// if the engine no longer has the frame under way.
    pub fn finish(self, engine: &mut Protocol) -> Option<Py<PyAny>> {
        if self.target.full && engine.complete_large(&self.frame).is_ok() {
            return self.target.into_bytes();
        }
        self.abandon(engine);
        None
    }

    /// Hands what was received back to the engine, as if it had been fed normally (before
    /// any other way of feeding or decoding is used).
    pub fn abandon(mut self, engine: &mut Protocol) {
        let filled = self.filled;
        let memory = self.target.memory();
        let received = memory.get(self.frame.buffered..filled).unwrap_or_default();
        // SAFETY: `memory[..filled]` is written, by `filled`'s invariant (its field comment:
        // every update above adds what a `Filling` over the memory after `filled` appended).
        // `MaybeUninit<u8>` has `u8`'s layout.
        #[allow(unsafe_code)]
        let received = unsafe { &*(received as *const [MaybeUninit<u8>] as *const [u8]) };
        engine.abandon_large(received);
    }
}

//! Reading bytes-like Python objects without copying them.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Runs `f` on the bytes of a bytes-like object (`bytes`, `bytearray`, `memoryview`, any
/// buffer), with the interpreter attached. `bytes` and C-contiguous buffers are read in place;
/// other buffers are copied once.
#[allow(unsafe_code)]
pub fn with_bytes<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(f(bytes.as_bytes()));
    }
    let buffer = PyBuffer::<u8>::get(obj).map_err(|_| {
        let kind = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!("expected a bytes-like object, not {kind}"))
    })?;
    if !buffer.is_c_contiguous() {
        return Ok(f(&buffer.to_vec(obj.py())?));
    }
    let len = buffer.len_bytes();
    if len == 0 {
        // A zero-length buffer may have a dangling pointer: never dereference it.
        return Ok(f(&[]));
    }
    // SAFETY: `buffer` holds a buffer export of a C-contiguous object (checked above) of `len`
    // bytes at `buf_ptr()` (PyBuffer<u8> checked the item size and format). The export keeps
    // the memory alive and stops it from being resized (`bytearray` raises BufferError) until
    // `buffer` is dropped at the end of this function, after the slice's last use in `f`. The
    // slice is only read, while this thread is attached to the interpreter, so no Python code
    // writes to it meanwhile; native code writing to it without the GIL would race any
    // consumer of the buffer protocol and is the owner's to prevent.
    let data = unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, len) };
    Ok(f(data))
}

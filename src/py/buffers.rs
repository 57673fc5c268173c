//! Reading bytes-like Python objects without copying them.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::critical_section::with_critical_section;
use pyo3::types::{PyBytes, PyString};

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The object's buffer as bytes: `bytearray`, `memoryview`, `array('B')` directly; buffers of
/// other item formats (`array('i')`, a typed `memoryview`) through `memoryview(obj).cast("B")`,
/// so any bytes-like object is accepted as its raw bytes, as `bytes(obj)` would take it.
fn byte_buffer(obj: &Bound<'_, PyAny>) -> PyResult<PyBuffer<u8>> {
    if let Ok(buffer) = PyBuffer::<u8>::get(obj) {
        return Ok(buffer);
    }
    let refused = || {
        PyTypeError::new_err(format!(
            "expected a bytes-like object, not {}",
            type_name(obj)
        ))
    };
    let view = obj
        .py()
        .import("builtins")?
        .getattr("memoryview")?
        .call1((obj,))
        .map_err(|_| refused())?;
    let bytes = view.call_method1("cast", ("B",)).or_else(|_| {
        // Not C-contiguous: a copy of its bytes, in order.
        view.call_method0("tobytes")
    })?;
    PyBuffer::<u8>::get(&bytes).map_err(|_| refused())
}

/// Runs `f` on the bytes of a bytes-like object (`bytes`, `bytearray`, `memoryview`, any
/// buffer), with the interpreter attached. `bytes` and C-contiguous buffers are read in place;
/// other buffers are copied once.
///
/// `f` must not detach from the interpreter nor call into it: the proof below relies on it.
#[allow(unsafe_code)]
pub fn with_bytes<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(f(bytes.as_bytes()));
    }
    let buffer = byte_buffer(obj)?;
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
    // slice is only read, and this thread stays attached to the interpreter from the export
    // to the end of `f` (every caller passes an `f` that neither detaches nor calls into the
    // interpreter: the blocking driver takes its engine lock before calling this, not inside
    // `f`). With a GIL, no Python code runs meanwhile. Free-threaded, `f` runs inside the
    // object's critical section (below), which `bytearray` takes for every write of its own
    // methods (CPython 3.14 Objects/bytearrayobject.c), so those writes wait for `f` too; a
    // write that takes no lock (through another memoryview, or native code) would race any
    // consumer of the buffer protocol, `socket.send` included, and is the owner's to prevent.
    let data = unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, len) };
    // A no-op with a GIL.
    Ok(with_critical_section(obj, || f(data)))
}

/// A control frame payload: `None` is empty, `str` is its UTF-8, any bytes-like object its
/// bytes (copied: at most 125 bytes).
pub fn payload_bytes(data: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<u8>> {
    match data {
        None => Ok(Vec::new()),
        Some(d) if d.is_none() => Ok(Vec::new()),
        Some(d) => match d.cast::<PyString>() {
            Ok(s) => Ok(s.to_str()?.as_bytes().to_vec()),
            Err(_) => with_bytes(d, <[u8]>::to_vec),
        },
    }
}

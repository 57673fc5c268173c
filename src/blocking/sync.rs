//! What every file of the blocking driver shares: how a blocking step runs (the Python bindings
//! detach from the interpreter meanwhile) and how a lock is taken.

use std::sync::{Mutex, MutexGuard, TryLockError};

/// How the caller runs a blocking step: the Python bindings detach from the interpreter
/// meanwhile; plain Rust just runs it.
pub trait Blocking {
    /// Runs `f`, which may block.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R;
}

/// Runs blocking steps as they are.
pub struct Direct;

impl Blocking for Direct {
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }
}

/// Takes a lock, also a poisoned one (the I/O thread's registry uses it too).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere; the data is still consistent for our purposes
    // (every critical section leaves the engine in a valid state between calls).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a lock if it is free, also a poisoned one (as [`lock`]); `None` while it is held.
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

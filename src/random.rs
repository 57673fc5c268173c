//! Unpredictable bytes from the operating system, pooled per thread: masking keys and
//! handshake nonces.
//!
//! RFC 6455 §5.3: "The masking key needs to be unpredictable; thus, the masking key MUST be
//! derived from a strong source of entropy".

use ring::rand::{SecureRandom, SystemRandom};

/// Bytes fetched from the OS generator per system call, per thread.
const POOL_BYTES: usize = 1024;

/// A per-thread pool of OS random bytes: one `getrandom` call serves 256 masking keys, shared
/// by every connection the thread drives (a per-connection pool cost a system call for each
/// new connection).
struct RandomPool {
    bytes: [u8; POOL_BYTES],
    next: usize,
}

thread_local! {
    static POOL: std::cell::RefCell<RandomPool> = const {
        std::cell::RefCell::new(RandomPool { bytes: [0; POOL_BYTES], next: POOL_BYTES })
    };
}

/// Fills `buf` from the operating system's random generator.
fn fill_from_os(buf: &mut [u8]) -> Result<(), std::io::Error> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| std::io::Error::other("the operating system's random generator failed"))
}

/// Fills `out` with unpredictable bytes: OS randomness, served from the thread's pool.
pub fn random_bytes(out: &mut [u8]) -> Result<(), std::io::Error> {
    if out.len() > POOL_BYTES / 4 {
        return fill_from_os(out);
    }
    POOL.with(|cell| {
        let mut pool = cell.borrow_mut();
        if POOL_BYTES - pool.next < out.len() {
            fill_from_os(&mut pool.bytes)?;
            pool.next = 0;
        }
        let start = pool.next;
        out.copy_from_slice(&pool.bytes[start..start + out.len()]);
        // Each byte is handed out once.
        pool.next += out.len();
        Ok(())
    })
}

/// A fresh masking key.
pub fn mask_key() -> Result<[u8; 4], std::io::Error> {
    let mut key = [0u8; 4];
    random_bytes(&mut key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_vary_across_pool_refills() {
        let all: Vec<[u8; 4]> = (0..2000).map(|_| mask_key().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert!(distinct.len() > 1990);
        let mut big = [0u8; 4096];
        random_bytes(&mut big).unwrap();
        assert!(big.iter().any(|&b| b != 0));
    }
}

//! Instructions per compressed message, for callgrind, on slices of a file as Autobahn's cases
//! 12 and 13 send them: our codec (zlib-rs wrapped by src/deflate.rs) against zlib-rs called
//! directly: what the wrapper adds.
//!
//! Usage: `deflate MODE FILE SIZE BITS COUNT [nct]`. It takes COUNT consecutive SIZE-byte
//! slices of FILE (wrapping around, as Autobahn does) and prints the compressed bytes.
//! - `ours`, `zlib`: compress them with client_max_window_bits=BITS. Run under
//!   `valgrind --tool=callgrind` with COUNT and with 0: the difference over COUNT is the cost
//!   of a message, set-up excluded.
//! - `inflate-ours`, `inflate-zlib`: compress them as a server does (zlib-rs level 6, window
//!   BITS, sync flush, the tail removed), then inflate them in order. `inflate-none` only
//!   compresses: the difference to it over COUNT is the cost of inflating a message.
//!
//! `nct`: no context takeover (each message compressed, and inflated, on its own).
#![allow(missing_docs)]

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use sigil_ws::deflate::{Deflate, Params};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        return Err("usage: deflate MODE FILE SIZE BITS COUNT [nct]".into());
    }
    let data = std::fs::read(&args[1])?;
    let size: usize = args[2].parse()?;
    let bits: u8 = args[3].parse()?;
    let count: usize = args[4].parse()?;
    if data.is_empty() {
        return Err("FILE is empty".into());
    }
    let nct = args.get(5).is_some_and(|a| a == "nct");
    let mut slices = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let mut m = Vec::with_capacity(size);
        while m.len() < size {
            let take = (size - m.len()).min(data.len() - at);
            m.extend_from_slice(&data[at..at + take]);
            at = (at + take) % data.len();
        }
        slices.push(m);
    }
    let mut total = 0usize;
    let mut out = Vec::new();
    match args[0].as_str() {
        "ours" => {
            let mut d = Deflate::new(Params {
                client_no_context_takeover: nct,
                client_max_window_bits: Some(bits),
                ..Params::default()
            });
            for m in &slices {
                out.clear();
                d.compress(&[m], &mut out)?;
                total += out.len();
            }
        }
        "zlib" => {
            let mut c = Compress::new_with_window_bits(Compression::new(1), false, bits.max(9));
            for m in &slices {
                out.clear();
                out.reserve(m.len() + m.len() / 8 + 64);
                c.compress_vec(m, &mut out, FlushCompress::Sync)?;
                while out.len() == out.capacity() {
                    out.reserve(64);
                    c.compress_vec(&[], &mut out, FlushCompress::Sync)?;
                }
                total += out.len() - 4;
                if nct {
                    c.reset();
                }
            }
        }
        mode @ ("inflate-ours" | "inflate-zlib" | "inflate-none") => {
            let payloads = server_payloads(&slices, bits, nct)?;
            total = payloads.iter().map(Vec::len).sum();
            if mode == "inflate-ours" {
                let mut d = Deflate::new(Params {
                    server_no_context_takeover: nct,
                    ..Params::default()
                });
                for (m, p) in slices.iter().zip(&payloads) {
                    out.clear();
                    d.decompress(p, &mut out, None)?;
                    if out != *m {
                        return Err("inflated to other bytes".into());
                    }
                }
            } else if mode == "inflate-zlib" {
                let mut d = Decompress::new(false);
                let mut input = Vec::new();
                for (m, p) in slices.iter().zip(&payloads) {
                    if nct {
                        d.reset(false);
                    }
                    input.clear();
                    input.extend_from_slice(p);
                    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
                    out.clear();
                    out.reserve(m.len() + 64);
                    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)?;
                    if out != *m {
                        return Err("inflated to other bytes".into());
                    }
                }
            }
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    println!("{total}");
    Ok(())
}

/// The messages compressed as a zlib-based server sends them: level 6, sync flush, the 4-octet
/// tail removed (RFC 7692 §7.2.1).
fn server_payloads(
    slices: &[Vec<u8>],
    bits: u8,
    nct: bool,
) -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error>> {
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, bits.max(9));
    let mut payloads = Vec::with_capacity(slices.len());
    for m in slices {
        if nct {
            c.reset();
        }
        let mut out = Vec::with_capacity(m.len() + m.len() / 8 + 64);
        c.compress_vec(m, &mut out, FlushCompress::Sync)?;
        while out.len() == out.capacity() {
            out.reserve(64);
            c.compress_vec(&[], &mut out, FlushCompress::Sync)?;
        }
        out.truncate(out.len().saturating_sub(4));
        payloads.push(out);
    }
    Ok(payloads)
}

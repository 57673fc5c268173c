//! Instructions per compressed message, for callgrind: our encoder against zlib-rs level 1 (what
//! sigil-ws used before), on slices of a file as Autobahn's cases 12 and 13 send them.
//!
//! Usage: `deflate ours|zlib FILE SIZE BITS COUNT [nct]`. It compresses COUNT consecutive
//! SIZE-byte slices of FILE (wrapping around, as Autobahn does) with client_max_window_bits=BITS
//! and prints the payload bytes. Run it under `valgrind --tool=callgrind` with COUNT and with 0:
//! the difference over COUNT is the cost of a message, set-up excluded.
#![allow(missing_docs)]

use flate2::{Compress, Compression, FlushCompress};
use sigil_ws::deflate::{Deflate, Params};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        return Err("usage: deflate ours|zlib FILE SIZE BITS COUNT [nct]".into());
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
        other => return Err(format!("unknown mode {other}").into()),
    }
    println!("{total}");
    Ok(())
}

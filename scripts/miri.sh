#!/usr/bin/env bash
# Runs, under Miri (nightly), the unit tests of every module with `unsafe` whose tests Miri can
# execute: src/mask.rs (masking into the output buffer), src/buffer.rs (Filling, the memory a
# large payload is received into) and src/blocking/net.rs's reading of socket addresses from
# bytes (its `unsafe` itself wraps getaddrinfo, a libc call Miri cannot make). Miri checks each run for undefined behaviour (out-of-bounds or
# uninitialised reads, aliasing violations under Stacked Borrows, misaligned accesses).
# Not run: tests that make system calls (sockets, getaddrinfo: Miri has no shim for them;
# `#[cfg_attr(miri, ignore)]` marks those in these modules) and src/py/ (FFI into CPython, no
# Rust tests).
# About two minutes on 2 cores. Proptest cases are cut to PROPTEST_CASES (16 by default): Miri
# runs about a thousand times slower than a release build.
# Without a nightly toolchain with Miri the script fails, unless MIRI_OPTIONAL=1, which prints
# one line saying why it was skipped (CI sets it: a CI machine may have stable Rust only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR=never
start=$SECONDS
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "== Miri missing: rustup component add --toolchain nightly miri rust-src"
    rustup component add --toolchain nightly miri rust-src >/dev/null 2>&1 || true
fi
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    if [ "${MIRI_OPTIONAL:-0}" = 1 ]; then
        echo "== Miri SKIPPED: no nightly toolchain with Miri on this machine (rustup could not add it)"
        exit 0
    fi
    echo "miri: no nightly toolchain with Miri (rustup component add --toolchain nightly miri rust-src)" >&2
    exit 1
fi
echo "== $(cargo +nightly miri --version)"
cargo +nightly miri setup >/dev/null 2>&1
tests=(mask:: buffer:: blocking::net::tests::reads_socket_addresses_from_their_bytes)
echo "== cargo +nightly miri test --lib ${tests[*]}"
# Isolation off: proptest reads its configuration from the environment and the clock.
PROPTEST_CASES=${PROPTEST_CASES:-16} MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" \
    nice -n 10 cargo +nightly miri test -q --lib -- "${tests[@]}"
echo "== miri done in $((SECONDS - start)) s"

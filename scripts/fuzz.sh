#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for SECONDS each: `scripts/fuzz.sh 60` in
# CI, `scripts/fuzz.sh 3600` (or more) for a long campaign. Each target starts from the seeds in
# fuzz/seeds/TARGET and keeps what it finds in fuzz/corpus/TARGET (not tracked), so a later run
# goes on from there. A crash, a failed invariant, a leak or a hang stops the script with the
# reproducer in fuzz/artifacts/TARGET/ (replay: RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a -s address
# TARGET FILE).
# libFuzzer's final statistics go to fuzz/stats/TARGET.txt, read by scripts/reliability.py.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
# cargo-fuzz needs nightly features; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
# Release with debug assertions and overflow checks, under AddressSanitizer (with LeakSanitizer).
# The crate is not free of `unsafe`: the lint denies it by default, but 14 sites allow it
# (`grep -rn 'allow(unsafe_code)' src/`), one on the engine's path that these targets drive
# (src/mask.rs's masking into the output buffer), and zlib-rs, which inflates every compressed
# frame, is mostly `unsafe` code. ASan catches out-of-bounds accesses, use after free and
# leaks there, which Rust's checks do not. The standard library is not instrumented (that
# would need -Zbuild-std and nightly). The other `unsafe` sites (sockets, getaddrinfo, the
# Python bindings) are not reachable from a fuzz target; see docs/reliability.md.
# RUSTC_BOOTSTRAP (above) lets the stable toolchain take -Zsanitizer=address; it ships the
# runtime (librustc-stable_rt.asan.a), so no nightly is needed.
sanitizer=address
flags=(-O -a -s "$sanitizer")
echo "== fuzz targets: cargo fmt --check, cargo clippy"
cargo fmt --manifest-path fuzz/Cargo.toml --check
nice -n 10 cargo clippy -q --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
echo "== cargo fuzz build (${targets[*]})"
nice -n 10 cargo fuzz build "${flags[@]}"
mkdir -p fuzz/stats
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log="fuzz/stats/$t.log"
    echo "== fuzz $t for ${seconds}s"
    start=$(date +%s)
    if ! nice -n 10 cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "== fuzz target $t FAILED: reproducer in fuzz/artifacts/$t/"
        exit 1
    fi
    {
        echo "target: $t"
        echo "sanitizer: $sanitizer"
        echo "seconds: $(($(date +%s) - start))"
        echo "corpus_files: $(find "fuzz/corpus/$t" "fuzz/seeds/$t" -type f | wc -l)"
        grep '^stat::' "$log" | tr -d ' ' | sed 's/^stat:://; s/:/: /'
    } >"fuzz/stats/$t.txt"
    grep -E 'number_of_executed_units|average_exec_per_sec|peak_rss' "fuzz/stats/$t.txt" | tr '\n' ' '
    echo
done

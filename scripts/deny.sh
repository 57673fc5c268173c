#!/usr/bin/env bash
# The dependency checks: cargo-deny's licences, bans and sources checks on the crates the wheels
# are built from (deny.toml says which and why), then that THIRD-PARTY-LICENSES is what
# Cargo.lock gives (scripts/third_party_licenses.py --check). None needs the advisory database
# or any network beyond crates.io, and that only to download locked crates cargo lacks.
# cargo-deny is installed with `cargo install --locked` at the version pinned below when the one
# on PATH is another or none (a few minutes, once per machine); then the checks take about a
# second.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR=never
CARGO_DENY_VERSION=0.20.2
start=$SECONDS

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
installed=$(cargo-deny --version 2>/dev/null | cut -d' ' -f2 || true)
if [ "$installed" != "$CARGO_DENY_VERSION" ]; then
    echo "== cargo install cargo-deny $CARGO_DENY_VERSION (found: ${installed:-none})"
    log=$(mktemp)
    if ! cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked > "$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "deny: cannot install cargo-deny $CARGO_DENY_VERSION" >&2
        exit 1
    fi
    rm -f "$log"
fi

echo "== cargo deny check licenses bans sources (cargo-deny $CARGO_DENY_VERSION)"
cargo deny --locked check licenses bans sources
echo "== THIRD-PARTY-LICENSES against Cargo.lock"
python3 scripts/third_party_licenses.py --check
echo "== deny done in $((SECONDS - start)) s"

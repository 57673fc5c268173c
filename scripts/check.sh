#!/usr/bin/env bash
# The whole test suite: Rust format, lints and tests; Python lint, types, stubs and tests.
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/env.sh"
echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy -q --all-targets --all-features -- -D warnings
echo "== cargo test"
cargo test -q 2>&1 | grep -v "^$"
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy --strict"
mypy --strict tests/typing examples python/sigil_ws
# bench/ and conformance/ each have a run.py: check them apart.
mypy --strict conformance
mypy --strict bench
echo "== stubtest"
python -m mypy.stubtest sigil_ws._core --allowlist stubtest-allowlist.txt
bash scripts/build-docs.sh
echo "== Autobahn|Testsuite, fast profile"
for client in sync asyncio uvloop; do
    python conformance/run.py --profile fast --client "$client"
done
echo "== pytest (${PYTEST_WORKERS:-4} workers)"
python -m pytest -q -n "${PYTEST_WORKERS:-4}" tests

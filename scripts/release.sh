#!/usr/bin/env bash
# The long campaigns a release runs, which CI keeps short (after the dependency checks,
# scripts/deny.sh): every fuzz target for FUZZ_SECONDS
# (default 600) each, the Autobahn|Testsuite full profile (compression included) for every
# client, then the distributions with the cp314t wheels required (DIST_REQUIRE_FT=1) and the
# wheels' tests (scripts/ci-dist.sh). About two hours on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
. scripts/env.sh
bash scripts/deny.sh
bash scripts/miri.sh
bash scripts/fuzz.sh "${FUZZ_SECONDS:-600}"
for client in sync asyncio uvloop; do
    python conformance/run.py --profile full --client "$client"
done
DIST_REQUIRE_FT=1 bash scripts/ci-dist.sh

#!/usr/bin/env bash
# The documentation site: installs the pinned doc tools (docs/requirements.txt) into .venv and
# builds docs/ into docs/_build/html with Sphinx, every warning an error. The API reference is
# generated from the installed package, so sigil-ws is built first (scripts/env.sh), unless
# this runs inside .venv already (from scripts/check.sh, which has just built it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${VIRTUAL_ENV:-}" != "$PWD/.venv" ]; then
    # shellcheck source=scripts/env.sh
    . scripts/env.sh
fi
if ! cmp -s docs/requirements.txt .venv/.requirements-docs 2>/dev/null; then
    echo "== installing docs/requirements.txt"
    python -m pip install -q --disable-pip-version-check -r docs/requirements.txt
    cp docs/requirements.txt .venv/.requirements-docs
fi
echo "== docs: sphinx-build -W --keep-going"
start=$SECONDS
python -m sphinx -W --keep-going -q -E -b html docs docs/_build/html
echo "== docs built in $((SECONDS - start)) s: docs/_build/html/index.html"

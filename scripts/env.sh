# Sourced by the other scripts: a virtualenv in .venv with the tools, and sigil-ws built into it
# (release profile, from the current sources).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
if ! cmp -s requirements-dev.txt .venv/.requirements 2>/dev/null; then
    echo "== installing requirements-dev.txt"
    python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
    cp requirements-dev.txt .venv/.requirements
fi
echo "== building sigil-ws (maturin develop --release)"
maturin develop --release -q 2>&1 | grep -v "^📦\|^🔗\|^🐍\|^✏️\|^🛠" || true
python -c "import sigil_ws; print('== sigil-ws', sigil_ws.__version__, 'built')"

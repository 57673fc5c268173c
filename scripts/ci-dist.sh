#!/usr/bin/env bash
# CI: build the distributions once (scripts/build-dist.sh), then test the wheels as installed,
# not the development build: the x86_64 abi3 wheel in fresh virtualenvs of CPython 3.11, 3.12
# and 3.13 (from pyenv), and the cp314t wheel on free-threaded CPython 3.14 (scripts/python-ft.sh
# finds one; without it the leg is skipped with one line saying why). The tests run from a
# scratch directory that holds a copy of tests/ and no python/ folder, and each run first
# proves that sigil_ws is imported from the virtualenv's site-packages.
# Each runs the whole suite in parallel workers (pytest-xdist; PYTEST_WORKERS, default 4). The
# free-threaded leg also runs the typing checks, stubtest and the Autobahn fast profile (sync
# and asyncio) against its wheel. No test is retried: a flaky test is a bug to fix.
# DIST_PYTEST_ARGS adds pytest arguments (e.g. "-x") for runs by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
export PIP_PROGRESS_BAR=off PIP_DISABLE_PIP_VERSION_CHECK=1
start=$SECONDS
VERSIONS=(3.11 3.12 3.13)
WORKERS=${PYTEST_WORKERS:-4}
read -r -a PYTEST_ARGS <<<"${DIST_PYTEST_ARGS:-}"
# The test suite's own dependencies, by name, as pinned in requirements-dev.txt.
TEST_PACKAGES="pytest pytest-timeout pytest-xdist websockets trustme typing_extensions uvloop
pexpect pyte"

bash scripts/build-dist.sh
wheel=$(find dist -name "*-abi3-*manylinux_2_17_x86_64*.whl" | head -n 1)
[ -n "$wheel" ] || { echo "ci-dist: no x86_64 abi3 wheel in dist/" >&2; exit 1; }
wheel_ft=$(find dist -name "*-cp314t-*manylinux_2_17_x86_64*.whl" | head -n 1)

if command -v pyenv > /dev/null; then
    PYENV_ROOT=$(pyenv root)
fi
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r tests "$scratch/tests"
cp -r examples "$scratch/examples"  # tests/test_examples.py runs them
cp pyproject.toml stubtest-allowlist.txt "$scratch/"  # pytest and mypy settings, stubtest
pattern=$(tr -s ' \n' '|' <<<"$TEST_PACKAGES" | sed 's/|$//')
grep -iE "^($pattern)==" requirements-dev.txt > "$scratch/requirements-test.txt"
find "$scratch/tests" -name __pycache__ -prune -exec rm -rf {} +

# Makes a fresh virtualenv VENV of PYTHON with the test packages, EXTRA packages and WHEEL,
# and proves that sigil_ws is imported from it.
install() {
    local python=$1 venv=$2 wheel=$3
    shift 3
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q -r "$scratch/requirements-test.txt" "$@" "$wheel"
    (cd "$scratch" && "$venv/bin/python" - "$venv" <<'EOF'
import pathlib, sys, sysconfig
import sigil_ws
site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
where = pathlib.Path(sigil_ws.__file__).resolve()
assert where.is_relative_to(site), f"sigil_ws imported from {where}, not from {site}"
assert pathlib.Path(sys.argv[1]).resolve() in site.parents
print(f"    sigil_ws {sigil_ws.__version__} from {where.parent}")
EOF
    )
}

run_tests() {
    local venv=$1 label=$2
    rm -rf "$scratch/.pytest_cache"
    if ! (cd "$scratch" && "$venv/bin/python" -m pytest -q -n "$WORKERS" "${PYTEST_ARGS[@]}" \
        tests); then
        echo "ci-dist: the tests failed on $label" >&2
        exit 1
    fi
}

for version in "${VERSIONS[@]}"; do
    python=$(find "$PYENV_ROOT/versions" -maxdepth 1 -name "$version.*" | sort -V | tail -n 1)
    if [ -z "$python" ] || [ ! -x "$python/bin/python" ]; then
        echo "ci-dist: no CPython $version under $PYENV_ROOT/versions" >&2
        exit 1
    fi
    python=$python/bin/python
    venv="$scratch/venv-$version"
    t0=$SECONDS
    echo "== CPython $("$python" --version | cut -d' ' -f2): fresh virtualenv, the wheel, test deps"
    install "$python" "$venv" "$wheel"
    run_tests "$venv" "CPython $version"
    echo "    CPython $version done in $((SECONDS - t0)) s"
done

# The free-threaded leg: the cp314t wheel on CPython 3.14t, with the GIL disabled throughout.
if ! why=$(bash scripts/python-ft.sh 2>&1 >/dev/null); then
    echo "== free-threaded leg SKIPPED: $why"
elif [ -z "$wheel_ft" ]; then
    echo "ci-dist: a free-threaded CPython is here but build-dist made no cp314t wheel" >&2
    exit 1
else
    python_ft=$(bash scripts/python-ft.sh)
    venv="$scratch/venv-ft"
    t0=$SECONDS
    echo "== free-threaded CPython $("$python_ft" -c 'import platform
print(platform.python_version())') ($python_ft): the cp314t wheel, test deps, mypy"
    install "$python_ft" "$venv" "$wheel_ft" "$(grep -E '^mypy==' requirements-dev.txt)"
    # PYTHON_GIL=0 would force the GIL off and hide an extension that turns it back on.
    if [ -n "${PYTHON_GIL:-}" ]; then
        echo "ci-dist: PYTHON_GIL is set ($PYTHON_GIL): unset it for the free-threaded leg" >&2
        exit 1
    fi
    (cd "$scratch" && "$venv/bin/python" -c '
import sys
import sigil_ws, sigil_ws.asyncio, sigil_ws._cli
assert not sys._is_gil_enabled(), "importing sigil_ws enabled the GIL"
print("    GIL disabled after importing sigil_ws, sigil_ws.asyncio, sigil_ws._cli")')
    echo "== free-threaded: mypy --strict (tests/typing, examples), stubtest"
    (cd "$scratch" && "$venv/bin/mypy" --strict tests/typing examples &&
        "$venv/bin/python" -m mypy.stubtest sigil_ws._core --allowlist stubtest-allowlist.txt)
    echo "== free-threaded: Autobahn|Testsuite, fast profile"
    for client in sync asyncio; do
        # run.py's testees import sigil_ws from the interpreter that runs them: the wheel.
        "$venv/bin/python" "$repo/conformance/run.py" --profile fast --client "$client"
    done
    echo "== free-threaded: pytest"
    run_tests "$venv" "free-threaded CPython"
    echo "    free-threaded CPython done in $((SECONDS - t0)) s"
fi
echo "== ci-dist done in $((SECONDS - start)) s"

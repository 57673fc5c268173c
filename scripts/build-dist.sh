#!/usr/bin/env bash
# Build the publishable distributions into dist/:
#   - manylinux2014 (glibc 2.17) abi3 wheels for x86_64 and aarch64, stripped, linked with zig;
#   - beside each, a cp314t wheel for free-threaded CPython 3.14 (the stable ABI has no
#     free-threaded form before 3.15), built with the interpreter scripts/python-ft.sh finds;
#     without one the cp314t wheels are skipped with one line saying why, unless
#     DIST_REQUIRE_FT=1 (scripts/release.sh), which then fails;
#   - an sdist, checked by building a wheel from it with pip and nothing but a Rust toolchain.
# Each is checked: auditwheel must report manylinux_2_17, every undefined symbol of its
# extension must be a glibc 2.17 one, weak or Python's own (scripts/wheel-symbols.py: auditwheel
# does not look at unversioned symbols), `twine check` must pass, the sdist
# must hold what a build needs and none of the repository's bulk (bench/, target/, ...).
# THIRD-PARTY-LICENSES must be what Cargo.lock gives before anything is built, and every wheel,
# the sdist and the wheel built from it must hold it with every shipped crate's licence
# (scripts/third_party_licenses.py).
# Tools come from requirements-dist.txt into .venv-dist; Rust targets through rustup.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
export CARGO_TERM_COLOR=never PIP_PROGRESS_BAR=off PIP_DISABLE_PIP_VERSION_CHECK=1
PYTHON=${PYTHON:-python3}
# DIST_TARGETS overrides the Rust targets (space-separated) that get a wheel.
read -r -a TARGETS <<<"${DIST_TARGETS:-x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu}"
start=$SECONDS

if [ ! -x .venv-dist/bin/python ]; then
    echo "== creating .venv-dist with $($PYTHON --version)"
    "$PYTHON" -m venv .venv-dist
fi
if ! cmp -s requirements-dist.txt .venv-dist/.requirements 2>/dev/null; then
    echo "== installing requirements-dist.txt"
    .venv-dist/bin/python -m pip install -q -r requirements-dist.txt
    cp requirements-dist.txt .venv-dist/.requirements
fi
# maturin finds zig as `python -m ziglang` with the python first on PATH.
export PATH="$PWD/.venv-dist/bin:$PATH"

echo "== THIRD-PARTY-LICENSES against Cargo.lock"
python3 scripts/third_party_licenses.py --check

installed_targets=$(rustup target list --installed)
for target in "${TARGETS[@]}"; do
    if ! grep -qx "$target" <<<"$installed_targets"; then
        echo "== rustup target add $target"
        if ! rustup target add "$target"; then
            echo "build-dist: cannot add the Rust target $target (DIST_TARGETS chooses)" >&2
            exit 1
        fi
    fi
done

# Runs a build step quietly; shows its whole output if it fails, else its "Built" line.
quietly() {
    local log
    log=$(mktemp)
    if ! "$@" > "$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "build-dist: failed: $*" >&2
        exit 1
    fi
    grep -E "^(📦 Built|⚠️|warning: unused)" "$log" | sed "s/^/    /" || true
    rm -f "$log"
}

python_ft=""
if why=$(bash scripts/python-ft.sh 2>&1 >/dev/null); then
    python_ft=$(bash scripts/python-ft.sh)
elif [ "${DIST_REQUIRE_FT:-0}" = 1 ]; then
    echo "build-dist: no free-threaded CPython for the cp314t wheels: $why" >&2
    exit 1
else
    echo "== cp314t wheels SKIPPED: $why"
fi

rm -rf dist
for target in "${TARGETS[@]}"; do
    echo "== wheel for $target (maturin --zig, manylinux2014)"
    quietly maturin build --release --zig --compatibility manylinux2014 --strip \
        --target "$target" -o dist
    if [ -n "$python_ft" ]; then
        echo "== cp314t wheel for $target (free-threaded CPython $("$python_ft" -c \
            'import platform; print(platform.python_version())'))"
        # The host's interpreter gives its own sysconfig (an x86_64 extension suffix); for
        # another target, maturin's bundled sysconfig of that target is the right one.
        interpreter=python3.14t
        [ "$target" != "$(rustc -vV | sed -n 's/^host: //p')" ] || interpreter=$python_ft
        quietly maturin build --release --zig --compatibility manylinux2014 --strip \
            --target "$target" -i "$interpreter" -o dist
    fi
done
echo "== sdist"
quietly maturin sdist -o dist

shopt -s nullglob
wheels=(dist/*.whl)
sdists=(dist/*.tar.gz)
expected=${#TARGETS[@]}
[ -z "$python_ft" ] || expected=$((2 * expected))
if [ "${#wheels[@]}" -ne "$expected" ] || [ "${#sdists[@]}" -ne 1 ]; then
    echo "build-dist: expected $expected wheels and one sdist, got:" >&2
    ls -l dist >&2
    exit 1
fi

echo "== auditwheel show"
for wheel in "${wheels[@]}"; do
    report=$(auditwheel show "$wheel")
    echo "$report" | sed "s/^/    /"
    case "$wheel" in
        *-cp311-abi3-*manylinux_2_17_*.whl | *-cp314-cp314t-*manylinux_2_17_*.whl) ;;
        *)
            echo "build-dist: $wheel is tagged neither cp311-abi3 nor cp314-cp314t" \
                "manylinux_2_17" >&2
            exit 1
            ;;
    esac
    # auditwheel wraps its sentences to the terminal's width: match them on one line.
    if ! tr -s ' \n' '  ' <<<"$report" | grep -q 'consistent with the following platform tag: "manylinux_2_17_'; then
        echo "build-dist: auditwheel does not find $wheel consistent with manylinux_2_17" >&2
        exit 1
    fi
done

echo "== undefined symbols within each wheel's manylinux tag"
python3 scripts/wheel-symbols.py "${wheels[@]}"

echo "== extension modules named for their platform"
for wheel in "${wheels[@]}"; do
    arch=$(sed -E 's/.*_(x86_64|aarch64)\.whl$/\1/' <<<"$wheel")
    module=$(python3 -m zipfile -l "$wheel" | grep -oE 'sigil_ws/_core\.[^ ]+\.so')
    case "$wheel:$module" in
        *-abi3-*:sigil_ws/_core.abi3.so | *-cp314t-*:sigil_ws/_core.cpython-314t-"$arch"-linux-gnu.so)
            echo "    $(basename "$wheel"): $module" ;;
        *)
            echo "build-dist: $wheel holds $module, which its interpreter would not load" >&2
            exit 1
            ;;
    esac
done

echo "== twine check"
twine --no-color check --strict dist/*

echo "== sdist contents"
listing=$(tar -tzf "${sdists[0]}" | sed 's|^[^/]*/||')
for required in Cargo.toml Cargo.lock pyproject.toml README.md LICENSE-MIT LICENSE-APACHE \
    THIRD-PARTY-LICENSES src/lib.rs python/sigil_ws/__init__.py python/sigil_ws/_core.pyi \
    python/sigil_ws/py.typed PKG-INFO; do
    if ! grep -qx "$required" <<<"$listing"; then
        echo "build-dist: the sdist lacks $required" >&2
        exit 1
    fi
done
junk=$(grep -E '(^|/)(target|\.venv[^/]*|__pycache__|\.git|dist|bench|conformance|\.ci)/|\.(so|pyc)$' \
    <<<"$listing" || true)
if [ -n "$junk" ]; then
    echo "build-dist: the sdist holds files it should not:" >&2
    echo "$junk" | head -n 20 >&2
    exit 1
fi
echo "    $(wc -l <<<"$listing") files, $(du -k "${sdists[0]}" | cut -f1) KiB"

echo "== third-party licences in the wheels and the sdist"
python3 scripts/third_party_licenses.py --dist "${wheels[@]}" "${sdists[0]}"

echo "== wheel from the sdist (pip, a Rust toolchain and nothing else on PATH)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tar -xzf "${sdists[0]}" -C "$scratch"
"$PYTHON" -m venv "$scratch/venv"
# A clean PATH: the system's and cargo's, without .venv-dist (so no zig, no maturin of ours:
# pip fetches the build backend that pyproject.toml names). The build reuses a target directory
# of its own so that later runs are incremental; the sources it compiles are the sdist's. It
# proves that the sdist builds, not how fast the result runs: no LTO, parallel codegen.
clean_path=$(tr ':' '\n' <<<"$PATH" | grep -v -e "/.venv" -e "/.pyenv/shims" | paste -sd:)
(
    cd "$scratch"
    PATH="$clean_path" CARGO_TARGET_DIR="$repo/target/sdist-check" \
        CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        "$scratch/venv/bin/python" -m pip wheel -q --no-deps -w "$scratch/wheel" "$scratch"/sigil_ws-*/
)
python3 scripts/third_party_licenses.py --dist "$scratch"/wheel/*.whl
"$scratch/venv/bin/python" -m pip install -q --no-index "$scratch"/wheel/*.whl
(cd "$scratch" && "$scratch/venv/bin/python" -c "
import pathlib, sigil_ws
where = pathlib.Path(sigil_ws.__file__)
assert where.is_relative_to(pathlib.Path('$scratch/venv')), where
print('    built from the sdist and imported:', sigil_ws.__version__, 'from', where.parent)
")

echo "== dist/ ($((SECONDS - start)) s)"
ls -l dist | tail -n +2 | sed "s/^/    /"

#!/usr/bin/env bash
# Prints the path of a free-threaded CPython 3.14 (python3.14t, built with --disable-gil) and
# exits 0; or prints one line on stderr saying why none can be had and exits 1. Looks at, in
# order: $PYTHON_FT; python3.14t on PATH; ../shared/toolchains/python-ft.sh beside the
# repository, which builds one from the CPython source release kept there (once per machine,
# about 4 minutes on 2 cores, cached in ~/.cache). CONTRIBUTING.md says how to get one otherwise.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

is_ft() {
    "$1" -c 'import sys, sysconfig
sys.exit(0 if sysconfig.get_config_var("Py_GIL_DISABLED") and sys.version_info[:2] >= (3, 14)
         else 1)' 2>/dev/null
}

if [ -n "${PYTHON_FT:-}" ]; then
    if is_ft "$PYTHON_FT"; then
        echo "$PYTHON_FT"
        exit 0
    fi
    echo "python-ft: PYTHON_FT=$PYTHON_FT is not a free-threaded CPython >= 3.14" >&2
    exit 1
fi
if command -v python3.14t > /dev/null 2>&1 && is_ft python3.14t; then
    command -v python3.14t
    exit 0
fi
toolchain=$repo/../shared/toolchains/python-ft.sh
if [ -f "$toolchain" ]; then
    if found=$(bash "$toolchain") && is_ft "$found"; then
        echo "$found"
        exit 0
    fi
    echo "python-ft: $toolchain could not provide a free-threaded CPython (see above)" >&2
    exit 1
fi
echo "python-ft: no free-threaded CPython: PYTHON_FT is unset, python3.14t is not on PATH," \
    "and there is no toolchain script at $toolchain" >&2
exit 1

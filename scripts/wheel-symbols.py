"""Checks that a wheel's extension modules load where the wheel's manylinux tag says.

    python scripts/wheel-symbols.py WHEEL...

For each ``.so`` in each wheel, every undefined dynamic symbol (``readelf --dyn-syms``, which
reads any architecture's ELF) must be one of:

- weak (the code checks at run time whether the symbol exists, as std does for ``statx``);
- versioned ``GLIBC_x.y`` at or below the glibc of the wheel's ``manylinux_X_Y`` tag;
- unversioned and Python's own C API (``Py*``, ``_Py*``), which the interpreter provides.

Anything else fails: an unversioned libc function (``gettid`` came in glibc 2.30; linked
against stubs that lack it, it is left unversioned and the import fails on an older glibc with
"undefined symbol"), a newer glibc version, or another library's versioned symbol. auditwheel
looks at versioned symbols only, so it does not see the first kind. Exits 1 on a failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

TAG = re.compile(r"manylinux_(\d+)_(\d+)_")
# readelf -W: "Num: Value Size Type Bind Vis Ndx Name", Name with "@VERSION (n)" when versioned.
ROW = re.compile(r"^\s*\d+:\s+\S+\s+\d+\s+\S+\s+(\S+)\s+\S+\s+UND\s+(\S+)")


def undefined(library: Path) -> list[tuple[str, str, str | None]]:
    """(bind, name, version or None) of each undefined dynamic symbol."""
    out = subprocess.run(
        ["readelf", "--dyn-syms", "-W", str(library)], capture_output=True, text=True, check=True
    ).stdout
    symbols = []
    for line in out.splitlines():
        m = ROW.match(line)
        if m is None:
            continue
        bind, name = m.groups()
        base, _, version = name.partition("@")
        symbols.append((bind, base, version.lstrip("@") or None))
    return symbols


def problems(symbols: list[tuple[str, str, str | None]], glibc: tuple[int, int]) -> list[str]:
    """What is wrong with each of ``symbols`` (from ``undefined``) under glibc ``glibc``."""
    found = []
    for bind, name, version in symbols:
        if bind == "WEAK":
            continue
        if version is None:
            if not (name.startswith("Py") or name.startswith("_Py")):
                found.append(f"{name}: unversioned, and not Python's C API")
            continue
        m = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", version)
        if m is None:
            found.append(f"{name}@{version}: not a glibc version")
        elif (int(m[1]), int(m[2])) > glibc:
            found.append(f"{name}@{version}: newer than glibc {glibc[0]}.{glibc[1]}")
    return found


def main() -> int:
    failed = False
    for wheel in map(Path, sys.argv[1:]):
        tag = TAG.search(wheel.name)
        if tag is None:
            print(f"wheel-symbols: {wheel.name} has no manylinux_X_Y tag", file=sys.stderr)
            return 1
        glibc = (int(tag[1]), int(tag[2]))
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as archive:
            libraries = [n for n in archive.namelist() if n.endswith(".so")]
            archive.extractall(tmp, members=libraries)
            for name in libraries:
                symbols = undefined(Path(tmp) / name)
                found = problems(symbols, glibc)
                verdict = "FAILED" if found else "ok"
                print(f"    {wheel.name}: {name}: {len(symbols)} undefined symbols, {verdict}")
                for problem in found:
                    print(f"      {problem}", file=sys.stderr)
                failed |= bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The third-party licences that ship with sigil-ws: THIRD-PARTY-LICENSES at the repository root.

The shipped set is every crate that sigil-ws (with the "python" feature, as the wheels are built)
reaches through normal dependencies on the wheels' targets, x86_64 and aarch64 Linux, as locked
by Cargo.lock. Build dependencies (build scripts' crates: cc, pyo3-build-config, ...) run on the
build machine and are not in the set; dev-dependencies (proptest) neither. Proc-macro crates and
their own normal dependencies are in it: they run inside the compiler, but the code they generate
is compiled into the extension. For each crate the file holds its name, version, the licence
expression of its Cargo.toml and the full text of every licence file at the root of its source
as cargo unpacked it from crates.io.

    third_party_licenses.py            write THIRD-PARTY-LICENSES
    third_party_licenses.py --check    fail unless THIRD-PARTY-LICENSES is what it would write
    third_party_licenses.py --dist FILE...
                                       fail unless each wheel (.whl) or sdist (.tar.gz) holds
                                       THIRD-PARTY-LICENSES (a wheel in .dist-info/licenses/, an
                                       sdist at its root) with a section, licence text included,
                                       for every crate of the shipped set and for no other crate

It runs `cargo tree` and `cargo metadata` with --locked: they download locked crates that cargo
lacks (never update them) and need nothing but cargo and Python 3.11.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parent.parent
OUTPUT = "THIRD-PARTY-LICENSES"
TARGETS = ("x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu")
FEATURES = "python"
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
# Files at a crate's root that carry its licence terms or notices.
LICENCE_FILE = re.compile(r"^(LICEN[CS]E|COPYING|COPYRIGHT|NOTICE|UNLICENSE)", re.IGNORECASE)
RULE = "=" * 78
THIN = "-" * 78
# A crate's section opens with RULE, then this line (parsed by --dist).
SECTION = re.compile(r"^Crate: (\S+) (\S+)$")
FILE_HEAD = re.compile(r"^--- (\S+) (\S+): (.+) ---$")


@dataclass(frozen=True)
class Crate:
    name: str
    version: str
    licence: str
    root: Path
    files: tuple[str, ...]


def fail(message: str) -> NoReturn:
    print(f"third_party_licenses: {message}", file=sys.stderr)
    sys.exit(1)


def cargo(*args: str) -> str:
    command = ["cargo", *args, "--locked", "--features", FEATURES]
    for target in TARGETS:
        command += ["--filter-platform" if args[0] == "metadata" else "--target", target]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


def shipped() -> list[Crate]:
    # The set comes from `cargo tree -e normal`, which resolves features as the build does
    # (resolver 2, weak dependency features); `cargo metadata`'s resolve graph does not (it
    # holds flate2's optional crc32fast, which no build of ours compiles). Metadata gives each
    # crate's licence, source and where cargo unpacked it.
    tree = cargo("tree", "-e", "normal", "--prefix", "none", "--format", "{p}")
    names = set()
    for line in filter(None, tree.splitlines()):  # a blank line between the targets' trees
        name, version = line.split()[:2]
        if name != "sigil-ws":
            names.add((name, version.removeprefix("v")))
    meta = json.loads(cargo("metadata", "--format-version", "1"))
    packages = {(p["name"], p["version"]): p for p in meta["packages"]}
    if not names or names - packages.keys():
        fail(f"cargo tree names crates cargo metadata lacks: {sorted(names - packages.keys())}")
    crates = []
    for key in names:
        p = packages[key]
        label = f"{p['name']} {p['version']}"
        if p["source"] != CRATES_IO:
            fail(f"{label} comes from {p['source']}, not crates.io")
        if not p["license"]:
            fail(f"{label} declares no SPDX licence expression (license-file only)")
        root_dir = Path(p["manifest_path"]).parent
        files = {f for f in os.listdir(root_dir) if LICENCE_FILE.match(f)}
        if p.get("license_file"):  # a licence file that Cargo.toml names, wherever it is
            files.add((root_dir / p["license_file"]).resolve().relative_to(root_dir).as_posix())
        if not files:
            fail(f"{label} has no licence file at the root of {root_dir}")
        crates.append(Crate(p["name"], p["version"], p["license"], root_dir, tuple(sorted(files))))
    return sorted(crates, key=lambda c: (c.name, c.version))


def read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n")) + "\n"


def render(crates: list[Crate]) -> str:
    version = next(
        line.split('"')[1]
        for line in (REPO / "Cargo.toml").read_text().splitlines()
        if line.startswith("version = ")
    )
    width = max(len(f"{c.name} {c.version}") for c in crates) + 2
    out = [
        f"Third-party licences of sigil-ws {version}",
        "",
        "sigil-ws itself is licensed under MIT OR Apache-2.0 (LICENSE-MIT, LICENSE-APACHE).",
        "Its extension module, sigil_ws._core, is compiled from sigil-ws's Rust code and",
        "from the crates below, taken from crates.io at the versions Cargo.lock locks:",
        'every crate that sigil-ws with its "python" feature reaches through normal',
        f"dependencies on {' or '.join(TARGETS)}.",
        "Proc-macro crates (pyo3-macros, thiserror-impl and what they use) run inside the",
        "compiler and are listed because the code they generate is compiled in. Build",
        "dependencies and dev-dependencies are not part of the extension and are not listed.",
        "The Rust standard library, which rustc links into the extension, is not listed here:",
        "it is licensed under MIT OR Apache-2.0, with the exceptions its toolchain's",
        "share/doc/rust/COPYRIGHT-library.html names.",
        "",
        "Each crate's section below holds the licence expression of its Cargo.toml and the",
        "full text of each licence file at the root of its published source.",
        "",
        "Generated by scripts/third_party_licenses.py from Cargo.lock; do not edit by hand.",
        "",
        f"{'Crate'.ljust(width)}Licence",
    ]
    out += [f"{f'{c.name} {c.version}'.ljust(width)}{c.licence}" for c in crates]
    for c in crates:
        out += ["", RULE, f"Crate: {c.name} {c.version}", f"Licence: {c.licence}"]
        out += ["Source: crates.io", f"Licence files: {', '.join(c.files)}"]
        for name in c.files:
            out += [THIN, f"--- {c.name} {c.version}: {name} ---", THIN]
            out.append(read_text(c.root / name).rstrip("\n"))
    return "\n".join(out) + "\n"


def sections(text: str) -> dict[tuple[str, str], int]:
    """(name, version) -> how many licence texts that crate's section holds."""
    found: dict[tuple[str, str], int] = {}
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = SECTION.match(line)
        if m and i > 0 and lines[i - 1] == RULE:
            key = (m[1], m[2])
            if key in found:
                fail(f"two sections for {m[1]} {m[2]}")
            found[key] = 0
        m = FILE_HEAD.match(line)
        if m and (m[1], m[2]) in found and i + 2 < len(lines) and lines[i + 1] == THIN:
            # A licence text: at least one non-blank line before the next separator.
            body = lines[i + 2 : i + 5]
            if any(b.strip() and b not in (RULE, THIN) for b in body):
                found[(m[1], m[2])] += 1
    return found


def from_archive(path: Path) -> str:
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as z:
            wanted = re.compile(rf"[^/]+\.dist-info/licenses/{OUTPUT}")
            names = [n for n in z.namelist() if wanted.fullmatch(n)]
            if len(names) != 1:
                fail(f"{path.name} holds no .dist-info/licenses/{OUTPUT}")
            return z.read(names[0]).decode("utf-8")
    if path.name.endswith(".tar.gz"):
        with tarfile.open(path) as t:
            members = [m for m in t.getmembers() if re.fullmatch(rf"[^/]+/{OUTPUT}", m.name)]
            f = t.extractfile(members[0]) if len(members) == 1 else None
            if f is None:
                fail(f"{path.name} holds no {OUTPUT} at its root")
            return f.read().decode("utf-8")
    fail(f"{path}: neither a wheel (.whl) nor an sdist (.tar.gz)")


def check_dist(paths: list[Path], crates: list[Crate]) -> None:
    want = {(c.name, c.version) for c in crates}
    for path in paths:
        got = sections(from_archive(path))
        missing = sorted(want - got.keys())
        extra = sorted(got.keys() - want)
        textless = sorted(k for k, n in got.items() if n == 0)
        problems = [f"lacks the crate {n} {v}" for n, v in missing]
        problems += [f"lists {n} {v}, which Cargo.lock does not ship" for n, v in extra]
        problems += [f"has no licence text for {n} {v}" for n, v in textless]
        if problems:
            fail(f"{path.name}'s {OUTPUT}:\n  " + "\n  ".join(problems))
        print(f"    {path.name}: {OUTPUT} with {len(got)} crates, each with its licence text")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help=f"fail unless {OUTPUT} is current")
    mode.add_argument("--dist", nargs="+", type=Path, metavar="FILE", help="check archives")
    args = parser.parse_args()
    crates = shipped()
    if args.dist:
        check_dist(args.dist, crates)
        return
    text = render(crates)
    target = REPO / OUTPUT
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            fail(
                f"{OUTPUT} is not what Cargo.lock gives: run "
                "`python3 scripts/third_party_licenses.py` and commit the result"
            )
        print(f"    {OUTPUT} is current: {len(crates)} crates")
        return
    target.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}: {len(crates)} crates, {len(text.encode())} bytes")


if __name__ == "__main__":
    main()

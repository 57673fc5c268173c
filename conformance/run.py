"""Run the Autobahn|Testsuite fuzzing server against sigil-ws and grade the report.

Usage:
    python conformance/run.py [--profile fast|full] [--client sync|asyncio|uvloop]

It makes a Python 2.7 virtualenv with ``autobahntestsuite`` in ``.venv-wstest`` when none exists
(wstest runs on Python 2.7 only; pyenv provides the interpreter), starts ``wstest -m
fuzzingserver`` on 127.0.0.1, runs the testee client, and prints a per-section table.

It also reports the CPU time the testee (the client) and the fuzzing server each used: the
server's own work sets the wall time of the compression sections, so the client's share of the
CPU is the figure that says how much the client costs.

Exit status: non-zero on any FAILED or UNIMPLEMENTED case (permessage-deflate is
implemented, so the compression sections 12 and 13 count too), and on NON-STRICT ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WSTEST_VENV = ROOT / ".venv-wstest"
BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
PROFILES = {
    # 9.* is performance (messages up to 16 MiB), 12.*/13.* is compression.
    "fast": ["9.*", "12.*", "13.*"],
    "full": [],
}
TESTEES: dict[str, list[str | Path]] = {
    "sync": [ROOT / "conformance" / "testee.py"],
    "asyncio": [ROOT / "conformance" / "testee_asyncio.py"],
    "uvloop": [ROOT / "conformance" / "testee_asyncio.py", "--uvloop"],
}


def python27() -> str:
    """The pyenv 2.7 interpreter (or $PYTHON27)."""
    if env := os.environ.get("PYTHON27"):
        return env
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True)
    versions = sorted((Path(root.stdout.strip()) / "versions").glob("2.7*"))
    if not versions:
        sys.exit("no Python 2.7 under pyenv: wstest needs one (pyenv install 2.7.18)")
    return str(versions[-1] / "bin" / "python")


def ensure_wstest() -> Path:
    wstest = WSTEST_VENV / "bin" / "wstest"
    if wstest.exists():
        return wstest
    print("== creating .venv-wstest (Python 2.7, autobahntestsuite)", flush=True)
    py27 = python27()
    quiet = ["-q", "--disable-pip-version-check"]
    subprocess.run([py27, "-m", "pip", "install", *quiet, "virtualenv==20.15.1"], check=True)
    subprocess.run([py27, "-m", "virtualenv", "-q", str(WSTEST_VENV)], check=True)
    pip = str(WSTEST_VENV / "bin" / "pip")
    subprocess.run([pip, "install", *quiet, "autobahntestsuite==25.10.1"], check=True)
    return wstest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"wstest exited early with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit("wstest did not start listening in time")


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of a running process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def section_of(case_id: str) -> str:
    return case_id.split(".")[0]


def grade(results: dict[str, dict[str, str]]) -> tuple[str, list[str]]:
    """The per-section table and the list of problems that fail the run."""
    by_section: dict[str, Counter[str]] = defaultdict(Counter)
    problems = []
    for case_id, result in results.items():
        behavior = result["behavior"]
        by_section[section_of(case_id)][behavior] += 1
        if behavior in ("FAILED", "UNIMPLEMENTED", "NON-STRICT"):
            problems.append(f"{case_id}: {behavior}")
    header = "| section | " + " | ".join(BEHAVIORS) + " | total |"
    lines = [header, "|" + "---|" * (len(BEHAVIORS) + 2)]
    totals: Counter[str] = Counter()
    for section in sorted(by_section, key=int):
        counts = by_section[section]
        totals.update(counts)
        cells = " | ".join(str(counts.get(b, 0)) for b in BEHAVIORS)
        lines.append(f"| {section} | {cells} | {sum(counts.values())} |")
    cells = " | ".join(str(totals.get(b, 0)) for b in BEHAVIORS)
    lines.append(f"| all | {cells} | {sum(totals.values())} |")
    return "\n".join(lines), problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="fast")
    parser.add_argument("--client", choices=TESTEES, default="sync")
    parser.add_argument("--keep-reports", type=Path, help="copy the HTML/JSON reports here")
    parser.add_argument(
        "--cases", nargs="+", default=["*"], help="case patterns to run (default: all)"
    )
    args = parser.parse_args()

    wstest = ensure_wstest()
    agent = f"sigil-ws-{args.client}"
    with tempfile.TemporaryDirectory(prefix="autobahn-") as tmp:
        port = free_port()
        outdir = Path(tmp) / "reports"
        spec = {
            "url": f"ws://127.0.0.1:{port}",
            "outdir": str(outdir),
            "cases": args.cases,
            "exclude-cases": PROFILES[args.profile],
            "exclude-agent-cases": {},
        }
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        server = subprocess.Popen(
            # --webport 0: no report web server, so several runs can share the machine.
            [str(wstest), "-m", "fuzzingserver", "-s", str(spec_file), "--webport", "0"],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, server)
            print(f"== Autobahn {args.profile} profile, {agent}", flush=True)
            start = time.monotonic()
            server_before = cpu_times(server.pid)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            testee = subprocess.Popen(
                [
                    sys.executable,
                    str(TESTEES[args.client][0]),
                    f"ws://127.0.0.1:{port}",
                    agent,
                    *map(str, TESTEES[args.client][1:]),
                ]
            )
            try:
                testee.wait(1800)
            finally:
                if testee.returncode is None:
                    testee.kill()
            # The testee is the only child reaped since `before`: the difference is its CPU.
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            client_user = after.ru_utime - before.ru_utime
            client_system = after.ru_stime - before.ru_stime
            server_after = cpu_times(server.pid)
            server_user = server_after[0] - server_before[0]
            server_system = server_after[1] - server_before[1]
            elapsed = time.monotonic() - start
            if testee.returncode != 0:
                sys.exit(f"the testee exited with status {testee.returncode}")
        finally:
            server.terminate()
            server.wait(10)
        index = json.loads((outdir / "index.json").read_text())
        if args.keep_reports:
            shutil.copytree(outdir, args.keep_reports, dirs_exist_ok=True)
    table, problems = grade(index[agent])
    print(table)
    print(f"\n{len(index[agent])} cases in {elapsed:.1f} s")
    client_cpu = client_user + client_system
    server_cpu = server_user + server_system
    share = client_cpu / server_cpu if server_cpu else 0.0
    print(
        f"CPU: client {client_cpu:.1f} s, fuzzing server {server_cpu:.1f} s "
        f"(client = {100 * share:.1f} % of the server)"
    )
    # Shown apart, to tell a change in the kernel's part (wake-ups, polls) from one in the
    # process's own work when the share moves.
    print(
        f"     user + system: client {client_user:.1f} + {client_system:.1f} s, "
        f"fuzzing server {server_user:.1f} + {server_system:.1f} s"
    )
    for problem in problems:
        print("  " + problem)
    if problems:
        print(f"== {len(problems)} cases FAILED, UNIMPLEMENTED or NON-STRICT")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark suite: sigil-ws against its peers and the machine's floors, in one run.

Usage:
    python bench/run.py --quick            # one round, one to two minutes
    python bench/run.py                    # the full suite
    python bench/run.py --only push-64 --rounds 5
    python bench/run.py --render bench/results/latest.json   # charts and table, no new run

The compression scenarios (deflate-*) run every client that can negotiate permessage-deflate
against the native server's --deflate mode (context takeover, 15-bit windows, zlib level 6 for
what it sends), with JSON-like market data (bench/native/src/deflate.rs and its twin in
bench/clients.py); their floor is the same push inflated natively by flate2 over zlib-rs, the
codec sigil-ws inflates with (``native-inflate``).

Every client runs against the same native servers (bench/native, tokio-tungstenite for
WebSocket, plain tokio for raw TCP), each measurement in a fresh process (bench/clients.py),
clients interleaved round by round so that machine drift hits all of them alike. The table
gives the median over rounds: messages/s, MB/s, client CPU µs per message (timed part only),
server CPU µs per message, peak RSS, and each row's ratio to the best peer, to the floor and,
in the ping-pong scenarios, to a native WebSocket client (tungstenite, blocking) doing the same
ping-pong against the same server ("vs native"): the limit a Python binding can honestly aim at.
Results go to bench/results/latest.json and latest.md, with SVG charts beside them
(latest-headline.svg, latest-throughput.svg, latest-cpu.svg, latest-threads.svg; see
bench/charts.py). Progress (step, round, scenario, client, estimated time left) goes to stderr.

The threads scenarios (threads-Kx-push-*) give each of K threads its own connection and push;
every worker times itself (from just before its first receive to its last message) and the
row's rate is all messages over the span from the first start to the last end; the floor is K
plain sockets read in K threads. They, pingpong-64 and push-64 also run on the free-threaded
CPython 3.14t (clients named ``...@3.14t``): its interpreter comes from scripts/python-ft.sh,
sigil-ws from the project's .venv-ft (built there in editable mode), the peers from a venv of
the suite's own (.venv-bench-ft, made on first use); without a free-threaded CPython those
clients are skipped with one line saying why. "vs best peer" compares with the fastest other
library on the same interpreter, "vs GIL build" a client on 3.14t with itself on the GIL
build, "vs 1 thread" a threads-Kx row with the same client's threads-1x row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charts import render_charts

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NATIVE = BENCH / "native" / "target" / "release" / "sigil-bench"
RESULTS = BENCH / "results"
VENV312 = ROOT / ".venv-bench312"
# The free-threaded CPython (scripts/python-ft.sh): sigil-ws comes from the project's own venv
# for it (.venv-ft, built there in editable mode), the peers from a venv of the suite's own.
VENV_FT = ROOT / ".venv-ft"
VENV_BENCH_FT = ROOT / ".venv-bench-ft"
FT = "@3.14t"  # the suffix of a client that runs on the free-threaded interpreter

SYNC = ["sigil-ws", "websockets", "websocket-client", "websocket-rs"]
ASYNC = ["sigil-ws-asyncio", "websockets-asyncio", "aiohttp", "picows", "websocket-rs-asyncio"]
PY312_ONLY = {"websocket-rs", "websocket-rs-asyncio"}
# The same clients on the free-threaded interpreter. websocket-rs has no wheel for it (only
# cp312-abi3); aiohttp and picows install there too but are left out to keep the suite short.
SYNC_FT = [f"{c}{FT}" for c in ("sigil-ws", "websockets", "websocket-client")]
FT_OURS = {f"sigil-ws{FT}", f"sigil-ws-asyncio{FT}"}
FT_PEERS = {f"websockets{FT}": "websockets", f"websocket-client{FT}": "websocket"}
OURS = {"sigil-ws", "sigil-ws-asyncio", *FT_OURS}
# The clients with a keepalive of their own (websockets' sync client runs a thread per
# connection for it; picows pings connections that have been idle).
KEEPALIVE = [
    "sigil-ws",
    "websockets",
    "sigil-ws-asyncio",
    "websockets-asyncio",
    "aiohttp",
    "picows",
]
# The clients that can negotiate permessage-deflate (websocket-client and websocket-rs' sync
# client cannot); picows compresses only through its websockets-compatible client.
DEFLATE = [
    "sigil-ws",
    "websockets",
    "sigil-ws-asyncio",
    "websockets-asyncio",
    "aiohttp",
    "picows-websockets",
    "websocket-rs-asyncio",
]


@dataclass
class Scenario:
    name: str
    kind: str  # pingpong | push | setup | threads | idle
    clients: list[str]
    args: list[str]  # after the URL, with {size} etc. already filled
    size: int = 0  # message size in bytes (for MB/s)
    secure: bool = False
    # "native-pingpong", "native-tls-pingpong", "native-inflate", "raw", "pyobj", and the native
    # WebSocket clients "native-ws-pingpong", "native-wss-pingpong" (NATIVE_CLIENTS)
    floors: list[str] = field(default_factory=list)
    threads: int = 0
    # permessage-deflate negotiated on both ends, JSON-like text messages (BENCH_DEFLATE=1)
    deflate: bool = False
    # each client's own keepalive pings at this interval, in seconds (BENCH_KEEPALIVE)
    keepalive: float = 0.0


def scenarios(quick: bool) -> list[Scenario]:
    t = "0.2" if quick else "2"
    every = SYNC + ASYNC
    push_n = {64: 300_000 if quick else 5_000_000, 16384: 20_000 if quick else 300_000}
    out = []
    # sigil-ws on both interpreters in the 64-byte rows (one thread: the free-threaded build's
    # cost per message), with the sync peers that install on the free-threaded one.
    both = {64: [*every, *SYNC_FT, f"sigil-ws-asyncio{FT}"]}
    for size, label in [(64, "64"), (1024, "1k"), (65536, "64k"), (1 << 20, "1m")]:
        out.append(
            Scenario(
                f"pingpong-{label}",
                "pingpong",
                both.get(size, every),
                [str(size), t],
                size,
                floors=["native-pingpong", "native-ws-pingpong"],
            )
        )
    for size, label in [(64, "64"), (16384, "16k")]:
        n = push_n[size]
        floors = ["raw", "pyobj"] if size == 64 else ["raw"]
        clients = both.get(size, every)
        out.append(
            Scenario(f"push-{label}", "push", clients, [str(n), str(size)], size, floors=floors)
        )
    # Compression: a market-data push of 1 KiB JSON-like text (about 5x compressible) and a
    # ping-pong of 16 KiB JSON-like text, compressed both ways, context takeover, 15-bit windows.
    deflate_n = 30_000 if quick else 300_000
    out.append(
        Scenario(
            "deflate-push-1k",
            "push",
            DEFLATE,
            [str(deflate_n), "1024"],
            1024,
            floors=["native-inflate"],
            deflate=True,
        )
    )
    out.append(
        Scenario("deflate-pingpong-16k", "pingpong", DEFLATE, ["16384", t], 16384, deflate=True)
    )
    out.append(Scenario("setup-ws", "setup", every, [t]))
    out.append(Scenario("setup-wss", "setup", every, [t], secure=True))
    for size, label in [(64, "64"), (1 << 20, "1m")]:
        out.append(
            Scenario(
                f"wss-pingpong-{label}",
                "pingpong",
                every,
                [str(size), t],
                size,
                secure=True,
                floors=["native-tls-pingpong", "native-wss-pingpong"],
            )
        )
    out.append(
        Scenario("wss-push-16k", "push", every, [str(push_n[16384]), "16384"], 16384, secure=True)
    )
    # K threads, each with its own connection and push, on both interpreters; the raw-socket
    # floor is K plain sockets read in K threads, the machine's ceiling.
    per_thread = {64: 100_000 if quick else 3_000_000, 16384: 10_000 if quick else 150_000}
    for size, label in [(64, "64"), (16384, "16k")]:
        for k in (1, 2):
            out.append(
                Scenario(
                    f"threads-{k}x-push-{label}",
                    "threads",
                    [*SYNC, *SYNC_FT],
                    [str(k), str(per_thread[size]), str(size)],
                    size,
                    floors=["raw"],
                    threads=k,
                )
            )
    out.append(Scenario("idle-rss", "idle", every, ["200" if quick else "1000"]))
    # The same idle connections with each client's keepalive pinging every second (50x the
    # usual rate, so that its CPU shows in a short hold): RSS per connection and the CPU the
    # client spends while the connections stay idle. Only clients that have a keepalive.
    out.append(
        Scenario(
            "idle-keepalive",
            "idle",
            KEEPALIVE,
            ["200" if quick else "1000", "2" if quick else "10"],
            keepalive=1.0,
        )
    )
    return out


# ---- environment ----------------------------------------------------------------------------


def ensure_native() -> None:
    """Build the native servers and floors (a no-op when they are up to date)."""
    print("== building bench/native (cargo build --release)", flush=True)
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=BENCH / "native", check=True)


def ensure_peers() -> None:
    """The peers come from requirements-dev.txt (scripts/env.sh installs it)."""
    missing = []
    for module in ("websockets", "websocket", "aiohttp", "picows", "uvloop", "trustme"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        print(f"== installing requirements-dev.txt (missing: {', '.join(missing)})", flush=True)
        pip_install(sys.executable, "-r", str(ROOT / "requirements-dev.txt"))


def python312() -> str | None:
    """A Python 3.12 venv with websocket-rs (its wheel needs 3.12), or None with a reason."""
    py = VENV312 / "bin" / "python"
    if py.exists():
        return str(py)
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        print("-- no pyenv: websocket-rs (Python 3.12 only) is skipped", flush=True)
        return None
    versions = sorted((Path(root.stdout.strip()) / "versions").glob("3.12*"))
    if not versions:
        print("-- no Python 3.12 under pyenv: websocket-rs is skipped", flush=True)
        return None
    print("== creating .venv-bench312 for websocket-rs", flush=True)
    subprocess.run([str(versions[-1] / "bin" / "python"), "-m", "venv", str(VENV312)], check=True)
    pip_install(str(py), "websocket-rs==0.7.10")
    return str(py)


def pip_install(python: str, *args: str) -> None:
    """``pip install ARGS`` into PYTHON's environment, quietly; fails on an error."""
    quiet = ["-q", "--disable-pip-version-check"]
    subprocess.run([python, "-m", "pip", "install", *quiet, *args], check=True)


def free_threaded(clients: set[str]) -> dict[str, str]:
    """The interpreter of each wanted @3.14t client that can run here; prints one line for
    those that cannot (none at all without a free-threaded CPython)."""
    wanted = {c for c in clients if c.endswith(FT)}
    if not wanted:
        return {}
    found = subprocess.run(
        ["bash", str(ROOT / "scripts" / "python-ft.sh")], capture_output=True, text=True
    )
    if found.returncode != 0:
        reason = (found.stderr.strip().splitlines() or ["scripts/python-ft.sh failed"])[-1]
        print(f"-- no free-threaded CPython ({reason}): the {FT} clients are skipped", flush=True)
        return {}
    ft = found.stdout.strip()
    pythons: dict[str, str] = {}
    ours = sorted(wanted & FT_OURS)
    if ours:
        py = VENV_FT / "bin" / "python"
        problem = ft_problem(py, "sigil_ws")
        if problem:
            print(
                f"-- {problem}: {', '.join(ours)} skipped (build sigil-ws there: "
                f"{ft} -m venv .venv-ft, then maturin develop --release in it)",
                flush=True,
            )
        else:
            pythons.update((c, str(py)) for c in ours)
            stale_build_note(str(py))
    peers = sorted(wanted & FT_PEERS.keys())
    if peers:
        peer_python = ensure_bench_ft(ft, [c.removesuffix(FT) for c in peers])
        if peer_python is not None:
            pythons.update((c, peer_python) for c in peers)
        else:
            print(
                f"-- no peers on the free-threaded CPython: {', '.join(peers)} skipped", flush=True
            )
    return pythons


def ft_problem(python: Path, module: str) -> str | None:
    """Why PYTHON is not a free-threaded CPython >= 3.14 that imports MODULE with the GIL still
    off, or None when it is."""
    if not python.exists():
        return f"no {python.relative_to(ROOT)}"
    check = (
        "import sys, sysconfig\n"
        "if not sysconfig.get_config_var('Py_GIL_DISABLED') or sys.version_info < (3, 14):\n"
        "    sys.exit('not a free-threaded CPython >= 3.14')\n"
        f"import {module}\n"
        f"if sys._is_gil_enabled(): sys.exit('importing {module} turns the GIL on')\n"
    )
    out = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    if out.returncode == 0:
        return None
    last = (out.stderr.strip().splitlines() or ["failed"])[-1]
    return f"{python.relative_to(ROOT)}: {last}"


def stale_build_note(python: str) -> None:
    """A line when PYTHON's sigil-ws extension was built before the last write to the Rust
    sources (scripts/env.sh rebuilds the GIL build's on every run; .venv-ft's is built by hand).
    """
    out = subprocess.run(
        [python, "-c", "import sigil_ws._core as c; print(c.__file__)"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return
    built = Path(out.stdout.strip())
    sources = [ROOT / "Cargo.toml", *(ROOT / "src").rglob("*.rs")]
    newer = sorted((p for p in sources if p.stat().st_mtime > built.stat().st_mtime), key=str)
    if newer:
        names = ", ".join(str(p.relative_to(ROOT)) for p in newer[:3])
        more = f" and {len(newer) - 3} more" if len(newer) > 3 else ""
        print(
            f"-- note: {built.name} was built before the last write to {names}{more}: "
            "rebuild it to measure the current code",
            flush=True,
        )


def ensure_bench_ft(ft: str, names: list[str]) -> str | None:
    """.venv-bench-ft, a venv of the free-threaded CPython with the peers of requirements-dev.txt
    (at its versions); None with a printed reason when they cannot be installed."""
    py = VENV_BENCH_FT / "bin" / "python"
    modules = [FT_PEERS[f"{n}{FT}"] for n in names]
    if py.exists() and ft_problem(py, ", ".join(modules)) is None:
        return str(py)
    pins = {}
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        name, sep, _ = line.partition("==")
        if sep:
            pins[name.strip()] = line.split("#")[0].strip()
    print(f"== creating {VENV_BENCH_FT.name} for {', '.join(names)} on {ft}", flush=True)
    try:
        if not py.exists():
            subprocess.run([ft, "-m", "venv", str(VENV_BENCH_FT)], check=True)
        pip_install(str(py), *(pins.get(n, n) for n in names))
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"-- {VENV_BENCH_FT.name}: {e}", flush=True)
        return None
    problem = ft_problem(py, ", ".join(modules))
    if problem:
        print(f"-- {problem}", flush=True)
        return None
    return str(py)


class Server:
    """A native server process; reports its CPU time."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(NATIVE), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def make_certs(tmp: Path) -> tuple[str, str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return str(ca_file), str(cert_file), str(key_file)


# ---- measuring ------------------------------------------------------------------------------


# Longest one measurement may take before it counts as failed (a peer that hangs must not
# stall the suite: websockets' sync client has stalled in wss set-up here).
RUN_TIMEOUT = {"quick": 15.0, "full": 300.0}
MODE = "full"


def run_client(
    python: str, client: str, kind: str, url: str, args: list[str], env: dict[str, str]
) -> dict[str, Any]:
    out = subprocess.run(
        [python, "-W", "ignore", str(BENCH / "clients.py"), client, kind, url, *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT[MODE],
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{client} {kind}: {out.stderr.strip().splitlines()[-1:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# Native WebSocket clients (tungstenite, blocking): the scenario's own ping-pong against the same
# WebSocket server, the honest limit for a Python binding. Each row also gets its ratio to them
# ("vs native"); "vs floor" stays the ratio to the raw floors.
NATIVE_CLIENTS = ["native-ws-pingpong", "native-wss-pingpong"]


def run_floor(
    floor: str, scenario: Scenario, servers: dict[str, Server], ca_file: str, env: dict[str, str]
) -> dict[str, Any]:
    """One floor measurement against the raw server (plain or TLS); adds that server's CPU."""
    if floor in NATIVE_CLIENTS:
        server = servers["wss" if scenario.secure else "ws"]
        size, seconds = scenario.args
        command = ["ws-pingpong", str(server.port), size, seconds]
        if scenario.secure:
            command.append(ca_file)
    elif floor == "native-inflate":
        server = servers["wsz"]
        command = ["inflate-push", str(server.port), *scenario.args]
    elif floor.startswith("native-"):
        server = servers["raws" if floor.startswith("native-tls") else "raw"]
        size, seconds = scenario.args
        command = ["pingpong", str(server.port), size, seconds]
        if floor.startswith("native-tls"):
            command.append(ca_file)
    else:
        server = servers["raw"]
        before = server.cpu()
        url = f"tcp://127.0.0.1:{server.port}"
        m = run_client(sys.executable, floor, scenario.kind, url, scenario.args, env)
        m["server_cpu"] = server.cpu() - before
        return m
    before = server.cpu()
    out = subprocess.run(
        [str(NATIVE), *command], capture_output=True, text=True, timeout=RUN_TIMEOUT[MODE]
    )
    if out.returncode != 0:
        raise RuntimeError(f"{floor}: {out.stderr.strip().splitlines()[-1:]}")
    m = dict(json.loads(out.stdout))
    m["server_cpu"] = server.cpu() - before
    return m


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, one round")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 1 quick, 3)")
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    parser.add_argument("--clients", nargs="*", help="clients to run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="run nothing: redraw the charts and the markdown table of an earlier run's JSON",
    )
    args = parser.parse_args()
    if args.render:
        return render_saved(args.render)
    rounds = args.rounds or (1 if args.quick else 3)
    global MODE
    MODE = "quick" if args.quick else "full"

    ensure_native()
    ensure_peers()
    py312 = python312()
    selected = [s for s in scenarios(args.quick) if not args.only or s.name in args.only]
    wanted = {c for s in selected for c in s.clients if not args.clients or c in args.clients}
    ft_pythons = free_threaded(wanted)
    if wanted & {"sigil-ws", "sigil-ws-asyncio"}:
        stale_build_note(sys.executable)

    def runnable(c: str) -> bool:
        if c.endswith(FT):
            return c in ft_pythons
        return c not in PY312_ONLY or py312 is not None

    plan = {
        s.name: [*s.floors, *(c for c in s.clients if c in wanted and runnable(c))]
        for s in selected
    }
    progress = Progress([(s.name, len(plan[s.name]) * rounds) for s in selected])

    started = time.monotonic()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="sigil-bench-") as tmp:
        ca_file, cert_file, key_file = make_certs(Path(tmp))
        env = dict(os.environ, BENCH_CA_FILE=ca_file, SSL_CERT_FILE=ca_file)
        servers = {
            "ws": Server("ws-server"),
            "wsz": Server("ws-server", "--deflate"),
            "wss": Server("ws-server", cert_file, key_file),
            "raw": Server("raw-server"),
            "raws": Server("raw-server", cert_file, key_file),
        }
        try:
            for scenario in selected:
                server = servers["wss" if scenario.secure else "wsz" if scenario.deflate else "ws"]
                scheme = "wss" if scenario.secure else "ws"
                url = f"{scheme}://127.0.0.1:{server.port}"
                client_env = dict(env, BENCH_DEFLATE="1") if scenario.deflate else env
                if scenario.keepalive:
                    client_env = dict(client_env, BENCH_KEEPALIVE=str(scenario.keepalive))
                runs = results.setdefault(scenario.name, {})
                for r in range(rounds):
                    for name in plan[scenario.name]:
                        progress.start(scenario.name, name, r + 1, rounds)
                        try:
                            if name in scenario.floors:
                                m = run_floor(name, scenario, servers, ca_file, env)
                            else:
                                python = ft_pythons.get(name) or (
                                    py312 if name in PY312_ONLY else sys.executable
                                )
                                assert python is not None
                                before = server.cpu()
                                m = run_client(
                                    python,
                                    name.removesuffix(FT),
                                    scenario.kind,
                                    url,
                                    scenario.args,
                                    client_env,
                                )
                                m["server_cpu"] = server.cpu() - before
                                if name.endswith(FT) and m.get("gil"):
                                    print(
                                        f"   note: {name} ran with the GIL on",
                                        file=sys.stderr,
                                        flush=True,
                                    )
                        except (RuntimeError, subprocess.TimeoutExpired) as e:
                            print(f"   failed: {e}", file=sys.stderr, flush=True)
                            continue
                        finally:
                            progress.done(scenario.name)
                        runs.setdefault(name, []).append(m)
        finally:
            for s in servers.values():
                s.stop()
    elapsed = time.monotonic() - started

    table = summarize(selected, results)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "rounds": rounds,
        "seconds": round(elapsed, 1),
        "machine": machine_description(),
    }
    if ft_pythons:
        meta["python_ft"] = python_version(next(iter(ft_pythons.values())))
    json_path = args.out / "latest.json"
    json_path.write_text(json.dumps({"meta": meta, "results": results, "table": table}, indent=1))
    md = render(table, meta)
    (args.out / "latest.md").write_text(md)
    print()
    print(md)
    for path in render_charts(table, meta, json_path):
        print(f"== chart: {path}")
    return 0


def render_saved(json_path: Path) -> int:
    """Redraw the charts and the markdown table of a saved run, beside its JSON."""
    saved = json.loads(json_path.read_text())
    table, meta = saved["table"], saved["meta"]
    md_path = json_path.with_suffix(".md")
    md_path.write_text(render(table, meta))
    print(f"== table: {md_path}")
    for path in render_charts(table, meta, json_path):
        print(f"== chart: {path}")
    return 0


class Progress:
    """Step i/N, round, scenario and client on stderr, with the time left estimated from the
    steps done so far (per scenario once one of its steps has run: a set-up run and a
    ping-pong run do not take the same time)."""

    def __init__(self, steps: list[tuple[str, int]]) -> None:
        self.remaining = dict(steps)
        self.total = sum(n for _, n in steps)
        self.count = 0
        self.spent: dict[str, list[float]] = {}
        self.started = time.monotonic()
        self.step_started = self.started

    def start(self, scenario: str, client: str, round_: int, rounds: int) -> None:
        self.count += 1
        self.step_started = time.monotonic()
        left = self.estimate()
        eta = "" if left is None else f", about {duration(left)} left"
        print(
            f"[{self.count}/{self.total}] round {round_}/{rounds} {scenario}: {client} "
            f"({duration(self.step_started - self.started)} in{eta})",
            file=sys.stderr,
            flush=True,
        )

    def done(self, scenario: str) -> None:
        self.spent.setdefault(scenario, []).append(time.monotonic() - self.step_started)
        self.remaining[scenario] -= 1

    def estimate(self) -> float | None:
        """Seconds left, counting the step about to run; None before any step has run."""
        every = [t for ts in self.spent.values() for t in ts]
        if not every:
            return None
        overall = statistics.mean(every)
        return sum(
            n * (statistics.mean(self.spent[s]) if s in self.spent else overall)
            for s, n in self.remaining.items()
        )


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def python_version(python: str) -> str:
    """``3.14.7t`` (the t of a free-threaded build)."""
    out = subprocess.run(
        [
            python,
            "-c",
            "import platform, sysconfig; print(platform.python_version()"
            " + ('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))",
        ],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "unknown"


def machine_description() -> str:
    cores = os.cpu_count()
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"


def interpreter(client: str) -> str:
    """``3.14t`` for a client on the free-threaded interpreter, ``gil`` for the GIL build."""
    return "3.14t" if client.endswith(FT) else "gil"


def summarize(
    selected: list[Scenario], results: dict[str, dict[str, list[dict[str, Any]]]]
) -> list[dict[str, Any]]:
    """One row per scenario and client, medians over the rounds, with ratios within this run:
    vs_best_peer to the fastest other library on the same interpreter, vs_floor and vs_native
    to the scenario's floors, vs_gil (a client on 3.14t) to the same client on the GIL build,
    vs_one_thread (threads-Kx) to the same client with one thread."""
    rows: list[dict[str, Any]] = []
    for scenario in selected:
        runs = results.get(scenario.name, {})
        medians: dict[str, dict[str, float]] = {}
        for name, ms in runs.items():
            if not ms:
                continue
            rate = statistics.median(m["count"] / m["seconds"] for m in ms)
            cpu_us = statistics.median(1e6 * m["cpu"] / m["count"] for m in ms)
            server_us = statistics.median(1e6 * m.get("server_cpu", 0.0) / m["count"] for m in ms)
            medians[name] = {
                "rate": rate,
                "cpu_us": cpu_us,
                "server_us": server_us,
                "rss_mb": max(m.get("rss_kb", 0) for m in ms) / 1024,
                "per_conn_kb": statistics.median(m.get("per_conn_kb", 0.0) for m in ms),
                "hold_cpu_pct": statistics.median(m.get("hold_cpu_pct", 0.0) for m in ms),
                "gil": any(m.get("gil", True) for m in ms),
            }
            if all("workers" in m for m in ms):
                medians[name]["worker_rate"] = statistics.median(
                    statistics.mean(w["count"] / w["seconds"] for w in m["workers"]) for m in ms
                )
                medians[name]["overlap"] = statistics.median(m["overlap"] for m in ms)
        best_peers: dict[str, float] = {}
        for k, v in medians.items():
            if k not in OURS and k not in scenario.floors:
                here = interpreter(k)
                best_peers[here] = max(best_peers.get(here, 0.0), v["rate"])
        floor_rates = [
            medians[f]["rate"] for f in scenario.floors if f in medians and f not in NATIVE_CLIENTS
        ]
        floor = min(floor_rates) if floor_rates else None
        natives = [medians[f]["rate"] for f in NATIVE_CLIENTS if f in medians]
        native = natives[0] if natives else None
        for name, v in medians.items():
            row = {"scenario": scenario.name, "client": name, **v}
            row["mb_s"] = v["rate"] * scenario.size / 1e6 if scenario.size else None
            if scenario.kind == "threads":
                row["mb_s"] = v["rate"] * scenario.size / 1e6
            is_floor = name in scenario.floors
            row["floor"] = is_floor
            row["interpreter"] = interpreter(name)
            best_peer = best_peers.get(interpreter(name))
            row["vs_best_peer"] = v["rate"] / best_peer if best_peer and not is_floor else None
            on_gil = medians.get(name.removesuffix(FT)) if name.endswith(FT) else None
            row["vs_gil"] = v["rate"] / on_gil["rate"] if on_gil else None
            row["vs_floor"] = v["rate"] / floor if floor and name not in scenario.floors else None
            row["vs_native"] = v["rate"] / native if native and name not in NATIVE_CLIENTS else None
            if scenario.kind == "idle":
                lowest = min(
                    (x["per_conn_kb"] for k, x in medians.items() if k not in OURS), default=None
                )
                row["vs_best_peer"] = (
                    (lowest / v["per_conn_kb"]) if lowest and v["per_conn_kb"] > 0 else None
                )
            rows.append(row)
    one_thread = {
        (s.size, r["client"]): float(r["rate"])
        for s in selected
        if s.kind == "threads" and s.threads == 1
        for r in rows
        if r["scenario"] == s.name
    }
    threads = {s.name: s for s in selected if s.kind == "threads"}
    for r in rows:
        threaded = threads.get(r["scenario"])
        base = (
            one_thread.get((threaded.size, r["client"]))
            if threaded and threaded.threads > 1
            else None
        )
        r["vs_one_thread"] = r["rate"] / base if base else None
    return rows


def fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def render(table: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Benchmarks ({meta['mode']} mode, {meta['rounds']} round(s), {meta['date']}, "
        f"{meta['machine']}, {meta['seconds']} s). Medians; ratios within this run.",
        "",
        "| scenario | client | msg/s | MB/s | client CPU µs/msg | server CPU µs/msg | "
        "peak RSS MB | vs best peer | vs floor | vs native |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table:
        rate = row["rate"]
        if row["scenario"].startswith("idle-"):
            held = row.get("hold_cpu_pct")
            cpu = f"{held:.2f} % core" if held else ""
            lines.append(
                f"| {row['scenario']} | {row['client']} | {row['per_conn_kb']:.1f} KiB/conn | "
                f"| {cpu} | | {row['rss_mb']:.0f} | {fmt(row['vs_best_peer'], '.2f')} | | |"
            )
            continue
        name = f"**{row['client']}**" if row["client"] in OURS else row["client"]
        lines.append(
            f"| {row['scenario']} | {name} | {rate:,.0f} | {fmt(row['mb_s'], ',.1f')} | "
            f"{row['cpu_us']:.2f} | {row['server_us']:.2f} | {row['rss_mb']:.0f} | "
            f"{fmt(row['vs_best_peer'], '.2f')} | {fmt(row['vs_floor'], '.2f')} | "
            f"{fmt(row.get('vs_native'), '.2f')} |"
        )
    lines.extend(render_interpreters(table, meta))
    return "\n".join(lines) + "\n"


def render_interpreters(table: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    """The threads rows and the rows run on both interpreters, side by side: the GIL build and
    the free-threaded 3.14t."""
    both = {r["scenario"] for r in table if r["client"].endswith(FT)}
    rows = [r for r in table if r["scenario"].startswith("threads-") or r["scenario"] in both]
    if not rows:
        return []
    ft = meta.get("python_ft", "3.14t")
    lines = [
        "",
        f"Threads and interpreters: the GIL build (Python {meta['machine'].split('Python ')[-1]})"
        f" and the free-threaded one ({ft}, clients named {FT}). Threads-Kx: K connections in K "
        "threads, each worker timing itself; msg/s over the span from the first worker's start "
        "to the last one's end, per worker its own rate, overlap the share of the span when all "
        "of them ran. vs best peer: the fastest other library on the same interpreter.",
        "",
        "| scenario | client | interpreter | msg/s | per worker msg/s | client CPU µs/msg | "
        "overlap | vs 1 thread | vs GIL build | vs best peer | vs floor |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        client = row["client"]
        name = f"**{client}**" if client in OURS else client
        here = row.get("interpreter", interpreter(client))
        if here == "3.14t" and row.get("gil") and not row.get("floor"):
            here += " (GIL on)"
        lines.append(
            f"| {row['scenario']} | {name} | {here} | {row['rate']:,.0f} | "
            f"{fmt(row.get('worker_rate'), ',.0f')} | {row['cpu_us']:.3f} | "
            f"{fmt(row.get('overlap'), '.2f')} | {fmt(row.get('vs_one_thread'), '.2f')} | "
            f"{fmt(row.get('vs_gil'), '.2f')} | {fmt(row['vs_best_peer'], '.2f')} | "
            f"{fmt(row['vs_floor'], '.2f')} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark suite: sigil-ws against its peers and the machine's floors, in one run.

Usage:
    python bench/run.py --quick            # one round, one to two minutes
    python bench/run.py                    # the full suite
    python bench/run.py --only push-64 --rounds 5
    python bench/run.py --render bench/results/latest.json   # charts and table, no new run

The compression scenarios (deflate-*) run every client that can negotiate permessage-deflate
against the native server's --deflate mode (context takeover, 15-bit windows, zlib level 6 for
what it sends), with JSON-like market data (bench/native/src/deflate.rs and its twin in
bench/clients.py); their floor is the same push inflated natively by sigil-ws's own decoder
(``native-inflate``), beside a reference row that inflates it with flate2 over zlib-rs
(``native-inflate-zlib``, left out of the ratios).

Every client runs against the same native servers (bench/native, tokio-tungstenite for
WebSocket, plain tokio for raw TCP), each measurement in a fresh process (bench/clients.py),
clients interleaved round by round so that machine drift hits all of them alike. The table
gives the median over rounds: messages/s, MB/s, client CPU µs per message (timed part only),
server CPU µs per message, peak RSS, and each row's ratio to the best peer, to the floor and,
in the ping-pong scenarios, to a native WebSocket client (tungstenite, blocking) doing the same
ping-pong against the same server ("vs native"): the limit a Python binding can honestly aim at.
Results go to bench/results/latest.json and latest.md, with SVG charts beside them
(latest-headline.svg, latest-throughput.svg, latest-cpu.svg; see bench/charts.py). Progress
(step, round, scenario, client, estimated time left) goes to stderr.
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

OURS = {"sigil-ws", "sigil-ws-asyncio"}
SYNC = ["sigil-ws", "websockets", "websocket-client", "websocket-rs"]
ASYNC = ["sigil-ws-asyncio", "websockets-asyncio", "aiohttp", "picows", "websocket-rs-asyncio"]
PY312_ONLY = {"websocket-rs", "websocket-rs-asyncio"}
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
    # "native-pingpong", "native-tls-pingpong", "native-inflate" (and its reference
    # "native-inflate-zlib", see REFERENCES), "raw", "pyobj", and the native
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
    for size, label in [(64, "64"), (1024, "1k"), (65536, "64k"), (1 << 20, "1m")]:
        out.append(
            Scenario(
                f"pingpong-{label}",
                "pingpong",
                every,
                [str(size), t],
                size,
                floors=["native-pingpong", "native-ws-pingpong"],
            )
        )
    for size, label in [(64, "64"), (16384, "16k")]:
        n = push_n[size]
        floors = ["raw", "pyobj"] if size == 64 else ["raw"]
        out.append(
            Scenario(f"push-{label}", "push", every, [str(n), str(size)], size, floors=floors)
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
            floors=["native-inflate", "native-inflate-zlib"],
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
    per_thread = 10_000 if quick else 150_000
    for k in (1, 2, 4):
        out.append(
            Scenario(
                f"threads-{k}x-push-16k",
                "threads",
                SYNC,
                [str(k), str(per_thread), "16384"],
                16384,
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
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
                str(ROOT / "requirements-dev.txt"),
            ],
            check=True,
        )


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
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "websocket-rs==0.7.10",
        ],
        check=True,
    )
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
# Floors shown for reference only, outside every ratio: the push inflated by flate2 over zlib-rs,
# the library most Rust clients inflate with (the floor proper uses sigil-ws's own decoder).
REFERENCES = ["native-inflate-zlib"]


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
    elif floor in ("native-inflate", "native-inflate-zlib"):
        server = servers["wsz"]
        command = ["inflate-push", str(server.port), *scenario.args]
        if floor == "native-inflate-zlib":
            command.append("zlib")
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
    plan = {
        s.name: [
            *s.floors,
            *(
                c
                for c in s.clients
                if (not args.clients or c in args.clients) and (c not in PY312_ONLY or py312)
            ),
        ]
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
                                python = py312 if name in PY312_ONLY else sys.executable
                                assert python is not None
                                before = server.cpu()
                                m = run_client(
                                    python, name, scenario.kind, url, scenario.args, client_env
                                )
                                m["server_cpu"] = server.cpu() - before
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


def machine_description() -> str:
    cores = os.cpu_count()
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"


def summarize(
    selected: list[Scenario], results: dict[str, dict[str, list[dict[str, Any]]]]
) -> list[dict[str, Any]]:
    rows = []
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
            }
        peers = [
            v["rate"] for k, v in medians.items() if k not in OURS and k not in scenario.floors
        ]
        best_peer = max(peers) if peers else None
        floor_rates = [
            medians[f]["rate"]
            for f in scenario.floors
            if f in medians and f not in NATIVE_CLIENTS and f not in REFERENCES
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
            row["vs_best_peer"] = v["rate"] / best_peer if best_peer and not is_floor else None
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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

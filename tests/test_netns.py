"""Faults on a real network path: the server runs in its own network namespace behind a veth
pair (iproute2), shaped with tc's tbf to 1 Mbit/s, or taken down.

- A 1 Mbit/s link under a stream of 64 KiB messages keeps memory bounded on both sides: while
  the client sends faster than the link drains, and while the server pushes faster than the
  client reads (sync and asyncio, ws and wss).
- A recv() blocked in one thread wakes on close() from another within close_timeout while the
  link is down.

Needs root (CAP_NET_ADMIN) and iproute2; skipped with the reason otherwise. Each test creates
its namespace and veth pair under unique names and removes them even when it fails.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sigil_ws
from sigil_ws import ConnectionClosed, ConnectionClosedError, TLSConfig

from .conftest import Certs, InThread, rss

_counter = itertools.count()


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def _can_make_namespaces() -> str | None:
    """None when namespaces can be made here, else why not."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN)"
    name = f"sgprobe{os.getpid()}"
    try:
        _run("ip", "netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as e:
        return f"ip netns add failed: {e}"
    _run("ip", "netns", "delete", name)
    return None


SKIP = _can_make_namespaces()
pytestmark = [pytest.mark.skipif(SKIP is not None, reason=SKIP or ""), pytest.mark.slow]

SERVER = """
import ssl, sys, time
from websockets.sync.server import serve

def handler(ws):
    path = ws.request.path
    if path == "/push":
        # 64 KiB messages as fast as the link takes them, until the client goes.
        payload = b"p" * 65536
        try:
            while True:
                ws.send(payload)
        except Exception:
            return
    for message in ws:
        if path == "/echo":
            ws.send(message)

context = None
if len(sys.argv) > 2:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[2])
with serve(handler, sys.argv[1], 0, ssl=context, compression=None, max_size=None,
           ping_interval=None, close_timeout=1) as server:
    print(server.socket.getsockname()[1], flush=True)
    server.serve_forever()
"""


@dataclass
class Link:
    """A namespace with the server, joined to this one by a veth pair."""

    ns: str
    host_if: str
    address: str
    server: subprocess.Popen[str]
    port: int

    def url(self, scheme: str, path: str) -> str:
        return f"{scheme}://{self.address}:{self.port}{path}"

    def shape(self, rate: str) -> None:
        """Limits both directions to ``rate`` with tbf."""
        tbf = ("root", "tbf", "rate", rate, "burst", "16kb", "latency", "200ms")
        _run("tc", "qdisc", "add", "dev", self.host_if, *tbf)
        _run("ip", "netns", "exec", self.ns, "tc", "qdisc", "add", "dev", "eth0", *tbf)

    def down(self) -> None:
        _run("ip", "link", "set", self.host_if, "down")

    def server_rss(self) -> int:
        status = Path(f"/proc/{self.server.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024


@pytest.fixture(params=["sync", "asyncio"])
def driver(request: pytest.FixtureRequest) -> str:
    """Both drivers (uvloop behaves as asyncio here)."""
    return str(request.param)


@pytest.fixture(params=["ws", "wss"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def link(scheme: str, tls_certs: Certs, tmp_path: Path) -> Iterator[Link]:
    n = next(_counter)
    tag = f"{os.getpid() % 100000}{n}"
    ns, host_if, peer_if = f"sigil{tag}", f"sgh{tag}", f"sgp{tag}"
    subnet = f"10.{200 + n % 50}.{os.getpid() % 250}"
    address = f"{subnet}.2"
    server: subprocess.Popen[str] | None = None
    try:
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _run("ip", "link", "set", peer_if, "netns", ns)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", peer_if, "name", "eth0")
        _run("ip", "addr", "add", f"{subnet}.1/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{address}/30", "dev", "eth0")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        args = ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, address]
        if scheme == "wss":
            pem = tmp_path / "server.pem"
            tls_certs.ca.issue_cert(address).private_key_and_cert_chain_pem.write_to_path(str(pem))
            args.append(str(pem))
        server = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield Link(ns, host_if, address, server, port)
    finally:
        if server is not None:
            server.kill()
            server.wait(5)
            if server.stdout is not None:
                server.stdout.close()
        # Deleting the namespace removes its end of the pair, and so the pair.
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "delete", host_if], capture_output=True, timeout=20)


def options(scheme: str, certs: Certs) -> dict[str, Any]:
    opts: dict[str, Any] = {"open_timeout": 10, "close_timeout": 1, "max_size": None}
    if scheme == "wss":
        opts["tls"] = TLSConfig(ca_data=certs.ca_pem)
    return opts


@pytest.mark.timeout(60)
def test_sending_faster_than_a_1_mbit_link_keeps_memory_bounded(
    link: Link, scheme: str, tls_certs: Certs, connect: Any
) -> None:
    """For 4 s the client sends 64 KiB messages as fast as it can over 1 Mbit/s (125 kB/s):
    send() waits for the link instead of buffering, so RSS grows by far less than what was
    offered, and the server (which reads everything) stays bounded too."""
    link.shape("1mbit")
    ws = connect(link.url(scheme, "/sink"), **options(scheme, tls_certs))
    message = os.urandom(65536)
    before, server_before = rss(), link.server_rss()
    peak, server_peak = before, server_before
    sent = [0]
    stop = threading.Event()

    def sender() -> None:
        while not stop.is_set():
            ws.send(message)
            sent[0] += 1

    sending = InThread(sender)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        time.sleep(0.2)
        peak, server_peak = max(peak, rss()), max(server_peak, link.server_rss())
    stop.set()
    ws.close()
    outcome = sending.wait(10)
    assert outcome is not None, "send() still blocked after close()"
    assert outcome.error is None or isinstance(outcome.error, ConnectionClosed), outcome
    # The kernel buffers some megabytes; the process holds no more than a few messages.
    assert peak - before < 8 * 2**20, f"client RSS grew {(peak - before) >> 20} MiB"
    assert server_peak - server_before < 16 * 2**20
    assert sent[0] < 200, f"{sent[0]} messages of 64 KiB 'sent' in 4 s over 1 Mbit/s"


@pytest.mark.timeout(60)
def test_a_server_pushing_over_a_1_mbit_link_keeps_memory_bounded(
    link: Link, scheme: str, tls_certs: Certs, connect: Any
) -> None:
    """The server pushes 64 KiB messages as fast as 1 Mbit/s allows; the client reads one a
    second. Memory stays bounded on both sides: the client pauses reading past its queue, the
    link and the server wait."""
    link.shape("1mbit")
    ws = connect(link.url(scheme, "/push"), **options(scheme, tls_certs))
    assert ws.recv(timeout=10) == b"p" * 65536
    before, server_before = rss(), link.server_rss()
    peak, server_peak = before, server_before
    for _ in range(4):
        time.sleep(1)
        assert ws.recv(timeout=10) == b"p" * 65536
        peak, server_peak = max(peak, rss()), max(server_peak, link.server_rss())
    assert peak - before < 8 * 2**20, f"client RSS grew {(peak - before) >> 20} MiB"
    assert server_peak - server_before < 16 * 2**20


@pytest.mark.timeout(60)
def test_blocked_recv_wakes_on_close_when_the_link_is_down(
    link: Link, scheme: str, tls_certs: Certs, connect: Any
) -> None:
    """The link goes down under an open connection; a recv() without timeout is blocked in
    one thread; close() from another returns within close_timeout (1 s) and the recv() wakes
    with ConnectionClosed."""
    ws = connect(link.url(scheme, "/echo"), **options(scheme, tls_certs))
    ws.send("up")
    assert ws.recv(timeout=5) == "up"
    receiving = InThread(ws.recv)
    time.sleep(0.3)
    link.down()
    start = time.monotonic()
    closing = InThread(ws.close)
    closed = closing.wait(4)
    assert closed is not None, "close() still blocked 4 s after the link went down"
    assert closed.error is None, closed
    assert time.monotonic() - start < 2.5
    woke = receiving.wait(3)
    assert woke is not None, "recv() still blocked after close()"
    assert isinstance(woke.error, ConnectionClosed), woke
    assert ws.state is sigil_ws.State.CLOSED


@pytest.mark.timeout(60)
def test_keepalive_detects_a_link_that_went_down(
    link: Link, scheme: str, tls_certs: Certs, connect: Any
) -> None:
    """The link goes down under an idle connection whose application waits in recv(): the
    keepalive notices within ping_interval + ping_timeout and recv() raises 1011."""
    opts = options(scheme, tls_certs) | {"ping_interval": 0.5, "ping_timeout": 0.5}
    ws = connect(link.url(scheme, "/echo"), **opts)
    ws.send("up")
    assert ws.recv(timeout=5) == "up"
    time.sleep(1.2)  # pings and pongs cross the link meanwhile
    assert ws.latency > 0
    receiving = InThread(ws.recv)
    link.down()
    start = time.monotonic()
    woke = receiving.wait(5)
    assert woke is not None, "recv() still blocked 5 s after the link went down"
    assert isinstance(woke.error, ConnectionClosedError), woke
    assert woke.error.code == 1011
    # Detected within one interval plus the timeout, with slack for a loaded machine.
    assert time.monotonic() - start < 0.5 + 0.5 + 1.0

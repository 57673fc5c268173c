"""A proxy hop: does it cost anything on the message path, and what does set-up cost?

Usage: python bench/proxy.py [--rounds 5] [--messages 300000]

Starts tinyproxy (Debian's package; scripts/ci-proxies.sh installs it) on 127.0.0.1 and a
push server of its own (a raw socket that answers the upgrade and writes pre-built 64-byte
binary frames in 660 KB writes), then, interleaved round by round:

- push-64, direct and through tinyproxy (HTTP CONNECT), sync and asyncio clients: messages/s
  and client CPU µs per message (process time of the receive loop);
- the raw-socket floor of the same stream, direct and through tinyproxy (what the proxy
  process itself can relay on this machine);
- set-up (connect + close against the websockets server) direct and through tinyproxy for
  sigil-ws, websockets and websocket-client.

Medians over rounds are printed as a table. Nothing here is asserted: bench/ measures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import websocket
from websockets.sync.client import connect as websockets_connect
from websockets.sync.server import ServerConnection, serve

import sigil_ws
import sigil_ws.asyncio

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SIZE = 64
FRAME = bytes([0x82, SIZE]) + b"x" * SIZE
BATCH = 10_000


class PushServer:
    """Answers each upgrade, then pushes ``messages`` frames and a close frame."""

    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.blob = FRAME * BATCH
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self.serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.listener.getsockname()[1]}/"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.push, args=(conn,), daemon=True).start()

    def push(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            key = next(
                line.split(b":", 1)[1].strip()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            )
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            for _ in range(self.messages // BATCH):
                conn.sendall(self.blob)
            conn.sendall(b"\x88\x02\x03\xe8")
            try:
                conn.recv(64)
            except OSError:
                pass


def tinyproxy(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
    if not Path(binary).exists():
        sys.exit("tinyproxy is not installed (run scripts/ci-proxies.sh)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp / "tinyproxy.conf"
    config.write_text(
        f"Listen 127.0.0.1\nPort {port}\nTimeout 60\nMaxClients 100\nLogLevel Error\n"
        "Allow 127.0.0.1\n"
    )
    process = subprocess.Popen(
        [binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return process, f"http://127.0.0.1:{port}"


def sync_push(url: str, proxy: str | None, n: int) -> tuple[float, float]:
    ws = sigil_ws.connect(url, proxy=proxy, compression=None)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        ws.recv()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ws.close()
    return n / wall, 1e6 * cpu / n


def asyncio_push(url: str, proxy: str | None, n: int) -> tuple[float, float]:
    async def main() -> tuple[float, float]:
        ws = await sigil_ws.asyncio.connect(url, proxy=proxy, compression=None)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            await ws.recv()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await ws.close()
        return n / wall, 1e6 * cpu / n

    return asyncio.run(main())


def raw_floor(url: str, proxy: str | None, n: int) -> tuple[float, float]:
    host, port = url.removeprefix("ws://").rstrip("/").split(":")
    if proxy is None:
        sock = socket.create_connection((host, int(port)))
    else:
        proxy_host, proxy_port = proxy.removeprefix("http://").split(":")
        sock = socket.create_connection((proxy_host, int(proxy_port)))
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += sock.recv(1)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += sock.recv(1)
        buf = bytearray(1 << 20)
        total, got = n * len(FRAME), 0
        cpu, wall = time.process_time(), time.perf_counter()
        while got < total:
            k = sock.recv_into(buf)
            if not k:
                break
            got += k
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, 1e6 * cpu / n


def setup_clients() -> dict[str, Callable[[str, str | None], None]]:
    def sigil(url: str, proxy: str | None) -> None:
        sigil_ws.connect(url, proxy=proxy, compression=None).close()

    def websockets_sync(url: str, proxy: str | None) -> None:
        with websockets_connect(url, proxy=proxy, compression=None):
            pass

    def websocket_client(url: str, proxy: str | None) -> None:
        if proxy is None:
            ws = websocket.create_connection(url)
        else:
            host, port = proxy.removeprefix("http://").split(":")
            ws = websocket.create_connection(
                url, http_proxy_host=host, http_proxy_port=int(port), proxy_type="http"
            )
        ws.close()

    return {"sigil-ws": sigil, "websockets": websockets_sync, "websocket-client": websocket_client}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--setups", type=int, default=100)
    args = parser.parse_args()
    n = args.messages // BATCH * BATCH
    with tempfile.TemporaryDirectory() as tmp:
        process, proxy = tinyproxy(Path(tmp))
        try:
            push = PushServer(n)

            def handler(ws: ServerConnection) -> None:
                for _ in ws:
                    pass

            echo = serve(handler, "127.0.0.1", 0, compression=None)
            threading.Thread(target=echo.serve_forever, daemon=True).start()
            echo_url = f"ws://127.0.0.1:{echo.socket.getsockname()[1]}/"
            rates: dict[tuple[str, str], list[tuple[float, float]]] = {}
            setups: dict[tuple[str, str], list[float]] = {}
            runs = {"sigil-ws": sync_push, "sigil-ws-asyncio": asyncio_push, "raw": raw_floor}
            for _ in range(args.rounds):
                for name, run in runs.items():
                    for route, via in (("direct", None), ("tinyproxy", proxy)):
                        rates.setdefault((name, route), []).append(run(push.url, via, n))
                for name, connect in setup_clients().items():
                    for route, via in (("direct", None), ("tinyproxy", proxy)):
                        start = time.perf_counter()
                        for _ in range(args.setups):
                            connect(echo_url, via)
                        elapsed = time.perf_counter() - start
                        setups.setdefault((name, route), []).append(1e3 * elapsed / args.setups)
            echo.shutdown()
        finally:
            process.terminate()
            process.wait(5)
    print(f"push-64, {n} messages, median of {args.rounds} rounds")
    print("| client | route | msg/s | client CPU µs/msg |")
    print("|---|---|---|---|")
    for (name, route), values in rates.items():
        rate = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"| {name} | {route} | {rate:,.0f} | {cpu:.3f} |")
    print(f"\nset-up (connect + close), median of {args.rounds} rounds of {args.setups}")
    print("| client | route | ms |")
    print("|---|---|---|")
    for (name, route), times in setups.items():
        print(f"| {name} | {route} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()

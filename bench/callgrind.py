"""Instructions per message on sigil-ws's own paths, counted by valgrind's callgrind.

Usage: python bench/callgrind.py [--messages N]

Machine noise cannot move these counts (same binary, inputs and environment give the same
total), so they judge an optimisation where wall-clock figures cannot. Each path runs twice
under callgrind, with N messages and with none; the difference divided by N is the cost per
message, start-up excluded. Paths:

    push-64 / push-16k       sync client: `for msg in ws` over a pushed stream (native server)
    asyncio-push-64          asyncio client: `async for msg in ws` over the same stream
    pingpong-64              sync client: send + recv against the native echo server
    asyncio-pingpong-64      asyncio client: the same round trip (the event loop included)
    decode-64 / decode-16k   sans-IO Protocol.receive_messages over an in-memory stream
    encode-64                sans-IO Protocol.send_binary + data_to_send
    deflate-encode-16k       the same with permessage-deflate: send_text of 16 KiB of
                             bench/clients.py's JSON-like market data (64 distinct messages
                             in turn), compressed by zlib-rs (level 1, as sigil-ws sends)
    deflate-decode-16k       sans-IO receive_messages of those messages compressed by zlib
                             (level 6, server_no_context_takeover), inflated by zlib-rs
    deflate-decode-1k        the same for 1 KiB messages with context takeover, as the
                             deflate-push-1k bench scenario receives them (the 64 messages
                             compressed in turn, replayed in the same order: each refers only
                             to the ones before it, within the window)
    deflate-push-1k          sync client: `for msg in ws` over the native server's compressed
                             push of 1 KiB JSON-like text (`ws-server --deflate`), the stream
                             of run.py's deflate-push-1k: inflating, UTF-8 and the `str`
    asyncio-deflate-push-1k  the asyncio client over the same stream
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "bench" / "native" / "target" / "release" / "sigil-bench"

WORKLOAD = r"""
import os
import sys
import sigil_ws

path, n, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RESPONSE = (
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Accept: {sigil_ws.handshake.accept_key(KEY)}\r\n\r\n"
).encode()

def negotiated(extension):
    return RESPONSE.replace(
        b"\r\n\r\n", f"\r\nSec-WebSocket-Extensions: {extension}\r\n\r\n".encode()
    )

def market_texts(size):
    # bench/clients.py's 64 JSON-like market-data messages (what run.py's deflate-* send).
    sys.path.insert(0, os.environ["SIGIL_BENCH_DIR"])
    from clients import json_payloads

    return json_payloads(size)

def frames(count, size):
    head = bytes([0x82, size]) if size < 126 else bytes([0x82, 126]) + size.to_bytes(2, "big")
    return (head + b"x" * size) * count

# The push paths: the payload size the server pushes (the deflate ones go to the server that
# compresses, chosen in main()).
PUSH = {"push-64": 64, "push-16k": 16384, "deflate-push-1k": 1024}
ASYNCIO_PUSH = {"asyncio-push-64": 64, "asyncio-deflate-push-1k": 1024}

if path in PUSH:
    with sigil_ws.connect(f"ws://127.0.0.1:{port}/push?n={n}&size={PUSH[path]}") as ws:
        for _ in ws:
            pass
elif path in ASYNCIO_PUSH:
    import asyncio
    import sigil_ws.asyncio

    async def main():
        url = f"ws://127.0.0.1:{port}/push?n={n}&size={ASYNCIO_PUSH[path]}"
        async with sigil_ws.asyncio.connect(url) as ws:
            async for _ in ws:
                pass

    asyncio.run(main())
elif path == "pingpong-64":
    with sigil_ws.connect(f"ws://127.0.0.1:{port}/echo") as ws:
        payload = b"p" * 64
        for _ in range(n):
            ws.send(payload)
            ws.recv()
elif path == "asyncio-pingpong-64":
    import asyncio
    import sigil_ws.asyncio

    async def main():
        async with sigil_ws.asyncio.connect(f"ws://127.0.0.1:{port}/echo") as ws:
            payload = b"p" * 64
            for _ in range(n):
                await ws.send(payload)
                await ws.recv()

    asyncio.run(main())
elif path.startswith("decode-"):
    size = {"decode-64": 64, "decode-16k": 16384}[path]
    p = sigil_ws.Protocol("ws://h/", key=KEY)
    p.data_to_send()
    p.receive_messages(RESPONSE)
    stream = memoryview(frames(n, size))
    for i in range(0, len(stream), 65536):
        p.receive_messages(stream[i : i + 65536])
elif path == "encode-64":
    p = sigil_ws.Protocol("ws://h/", key=KEY)
    p.data_to_send()
    p.receive_messages(RESPONSE)
    payload = b"p" * 64
    for _ in range(n):
        p.send_binary(payload)
        p.data_to_send()
elif path == "deflate-encode-16k":
    p = sigil_ws.Protocol("ws://h/", key=KEY)
    p.data_to_send()
    p.receive_messages(negotiated("permessage-deflate"))
    texts = market_texts(16384)
    for i in range(n):
        p.send_text(texts[i % 64])
        p.data_to_send()
elif path in ("deflate-decode-16k", "deflate-decode-1k"):
    import zlib

    size, keep = {"deflate-decode-16k": (16384, False), "deflate-decode-1k": (1024, True)}[path]
    p = sigil_ws.Protocol("ws://h/", key=KEY)
    p.data_to_send()
    extension = "permessage-deflate" if keep else "permessage-deflate; server_no_context_takeover"
    p.receive_messages(negotiated(extension))
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    wire = []
    for text in market_texts(size):
        if not keep:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = (c.compress(text.encode()) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        length = len(body).to_bytes(2, "big") if len(body) >= 126 else b""
        wire.append(bytes([0xC1, 126 if length else len(body)]) + length + body)
    for i in range(n):
        p.receive_messages(wire[i % 64])
"""

PATHS = [
    "push-64",
    "push-16k",
    "asyncio-push-64",
    "pingpong-64",
    "asyncio-pingpong-64",
    "decode-64",
    "decode-16k",
    "encode-64",
    "deflate-encode-16k",
    "deflate-decode-16k",
    "deflate-decode-1k",
    "deflate-push-1k",
    "asyncio-deflate-push-1k",
]


def instructions(path: str, n: int, port: int, tmp: Path) -> int:
    out = tmp / f"callgrind.{path}.{n}"
    script = tmp / "workload.py"
    script.write_text(WORKLOAD)
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(script),
            path,
            str(n),
            str(port),
        ],
        check=True,
        capture_output=True,
        env=dict(os.environ, PYTHONHASHSEED="0", SIGIL_BENCH_DIR=str(ROOT / "bench")),
    )
    match = re.search(r"^summary: (\d+)", out.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no summary in {out}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--only", nargs="*", choices=PATHS)
    args = parser.parse_args()
    if not NATIVE.exists():
        subprocess.run(
            ["cargo", "build", "--release", "-q"], cwd=ROOT / "bench" / "native", check=True
        )
    servers = [
        subprocess.Popen([str(NATIVE), *args], stdout=subprocess.PIPE, text=True)
        for args in (["ws-server"], ["ws-server", "--deflate"])
    ]
    ports = []
    for server in servers:
        assert server.stdout is not None
        ports.append(int(server.stdout.readline()))
    port, deflate_port = ports
    rows = ["| path | instructions per message |", "|---|---:|"]
    try:
        with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
            for path in args.only or PATHS:
                print(f"[callgrind] {path}", flush=True)
                on = deflate_port if "deflate-push" in path else port
                base = instructions(path, 0, on, Path(tmp))
                full = instructions(path, args.messages, on, Path(tmp))
                rows.append(f"| {path} | {(full - base) / args.messages:,.0f} |")
    finally:
        for server in servers:
            server.kill()
            server.wait()
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

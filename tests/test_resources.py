"""No leaked sockets or memory across many connections."""

from __future__ import annotations

import ctypes
import gc
import itertools
import resource
import threading
import time
from collections.abc import Callable

import pytest

import sigil_ws

from .conftest import RawServer, open_fds, rss, run_bounded, server_frame, streaming_server

Connect = Callable[..., sigil_ws.Connection]


def test_no_file_descriptor_leak(ws_server: str) -> None:
    for _ in range(5):  # warm up the server's thread pool and our caches
        with sigil_ws.connect(ws_server) as ws:
            ws.send("x")
            ws.recv()
    before = len(open_fds())
    for _ in range(200):
        with sigil_ws.connect(ws_server) as ws:
            ws.send("x")
            assert ws.recv() == "x"
    gc.collect()
    # The server side's sockets close on its own threads: allow a little slack for them.
    assert len(open_fds()) - before < 10


def test_dropped_connections_release_their_socket(ws_server: str) -> None:
    before = len(open_fds())
    for _ in range(100):
        ws = sigil_ws.connect(ws_server)
        ws.send("x")
        ws.recv()
        del ws
    gc.collect()
    assert len(open_fds()) - before < 10


def test_memory_is_stable_over_many_large_messages(ws_server: str) -> None:
    payload = b"y" * (4 * 2**20)
    with sigil_ws.connect(ws_server) as ws:
        for _ in range(3):
            ws.send(payload)
            ws.recv()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(30):
            ws.send(payload)
            assert len(ws.recv()) == len(payload)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown < 32 * 1024, f"peak RSS grew by {grown} KiB"


# ---- regressions: memory held after a large message, pong backlog ------------------------------


def trimmed_rss() -> int:
    """RSS once glibc has given its free memory back: earlier tests' large messages raise
    glibc's mmap threshold, so freed buffers of this size may stay in the heap as free
    memory, which says nothing of what sigil-ws holds."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss()


@pytest.mark.timeout(60)
def test_memory_returns_after_one_large_message(ws_echo_process: str, connect: Connect) -> None:
    """After a 64 MiB message, an idle connection gives the memory back (today the engine
    keeps its whole input buffer until more bytes arrive)."""
    ws = connect(ws_echo_process, max_size=None)
    ws.send(b"warm-up")
    assert ws.recv(timeout=5) == b"warm-up"
    gc.collect()
    before = trimmed_rss()
    payload = b"x" * (64 * 2**20)
    ws.send(payload)
    message = ws.recv(timeout=30)
    assert message == payload
    del payload, message
    gc.collect()
    time.sleep(0.2)
    grown = trimmed_rss() - before
    # The regression kept the whole 64 MiB input buffer; in a long test run the allocator
    # keeps up to about 35 MiB of other memory besides (seen in CI after earlier 16 MiB tests).
    assert grown < 48 * 2**20, f"RSS still {grown / 2**20:.0f} MiB above its value before"


@pytest.mark.timeout(30)
def test_ping_flood_does_not_grow_memory(raw_server: RawServer, connect: Connect) -> None:
    """300 000 pings (125-byte payloads) from a peer that never reads: the pongs waiting to
    be written stay bounded (RFC 6455 §5.5.3: only the latest ping needs an answer). Today
    the asyncio client buffers every pong in the transport (30-60 MiB here)."""
    stop, start, finished = threading.Event(), threading.Event(), threading.Event()
    pings = server_frame(9, b"p" * 125) * 1000
    try:
        url = streaming_server(
            raw_server, itertools.repeat(pings, 300), stop, start=start, finished=finished
        )
        ws = connect(url)
        gc.collect()
        before = rss()
        start.set()
        # recv() drives the sync client; it may block (today: writing pongs) or time out.
        run_bounded(lambda: ws.recv(timeout=2), 3.5)
        finished.wait(5)
        time.sleep(0.2)
        grown = rss() - before
        assert grown < 8 * 2**20, f"RSS grew by {grown / 2**20:.0f} MiB over the flood"
    finally:
        stop.set()

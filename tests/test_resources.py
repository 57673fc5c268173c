"""No leaked sockets or memory across many connections."""

from __future__ import annotations

import gc
import itertools
import resource
import threading
import time
import tracemalloc
from collections.abc import Callable

import pytest

import sigil_ws

from .conftest import (
    RawServer,
    echo_peak,
    heap_in_use,
    open_fds,
    rss,
    run_bounded,
    server_frame,
    streaming_server,
)

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


@pytest.mark.timeout(60)
def test_memory_returns_after_one_large_message(ws_echo_process: str, connect: Connect) -> None:
    """After a 64 MiB message, an idle connection holds none of it: neither in the engine's
    buffers (the C heap, where the Rust core allocates) nor as a Python object (tracemalloc).
    Measured as what is held rather than as RSS, which on free-threaded CPython stays up
    because its allocator keeps a freed object's pages for reuse (see
    test_consecutive_large_messages_reuse_memory). The regression kept the engine's whole
    64 MiB input buffer until more bytes arrived."""
    ws = connect(ws_echo_process, max_size=None)
    ws.send(b"warm-up")
    assert ws.recv(timeout=5) == b"warm-up"
    gc.collect()
    tracemalloc.start()
    try:
        heap, traced = heap_in_use(), tracemalloc.get_traced_memory()[0]
        payload = b"x" * (64 * 2**20)
        ws.send(payload)
        message = ws.recv(timeout=30)
        assert message == payload
        del payload, message
        gc.collect()
        time.sleep(0.2)
        held_heap = heap_in_use() - heap
        held_python = tracemalloc.get_traced_memory()[0] - traced
    finally:
        tracemalloc.stop()
    assert held_heap < 8 * 2**20, f"the C heap holds {held_heap / 2**20:.1f} MiB more than before"
    assert held_python < 2**20, f"Python objects hold {held_python / 2**20:.1f} MiB more"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("driver", ["sync", "asyncio"])
def test_consecutive_large_messages_reuse_memory(ws_echo_process: str, driver: str) -> None:
    """Ten 64 MiB messages, each made, sent, echoed and dropped in turn, in a fresh process:
    its peak RSS stays within about two messages above idle on every interpreter. glibc gives
    a freed large block back at once; free-threaded CPython's allocator keeps its pages and
    reuses them for the next message. Either way memory is reused, never piled up (ten
    messages would be 10x)."""
    size = 64 * 2**20
    idle, peak, _ = echo_peak(ws_echo_process, driver, size, 10, fresh=True)
    assert peak - idle <= 2.25 * size, f"{(peak - idle) / 2**20:.0f} MiB above idle"


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

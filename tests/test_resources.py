"""No leaked sockets or memory across many connections."""

from __future__ import annotations

import gc
import resource

import sigil_ws

from .conftest import open_fds


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

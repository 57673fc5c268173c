"""Keepalive: pings every ``ping_interval``, 1011 when no pong (and nothing else) comes back
within ``ping_timeout``, ``latency`` measured when the pong arrives.

Against real peers: the websockets server with its own keepalive, and raw scripted servers
that answer pings, stay silent, or flood.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as async_serve

import sigil_ws
import sigil_ws.asyncio
from sigil_ws import ConnectionClosedError

from .conftest import RawConnection, RawServer, server_frame

T = TypeVar("T")


def answer_pings(
    conn: RawConnection, pings: list[float], lock: threading.Lock, delay: float = 0.0
) -> None:
    """Answers every ping with its pong (after ``delay``) until the client closes; records
    when pings came."""
    while True:
        opcode, _, payload = conn.recv_frame()
        if opcode == 9:
            pings.append(time.monotonic())
            time.sleep(delay)
            with lock:
                conn.send(server_frame(10, payload))
        elif opcode == 8:
            conn.send(server_frame(8, payload[:2]))
            return


def test_pings_while_idle_and_measures_latency(raw_server: RawServer, run: Any) -> None:
    pings: list[float] = []
    url = raw_server.serve(
        lambda conn: (conn.upgrade(), answer_pings(conn, pings, threading.Lock()))
    )

    async def main() -> None:
        async with sigil_ws.asyncio.connect(url, ping_interval=0.1, ping_timeout=1) as ws:
            assert ws.latency == 0.0
            await asyncio.sleep(0.55)  # nobody receives
            assert 4 <= len(pings) <= 6, pings
            assert 0 < ws.latency < 0.1
            assert ws.state is sigil_ws.State.OPEN

    run(main())
    assert not raw_server.errors


def test_a_silent_server_fails_with_1011(raw_server: RawServer, run: Any) -> None:
    closes: list[bytes] = []

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        while True:  # read everything, answer nothing
            opcode, _, payload = conn.recv_frame()
            if opcode == 8:
                closes.append(payload)
                return

    url = raw_server.serve(script)

    async def main() -> None:
        async with sigil_ws.asyncio.connect(
            url, ping_interval=0.2, ping_timeout=0.3, close_timeout=0.5
        ) as ws:
            start = time.monotonic()
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv(timeout=5)
            elapsed = time.monotonic() - start
            assert caught.value.code == 1011
            assert caught.value.reason == "keepalive ping timeout"
            assert 0.45 <= elapsed < 1.5, elapsed

    run(main())
    raw_server.done.wait(2)
    assert closes and struct.unpack("!H", closes[0][:2])[0] == 1011


def test_off_without_an_interval(raw_server: RawServer, run: Any) -> None:
    pings: list[float] = []
    url = raw_server.serve(
        lambda conn: (conn.upgrade(), answer_pings(conn, pings, threading.Lock()))
    )

    async def main() -> None:
        async with sigil_ws.asyncio.connect(url, ping_interval=None) as ws:
            await asyncio.sleep(0.3)
            assert ws.latency == 0.0

    run(main())
    assert pings == []


def test_a_blocked_loop_reads_the_pong_before_judging(raw_server: RawServer, run: Any) -> None:
    """The pong arrives while the loop is blocked past its deadline: it is read first."""
    pings: list[float] = []
    url = raw_server.serve(
        lambda conn: (conn.upgrade(), answer_pings(conn, pings, threading.Lock(), delay=0.02))
    )

    async def main() -> None:
        async with sigil_ws.asyncio.connect(url, ping_interval=0.1, ping_timeout=0.05) as ws:
            for _ in range(4):
                seen = len(pings)
                while len(pings) == seen:  # until a ping went out
                    await asyncio.sleep(0.005)
                time.sleep(0.2)  # block the loop: the pong waits in the socket
                await asyncio.sleep(0)
            assert ws.state is sigil_ws.State.OPEN
            assert ws.latency > 0

    run(main())
    assert len(pings) >= 4


def test_a_slow_consumer_is_not_failed(raw_server: RawServer, run: Any) -> None:
    """Reading pauses (max_queue) while the server streams: pongs wait behind messages, and
    the connection is not judged meanwhile."""
    lock = threading.Lock()
    stop = threading.Event()
    frame = server_frame(2, b"d" * 4096)

    def script(conn: RawConnection) -> None:
        conn.upgrade()

        def flood() -> None:
            try:
                while not stop.is_set():
                    with lock:
                        conn.send(frame)
            except OSError:
                pass

        threading.Thread(target=flood, daemon=True).start()
        try:
            answer_pings(conn, [], lock)
        finally:
            stop.set()

    url = raw_server.serve(script)

    async def main() -> None:
        async with sigil_ws.asyncio.connect(
            url, ping_interval=0.05, ping_timeout=0.05, max_queue=4, close_timeout=1
        ) as ws:
            await asyncio.sleep(1.0)  # far behind: reading is paused
            assert ws._driver.reading_paused
            for _ in range(2000):
                assert await ws.recv(timeout=5) == b"d" * 4096
            assert ws.state is sigil_ws.State.OPEN
            stop.set()

    run(main())


@pytest.fixture
def keepalive_server() -> Iterator[tuple[str, list[int]]]:
    """A websockets server with a 0.3 s keepalive that counts the messages it receives."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}
    received: list[int] = []

    async def count(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(int(message))

    async def main() -> None:
        async with async_serve(
            count, "127.0.0.1", 0, ping_interval=0.3, ping_timeout=0.3
        ) as server:
            holder["port"] = server.sockets[0].getsockname()[1]
            holder["stop"] = loop.create_future()
            started.set()
            await holder["stop"]

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    yield f"ws://127.0.0.1:{holder['port']}", received
    loop.call_soon_threadsafe(holder["stop"].set_result, None)
    thread.join(10)
    loop.close()


def test_a_client_that_only_sends_keeps_the_connection(
    keepalive_server: tuple[str, list[int]], run: Any
) -> None:
    """The server pings every 0.3 s and wants its pong within 0.3 s; the client never calls
    recv() for 3 s: every message arrives and the close is normal."""
    url, received = keepalive_server

    async def main() -> None:
        async with sigil_ws.asyncio.connect(url, ping_interval=None) as ws:
            for i in range(60):
                await ws.send(str(i))
                await asyncio.sleep(0.05)
            await ws.close()
            assert ws.close_code == 1000

    run(main())
    assert received == list(range(60))

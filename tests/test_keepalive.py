"""Keepalive: pings every ``ping_interval``, 1011 when no pong (and nothing else) comes back
within ``ping_timeout``, ``latency`` measured when the pong arrives.

Against real peers: the websockets server with its own keepalive, and raw scripted servers
that answer pings, stay silent, or flood.
"""

from __future__ import annotations

import asyncio
import os
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


# ---- the sync client: one I/O thread serves connections nobody receives on -----------------


def threads_now() -> int:
    """Threads of this process, Rust ones included (threading.active_count() misses them)."""
    return len(os.listdir("/proc/self/task"))


def test_sync_pings_while_idle_and_measures_latency(raw_server: RawServer) -> None:
    pings: list[float] = []
    url = raw_server.serve(
        lambda conn: (conn.upgrade(), answer_pings(conn, pings, threading.Lock()))
    )
    with sigil_ws.connect(url, ping_interval=0.1, ping_timeout=1) as ws:
        assert ws.latency == 0.0
        time.sleep(0.55)  # nobody receives
        assert 4 <= len(pings) <= 6, pings
        assert 0 < ws.latency < 0.1
        assert ws.state is sigil_ws.State.OPEN
    assert not raw_server.errors


def test_sync_answers_pings_while_nobody_receives(raw_server: RawServer) -> None:
    pongs: list[bytes] = []

    def script(conn: RawConnection) -> None:
        # The first ping comes with the 101 answer, read with it by the handshake.
        conn.upgrade(trailing=server_frame(9, b"p0"))
        for i in range(3):
            if i:
                conn.send(server_frame(9, b"p%d" % i))
            opcode, _, payload = conn.recv_frame()
            assert opcode == 10
            pongs.append(payload)
        conn.send(server_frame(8, struct.pack("!H", 1000)))
        conn.expect_close(1000)

    url = raw_server.serve(script)
    with sigil_ws.connect(url, ping_interval=None):
        deadline = time.monotonic() + 2
        while len(pongs) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pongs == [b"p0", b"p1", b"p2"]
    assert not raw_server.errors


def test_sync_blocked_recv_fails_with_1011_on_a_silent_server(raw_server: RawServer) -> None:
    closes: list[bytes] = []

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        while True:
            opcode, _, payload = conn.recv_frame()
            if opcode == 8:
                closes.append(payload)
                return

    url = raw_server.serve(script)
    ws = sigil_ws.connect(url, ping_interval=0.2, ping_timeout=0.3, close_timeout=0.5)
    start = time.monotonic()
    with pytest.raises(ConnectionClosedError) as caught:
        ws.recv(timeout=5)
    elapsed = time.monotonic() - start
    assert (caught.value.code, caught.value.reason) == (1011, "keepalive ping timeout")
    assert 0.45 <= elapsed < 1.5, elapsed
    ws.close()
    raw_server.done.wait(2)
    assert closes and struct.unpack("!H", closes[0][:2])[0] == 1011


def test_sync_idle_connection_to_a_silent_server_fails_with_1011(raw_server: RawServer) -> None:
    url = raw_server.serve(lambda conn: (conn.upgrade(), time.sleep(3)))
    ws = sigil_ws.connect(url, ping_interval=0.1, ping_timeout=0.2, close_timeout=0.5)
    time.sleep(0.6)  # nobody receives: the I/O thread fails it
    assert ws.state is sigil_ws.State.CLOSED
    with pytest.raises(ConnectionClosedError) as caught:
        ws.send("late")
    assert caught.value.code == 1011
    ws.close()


def test_sync_send_after_the_peers_close_raises_while_nobody_receives(
    raw_server: RawServer,
) -> None:
    def script(conn: RawConnection) -> None:
        conn.upgrade()
        time.sleep(0.2)
        conn.send(server_frame(8, struct.pack("!H", 1001) + b"bye"))
        conn.expect_close(1001)

    url = raw_server.serve(script)
    ws = sigil_ws.connect(url, ping_interval=None)
    sent = 0
    start = time.monotonic()
    with pytest.raises(sigil_ws.ConnectionClosed) as caught:
        while time.monotonic() - start < 3:
            ws.send("x")
            sent += 1
            time.sleep(0.01)
    assert (caught.value.code, caught.value.reason) == (1001, "bye")
    assert time.monotonic() - start < 1.0
    ws.close()
    raw_server.done.wait(2)
    assert not raw_server.errors


def test_sync_a_client_that_only_sends_keeps_the_connection(
    keepalive_server: tuple[str, list[int]],
) -> None:
    """The websockets server pings every 0.3 s and wants its pong within 0.3 s; the client
    never calls recv() for 3 s: every message arrives and the close is normal."""
    url, received = keepalive_server
    with sigil_ws.connect(url, ping_interval=None) as ws:
        for i in range(60):
            ws.send(str(i))
            time.sleep(0.05)
        ws.close()
        assert ws.close_code == 1000
    assert received == list(range(60))


def test_sync_read_ahead_keeps_every_message_in_order(raw_server: RawServer) -> None:
    """Messages arrive while nobody receives: the I/O thread parks up to max_queue, pauses,
    and resumes as recv() takes them; nothing is lost or reordered."""
    count = 2000

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(b"".join(server_frame(1, str(i).encode()) for i in range(count)))
        conn.send(server_frame(8, struct.pack("!H", 1000)))
        conn.expect_close(1000)

    url = raw_server.serve(script)
    with sigil_ws.connect(url, max_queue=4) as ws:
        time.sleep(0.3)
        assert [ws.recv(timeout=5) for _ in range(count)] == [str(i) for i in range(count)]
        with pytest.raises(sigil_ws.ConnectionClosedOK):
            ws.recv(timeout=5)


def test_sync_1000_idle_connections_under_keepalive_share_one_thread(
    ws_echo_process: str,
) -> None:
    first = sigil_ws.connect(ws_echo_process, ping_interval=0.5)  # the thread exists now
    before = threads_now()
    conns = [sigil_ws.connect(ws_echo_process, ping_interval=0.5) for _ in range(1000)]
    try:
        assert threads_now() == before
        time.sleep(1.2)
        assert all(ws.state is sigil_ws.State.OPEN for ws in conns)
        assert all(ws.latency > 0 for ws in conns), "every connection pinged, pong timed"
    finally:
        for ws in [first, *conns]:
            ws.close()


def test_sync_a_forked_child_serves_its_own_connections(raw_server: RawServer) -> None:
    pings: list[float] = []
    url = raw_server.serve(
        lambda conn: (conn.upgrade(), answer_pings(conn, pings, threading.Lock()))
    )
    with sigil_ws.connect(url, ping_interval=0.1) as parent:
        time.sleep(0.25)
        pid = os.fork()
        if pid == 0:  # the child: a connection of its own is served by a thread of its own
            code = 1
            try:
                ws = sigil_ws.connect(url, ping_interval=0.1)
                time.sleep(0.35)
                code = 0 if ws.latency > 0 and ws.state is sigil_ws.State.OPEN else 2
                ws.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.2)
        assert parent.state is sigil_ws.State.OPEN
        assert parent.latency > 0

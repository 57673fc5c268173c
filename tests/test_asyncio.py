"""asyncio-only behaviour: no threads per connection, cancellation, backpressure, uvloop.

The behaviour shared with the sync client is tested for both drivers in test_client.py,
test_adversarial.py and test_tls.py through the parametrised ``connect`` fixture.
"""

from __future__ import annotations

import asyncio
import resource
import struct
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as async_serve

import sigil_ws
import sigil_ws.asyncio
from sigil_ws import ConcurrencyError, ConnectionClosedOK

from .conftest import RawConnection, RawServer, child_server, open_fds, server_frame

T = TypeVar("T")


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.fixture(scope="module")
def async_echo_server() -> Iterator[str]:
    """An asyncio websockets echo server in its own thread (scales to hundreds of clients)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        async with async_serve(echo, "127.0.0.1", 0, compression=None, backlog=1024) as server:
            holder["port"] = server.sockets[0].getsockname()[1]
            holder["stop"] = loop.create_future()
            started.set()
            await holder["stop"]

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    yield f"ws://127.0.0.1:{holder['port']}"
    loop.call_soon_threadsafe(holder["stop"].set_result, None)
    thread.join(10)
    loop.close()


def test_awaitable_and_context_manager(async_echo_server: str, run: Any) -> None:
    async def main() -> None:
        ws = await sigil_ws.asyncio.connect(async_echo_server)
        await ws.send("awaited")
        assert await ws.recv() == "awaited"
        await ws.close()
        assert ws.state is sigil_ws.State.CLOSED
        async with sigil_ws.asyncio.connect(async_echo_server) as ws2:
            await ws2.send(b"managed")
            assert await ws2.recv() == b"managed"
            await ws2.ping(b"p")
        assert ws2.state is sigil_ws.State.CLOSED
        assert ws2.close_code == 1000

    run(main())


def test_async_for(ws_server: str, run: Any) -> None:
    async def main() -> list[str | bytes]:
        async with sigil_ws.asyncio.connect(ws_server + "/push/4/3") as ws:
            return [m async for m in ws]

    assert run(main()) == [b"xxx"] * 4


def test_500_concurrent_connections_without_threads(async_echo_server: str, run: Any) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    threads_before = threading.active_count()

    async def client(n: int) -> int:
        async with sigil_ws.asyncio.connect(async_echo_server, open_timeout=30) as ws:
            for i in range(5):
                await ws.send(f"{n}:{i}")
                assert await ws.recv() == f"{n}:{i}"
            return threading.active_count()

    async def main() -> list[int]:
        return await asyncio.gather(*(client(n) for n in range(500)))

    counts = run(main())
    assert len(counts) == 500
    # No thread per connection: the count seen while all were open is the count before.
    assert max(counts) <= threads_before


def test_cancelled_recv_loses_no_message(ws_server: str, run: Any) -> None:
    async def main() -> None:
        async with sigil_ws.asyncio.connect(ws_server) as ws:
            for _ in range(20):
                task = asyncio.create_task(ws.recv())
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            await ws.send("after cancellations")
            # Cancel a recv() whose message is arriving right now; then the message is still
            # delivered, exactly once.
            await ws.send("racing")
            task = asyncio.create_task(ws.recv())
            await asyncio.sleep(0.05)
            task.cancel()
            got = []
            try:
                got.append(await task)
            except asyncio.CancelledError:
                pass
            while len(got) < 2:
                got.append(await ws.recv(timeout=5))
            assert got == ["after cancellations", "racing"]
            with pytest.raises(TimeoutError):
                await ws.recv(timeout=0.1)

    run(main())


def test_recv_timeout_uses_wait_not_cancel(ws_server: str, run: Any) -> None:
    async def main() -> None:
        async with sigil_ws.asyncio.connect(ws_server) as ws:
            with pytest.raises(TimeoutError, match="waiting for a message"):
                await ws.recv(timeout=0.05)
            await ws.send("ok")
            assert await ws.recv(timeout=5) == "ok"

    run(main())


def test_concurrent_recv_raises(ws_server: str, run: Any) -> None:
    async def main() -> None:
        async with sigil_ws.asyncio.connect(ws_server) as ws:
            first = asyncio.create_task(ws.recv())
            await asyncio.sleep(0.01)
            with pytest.raises(ConcurrencyError, match="another coroutine"):
                await ws.recv()
            await ws.send("one")
            assert await first == "one"

    run(main())


def test_cancelled_connect_leaves_no_socket(raw_server: RawServer, run: Any) -> None:
    hold = threading.Event()
    url = raw_server.serve(lambda conn: hold.wait(10) and None)
    before = open_fds()

    async def main() -> None:
        task = asyncio.create_task(sigil_ws.asyncio.connect(url, open_timeout=None).__aenter__())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    hold.set()
    raw_server.done.wait(5)
    leaked = [fd for fd in open_fds() - before if _is_socket(fd)]
    assert leaked == []


def _is_socket(fd: int) -> bool:
    import os

    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    except OSError:
        return False


def test_open_timeout(raw_server: RawServer, run: Any) -> None:
    hold = threading.Event()
    url = raw_server.serve(lambda conn: hold.wait(10) and None)

    async def main() -> None:
        with pytest.raises(TimeoutError, match="opening handshake"):
            await sigil_ws.asyncio.connect(url, open_timeout=0.2)

    run(main())
    hold.set()


def test_slow_reader_pauses_the_socket(raw_server: RawServer, run: Any) -> None:
    """A fast sender and a reader that stops: the queue stays bounded, reading pauses."""
    size, count = 16 * 1024, 4000  # 64 MiB offered in all
    frame = server_frame(2, b"m" * size)
    sent = [0]

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.sock.settimeout(2)
        try:
            for _ in range(count):
                conn.send(frame)
                sent[0] += 1
        except TimeoutError:
            pass  # the client stopped reading: the socket buffers are full
        conn.sock.settimeout(None)

    url = raw_server.serve(script)

    async def main() -> None:
        async with sigil_ws.asyncio.connect(url, max_queue=8, close_timeout=0.5) as ws:
            assert await ws.recv() == b"m" * size
            await asyncio.sleep(3)  # stop reading while the server pushes
            driver = ws._driver
            assert driver.reading_paused
            # One read's worth of messages past the bound at most (asyncio reads <= 256 KiB).
            assert len(driver.messages) <= 8 + 256 * 1024 // size + 1
            assert sent[0] < count, "the server could not push everything: backpressure"
            for _ in range(50):
                assert await ws.recv(timeout=5) == b"m" * size

    run(main())


def test_send_waits_for_drain(raw_server: RawServer, run: Any) -> None:
    """A server that never reads: send() blocks instead of buffering without bound."""
    hold = threading.Event()

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        hold.wait(20)

    url = raw_server.serve(script)
    payload = b"s" * (256 * 1024)

    async def main() -> None:
        ws = await sigil_ws.asyncio.connect(url, write_limit=64 * 1024, close_timeout=0.2)
        blocked = False
        for _ in range(400):  # 100 MiB if nothing pushed back
            try:
                await asyncio.wait_for(ws.send(payload), 1)
            except TimeoutError:
                blocked = True
                break
        assert blocked, "send() never waited"
        buffered = ws._transport.get_write_buffer_size()
        assert buffered < 64 * 1024 + 2 * len(payload) + 1024
        hold.set()
        await ws.close()

    run(main())


def test_protocol_failure_closes_with_code(raw_server: RawServer, run: Any) -> None:
    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(server_frame(1, b"fine") + server_frame(1, b"\xff"))
        conn.expect_close(1007)

    url = raw_server.serve(script)

    async def main() -> None:
        async with sigil_ws.asyncio.connect(url) as ws:
            assert await ws.recv() == "fine"
            with pytest.raises(sigil_ws.ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1007
            assert isinstance(info.value.__cause__, sigil_ws.ProtocolError)

    run(main())


def test_normal_close_by_server(ws_server: str, run: Any) -> None:
    async def main() -> None:
        ws = await sigil_ws.asyncio.connect(ws_server + "/close/1001")
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.code == 1001
        with pytest.raises(ConnectionClosedOK):
            await ws.send("x")
        await ws.close()

    run(main())


def test_big_length_header(raw_server: RawServer, run: Any) -> None:
    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(b"\x82\x7f" + struct.pack("!Q", 2**62))
        conn.expect_close(1009)

    url = raw_server.serve(script)

    async def main() -> None:
        async with sigil_ws.asyncio.connect(url, max_size=2**20) as ws:
            with pytest.raises(sigil_ws.ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1009

    run(main())


def test_bad_options(ws_server: str, run: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="TLSConfig"):
            await sigil_ws.asyncio.connect(ws_server, tls="yes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_queue must be positive"):
            await sigil_ws.asyncio.connect(ws_server, max_queue=0)
        with pytest.raises(ValueError, match="open_timeout must be a non-negative"):
            await sigil_ws.asyncio.connect(ws_server, open_timeout=-1)
        with pytest.raises(sigil_ws.InvalidURL, match="unsupported scheme"):
            await sigil_ws.asyncio.connect("http://example.com/")

    run(main())


# Pushes COUNT binary messages of SIZE bytes, each filled with its connection's tag and
# sequence number, so that a byte from another connection or another message shows.
TAGGED_PUSH_SERVER = """
import struct
from websockets.sync.server import serve

def push(ws):
    tag, count, size = (int(part) for part in ws.request.path.strip("/").split("/"))
    for seq in range(count):
        ws.send(struct.pack("!II", tag, seq) * (size // 8))
    ws.close(1000)

with serve(push, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None) as s:
    print(s.socket.getsockname()[1], flush=True)
    s.serve_forever()
"""


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_loops_in_threads_read_their_own_bytes(loop_kind: str) -> None:
    # The transport reads into a buffer shared by the connections of one thread: loops in
    # other threads must not read into it (recv_into runs without the GIL, so two threads
    # sharing one buffer overwrite each other's bytes before the engine copies them).
    import uvloop

    with child_server(TAGGED_PUSH_SERVER) as url:
        count, size = 3000, 16384
        errors: list[str] = []

        async def receive(tag: int) -> None:
            expected = 0
            async with sigil_ws.asyncio.connect(f"{url}/{tag}/{count}/{size}") as ws:
                async for message in ws:
                    want = struct.pack("!II", tag, expected) * (size // 8)
                    if message != want:
                        errors.append(f"connection {tag}, message {expected}: wrong bytes")
                        return
                    expected += 1
            if expected != count:
                errors.append(f"connection {tag}: {expected} of {count} messages")

        def thread_main(tag: int) -> None:
            try:
                if loop_kind == "uvloop":
                    uvloop.run(receive(tag))
                else:
                    asyncio.run(receive(tag))
            except Exception as exc:  # reported below
                errors.append(f"connection {tag}: {exc!r}")

        threads = [threading.Thread(target=thread_main, args=(tag,)) for tag in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []

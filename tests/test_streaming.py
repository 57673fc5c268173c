"""Streaming: ``recv_streaming()`` hands a message out in pieces as its frames arrive, and
``send(iterable)`` sends one message in fragments as the iterable produces them. Sync, asyncio
and uvloop, against the raw scripted server and the websockets server."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve

import sigil_ws

from .conftest import RawConnection, RawServer, server_frame


def pieces(ws: Any, timeout: float | None = 5) -> list[str | bytes]:
    """All the pieces of the next message, with the driver under test."""
    if isinstance(ws, sigil_ws.Connection):
        return list(ws.recv_streaming(timeout))

    async def collect() -> list[str | bytes]:
        return [p async for p in ws._connection.recv_streaming(timeout)]

    return list(ws._runner.run(collect()))


def first_piece(ws: Any) -> tuple[str | bytes, Any]:
    """The first piece of the next message and the iteration, to go on or drop."""
    if isinstance(ws, sigil_ws.Connection):
        it = ws.recv_streaming(5)
        return next(it), it
    ait = ws._connection.recv_streaming(5)
    return ws._runner.run(anext(ait)), ait


def next_piece(ws: Any, it: Any) -> str | bytes:
    if isinstance(ws, sigil_ws.Connection):
        return next(it)  # type: ignore[no-any-return]
    return ws._runner.run(anext(it))  # type: ignore[no-any-return]


# ---- receiving in pieces --------------------------------------------------------------------


def test_pieces_arrive_before_the_message_ends(
    connect: Callable[..., Any], raw_server: RawServer
) -> None:
    """The first piece is handed out while the rest of the message is not even sent: the
    server sends the rest only once the client has answered the first piece."""
    text = "aé€😀z".encode()

    def script(c: RawConnection) -> None:
        c.upgrade()
        c.send(server_frame(1, text[:3], fin=False))  # "aé" and the first byte of "€"
        opcode, _, payload = c.recv_frame()
        assert (opcode, payload) == (1, b"got it")
        c.send(server_frame(0, text[3:8], fin=False))
        c.send(server_frame(0, text[8:], fin=True))
        c.send(server_frame(1, b"next"))
        c.expect_close(1000)

    ws = connect(raw_server.serve(script), compression=None)
    piece, it = first_piece(ws)
    assert piece == "aé"  # ends on a character boundary
    ws.send("got it")
    rest = [next_piece(ws, it)]
    try:
        while True:
            rest.append(next_piece(ws, it))
    except (StopIteration, StopAsyncIteration):
        pass
    assert "".join(str(p) for p in [piece, *rest]) == "aé€😀z"
    assert all(isinstance(p, str) and p for p in rest)
    assert ws.recv(timeout=5) == "next"
    ws.close()
    assert not raw_server.errors


def test_binary_pieces_and_whole_messages_after(
    connect: Callable[..., Any], raw_server: RawServer
) -> None:
    """Each frame that has arrived is a piece; the empty last frame ends the iteration without
    an empty piece. The server sends each frame once the client has answered the piece before,
    so no two frames can arrive in one read."""

    def script(c: RawConnection) -> None:
        c.upgrade()
        c.send(server_frame(2, b"ab", fin=False))
        assert c.recv_frame()[2] == b"1"
        c.send(server_frame(0, b"cd", fin=False))
        assert c.recv_frame()[2] == b"2"
        c.send(server_frame(0, b"", fin=True) + server_frame(2, b"whole"))
        c.expect_close(1000)

    ws = connect(raw_server.serve(script), compression=None)
    got, it = first_piece(ws)
    ws.send(b"1")
    second = next_piece(ws, it)
    ws.send(b"2")
    with pytest.raises((StopIteration, StopAsyncIteration)):
        next_piece(ws, it)
    assert [got, second] == [b"ab", b"cd"], "no empty last piece"
    # A message of one frame is its own one piece; streaming ended with the message.
    assert pieces(ws) == [b"whole"]
    ws.close()
    assert not raw_server.errors


def test_max_size_counts_every_piece(connect: Callable[..., Any], raw_server: RawServer) -> None:
    def script(c: RawConnection) -> None:
        c.upgrade()
        c.send(server_frame(2, b"x" * 60, fin=False))
        c.send(server_frame(0, b"x" * 60, fin=True))
        c.expect_close(1009)

    ws = connect(raw_server.serve(script), compression=None, max_size=100)
    with pytest.raises(sigil_ws.ConnectionClosedError) as info:
        pieces(ws)
    assert info.value.code == 1009
    raw_server.done.wait(5)
    assert not raw_server.errors


def test_invalid_utf8_in_a_later_piece_fails_with_1007(
    connect: Callable[..., Any], raw_server: RawServer
) -> None:
    def script(c: RawConnection) -> None:
        c.upgrade()
        c.send(server_frame(1, b"fine", fin=False))
        c.recv_frame()
        c.send(server_frame(0, b"\xed\xa0\x80", fin=True))  # a surrogate
        c.expect_close(1007)

    ws = connect(raw_server.serve(script), compression=None)
    piece, it = first_piece(ws)
    assert piece == "fine"
    ws.send("go on")
    with pytest.raises(sigil_ws.ConnectionClosedError) as info:
        next_piece(ws, it)
    assert info.value.code == 1007
    raw_server.done.wait(5)
    assert not raw_server.errors


def test_leaving_the_iteration_drops_the_rest_of_the_message(
    connect: Callable[..., Any], raw_server: RawServer
) -> None:
    def script(c: RawConnection) -> None:
        c.upgrade()
        c.send(server_frame(1, b"seen ", fin=False))
        c.recv_frame()  # the client took the first piece and dropped the iteration
        c.send(server_frame(0, b"dropped ", fin=False))
        c.send(server_frame(0, b"too", fin=True))
        c.send(server_frame(1, b"next"))
        c.expect_close(1000)

    ws = connect(raw_server.serve(script), compression=None)
    piece, it = first_piece(ws)
    assert piece == "seen "
    with pytest.raises(sigil_ws.ConcurrencyError):
        ws.recv(timeout=1)
    del it  # left unfinished
    ws.send("go on")
    assert ws.recv(timeout=5) == "next"
    ws.close()
    assert not raw_server.errors


def _streaming_server(handler: Callable[[ServerConnection], None], **kw: Any) -> Iterator[str]:
    server = serve(handler, "127.0.0.1", 0, **kw)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def deflate_server() -> Iterator[str]:
    """A websockets server with permessage-deflate that answers "go" with two fragmented
    messages sent through its own send(iterable)."""

    def handler(ws: ServerConnection) -> None:
        for message in ws:
            if message == "go":
                ws.send(["{'price': 1.0, " * 50, "'size': 2} " * 50, "end"])
                ws.send([b"\x00" * 3000, b"\x01" * 3000])
            else:
                ws.send(message)

    yield from _streaming_server(handler, compression="deflate")


def test_compressed_fragmented_messages_stream(
    connect: Callable[..., Any], deflate_server: str
) -> None:
    ws = connect(deflate_server)
    assert ws.extensions and ws.extensions[0][0] == "permessage-deflate"
    ws.send("go")
    text = pieces(ws)
    assert "".join(text) == "{'price': 1.0, " * 50 + "'size': 2} " * 50 + "end"  # type: ignore[arg-type]
    binary = pieces(ws)
    assert b"".join(binary) == b"\x00" * 3000 + b"\x01" * 3000  # type: ignore[arg-type]
    ws.close()


# ---- sending in fragments -------------------------------------------------------------------


def _send(ws: Any, message: Any, **kw: Any) -> None:
    ws.send(message, **kw)


def test_each_fragment_goes_out_as_it_is_produced(
    driver: str, connect: Callable[..., Any], raw_server: RawServer
) -> None:
    """The second fragment is produced only after the server has received the first."""
    first_seen = threading.Event()
    frames: list[tuple[int, bool, bytes]] = []

    def script(c: RawConnection) -> None:
        c.upgrade()
        frames.append(c.recv_frame())
        first_seen.set()
        while not frames[-1][1]:
            frames.append(c.recv_frame())
        c.send(server_frame(1, b"ok"))
        c.expect_close(1000)

    ws = connect(raw_server.serve(script), compression=None)
    if driver == "sync":

        def tokens() -> Iterator[str]:
            yield "to"
            assert first_seen.wait(5), "the first fragment was held back"
            yield "kén"

        ws.send(tokens())
    else:

        async def atokens() -> AsyncIterator[str]:
            yield "to"
            assert await asyncio.to_thread(first_seen.wait, 5), "held back"
            yield "kén"

        ws.send(atokens())
    assert ws.recv(timeout=5) == "ok"
    assert frames == [(1, False, b"to"), (0, False, "kén".encode()), (0, True, b"")]
    ws.close()
    assert not raw_server.errors


def test_fragments_echo_through_websockets(connect: Callable[..., Any], ws_server: str) -> None:
    ws = connect(ws_server + "/echo")
    ws.send(["frag", "mented ", "tëxt"])
    assert ws.recv(timeout=5) == "fragmented tëxt"
    ws.send(iter([b"by", bytearray(b"te"), memoryview(b"s")]))
    assert ws.recv(timeout=5) == b"bytes"
    ws.send([])  # no message at all
    ws.send("after")
    assert ws.recv(timeout=5) == "after"
    with pytest.raises(TypeError, match="iterable"):
        ws.send({"a": 1})  # a mapping is refused, nothing is sent
    with pytest.raises(TypeError):
        ws.send(12)
    ws.send("still open")
    assert ws.recv(timeout=5) == "still open"
    ws.close()
    assert ws.close_code == 1000


def test_an_iterable_that_fails_midway_fails_the_connection_with_1011(
    connect: Callable[..., Any], raw_server: RawServer
) -> None:
    def script(c: RawConnection) -> None:
        c.upgrade()
        assert c.recv_frame() == (2, False, b"half")
        opcode, _, payload = c.recv_frame()
        assert opcode == 8
        assert struct.unpack("!H", payload[:2])[0] == 1011
        c.send(server_frame(8, struct.pack("!H", 1011)))

    ws = connect(raw_server.serve(script), compression=None)

    def broken() -> Iterator[bytes]:
        yield b"half"
        raise ValueError("the source failed")

    with pytest.raises(ValueError, match="the source failed"):
        ws.send(broken())
    with pytest.raises(sigil_ws.ConnectionClosed):
        ws.send("more")
    raw_server.done.wait(5)
    assert not raw_server.errors


def test_mixed_fragments_are_refused(connect: Callable[..., Any], raw_server: RawServer) -> None:
    def script(c: RawConnection) -> None:
        c.upgrade()
        assert c.recv_frame() == (1, False, b"text")
        c.expect_close(1011)

    ws = connect(raw_server.serve(script), compression=None)
    with pytest.raises(TypeError):
        ws.send(["text", b"bytes"])
    raw_server.done.wait(5)
    assert not raw_server.errors


def test_another_thread_waits_for_the_message_in_fragments(
    sync_connect: Callable[..., sigil_ws.Connection], raw_server: RawServer
) -> None:
    """RFC 6455 §5.4: no other message goes between the fragments; pings may."""
    frames: list[tuple[int, bool, bytes]] = []
    got_all = threading.Event()

    def script(c: RawConnection) -> None:
        c.upgrade()
        while len([f for f in frames if f[0] in (1, 2, 0)]) < 4:
            frames.append(c.recv_frame())
        got_all.set()
        c.expect_close(1000)

    ws = sync_connect(raw_server.serve(script), compression=None)
    middle = threading.Event()
    sent = threading.Event()

    def slow() -> Iterator[str]:
        yield "one "
        middle.set()
        time.sleep(0.3)
        yield "two"

    def other() -> None:
        middle.wait(5)
        ws.ping(b"p")
        ws.send("other")
        sent.set()

    t = threading.Thread(target=other)
    t.start()
    ws.send(slow())
    t.join(5)
    assert sent.is_set()
    assert got_all.wait(5)
    data = [f for f in frames if f[0] != 9]
    assert data == [(1, False, b"one "), (0, False, b"two"), (0, True, b""), (1, True, b"other")]
    assert (9, True, b"p") in frames
    ws.close()
    assert not raw_server.errors


def test_asyncio_send_waits_for_the_message_in_fragments(
    raw_server: RawServer,
) -> None:
    frames: list[tuple[int, bool, bytes]] = []

    def script(c: RawConnection) -> None:
        c.upgrade()
        while len(frames) < 4:
            frames.append(c.recv_frame())
        c.expect_close(1000)

    url = raw_server.serve(script)

    async def main() -> None:
        import sigil_ws.asyncio

        async with sigil_ws.asyncio.connect(url, compression=None) as ws:

            async def slow() -> AsyncIterator[bytes]:
                yield b"one"
                await asyncio.sleep(0.2)
                yield b"two"

            async def other() -> None:
                await asyncio.sleep(0.1)
                await ws.send("other")

            await asyncio.gather(ws.send(slow()), other())

    asyncio.run(main())
    assert frames == [(2, False, b"one"), (0, False, b"two"), (0, True, b""), (1, True, b"other")]
    assert not raw_server.errors


def test_a_large_frame_streamed_ends_the_streaming(
    connect: Callable[..., Any], raw_server: RawServer
) -> None:
    """A binary message in one large frame (the size that may be received straight into the
    message) is its own one piece, and the message after it is whole again."""
    big = bytes(range(256)) * 4096  # 1 MiB

    def script(c: RawConnection) -> None:
        c.upgrade()
        assert c.recv_frame()[2] == b"ready"
        frame = server_frame(2, big)
        for i in range(0, len(frame), 64 * 1024):
            c.send(frame[i : i + 64 * 1024])
            time.sleep(0.005)
        c.send(server_frame(1, b"after ", fin=False) + server_frame(0, b"it", fin=True))
        c.expect_close(1000)

    ws = connect(raw_server.serve(script), compression=None, max_size=None)
    it = ws.recv_streaming(5) if isinstance(ws, sigil_ws.Connection) else None
    ws.send("ready")
    got = list(it) if it is not None else pieces(ws)
    assert b"".join(got) == big  # type: ignore[arg-type]
    assert ws.recv(timeout=5) == "after it"
    ws.close()
    assert not raw_server.errors

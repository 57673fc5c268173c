"""permessage-deflate (RFC 7692): negotiation, interop with the websockets server, and the
failures a compressing peer can cause (invalid answers, invalid data, RSV1 misuse, bombs)."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.sync.server import ServerConnection, serve

import sigil_ws
from sigil_ws import ConnectionClosedError, HandshakeError, ProtocolError

from .conftest import RawConnection, RawServer, read_exact, server_frame

Connect = Callable[..., Any]

DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate\r\n"


def deflate(data: bytes, wbits: int = 15) -> bytes:
    """A message payload compressed as RFC 7692 §7.2.1 says: sync flush, tail removed."""
    compressor = zlib.compressobj(wbits=-wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def read_raw_frame(conn: RawConnection) -> tuple[int, bytes]:
    """One client frame: (first header byte, unmasked payload)."""
    b0, b1 = read_exact(conn.sock, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", read_exact(conn.sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", read_exact(conn.sock, 8))
    key = read_exact(conn.sock, 4)
    data = read_exact(conn.sock, n)
    return b0, bytes(b ^ key[i % 4] for i, b in enumerate(data))


# ---- interop with the reference server -----------------------------------------------------------


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


@pytest.fixture(
    params=[
        {},
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        {"server_max_window_bits": 9, "client_max_window_bits": 9},
        {"server_max_window_bits": 10},
        {"client_max_window_bits": 11},
        {"server_max_window_bits": 15, "client_max_window_bits": 12},
    ],
    ids=["default", "no-takeover", "window-9", "server-window-10", "client-window-11", "mixed"],
)
def deflate_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, Any]]]:
    """A websockets echo server that answers our offer with the given parameters."""
    params: dict[str, Any] = request.param
    server = serve(
        echo,
        "127.0.0.1",
        0,
        compression=None,
        extensions=[ServerPerMessageDeflateFactory(**params)],
        max_size=None,
        ping_interval=None,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}", params
    finally:
        server.shutdown()
        thread.join(5)


MESSAGES: list[str | bytes] = [
    "hello",
    "",
    b"",
    "é" * 5000,
    b"\x00\x01" * 40000,
    '{"price": 101.25, "qty": 3}' * 300,
    bytes(range(256)) * 64,
]


def test_round_trips_with_every_parameter_combination(
    deflate_server: tuple[str, dict[str, Any]], connect: Connect
) -> None:
    url, params = deflate_server
    ws = connect(url)
    [(name, negotiated)] = ws.extensions
    assert name == "permessage-deflate"
    for key, value in params.items():
        if key.endswith("takeover"):
            assert key in negotiated and negotiated[key] is None
        else:
            assert negotiated[key] == str(value)
    for _ in range(2):  # the second round reuses (or resets) the compression context
        for message in MESSAGES:
            ws.send(message)
            assert ws.recv(timeout=5) == message
    ws.send("not compressed", compress=False)
    assert ws.recv(timeout=5) == "not compressed"
    # Fragmented messages: one DEFLATE stream over the fragments, inflated by the server.
    for _ in range(2):
        text = ["frag", "", "mented " * 500, "é" * 3000, '{"price": 101.25}' * 2000]
        ws.send(iter(text))
        assert ws.recv(timeout=5) == "".join(text)
        data = [b"\x00\x01" * 30000, b"", bytes(range(256)) * 200]
        ws.send(iter(data))
        assert ws.recv(timeout=5) == b"".join(data)
    ws.send(iter(["as ", "it is"]), compress=False)
    assert ws.recv(timeout=5) == "as it is"


def test_compression_none_offers_nothing(raw_server: RawServer, connect: Connect) -> None:
    requests: list[bytes] = []

    def script(conn: RawConnection) -> None:
        requests.append(conn.request)
        conn.upgrade()
        conn.expect_close(1000)

    ws = connect(raw_server.serve(script), compression=None)
    assert ws.extensions == []
    ws.close()
    raw_server.done.wait(5)
    assert b"sec-websocket-extensions" not in requests[0].lower()


def test_default_offer_and_unknown_compression_value(raw_server: RawServer) -> None:
    requests: list[bytes] = []

    def script(conn: RawConnection) -> None:
        requests.append(conn.request)
        conn.upgrade()
        conn.expect_close(1000)

    with sigil_ws.connect(raw_server.serve(script), open_timeout=5) as ws:
        assert ws.extensions == []  # the server accepted nothing
    raw_server.done.wait(5)
    assert (
        b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        in requests[0]
    )
    with pytest.raises(ValueError, match="compression must be"):
        sigil_ws.connect(raw_server.url, compression="gzip")


def test_compress_false_sends_rsv1_clear(raw_server: RawServer, connect: Connect) -> None:
    frames: list[tuple[int, bytes]] = []

    def script(conn: RawConnection) -> None:
        conn.upgrade(DEFLATE)
        frames.append(read_raw_frame(conn))
        frames.append(read_raw_frame(conn))
        conn.send(server_frame(8, struct.pack("!H", 1000)))
        conn.expect_close(1000)

    ws = connect(raw_server.serve(script))
    ws.send("Hello")
    ws.send("Hello", compress=False)
    ws.close()
    raw_server.done.wait(5)
    # RFC 7692 §7.2.3.1: "Hello" compresses to f2 48 cd c9 c9 07 00, sent with RSV1.
    assert frames[0] == (0xC1, bytes.fromhex("f248cdc9c90700"))
    assert frames[1] == (0x81, b"Hello")


def test_fragments_carry_one_deflate_stream_with_rsv1_on_the_first(
    raw_server: RawServer, connect: Connect
) -> None:
    """RFC 7692 §6.1: a fragmented message is compressed, then fragmented; RSV1 is set on its
    first frame only. Each fragment is flushed, so it inflates as soon as it arrives."""
    frames: list[tuple[int, bytes]] = []

    def script(conn: RawConnection) -> None:
        conn.upgrade(DEFLATE)
        for _ in range(6):  # the second message ends with an empty frame too
            frames.append(read_raw_frame(conn))
        conn.send(server_frame(8, struct.pack("!H", 1000)))
        conn.expect_close(1000)

    ws = connect(raw_server.serve(script))
    ws.send(iter(["Hello", ", ", "Hello"]))
    ws.send(iter([b"as it is"]), compress=False)
    ws.close()
    raw_server.done.wait(5)
    assert [b0 for b0, _ in frames] == [0x41, 0x00, 0x00, 0x80, 0x02, 0x80]
    z = zlib.decompressobj(wbits=-15)
    pieces = [z.decompress(payload) for _, payload in frames[:3]]
    assert pieces == [b"Hello", b", ", b"Hello"]
    # The last frame is empty but for the empty stored block's header; the tail completes it.
    assert z.decompress(frames[3][1] + b"\x00\x00\xff\xff") == b""
    assert frames[4][1] == b"as it is"
    assert frames[5][1] == b""


# ---- invalid answers and data --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ("permessage-deflate; foo", 'unknown permessage-deflate parameter "foo"'),
        ("permessage-deflate; server_max_window_bits=16", "server_max_window_bits"),
        ("permessage-deflate; server_max_window_bits=08", "server_max_window_bits"),
        ("permessage-deflate; client_max_window_bits", "requires a value"),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "duplicate",
        ),
        ("permessage-deflate, permessage-deflate", "more than once"),
        ("x-webkit-deflate-frame", "not offered"),
    ],
)
def test_invalid_answer_is_refused(
    raw_server: RawServer, connect: Connect, answer: str, match: str
) -> None:
    url = raw_server.serve(lambda conn: conn.upgrade(f"Sec-WebSocket-Extensions: {answer}\r\n"))
    with pytest.raises(HandshakeError, match=match):
        connect(url)


def failing_server(raw_server: RawServer, payload: bytes, code: int) -> str:
    def script(conn: RawConnection) -> None:
        conn.upgrade(DEFLATE)
        conn.send(payload)
        conn.expect_close(code)

    return raw_server.serve(script)


def compressed_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    frame = bytearray(server_frame(opcode, payload, fin=fin))
    frame[0] |= 0x40
    return bytes(frame)


@pytest.mark.parametrize(
    ("payload", "code", "match"),
    [
        pytest.param(compressed_frame(2, b"\xff\xff\xff"), 1007, "invalid compressed", id="data"),
        pytest.param(compressed_frame(9, b""), 1002, "control frame", id="rsv1-ping"),
        pytest.param(
            server_frame(1, deflate(b"ab"), fin=False) + compressed_frame(0, b""),
            1002,
            "continuation",
            id="rsv1-continuation",
        ),
        pytest.param(compressed_frame(1, deflate(b"\xff\xfe")), 1007, "invalid UTF-8", id="utf8"),
    ],
)
def test_invalid_compressed_traffic_fails_the_connection(
    raw_server: RawServer, connect: Connect, payload: bytes, code: int, match: str
) -> None:
    ws = connect(failing_server(raw_server, payload, code))
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == code
    assert isinstance(info.value.__cause__, ProtocolError)
    assert match in str(info.value.__cause__)


def test_a_deflate_bomb_fails_with_1009_within_max_size(
    raw_server: RawServer, connect: Connect
) -> None:
    bomb = deflate(bytes(256 * 2**20))  # 256 MiB of zeros in about 256 KiB
    assert len(bomb) < 300 * 1024
    ws = connect(failing_server(raw_server, compressed_frame(2, bomb), 1009), max_size=2**20)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=10)
    assert info.value.code == 1009
    assert isinstance(info.value.__cause__, sigil_ws.PayloadTooBig)


def test_compressed_fragments_and_context_takeover(raw_server: RawServer, connect: Connect) -> None:
    """RFC 7692 §7.2.3.1-2: a fragmented compressed message, then one that refers back to it."""
    compressor = zlib.compressobj(wbits=-15)
    first = compressor.compress(b"Hello") + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(b"Hello") + compressor.flush(zlib.Z_SYNC_FLUSH)

    def script(conn: RawConnection) -> None:
        conn.upgrade(DEFLATE)
        body = first[:-4]
        conn.send(compressed_frame(1, body[:3], fin=False) + server_frame(0, body[3:]))
        conn.send(compressed_frame(1, second[:-4]))
        conn.send(server_frame(8, struct.pack("!H", 1000)))
        conn.expect_close(1000)

    ws = connect(raw_server.serve(script))
    assert ws.recv(timeout=5) == "Hello"
    assert ws.recv(timeout=5) == "Hello"
    with pytest.raises(sigil_ws.ConnectionClosedOK):
        ws.recv(timeout=5)

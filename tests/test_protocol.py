"""The sans-IO Protocol from Python: bytes in, events out; no sockets."""

from __future__ import annotations

import struct
import sys

import pytest

from sigil_ws import (
    Close,
    HandshakeError,
    Message,
    MessageType,
    PayloadTooBig,
    Ping,
    Pong,
    Protocol,
    ProtocolError,
    State,
    handshake,
)

from .conftest import server_frame

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def response() -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {handshake.accept_key(KEY)}\r\nX-Server: test\r\n\r\n"
    ).encode()


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The client's frames: (first byte, unmasked payload); every frame must be masked."""
    frames = []
    while data:
        b0, b1 = data[0], data[1]
        assert b1 & 0x80
        n, pos = b1 & 0x7F, 2
        if n == 126:
            (n,) = struct.unpack("!H", data[2:4])
            pos = 4
        elif n == 127:
            (n,) = struct.unpack("!Q", data[2:10])
            pos = 10
        key = data[pos : pos + 4]
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[pos + 4 : pos + 4 + n]))
        frames.append((b0, payload))
        data = data[pos + 4 + n :]
    return frames


def unmask(data: bytes) -> list[tuple[int, bytes]]:
    """The client's frames: (opcode, unmasked payload)."""
    return [(b0 & 0x0F, payload) for b0, payload in client_frames(data)]


def opened(**options: object) -> Protocol:
    p = Protocol("ws://example.com/chat", key=KEY, **options)  # type: ignore[arg-type]
    request = p.data_to_send()
    assert request.startswith(b"GET /chat HTTP/1.1\r\n")
    assert f"Sec-WebSocket-Key: {KEY}".encode() in request
    assert p.state is State.CONNECTING
    p.receive_data(response())
    assert p.events() == []
    assert p.state is State.OPEN
    assert p.handshake_complete
    assert p.response_headers["x-server"] == "test"
    return p


def test_messages_and_automatic_pong() -> None:
    p = opened()
    p.receive_data(
        server_frame(1, "héllo".encode(), fin=False)
        + server_frame(9, b"ping")
        + server_frame(0, b" world")
        + server_frame(2, b"\x00\x01")
    )
    assert p.events() == [
        Ping(b"ping"),
        Message(MessageType.TEXT, "héllo world"),
        Message(MessageType.BINARY, b"\x00\x01"),
    ]
    assert unmask(p.data_to_send()) == [(0xA, b"ping")]


def test_send_frames_are_masked() -> None:
    p = opened()
    p.send_text("hi")
    p.send_binary(b"\x01\x02")
    p.send_ping(b"p")
    assert unmask(p.data_to_send()) == [(1, b"hi"), (2, b"\x01\x02"), (9, b"p")]
    p.receive_data(server_frame(0xA, b"p"))
    assert p.events() == [Pong(b"p")]
    assert p.latency >= 0.0


def test_close_handshake() -> None:
    p = opened()
    p.send_close(1000, "bye")
    assert p.state is State.CLOSING
    assert p.close_expected()
    assert unmask(p.data_to_send()) == [(8, b"\x03\xe8bye")]
    p.receive_data(server_frame(8, b"\x03\xe8ok"))
    assert p.events() == [Close(1000, "ok")]
    assert p.state is State.CLOSED
    assert (p.close_code, p.close_reason) == (1000, "ok")


def test_protocol_violation_queues_close_1002() -> None:
    p = opened()
    p.receive_data(server_frame(1, b"ok") + server_frame(1, b"x", rsv=4))
    # The message before the violation is delivered, then the error is raised.
    assert p.events() == [Message(MessageType.TEXT, "ok")]
    with pytest.raises(ProtocolError, match="reserved bits"):
        p.events()
    assert unmask(p.data_to_send()) == [(8, struct.pack("!H", 1002))]
    assert p.state is State.CLOSED
    assert p.close_code == 1002


def test_invalid_utf8_closes_1007() -> None:
    p = opened()
    p.receive_data(server_frame(1, b"\xff"))
    with pytest.raises(ProtocolError, match="invalid UTF-8"):
        p.events()
    assert unmask(p.data_to_send()) == [(8, struct.pack("!H", 1007))]


def test_max_size_closes_1009_from_the_header() -> None:
    p = opened(max_size=1024)
    p.receive_data(b"\x82\x7f" + struct.pack("!Q", 2**40))
    with pytest.raises(PayloadTooBig, match="exceeds the limit of 1024 bytes"):
        p.events()
    assert unmask(p.data_to_send()) == [(8, struct.pack("!H", 1009))]


def test_bad_handshake() -> None:
    p = Protocol("ws://example.com/", key=KEY)
    p.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(HandshakeError, match="HTTP 200"):
        p.events()
    assert p.state is State.CLOSED


def test_eof_without_close_is_1006() -> None:
    p = opened()
    p.receive_eof()
    assert p.events() == []
    assert p.state is State.CLOSED
    assert p.close_code == 1006


def test_argument_errors() -> None:
    p = opened()
    with pytest.raises(ValueError, match="126 bytes exceeds 125"):
        p.send_ping(b"x" * 126)
    with pytest.raises(ValueError, match="invalid close code 1005"):
        p.send_close(1005)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ in Python needs 3.12")
@pytest.mark.timeout(10)
def test_a_call_from_inside_a_call_raises_instead_of_deadlocking() -> None:
    """Calls are serialised by a lock; code that runs inside a call (here the buffer of the
    object sent, as a finaliser could) and calls the same Protocol gets a RuntimeError, and
    the outer call goes on."""
    p = opened()
    inner: list[BaseException] = []

    class Payload:
        def __buffer__(self, flags: int) -> memoryview:
            try:
                p.state  # noqa: B018 (the read is the test)
            except RuntimeError as e:
                inner.append(e)
            return memoryview(b"payload")

    p.send_binary(Payload())
    assert len(inner) == 1 and "inside one of its own calls" in str(inner[0])
    assert unmask(p.data_to_send()) == [(2, b"payload")]
    assert p.state is State.OPEN

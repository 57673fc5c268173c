"""The sync client against the reference peer (the websockets package's server)."""

from __future__ import annotations

import array
import asyncio
import errno
import json
import socket
import time
import weakref
from collections.abc import Callable

import pytest

import sigil_ws
import sigil_ws.asyncio
from sigil_ws import ConnectionClosedError, ConnectionClosedOK, State

Connect = Callable[..., sigil_ws.Connection]


def test_text_and_binary_round_trip(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server + "/echo")
    assert ws.state is State.OPEN
    ws.send("héllo")
    assert ws.recv() == "héllo"
    ws.send(b"\x00\xff")
    assert ws.recv() == b"\x00\xff"
    ws.send(bytearray(b"ba"))
    assert ws.recv() == b"ba"
    ws.send(memoryview(b"xmvx")[1:3])
    assert ws.recv() == b"mv"
    ws.send("")
    assert ws.recv() == ""
    ws.send(memoryview(b"abcdef")[::2])  # not contiguous: copied, then framed
    assert ws.recv() == b"ace"
    ws.send(bytearray())
    assert ws.recv() == b""
    ws.send(array.array("B", [1, 2, 3]))  # any buffer
    assert ws.recv() == b"\x01\x02\x03"
    big = bytearray(b"z" * 200_000)
    ws.send(big)
    big.extend(b"resizable again after send() returns")
    assert ws.recv() == b"z" * 200_000


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 5 * 2**20])
def test_sizes(ws_server: str, connect: Connect, size: int) -> None:
    ws = connect(ws_server)
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    ws.send(payload)
    assert ws.recv() == payload


def test_send_rejects_other_types(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server)
    with pytest.raises(
        TypeError, match=r"must be str, a bytes-like object or an .*iterable of them, not int"
    ):
        ws.send(42)  # type: ignore[arg-type]


def test_context_manager_closes_normally(ws_server: str) -> None:
    with sigil_ws.connect(ws_server) as ws:
        ws.send("x")
        assert ws.recv() == "x"
    assert ws.state is State.CLOSED
    assert ws.close_code == 1000
    with pytest.raises(ConnectionClosedOK):
        ws.send("after close")
    with pytest.raises(ConnectionClosedOK):
        ws.recv()
    ws.close()  # idempotent


def test_iteration_ends_on_normal_close(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server + "/push/5/10")
    assert list(ws) == [b"x" * 10] * 5
    assert (ws.close_code, ws.close_reason) == (1000, "done")
    assert ws.state is State.CLOSED


def test_iteration_reraises_abnormal_close(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server + "/close/1011/oops")
    with pytest.raises(ConnectionClosedError) as info:
        for _ in ws:
            pass
    assert (info.value.code, info.value.reason) == (1011, "oops")


@pytest.mark.parametrize("code", [1000, 1001])
def test_server_close_normal(ws_server: str, connect: Connect, code: int) -> None:
    ws = connect(ws_server + f"/close/{code}")
    with pytest.raises(ConnectionClosedOK) as info:
        ws.recv()
    assert (info.value.code, info.value.reason) == (code, "bye")
    assert ws.state is State.CLOSED


def test_recv_timeout_leaves_connection_usable(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out waiting for a message"):
        ws.recv(timeout=0.2)
    assert 0.15 < time.monotonic() - start < 2
    ws.send("still here")
    assert ws.recv(timeout=5) == "still here"
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0)


def test_ping_latency(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server)
    assert ws.latency == 0.0
    ws.ping(b"abc")
    ws.send("sync")
    assert ws.recv() == "sync"
    assert 0 < ws.latency < 1
    with pytest.raises(ValueError, match="126 bytes exceeds 125"):
        ws.ping(b"x" * 126)


def test_close_argument_errors(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server)
    with pytest.raises(ValueError, match="invalid close code 1006"):
        ws.close(1006)
    with pytest.raises(ValueError, match="124 bytes exceeds 123"):
        ws.close(1000, "x" * 124)
    assert ws.state is State.OPEN
    ws.close(4000, "custom")
    assert ws.state is State.CLOSED


def test_attributes(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server + "/echo?x=1", subprotocols=["other", "chat"])
    port = int(ws_server.rsplit(":", 1)[1])
    assert ws.url == f"ws://127.0.0.1:{port}/echo?x=1"
    assert (ws.host, ws.port, ws.path) == ("127.0.0.1", port, "/echo?x=1")
    assert ws.subprotocol == "chat"
    assert ws.response_headers["upgrade"].lower() == "websocket"
    assert ws.remote_address == ("127.0.0.1", port)
    assert ws.local_address[0] == "127.0.0.1"
    assert ws.close_code is None and ws.close_reason is None
    sock = socket.socket(fileno=socket.dup(ws.fileno()))
    try:
        assert sock.getpeername() == ("127.0.0.1", port)
    finally:
        sock.close()
    assert "Connection ws://127.0.0.1" in repr(ws)
    local = ws.local_address
    ws.close()
    # The addresses outlive the connection (asyncio reads them from the closed transport).
    assert ws.remote_address == ("127.0.0.1", port)
    assert ws.local_address == local
    assert (ws.host, ws.port, ws.path) == ("127.0.0.1", port, "/echo?x=1")
    assert "CLOSED" in repr(ws)


def test_connections_support_weak_references(ws_server: str) -> None:
    # Applications keep registries of live connections in WeakSets.
    ws = sigil_ws.connect(ws_server)
    assert weakref.ref(ws)() is ws
    ws.close()
    proto = sigil_ws.Protocol(ws_server)
    assert weakref.ref(proto)() is proto

    async def main() -> None:
        conn = await sigil_ws.asyncio.connect(ws_server)
        assert weakref.ref(conn)() is conn
        await conn.close()

    asyncio.run(main())


def test_no_subprotocol_when_server_picks_none(ws_server: str, connect: Connect) -> None:
    assert connect(ws_server, subprotocols=["x"]).subprotocol is None


def test_request_headers(ws_server: str, connect: Connect) -> None:
    ws = connect(
        ws_server + "/headers",
        headers={"Authorization": "Bearer token"},
        origin="https://example.com",
        user_agent="tester/1.0",
    )
    sent = json.loads(ws.recv())
    assert sent["Authorization"] == "Bearer token"
    assert sent["Origin"] == "https://example.com"
    assert sent["User-Agent"] == "tester/1.0"
    assert sent["Sec-WebSocket-Version"] == "13"
    ws2 = connect(ws_server + "/headers", headers=[("X-A", "1")], user_agent=None)
    sent2 = json.loads(ws2.recv())
    assert sent2["X-A"] == "1"
    assert "User-Agent" not in sent2
    ws3 = connect(ws_server + "/headers")
    assert json.loads(ws3.recv())["User-Agent"] == f"sigil-ws/{sigil_ws.__version__}"


def test_header_injection_refused(ws_server: str) -> None:
    with pytest.raises(sigil_ws.HandshakeError, match="CR, LF or NUL"):
        sigil_ws.connect(ws_server, headers={"X-A": "v\r\nX-Evil: 1"})
    with pytest.raises(TypeError, match="must be str"):
        sigil_ws.connect(ws_server, headers={"X-A": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="not a str"):
        sigil_ws.connect(ws_server, subprotocols="chat")


def test_max_size(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server, max_size=1000)
    ws.send(b"x" * 1000)
    assert ws.recv() == b"x" * 1000
    ws.send(b"x" * 1001)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv()
    assert info.value.code == 1009
    assert isinstance(info.value.__cause__, sigil_ws.PayloadTooBig)


def test_bad_options(ws_server: str) -> None:
    with pytest.raises(ValueError, match="max_size must be positive"):
        sigil_ws.connect(ws_server, max_size=0)
    with pytest.raises(ValueError, match="open_timeout must be a non-negative"):
        sigil_ws.connect(ws_server, open_timeout=-1)
    with pytest.raises(TypeError, match="TLSConfig"):
        sigil_ws.connect(ws_server, tls="yes")  # type: ignore[arg-type]


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        sigil_ws.connect(f"ws://127.0.0.1:{port}/")


def test_unknown_host_is_gaierror() -> None:
    with pytest.raises((socket.gaierror, TimeoutError)):
        sigil_ws.connect("ws://no-such-host.invalid/", open_timeout=5)


def test_protocol_class_drives_a_plain_socket(ws_server: str) -> None:
    """The documented way to write a driver: the sans-IO Protocol over a blocking socket."""
    host, port = ws_server.removeprefix("ws://").split(":")
    protocol = sigil_ws.Protocol(ws_server + "/echo")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(protocol.data_to_send())
        while not protocol.handshake_complete:
            protocol.receive_data(sock.recv(65536))
            protocol.events()
        protocol.send_text("via Protocol")
        sock.sendall(protocol.data_to_send())
        events: list[object] = []
        while not events:
            protocol.receive_data(sock.recv(65536))
            events = protocol.events()
        assert events == [sigil_ws.Message(sigil_ws.MessageType.TEXT, "via Protocol")]
        protocol.send_close()
        sock.sendall(protocol.data_to_send())
        while protocol.state is not State.CLOSED:
            data = sock.recv(65536)
            if not data:
                protocol.receive_eof()
            else:
                protocol.receive_data(data)
            protocol.events()
        assert protocol.close_code == 1000


def test_recv_timeout_zero_polls(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server)
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0)
    ws.send("polled")
    deadline = time.monotonic() + 5
    while True:
        try:
            assert ws.recv(timeout=0) == "polled"
            break
        except TimeoutError:
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_unknown_host_gaierror_carries_the_resolver_code(connect: Connect) -> None:
    """As socket.getaddrinfo raises it: gaierror(code, strerror), errno == code (EAI_*)."""
    with pytest.raises(socket.gaierror) as info:
        connect("ws://no-such-host.invalid/")
    e = info.value
    assert isinstance(e.errno, int)
    assert e.errno == e.args[0]
    # EAI_NONAME from a working resolver; EAI_AGAIN / EAI_NODATA where there is none.
    eai_nodata = getattr(socket, "EAI_NODATA", socket.EAI_NONAME)
    assert e.errno in (socket.EAI_NONAME, socket.EAI_AGAIN, eai_nodata)
    assert isinstance(e.strerror, str) and e.strerror == e.args[1]


def test_connection_refused_carries_errno(connect: Connect) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError) as info:
        connect(f"ws://127.0.0.1:{port}/")
    assert info.value.errno == errno.ECONNREFUSED

"""Malformed and adversarial servers: a raw-socket peer of our own plays scripted bytes.

Every RFC 6455 §5 violation must fail the connection with the right close code (sent to the
server and reported by ConnectionClosedError), never a hang, crash or unbounded allocation.
"""

from __future__ import annotations

import itertools
import resource
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import sigil_ws
from sigil_ws import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidStatus,
    ProtocolError,
)

from .conftest import (
    RawConnection,
    RawServer,
    child_server,
    run_bounded,
    server_frame,
    streaming_server,
)

Connect = Callable[..., sigil_ws.Connection]


def failing_server(raw_server: RawServer, payload: bytes, code: int) -> tuple[str, list[bytes]]:
    """A server that upgrades, sends ``payload`` and expects a close frame with ``code``."""
    reasons: list[bytes] = []

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(payload)
        reasons.append(conn.expect_close(code))

    return raw_server.serve(script), reasons


VIOLATIONS = [
    pytest.param(server_frame(1, b"x", rsv=4), 1002, "reserved bits", id="rsv1"),
    pytest.param(server_frame(1, b"x", rsv=2), 1002, "reserved bits", id="rsv2"),
    pytest.param(server_frame(1, b"x", rsv=1), 1002, "reserved bits", id="rsv3"),
    pytest.param(server_frame(3, b""), 1002, "reserved opcode 0x3", id="opcode-3"),
    pytest.param(server_frame(0xB, b""), 1002, "reserved opcode 0xb", id="opcode-b"),
    pytest.param(server_frame(1, b"hi", mask=b"abcd"), 1002, "masked frame", id="masked"),
    pytest.param(server_frame(9, b"x" * 126), 1002, "126 bytes exceeds 125", id="ping-126"),
    pytest.param(server_frame(8, b"\x03\xe8" + b"x" * 124), 1002, "exceeds 125", id="close-126"),
    pytest.param(server_frame(9, b"", fin=False), 1002, "fragmented control", id="frag-ping"),
    pytest.param(server_frame(0, b"x"), 1002, "continuation frame without", id="lone-cont"),
    pytest.param(
        server_frame(1, b"a", fin=False) + server_frame(1, b"b"),
        1002,
        "inside a fragmented message",
        id="interleaved",
    ),
    pytest.param(server_frame(8, b"\x03"), 1002, "close frame payload of 1 byte", id="close-1"),
    pytest.param(server_frame(8, struct.pack("!H", 1005)), 1002, "close code 1005", id="1005"),
    pytest.param(server_frame(8, struct.pack("!H", 999)), 1002, "close code 999", id="999"),
    pytest.param(server_frame(8, struct.pack("!H", 2000)), 1002, "close code 2000", id="2000"),
    pytest.param(server_frame(1, b"\xce\xba\xed\xa0\x80"), 1007, "invalid UTF-8", id="utf8"),
    pytest.param(
        server_frame(8, b"\x03\xe8\xff"), 1007, "invalid UTF-8 in a close reason", id="reason"
    ),
    pytest.param(
        b"\x82\x7f" + struct.pack("!Q", 2**63), 1002, "invalid payload length", id="len-msb"
    ),
    pytest.param(
        b"\x82\x7f" + struct.pack("!Q", 2**63 - 1), 1009, "exceeds the limit", id="len-2^63-1"
    ),
]


@pytest.mark.parametrize(("payload", "code", "match"), VIOLATIONS)
def test_violation_fails_connection(
    raw_server: RawServer, connect: Connect, payload: bytes, code: int, match: str
) -> None:
    url, reasons = failing_server(raw_server, payload, code)
    ws = connect(url)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == code
    assert isinstance(info.value.__cause__, ProtocolError)
    assert match in str(info.value.__cause__)
    assert ws.state is sigil_ws.State.CLOSED
    assert ws.close_code == code
    raw_server.done.wait(5)
    assert reasons == [b""], "the server received a close frame with the code"
    # Later calls report the same closure.
    with pytest.raises(ConnectionClosedError):
        ws.recv()
    with pytest.raises(ConnectionClosedError):
        ws.send("x")


def test_invalid_utf8_fails_fast_mid_message(raw_server: RawServer, connect: Connect) -> None:
    """The first fragment is invalid; the rest never comes. The client fails at once."""
    url, _ = failing_server(raw_server, server_frame(1, b"ok \xff", fin=False), 1007)
    ws = connect(url)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1007


def test_invalid_utf8_fails_fast_in_partial_frame(raw_server: RawServer, connect: Connect) -> None:
    frame = server_frame(1, b"a" * 10 + b"\xff" + b"a" * 100_000)
    url, _ = failing_server(raw_server, frame[:100], 1007)
    ws = connect(url)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1007


def test_huge_length_header_allocates_nothing(raw_server: RawServer, connect: Connect) -> None:
    """max_size=None and a 2^63-1 byte frame header: memory grows only with data received."""
    release = threading.Event()

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(b"\x82\x7f" + struct.pack("!Q", 2**63 - 1) + b"x" * 1000)
        release.wait(10)

    ws = connect(raw_server.serve(script), max_size=None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0.3)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after - before < 64 * 1024, "KiB of peak RSS added"
    release.set()


def test_stall_mid_frame_then_resume(raw_server: RawServer, connect: Connect) -> None:
    go = threading.Event()
    frame = server_frame(2, b"0123456789" * 100)

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(frame[:500])
        go.wait(10)
        conn.send(frame[500:])
        conn.expect_close(1000)

    ws = connect(raw_server.serve(script))
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0.3)
    go.set()
    assert ws.recv(timeout=5) == b"0123456789" * 100
    ws.close()
    assert raw_server.done.wait(5)


def test_stall_mid_frame_after_bulk_traffic(raw_server: RawServer, connect: Connect) -> None:
    # Bulk traffic first, so that reads go straight into the engine's input buffer; a timeout
    # in the middle of a frame must keep the half that arrived.
    go = threading.Event()
    bulk = [bytes([i]) * 50_000 for i in range(8)]
    stalled = bytes(range(256)) * 400
    frame = server_frame(2, stalled)

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(b"".join(server_frame(2, m) for m in bulk) + frame[:70_000])
        go.wait(10)
        conn.send(frame[70_000:])
        conn.expect_close(1000)

    ws = connect(raw_server.serve(script), max_size=None)
    assert [ws.recv(timeout=5) for _ in bulk] == bulk
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0.3)
    go.set()
    assert ws.recv(timeout=5) == stalled
    ws.close()
    assert raw_server.done.wait(5)


def test_server_vanishes_mid_frame(raw_server: RawServer, connect: Connect) -> None:
    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(server_frame(1, b"whole") + server_frame(2, b"x" * 100)[:50])

    ws = connect(raw_server.serve(script))
    assert ws.recv(timeout=5) == "whole"
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1006
    assert info.value.__cause__ is None
    assert ws.state is sigil_ws.State.CLOSED


def test_server_vanishes_between_frames(raw_server: RawServer, connect: Connect) -> None:
    ws = connect(raw_server.serve(lambda conn: conn.upgrade()))
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1006


def test_frames_in_the_same_packet_as_the_101(raw_server: RawServer, connect: Connect) -> None:
    def script(conn: RawConnection) -> None:
        conn.upgrade(trailing=server_frame(1, b"early") + server_frame(2, b"bird"))
        conn.expect_close(1000)

    ws = connect(raw_server.serve(script))
    assert ws.recv(timeout=5) == "early"
    assert ws.recv(timeout=5) == b"bird"


def test_slow_drip_byte_by_byte(raw_server: RawServer, connect: Connect) -> None:
    stream = (
        server_frame(1, "κό".encode(), fin=False)
        + server_frame(9, b"p")
        + server_frame(0, "σμε".encode())
    )

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        for b in stream:
            conn.send(bytes([b]))
            time.sleep(0.001)
        assert conn.recv_frame() == (0xA, True, b"p")
        conn.expect_close(1000)

    ws = connect(raw_server.serve(script))
    assert ws.recv(timeout=5) == "κόσμε"


def test_ping_is_answered_and_close_echoed(raw_server: RawServer, connect: Connect) -> None:
    seen: list[tuple[int, bool, bytes]] = []

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(server_frame(9, b"are you there?") + server_frame(1, b"msg"))
        seen.append(conn.recv_frame())
        conn.send(server_frame(8, struct.pack("!H", 4001) + b"custom"))
        seen.append(conn.recv_frame())

    ws = connect(raw_server.serve(script))
    assert ws.recv(timeout=5) == "msg"
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert (info.value.code, info.value.reason) == (4001, "custom")
    raw_server.done.wait(5)
    assert seen == [(0xA, True, b"are you there?"), (8, True, struct.pack("!H", 4001))]


def test_close_waits_for_server_then_times_out(raw_server: RawServer, connect: Connect) -> None:
    """A server that never answers the close frame: close() returns after close_timeout."""
    hold = threading.Event()

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.expect_close(1000)
        hold.wait(10)

    ws = connect(raw_server.serve(script), close_timeout=0.3)
    start = time.monotonic()
    ws.close()
    assert 0.25 < time.monotonic() - start < 3
    assert ws.state is sigil_ws.State.CLOSED
    assert ws.close_code == 1006
    hold.set()


# ---- bad handshakes ---------------------------------------------------------------------------


def handshake_server(raw_server: RawServer, response: Callable[[bytes], bytes]) -> str:
    def script(conn: RawConnection) -> None:
        conn.send(response(conn.request))

    return raw_server.serve(script)


def test_non_101_status(raw_server: RawServer) -> None:
    url = handshake_server(
        raw_server,
        lambda _: (
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n"
            b"Content-Length: 12\r\n\r\nunauthorized"
        ),
    )
    with pytest.raises(InvalidStatus, match="HTTP 401") as info:
        sigil_ws.connect(url, open_timeout=5)
    assert info.value.status_code == 401
    assert info.value.headers["www-authenticate"] == "Bearer"
    assert info.value.body == b"unauthorized"


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (b"HTTP/1.1 101 OK\r\nConnection: Upgrade\r\n\r\n", "invalid Upgrade header"),
        (
            b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: AAAA\r\n\r\n",
            "invalid Sec-WebSocket-Accept",
        ),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "invalid status line"),
        (b"HTTP/1.1 101 OK\r\n" + b"X-Big: " + b"a" * 70_000, "exceed"),
        (b"HTTP/1.1 101 OK\r\n", "closed during the opening handshake"),
    ],
)
def test_bad_upgrade_responses(raw_server: RawServer, response: bytes, match: str) -> None:
    url = handshake_server(raw_server, lambda _: response)
    with pytest.raises(HandshakeError, match=match):
        sigil_ws.connect(url, open_timeout=5)


def test_unoffered_extension_and_subprotocol(raw_server: RawServer) -> None:
    def script(conn: RawConnection) -> None:
        conn.upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n")

    url = raw_server.serve(script)
    with pytest.raises(HandshakeError, match="permessage-deflate"):
        sigil_ws.connect(url, open_timeout=5, compression=None)


def test_open_timeout_when_server_never_answers(raw_server: RawServer) -> None:
    hold = threading.Event()
    url = raw_server.serve(lambda conn: hold.wait(10) and None)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="opening handshake"):
        sigil_ws.connect(url, open_timeout=0.3)
    assert time.monotonic() - start < 3
    hold.set()


def test_message_before_a_violation_can_still_be_answered(
    raw_server: RawServer, connect: Connect
) -> None:
    """Regression (Autobahn 3.2, 4.1.3, 5.15 with the asyncio driver): a message and a
    violating frame in one read. The application gets the message and its reply goes out
    before the connection fails with 1002."""
    seen: list[tuple[int, bool, bytes]] = []

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(server_frame(1, b"first") + server_frame(1, b"x", rsv=2) + server_frame(9))
        seen.append(conn.recv_frame())
        conn.expect_close(1002)

    ws = connect(raw_server.serve(script))
    message = ws.recv(timeout=5)
    assert message == "first"
    ws.send(message)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1002
    raw_server.done.wait(5)
    assert seen == [(1, True, b"first")]


# ---- regressions: close without a code, deadlines under traffic, pong backlog, data loss -------


def test_close_frame_without_a_code_is_a_normal_close(
    raw_server: RawServer, connect: Connect
) -> None:
    """API.md: a close frame without a code (1005) is ConnectionClosedOK, so ``for m in ws``
    ends without an exception."""
    replies: list[tuple[int, bool, bytes]] = []

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(server_frame(1, b"last") + server_frame(8, b""))
        replies.append(conn.recv_frame())

    url = raw_server.serve(script)
    ws = connect(url)
    assert ws.recv(timeout=5) == "last"
    with pytest.raises(ConnectionClosedOK) as info:
        ws.recv(timeout=5)
    assert (info.value.code, info.value.reason) == (1005, "")
    assert ws.close_code == 1005
    raw_server.done.wait(5)
    assert replies == [(8, True, b"")], "the empty close is echoed empty"
    assert list(connect(url)) == ["last"]


@pytest.mark.timeout(15)
def test_send_timeout_on_a_peer_that_does_not_read(raw_server: RawServer, connect: Connect) -> None:
    """``send(..., timeout=)`` bounds the wait for a peer that never reads; the connection is
    then failed (a frame may be half-written)."""
    stop = threading.Event()
    try:
        ws = connect(streaming_server(raw_server, [], stop))

        def fill() -> None:
            for _ in range(1000):
                ws.send(b"x" * 2**20, timeout=0.5)

        outcome = run_bounded(fill, 3)
        assert outcome is not None, "send() still blocked after 3 s"
        assert isinstance(outcome.error, TimeoutError), outcome
        assert ws.state is sigil_ws.State.CLOSED
        with pytest.raises(ConnectionClosed):
            ws.send(b"x")
    finally:
        stop.set()


# A peer that keeps bytes flowing: small frames as fast as it can send them, so that the
# client's socket always holds unread data. (A frame every 5 ms starves the timeouts only now
# and then: past its deadline a read still waits one kernel tick, 4-8 ms here, and escapes
# whenever the paced sender is late.) The pings carry 32 bytes: empty ones cost so much per
# byte that they make uvloop's timers late too, 125-byte ones let the sync client catch up.
MESSAGES = server_frame(2, b"") * 100_000
PINGS = server_frame(9, b"p" * 32) * 2048


@pytest.mark.timeout(30)
def test_close_timeout_holds_while_the_peer_keeps_sending(
    raw_server: RawServer, connect: Connect
) -> None:
    """A peer that keeps sending (empty) messages and never answers the close: close() gives
    up after close_timeout (today: once the peer stops, 15 s here)."""
    stop = threading.Event()
    try:
        url = streaming_server(raw_server, itertools.repeat(MESSAGES), stop)
        ws = connect(url, close_timeout=2)
        outcome = run_bounded(ws.close, 3.5)
        assert outcome is not None, "close() still blocked after 3.5 s"
        assert outcome.error is None, outcome
        assert ws.state is sigil_ws.State.CLOSED
    finally:
        stop.set()


@pytest.mark.timeout(30)
def test_recv_timeout_holds_while_the_peer_keeps_pinging(
    raw_server: RawServer, connect: Connect
) -> None:
    """Pings as fast as the peer can send them (it reads the pongs) and no message:
    recv(timeout=2) times out after 2 s (today: once the pings stop, 15 s here)."""
    stop = threading.Event()
    try:
        url = streaming_server(raw_server, itertools.repeat(PINGS), stop, discard_input=True)
        ws = connect(url)
        outcome = run_bounded(lambda: ws.recv(timeout=2), 3.5)
        assert outcome is not None, "recv(timeout=2) still blocked after 3.5 s"
        assert isinstance(outcome.error, TimeoutError), outcome
        assert outcome.elapsed > 1.5
    finally:
        stop.set()


# Upgrades the first connection, then sends empty pings (2 bytes each: the most decoding per
# byte) as fast as it can for 15 s, and reads and discards what the client sends. In a child
# process: a server thread of ours would share the GIL with the test, and its pauses would let
# the client's socket run dry now and then.
PING_FLOOD_SERVER = """
import base64, hashlib, socket, threading, time

def drain(sock):
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass

server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
request = b""
while b"\\r\\n\\r\\n" not in request:
    request += conn.recv(4096)
key = next(
    line.split(b":", 1)[1].strip()
    for line in request.split(b"\\r\\n")
    if line.lower().startswith(b"sec-websocket-key:")
)
accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
conn.sendall(
    b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\n"
    b"Connection: Upgrade\\r\\nSec-WebSocket-Accept: " + accept + b"\\r\\n\\r\\n"
)
threading.Thread(target=drain, args=(conn,), daemon=True).start()
chunk = b"\\x89\\x00" * 65536
deadline = time.monotonic() + 15
try:
    while time.monotonic() < deadline:
        conn.sendall(chunk)
except OSError:
    pass
"""


@pytest.mark.timeout(30)
def test_recv_timeout_holds_while_reading_ahead_under_a_ping_flood(connect: Connect) -> None:
    """The sync client's I/O thread reads ahead while nobody receives; under a ping flood the
    socket never runs dry, so it never runs out of bytes to read. recv(timeout=2) called then
    still times out after 2 s (it used to wait for the reader lock with no deadline: until
    the pings stopped, 15 s here)."""
    with child_server(PING_FLOOD_SERVER) as url:
        ws = connect(url)
        time.sleep(0.3)  # the flood is on: the I/O thread is reading ahead
        outcome = run_bounded(lambda: ws.recv(timeout=2), 3.5)
        assert outcome is not None, "recv(timeout=2) still blocked after 3.5 s"
        assert isinstance(outcome.error, TimeoutError), outcome
        assert outcome.elapsed > 1.5


@pytest.mark.timeout(30)
def test_a_ping_flood_does_not_starve_other_connections_keepalive(ws_echo_process: str) -> None:
    """The sync connections share one I/O thread. A peer floods pings faster than its
    socket can be drained while nobody receives; another idle connection's keepalive still
    runs: its pings go out and their pongs are measured (the thread used to stay on the
    flooded socket until the flood ended, 15 s here)."""
    with child_server(PING_FLOOD_SERVER) as url:
        flooded = sigil_ws.connect(url, open_timeout=5, close_timeout=0.5)
        try:
            time.sleep(0.3)  # the flood is on: the I/O thread is reading ahead
            with sigil_ws.connect(ws_echo_process, ping_interval=0.2, close_timeout=2) as idle:
                deadline = time.monotonic() + 3
                while idle.latency == 0.0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert idle.latency > 0.0, "no keepalive pong measured within 3 s"
        finally:
            flooded.close()


def ping_flood(count: int = 300_000, batch: int = 1000) -> Iterator[bytes]:
    """``count`` pings with 125-byte payloads, ``batch`` per chunk."""
    chunk = server_frame(9, b"p" * 125) * batch
    return itertools.repeat(chunk, count // batch)


@pytest.mark.timeout(20)
def test_recv_timeout_holds_under_a_ping_flood(raw_server: RawServer, connect: Connect) -> None:
    """A peer floods pings and never reads the pongs: recv(timeout=2) still times out in
    time (RFC 6455 §5.5.3 lets the client answer only the latest ping)."""
    stop = threading.Event()
    try:
        ws = connect(streaming_server(raw_server, ping_flood(), stop))
        outcome = run_bounded(lambda: ws.recv(timeout=2), 3.5)
        assert outcome is not None, "recv(timeout=2) still blocked after 3.5 s"
        assert isinstance(outcome.error, TimeoutError), outcome
    finally:
        stop.set()


def test_message_before_a_reset_is_delivered(raw_server: RawServer, connect: Connect) -> None:
    """A ping and a message arrive, then the peer resets the connection. The message is
    delivered (a pong that cannot be written must not lose it), then 1006."""

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(server_frame(9, b"ping") + server_frame(1, b"hello"))
        time.sleep(0.2)
        # Linger on with a zero timeout: close() sends RST.
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    ws = connect(raw_server.serve(script))
    time.sleep(0.5)  # the frames and the RST have arrived
    assert ws.recv(timeout=5) == "hello"
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1006

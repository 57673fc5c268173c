"""Hostile peers kept as tests: raw scripted servers that stop reading, flood, stall, reset, drip
or lie, against the sync and asyncio clients. Each test bounds the time and memory the client
may spend; what test_adversarial.py covers already (send timeout, close under a talking peer,
recv under a ping flood, 2^63 lengths, a reset after a ping and a message) is not repeated.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import socket
import ssl
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import sigil_ws
from sigil_ws import ConnectionClosed, ConnectionClosedError, HandshakeError, TLSConfig

from .conftest import (
    AsyncioFacade,
    Certs,
    InThread,
    LoopThread,
    RawConnection,
    RawServer,
    rss,
    run_bounded,
    server_frame,
    streaming_server,
)

Connect = Callable[..., Any]


@pytest.fixture(params=["sync", "asyncio"])
def driver(request: pytest.FixtureRequest) -> str:
    """Both drivers (uvloop behaves as asyncio here and is covered by test_adversarial.py)."""
    return str(request.param)


def open_with(driver: str) -> Callable[..., Any]:
    """connect() for the driver, with the sync API (for handshake failures, which the
    ``connect`` fixture does not wrap)."""
    if driver == "sync":
        return sigil_ws.connect
    runner = LoopThread()

    def _connect(url: str, **options: Any) -> Any:
        try:
            return AsyncioFacade(runner, runner.run(sigil_ws.asyncio.connect(url, **options)))
        finally:
            runner.stop()

    return _connect


# ---- a peer that never reads --------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_close_is_bounded_while_a_send_is_blocked(raw_server: RawServer, connect: Connect) -> None:
    """The peer never reads: a send() without a timeout blocks once the buffers are full; a
    close() from another thread returns within close_timeout, and the blocked send() is
    released with ConnectionClosed (not left hanging)."""
    stop = threading.Event()
    try:
        ws = connect(streaming_server(raw_server, [], stop), close_timeout=1)
        blocked = threading.Event()

        def fill() -> None:
            for _ in range(10_000):
                blocked.set()
                ws.send(b"x" * 2**20)

        sender = InThread(fill)
        assert sender.wait(1.0) is None, "the peer does not read: send() should block"
        assert blocked.is_set()
        closer = run_bounded(ws.close, 4)
        assert closer is not None, "close() still blocked after 4 s with close_timeout=1"
        assert closer.error is None, closer
        assert ws.state is sigil_ws.State.CLOSED
        released = sender.wait(3)
        assert released is not None, "send() still blocked after close()"
        assert isinstance(released.error, ConnectionClosed), released
    finally:
        stop.set()


# ---- a peer that floods pings and never reads the pongs -----------------------------------------


@pytest.mark.timeout(60)
def test_ping_flood_without_reading_keeps_memory_bounded(
    raw_server: RawServer, connect: Connect
) -> None:
    """160 MB of 125-byte pings from a peer that never reads: the pongs cannot be written, the
    client owes at most one (RFC 6455 §5.5.3), so its memory does not follow the flood. After
    the flood a message still arrives. (With the asyncio driver writing every pong to the
    transport regardless of its write limit, RSS grows by 10-14 MiB here.)"""
    stop = threading.Event()
    finished = threading.Event()
    flood = itertools.chain(
        itertools.repeat(server_frame(9, b"p" * 125) * 1000, 1280),
        [server_frame(1, b"after the flood")],
    )
    # A small receive buffer: the pongs the client manages to write back pile up in the client,
    # not in this side's kernel.
    raw_server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        url = streaming_server(raw_server, flood, stop, finished=finished, limit=50)
        ws = connect(url)
        before = rss()
        peak = before
        message = None
        deadline = time.monotonic() + 45
        while message is None and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                message = ws.recv(timeout=0.5)
            peak = max(peak, rss())
        assert message == "after the flood", "the flood did not end in 45 s"
        # The whole flood went out (the server sets `finished` just after its last write
        # returns, which the client may read first).
        assert finished.wait(5)
        grown = peak - before
        assert grown < 6 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB under 160 MB of pings"
    finally:
        stop.set()


# ---- a reset in the middle of a frame, after a complete message ---------------------------------


def wait_unsent(sock: socket.socket, limit: float = 10) -> None:
    """Waits until the peer has acknowledged everything written to ``sock`` (Linux
    TIOCOUTQ: bytes in the send queue, sent or not, not yet acknowledged)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        (unsent,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))
        if unsent == 0:
            return
        time.sleep(0.01)
    raise AssertionError("the client did not read what the server sent")


def test_reset_mid_frame_after_a_large_message(raw_server: RawServer, connect: Connect) -> None:
    """A 1 MiB message, then half of the next frame, then RST at once: the message is
    delivered, then ConnectionClosedError 1006."""
    big = bytes(range(256)) * 4096

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(server_frame(2, big) + server_frame(2, b"y" * 1000)[:500])
        # An RST discards what the kernel has not delivered yet: wait until the client's
        # kernel has acknowledged every byte, then reset.
        wait_unsent(conn.sock)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    ws = connect(raw_server.serve(script), max_size=None)
    time.sleep(0.3)  # the data and the RST have arrived
    assert ws.recv(timeout=5) == big
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1006


# ---- handshakes: slowloris, huge header blocks -----------------------------------------------


def dripping_server(
    raw_server: RawServer, data: Callable[[bytes], bytes], stop: threading.Event, interval: float
) -> str:
    """Sends ``data(request)`` one byte every ``interval`` seconds until ``stop``."""

    def script(conn: RawConnection) -> None:
        for b in data(conn.request):
            if stop.wait(interval):
                return
            conn.send(bytes([b]))
        stop.wait(30)

    return raw_server.serve(script)


@pytest.mark.parametrize("endless", [False, True], ids=["valid-but-slow", "endless-headers"])
def test_slowloris_handshake_is_bounded_by_open_timeout(
    raw_server: RawServer, driver: str, endless: bool
) -> None:
    """The server drips its 101 response a byte every 50 ms (a valid one that would take 8 s,
    or header lines that never end): open_timeout=1 holds although bytes keep arriving."""
    stop = threading.Event()

    def valid(request: bytes) -> bytes:
        from .conftest import upgrade_response

        return upgrade_response(request)

    def endless_headers(request: bytes) -> bytes:
        return b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Slow: yes\r\n" * 10_000

    try:
        url = dripping_server(raw_server, endless_headers if endless else valid, stop, 0.05)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            open_with(driver)(url, open_timeout=1)
        elapsed = time.monotonic() - start
        assert 0.9 < elapsed < 2.5, elapsed
    finally:
        stop.set()


@pytest.mark.timeout(30)
def test_ten_megabyte_header_block_is_refused_early(raw_server: RawServer, driver: str) -> None:
    """A 101 whose header block goes on for 10 MB: refused once it passes 64 KiB, without
    reading (or holding) the rest."""
    sent = [0]
    stop = threading.Event()
    # Made before measuring: the server runs in this process.
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    head = b"HTTP/1.1 101 Switching Protocols\r\n" + line * 10_000

    def script(conn: RawConnection) -> None:
        conn.sock.settimeout(0.1)
        view = memoryview(head)
        while view and not stop.is_set():
            try:
                n = conn.sock.send(view[:65536])
            except TimeoutError:
                continue
            except OSError:
                return
            sent[0] += n
            view = view[n:]

    url = raw_server.serve(script)
    before = rss()
    start = time.monotonic()
    try:
        with pytest.raises(HandshakeError, match="exceed"):
            open_with(driver)(url, open_timeout=10)
        assert time.monotonic() - start < 5
        assert rss() - before < 8 * 2**20
    finally:
        stop.set()
    raw_server.done.wait(5)
    assert sent[0] < 10_000 * 1012, "the client read the whole 10 MB block"


# ---- a million empty fragments ---------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_million_empty_fragments(raw_server: RawServer, connect: Connect) -> None:
    """A text message of 1M empty continuation frames, then its last byte: delivered whole, in
    bounded time and memory (no per-fragment bookkeeping that grows)."""
    count = 1_000_000
    stop = threading.Event()
    chunks = itertools.chain(
        [server_frame(1, b"", fin=False)],
        itertools.repeat(server_frame(0, b"", fin=False) * 10_000, count // 10_000),
        [server_frame(0, b"!"), server_frame(1, b"next")],
    )
    try:
        url = streaming_server(raw_server, chunks, stop, discard_input=True, limit=50)
        ws = connect(url)
        before = rss()
        start = time.monotonic()
        assert ws.recv(timeout=40) == "!"
        assert ws.recv(timeout=5) == "next"
        elapsed = time.monotonic() - start
        assert elapsed < 40
        assert rss() - before < 16 * 2**20
    finally:
        stop.set()


# ---- TLS truncated without close_notify ---------------------------------------------------------


@dataclass
class TlsRawServer(RawServer):
    """The raw scripted server behind TLS (trustme certificate); scripts get the SSLSocket."""

    context: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self, conn: socket.socket) -> None:
        assert self.context is not None
        try:
            conn.settimeout(10)
            tls = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            self.done.set()
            return
        super()._run(tls)


@pytest.fixture
def tls_raw_server(tls_certs: Certs) -> Iterator[TlsRawServer]:
    server = TlsRawServer(context=tls_certs.server_context)
    try:
        yield server
    finally:
        server.close()
    if server.errors:
        raise server.errors[0]


@pytest.mark.parametrize("cut", ["between-records", "inside-a-record"])
def test_tls_truncation_without_close_notify(
    tls_raw_server: TlsRawServer, tls_certs: Certs, connect: Connect, cut: str
) -> None:
    """A message, then the TCP connection ends without TLS close_notify (between records, or
    in the middle of one): the message is delivered, then ConnectionClosedError 1006 (a
    truncation attack must not look like a clean close)."""

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(server_frame(1, b"complete"))
        tls = conn.sock
        assert isinstance(tls, ssl.SSLSocket)
        if cut == "inside-a-record":
            # The raw TCP socket under the TLS layer gets the first half of a record.
            raw = socket.socket(fileno=tls.detach())
            raw.sendall(b"\x17\x03\x03\x00\x40" + b"\x00" * 20)
            raw.shutdown(socket.SHUT_WR)
            time.sleep(0.5)
            raw.close()
        else:
            # A TCP FIN with no TLS shutdown first.
            tls.shutdown(socket.SHUT_RDWR)

    url = tls_raw_server.serve(script)
    ws = connect(url, tls=TLSConfig(ca_data=tls_certs.ca_pem))
    assert ws.recv(timeout=5) == "complete"
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)
    assert isinstance(info.value, ConnectionClosedError), info.value
    assert info.value.code == 1006

"""Reconnecting: sigil_ws.reconnect, ``async for`` over sigil_ws.asyncio.connect and
sigil_ws.asyncio.reconnect, against a raw scripted server that refuses, accepts and drops."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import pytest

import sigil_ws
import sigil_ws.asyncio
from sigil_ws._reconnect import Backoff, retryable
from tests.conftest import RawConnection, RawServer

pytestmark = pytest.mark.timeout(30)

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05, "open_timeout": 5, "close_timeout": 1}


def status(code: int, reason: str) -> bytes:
    return f"HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n".encode()


class Flaky:
    """Answers the first ``failures`` upgrades with ``answer``, then accepts and closes each
    connection with ``close_code`` after sending one message."""

    def __init__(self, failures: int, answer: bytes, close_code: int = 1011) -> None:
        self.failures = failures
        self.answer = answer
        self.close_code = close_code
        self.attempts = 0
        self.lock = threading.Lock()

    def __call__(self, conn: RawConnection) -> None:
        with self.lock:
            self.attempts += 1
            attempt = self.attempts
        if attempt <= self.failures:
            conn.send(self.answer)
            return
        conn.upgrade()
        text = f"hello {attempt}".encode()
        conn.send(bytes([0x81, len(text)]) + text)
        payload = self.close_code.to_bytes(2, "big")
        conn.send(bytes([0x88, len(payload)]) + payload)
        try:
            conn.expect_close(self.close_code)
        except (EOFError, OSError):
            pass


def test_backoff_full_jitter() -> None:
    backoff = Backoff(1.0, 8.0, 2.0)
    ceilings = []
    for _ in range(6):
        ceiling = backoff.ceiling()
        ceilings.append(ceiling)
        assert 0 <= backoff.next_delay() <= ceiling
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.ceiling() == 1.0
    # No overflow however many failures.
    backoff.failures = 10_000
    assert backoff.ceiling() == 8.0
    for bad in ({"initial": 0}, {"maximum": -1}, {"factor": 0.5}, {"initial": float("nan")}):
        with pytest.raises(ValueError, match="backoff_"):
            Backoff(**bad)  # type: ignore[arg-type]


def test_which_failures_are_retried() -> None:
    headers = sigil_ws.Headers([])
    assert retryable(ConnectionRefusedError(111, "refused"))
    assert retryable(TimeoutError("timed out"))
    assert retryable(socket.gaierror(-3, "temporary failure"))
    assert retryable(sigil_ws.InvalidStatus("x", 503, headers, b""))
    assert retryable(sigil_ws.InvalidStatus("x", 429, headers, b""))
    assert not retryable(sigil_ws.InvalidStatus("x", 404, headers, b""))
    assert not retryable(sigil_ws.InvalidStatus("x", 401, headers, b""))
    assert not retryable(sigil_ws.InvalidURL("bad"))
    assert not retryable(sigil_ws.TLSError("TLS error: invalid peer certificate: UnknownIssuer"))
    assert retryable(sigil_ws.TLSError("TLS error: connection closed during the TLS handshake"))
    assert retryable(sigil_ws.ProxyError("x", "http://p:1", status_code=502))
    assert not retryable(sigil_ws.ProxyError("x", "http://p:1", status_code=407))
    assert retryable(sigil_ws.ProxyError("x", "socks5://p:1", reply_code=5))
    assert not retryable(sigil_ws.ProxyError("x", "socks5://p:1", reply_code=2))
    assert not retryable(sigil_ws.ProxyError("invalid proxy URL: invalid port"))
    assert not retryable(sigil_ws.HandshakeError("redirect loop: a -> b -> a"))
    assert not retryable(ValueError("open_timeout must be"))


def test_sync_retries_then_reconnects_after_a_loss(
    raw_server: RawServer, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Flaky(2, status(503, "Service Unavailable"))
    url = raw_server.serve(flaky)
    caplog.set_level(logging.DEBUG, logger="sigil_ws")
    got = []
    for ws in sigil_ws.reconnect(url, **FAST):
        try:
            for message in ws:
                got.append(message)
        except sigil_ws.ConnectionClosedError as exc:
            assert exc.code == 1011
        if len(got) == 2:
            break
    assert got == ["hello 3", "hello 4"]
    attempts = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(attempts) == 2
    assert "connection attempt 1 to" in attempts[0]
    assert "InvalidStatus" in attempts[0] and "retrying in" in attempts[0]


def test_sync_raises_4xx_at_once(raw_server: RawServer) -> None:
    flaky = Flaky(5, status(403, "Forbidden"))
    url = raw_server.serve(flaky)
    with pytest.raises(sigil_ws.InvalidStatus) as e:
        for _ in sigil_ws.reconnect(url, **FAST):
            pass
    assert e.value.status_code == 403
    assert flaky.attempts == 1


def test_sync_raises_invalid_url_at_once() -> None:
    with pytest.raises(sigil_ws.InvalidURL):
        next(sigil_ws.reconnect("http://example.com/", **FAST))
    with socket.socket() as sock, pytest.raises(TypeError, match="sock"):
        next(sigil_ws.reconnect("ws://example.com/", sock=sock))


def test_sync_retries_refused_connections(caplog: pytest.LogCaptureFixture) -> None:
    # A port where nothing listens, then a server appears on it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = RawServer(sock=listener)
    caplog.set_level(logging.DEBUG, logger="sigil_ws")

    def start_later() -> None:
        import time

        time.sleep(0.3)
        listener.listen()
        server.serve(Flaky(0, b""))

    threading.Thread(target=start_later, daemon=True).start()
    try:
        connections = sigil_ws.reconnect(f"ws://127.0.0.1:{port}/", **FAST)
        ws = next(connections)
        assert ws.recv() == "hello 1"
        connections.close()  # closes the connection it yielded
        assert ws.state is sigil_ws.State.CLOSED
    finally:
        server.close()
    assert any("ConnectionRefusedError" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("api", ["connect", "reconnect"])
def test_asyncio_reconnects(raw_server: RawServer, api: str) -> None:
    flaky = Flaky(1, status(502, "Bad Gateway"))
    url = raw_server.serve(flaky)

    async def main() -> list[str | bytes]:
        got: list[str | bytes] = []
        iterator = (
            sigil_ws.asyncio.connect(url, open_timeout=5, close_timeout=1)
            if api == "connect"
            else sigil_ws.asyncio.reconnect(url, **FAST)
        )
        async for ws in iterator:
            try:
                async for message in ws:
                    got.append(message)
            except sigil_ws.ConnectionClosedError:
                pass
            if len(got) == 2:
                break
        return got

    assert asyncio.run(main()) == ["hello 2", "hello 3"]


def test_asyncio_raises_4xx_at_once(raw_server: RawServer) -> None:
    flaky = Flaky(5, status(404, "Not Found"))
    url = raw_server.serve(flaky)

    async def main() -> None:
        async for _ in sigil_ws.asyncio.reconnect(url, **FAST):
            pass

    with pytest.raises(sigil_ws.InvalidStatus):
        asyncio.run(main())
    assert flaky.attempts == 1

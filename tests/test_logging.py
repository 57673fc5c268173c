"""Logging (issue #14): the opened and closed lines (who closed, the codes), DEBUG for the
handshake, hops, keepalive and reconnects, TRACE for frames, the per-connection logger, and
secrets that never reach a log at any level. Against real peers: the websockets server, raw
scripted servers, tinyproxy and dante."""

from __future__ import annotations

import base64
import gc
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sigil_ws
import sigil_ws.asyncio
from tests.conftest import LoopThread, RawConnection, RawServer, server_frame
from tests.test_proxy import SOCKS_PASSWORD, SOCKS_USER, Proxies
from tests.test_redirect import Redirector

pytestmark = pytest.mark.timeout(30)

LOGGER = "sigil_ws"


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


def lines(caplog: pytest.LogCaptureFixture, name: str = LOGGER) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def closed_lines(caplog: pytest.LogCaptureFixture, name: str = LOGGER) -> list[str]:
    return [m for m in lines(caplog, name) if m.startswith("connection to ") and " code " in m]


def wait_for(condition: Callable[[], bool], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ---- opened and closed, both clients ----------------------------------------------------------


def test_trace_level_is_exported() -> None:
    assert sigil_ws.TRACE == 5
    assert logging.getLevelName(sigil_ws.TRACE) == "TRACE"
    assert "TRACE" in sigil_ws.__all__


def test_opened_and_closed_by_us(
    connect: Callable[..., Any], ws_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ws = connect(f"{ws_server}/echo", subprotocols=["chat"])
    ws.send("hi")
    assert ws.recv() == "hi"
    opened = [r for r in caplog.records if r.getMessage().startswith("connection opened")]
    assert len(opened) == 1 and opened[0].levelno == logging.INFO
    # The reference server answers without compression.
    assert opened[0].getMessage() == (
        f"connection opened to {ws_server}/echo (subprotocol: chat, extensions: none)"
    )
    ws.close(1000, "bye")
    ws.close()  # idempotent: still one line
    assert closed_lines(caplog) == [
        f"connection to {ws_server}/echo closed by us: code 1000, reason 'bye' "
        "(close frame sent: 1000 'bye', received: 1000 'bye')"
    ]
    assert [r.levelno for r in caplog.records if "closed by us" in r.getMessage()] == [logging.INFO]


def test_closed_by_the_peer(
    connect: Callable[..., Any], ws_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ws = connect(f"{ws_server}/close/4001/gone")
    with pytest.raises(sigil_ws.ConnectionClosedError):
        ws.recv()
    ws.close()
    assert closed_lines(caplog) == [
        f"connection to {ws_server}/close/4001/gone closed by the peer: code 4001, reason "
        "'gone' (close frame sent: 4001, received: 4001 'gone')"
    ]


def test_failed_by_a_protocol_error(
    connect: Callable[..., Any], raw_server: RawServer, caplog: pytest.LogCaptureFixture
) -> None:
    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(bytes([0x83, 0x00]))  # reserved opcode 3
        conn.expect_close(1002)

    url = raw_server.serve(script)
    caplog.set_level(logging.INFO, logger=LOGGER)
    ws = connect(url + "/")
    with pytest.raises(sigil_ws.ConnectionClosedError):
        ws.recv()
    ws.close()
    (line,) = closed_lines(caplog)
    assert line.startswith(f"connection to {url}/ failed: code 1002")
    assert "close frame sent: 1002" in line


def test_lost_without_a_closing_handshake(
    connect: Callable[..., Any], raw_server: RawServer, caplog: pytest.LogCaptureFixture
) -> None:
    def script(conn: RawConnection) -> None:
        conn.upgrade()
        conn.send(server_frame(0x1, b"last"))

    url = raw_server.serve(script)
    caplog.set_level(logging.INFO, logger=LOGGER)
    ws = connect(url + "/")
    assert ws.recv() == "last"
    with pytest.raises(sigil_ws.ConnectionClosedError):
        ws.recv()
    ws.close()
    assert closed_lines(caplog) == [
        f"connection to {url}/ lost (no closing handshake): code 1006, reason '' "
        "(close frame sent: none, received: none)"
    ]


def test_sync_peer_close_while_the_application_only_sends(
    ws_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(sigil_ws.ConnectionClosedOK):
        with sigil_ws.connect(f"{ws_server}/close/1001/away", close_timeout=2) as ws:
            # The I/O thread sees the close while nobody receives; send() then refuses.
            wait_for(lambda: ws.state is not sigil_ws.State.OPEN)
            ws.send("late")
    assert closed_lines(caplog) == [
        f"connection to {ws_server}/close/1001/away closed by the peer: code 1001, reason "
        "'away' (close frame sent: 1001, received: 1001 'away')"
    ]


def test_sync_dropped_connections(ws_server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    # Closed by the peer while nobody received, then dropped: logged at the drop.
    ws = sigil_ws.connect(f"{ws_server}/close/1000/done")
    wait_for(lambda w=ws: w.state is sigil_ws.State.CLOSED)  # type: ignore[misc]
    assert closed_lines(caplog) == []
    del ws
    gc.collect()
    assert closed_lines(caplog) == [
        f"connection to {ws_server}/close/1000/done closed by the peer: code 1000, reason "
        "'done' (close frame sent: 1000, received: 1000 'done')"
    ]
    caplog.clear()
    # Dropped while open.
    ws = sigil_ws.connect(f"{ws_server}/echo")
    del ws
    gc.collect()
    assert closed_lines(caplog) == [
        f"connection to {ws_server}/echo dropped while open (no closing handshake): code "
        "1006, reason '' (close frame sent: none, received: none)"
    ]


def test_asyncio_server_closing_at_once_is_opened_then_closed(
    raw_server: RawServer, caplog: pytest.LogCaptureFixture
) -> None:
    def script(conn: RawConnection) -> None:
        close = server_frame(0x8, struct.pack("!H", 1000) + b"now")
        conn.upgrade(trailing=close)
        conn.expect_close(1000)

    url = raw_server.serve(script)
    caplog.set_level(logging.INFO, logger=LOGGER)
    runner = LoopThread()
    try:
        ws = runner.run(sigil_ws.asyncio.connect(url + "/", close_timeout=2))
        runner.run(ws.close())
    finally:
        runner.stop()
    messages = lines(caplog)
    assert messages[0].startswith(f"connection opened to {url}/")
    assert closed_lines(caplog) == [
        f"connection to {url}/ closed by the peer: code 1000, reason 'now' "
        "(close frame sent: 1000, received: 1000 'now')"
    ]


# ---- DEBUG and TRACE ----------------------------------------------------------------------------


def test_trace_lines_only_when_enabled(
    connect: Callable[..., Any], ws_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    ws = connect(f"{ws_server}/echo", compression=None)
    ws.send("hello")
    assert ws.recv() == "hello"
    ws.close()
    assert not [r for r in caplog.records if r.levelno < logging.DEBUG]
    assert not [m for m in lines(caplog) if "frame: fin=" in m]
    assert any(m.startswith(f"handshake with {ws_server}/echo") for m in lines(caplog))
    caplog.clear()

    caplog.set_level(sigil_ws.TRACE, logger=LOGGER)
    ws = connect(f"{ws_server}/echo", compression=None)
    ws.send("hello")
    assert ws.recv() == "hello"
    ws.close()
    frames = [r.getMessage() for r in caplog.records if r.levelno == sigil_ws.TRACE]
    assert "> TEXT frame: fin=1 rsv=0 length=5" in frames
    assert "< TEXT frame: fin=1 rsv=0 length=5" in frames
    assert "> CLOSE frame: fin=1 rsv=0 length=2" in frames
    assert "< CLOSE frame: fin=1 rsv=0 length=2" in frames
    # Frame lines come before the closed line.
    messages = lines(caplog)
    closing = messages.index(closed_lines(caplog)[0])
    assert messages.index("< CLOSE frame: fin=1 rsv=0 length=2") < closing


def test_trace_shows_compressed_frames(
    connect: Callable[..., Any], raw_server: RawServer, caplog: pytest.LogCaptureFixture
) -> None:
    compressor = zlib.compressobj(wbits=-15)
    deflated = (compressor.compress(b"a" * 1000) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]

    def script(conn: RawConnection) -> None:
        conn.upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n")
        conn.send(server_frame(0x1, deflated, rsv=4))
        conn.recv_frame()
        conn.expect_close(1000)

    url = raw_server.serve(script)
    caplog.set_level(sigil_ws.TRACE, logger=LOGGER)
    ws = connect(url + "/")
    assert ws.recv() == "a" * 1000
    ws.send("b" * 1000)
    ws.close()
    assert any(
        f"opened to {url}/ (subprotocol: None, extensions: permessage-deflate" in m
        for m in lines(caplog)
    )
    frames = [m for m in lines(caplog) if "TEXT frame" in m]
    assert f"< TEXT frame: fin=1 rsv=4 length={len(deflated)}" in frames
    (sent,) = [m for m in frames if m.startswith(">")]
    assert "rsv=4" in sent and "length=1000" not in sent  # the compressed length


def test_keepalive_pings_and_latency_at_debug(
    connect: Callable[..., Any], ws_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    ws = connect(f"{ws_server}/echo", ping_interval=0.05, ping_timeout=5)
    wait_for(lambda: ws.latency > 0)
    time.sleep(0.1)
    ws.close()
    messages = lines(caplog)
    assert f"keepalive ping sent to {ws_server}/echo" in messages
    pongs = [m for m in messages if m.startswith(f"pong from {ws_server}/echo")]
    assert pongs and "the keepalive ping: latency " in pongs[0] and pongs[0].endswith(" ms")


def test_debug_redirect_hops(
    driver: str, connect: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    r = Redirector()
    base = r.base
    try:
        r.rules["/old"] = (302, "/echo")
        caplog.set_level(logging.DEBUG, logger=LOGGER)
        ws = connect(f"{r.base}/old")
        ws.close()
    finally:
        r.close()
    messages = lines(caplog)
    assert f"redirected (HTTP 302) to {base}/echo" in messages
    # The hop comes before the handshake that succeeded.
    handshake = next(i for i, m in enumerate(messages) if m.startswith("handshake with"))
    assert messages.index(f"redirected (HTTP 302) to {base}/echo") < handshake
    assert messages[handshake].startswith(f"handshake with {base}/echo: GET /echo")


def test_debug_refused_handshake(
    connect: Callable[..., Any], raw_server: RawServer, caplog: pytest.LogCaptureFixture
) -> None:
    def script(conn: RawConnection) -> None:
        conn.send(
            b"HTTP/1.1 403 Forbidden\r\nSet-Cookie: sid=SECRET-SET\r\nX-Why: no\r\n"
            b"Content-Length: 0\r\n\r\n"
        )

    url = raw_server.serve(script)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with pytest.raises(sigil_ws.InvalidStatus):
        connect(url + "/")
    text = "\n".join(lines(caplog))
    assert f"handshake with {url}/ refused: HTTP 403" in text
    assert "X-Why: no" in text and "Set-Cookie: [redacted]" in text
    assert "SECRET-SET" not in text


# ---- secrets ------------------------------------------------------------------------------------

SECRETS = ["url-pass-S3CRET", "token-S3CRET", "cookie-S3CRET", "proxy-auth-S3CRET"]


def assert_no_secret(caplog: pytest.LogCaptureFixture, *extra: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    text = "\n".join(handler.format(r) for r in caplog.records)
    assert text, "nothing was logged"
    basic = base64.b64encode(b"user:url-pass-S3CRET").decode()
    for secret in [*SECRETS, basic, *extra]:
        assert secret not in text, secret


def test_no_secret_at_any_level(
    connect: Callable[..., Any], ws_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1, logger=LOGGER)
    authority = ws_server.removeprefix("ws://")
    ws = connect(
        f"ws://user:url-pass-S3CRET@{authority}/headers",
        headers={
            "Authorization": "Bearer token-S3CRET",
            "Cookie": "sid=cookie-S3CRET",
            "Proxy-Authorization": "Basic proxy-auth-S3CRET",
            "X-Visible": "shown",
        },
        ping_interval=0.05,
    )
    ws.recv()  # the request headers, echoed
    ws.send("x")
    assert ws.recv() == "x"
    time.sleep(0.1)
    ws.close()
    assert "X-Visible: shown" in "\n".join(lines(caplog))
    assert "Authorization: [redacted]" in "\n".join(lines(caplog))
    assert_no_secret(caplog)


def test_no_proxy_credentials_http_connect(
    tmp_path: Path, connect: Callable[..., Any], ws_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxies = Proxies(tmp_path)
    try:
        proxy = proxies.tinyproxy(auth=("puser", "proxy-pass-S3CRET"))
        caplog.set_level(1, logger=LOGGER)
        ws = connect(
            f"{ws_server}/echo",
            proxy=proxy.replace("http://", "http://puser:proxy-pass-S3CRET@"),
        )
        ws.send("x")
        assert ws.recv() == "x"
        ws.close()
    finally:
        proxies.stop()
    authority = proxy.removeprefix("http://")
    target = ws_server.removeprefix("ws://")
    assert f"tunnel open through http://{authority} to {target}" in lines(caplog)
    assert any(m.startswith(f"connection opened to {ws_server}/echo") for m in lines(caplog))
    assert any(m.startswith("> TEXT frame") for m in lines(caplog))
    assert_no_secret(caplog, "proxy-pass-S3CRET")


def test_no_proxy_credentials_socks5(
    tmp_path: Path, connect: Callable[..., Any], ws_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxies = Proxies(tmp_path)
    try:
        proxy = proxies.dante(auth=True)
        caplog.set_level(1, logger=LOGGER)
        ws = connect(f"{ws_server}/echo", proxy=f"socks5h://{SOCKS_USER}:{SOCKS_PASSWORD}@{proxy}")
        ws.close()
        with pytest.raises(sigil_ws.ProxyError):
            connect(f"{ws_server}/echo", proxy=f"socks5h://{SOCKS_USER}:wrong-S3CRET@{proxy}")
    finally:
        proxies.stop()
    assert any(m.startswith(f"tunnel open through socks5h://{proxy}") for m in lines(caplog))
    assert any(m.startswith(f"connection opened to {ws_server}/echo") for m in lines(caplog))
    assert any("ProxyError" in m for m in lines(caplog))  # the refused attempt, at DEBUG
    assert_no_secret(caplog, SOCKS_PASSWORD, "wrong-S3CRET")


# ---- the logger option --------------------------------------------------------------------------


@pytest.fixture
def own_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.own")
    yield logger
    logger.setLevel(logging.NOTSET)


@pytest.mark.parametrize("by", ["object", "name"])
def test_per_connection_logger(
    by: str,
    connect: Callable[..., Any],
    ws_server: str,
    own_logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(sigil_ws.TRACE, logger=own_logger.name)
    caplog.set_level(sigil_ws.TRACE, logger=LOGGER)
    ws = connect(f"{ws_server}/echo", logger=own_logger if by == "object" else own_logger.name)
    ws.send("x")
    assert ws.recv() == "x"
    ws.close()
    assert lines(caplog, LOGGER) == []
    mine = lines(caplog, own_logger.name)
    assert any(m.startswith("connection opened") for m in mine)
    assert len(closed_lines(caplog, own_logger.name)) == 1
    assert any("TEXT frame" in m for m in mine)


def test_logger_adapter_and_bad_logger(ws_server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tests.adapter")
    adapter = logging.LoggerAdapter(logging.getLogger("tests.adapter"), {"conn": 7})
    with sigil_ws.connect(f"{ws_server}/echo", logger=adapter):
        pass
    records = [r for r in caplog.records if r.name == "tests.adapter"]
    assert len(records) == 2 and all(getattr(r, "conn", None) == 7 for r in records)
    with pytest.raises(TypeError, match="logger must be"):
        sigil_ws.connect(f"{ws_server}/echo", logger=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="logger must be"):
        sigil_ws.asyncio.connect(f"{ws_server}/echo", logger=42)  # type: ignore[arg-type]


def test_reconnect_logs_attempts_on_the_given_logger(
    driver: str,
    raw_server: RawServer,
    own_logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = []

    def script(conn: RawConnection) -> None:
        served.append(1)
        if len(served) == 1:
            conn.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            return
        conn.upgrade()
        conn.send(server_frame(0x1, b"up"))
        conn.expect_close(1000)

    url = raw_server.serve(script).replace("ws://", "ws://user:url-pass-S3CRET@") + "/"
    caplog.set_level(1, logger=own_logger.name)
    options: dict[str, Any] = {
        "logger": own_logger,
        "backoff_initial": 0.01,
        "open_timeout": 5,
        "close_timeout": 2,
    }
    if driver == "sync":
        connections = sigil_ws.reconnect(url, **options)
        ws = next(connections)
        assert ws.recv() == "up"
        connections.close()
    else:
        runner = LoopThread(uvloop=driver == "uvloop")

        async def once() -> None:
            async for ws in sigil_ws.asyncio.reconnect(url, **options):
                assert await ws.recv() == "up"
                await ws.close()
                break

        try:
            runner.run(once())
        finally:
            runner.stop()
    retries = [r for r in caplog.records if r.getMessage().startswith("connection attempt 1")]
    assert len(retries) == 1 and retries[0].levelno == logging.DEBUG
    assert retries[0].name == own_logger.name
    assert "InvalidStatus" in retries[0].getMessage()
    assert "to ws://[redacted]@127.0.0.1:" in retries[0].getMessage()
    assert_no_secret(caplog)

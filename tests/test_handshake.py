"""The opening handshake (RFC 6455 §4): the building blocks, and bad upgrades over real sockets."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from sigil_ws import HandshakeError, Headers, InvalidStatus, handshake

from .conftest import RawConnection, RawServer

KEY = "dGhlIHNhbXBsZSBub25jZQ=="

# What a TLS server sends a client that speaks plain HTTP to it: an alert record (TLS 1.0
# record version, 2 bytes: fatal, decode_error).
TLS_ALERT = b"\x15\x03\x01\x00\x02\x02\x32"
SSH_BANNER = b"SSH-2.0-OpenSSH\r\n"


def test_rfc_example_accept_key() -> None:
    assert handshake.accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_generate_key() -> None:
    keys = {handshake.generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert len(key) == 24
        assert len(base64.b64decode(key)) == 16


def test_build_request() -> None:
    request = handshake.build_request(
        "ws://example.com:9000/chat?x=1",
        KEY,
        headers=[("Authorization", "Bearer t")],
        subprotocols=["chat", "v2"],
    )
    text = request.decode()
    assert text.startswith("GET /chat?x=1 HTTP/1.1\r\n")
    assert "\r\nHost: example.com:9000\r\n" in text
    assert "\r\nUpgrade: websocket\r\n" in text
    assert "\r\nConnection: Upgrade\r\n" in text
    assert f"\r\nSec-WebSocket-Key: {KEY}\r\n" in text
    assert "\r\nSec-WebSocket-Version: 13\r\n" in text
    assert "\r\nSec-WebSocket-Protocol: chat, v2\r\n" in text
    assert "\r\nAuthorization: Bearer t\r\n" in text
    assert text.endswith("\r\n\r\n")


def test_build_request_default_port_is_omitted_from_host() -> None:
    assert b"\r\nHost: example.com\r\n" in handshake.build_request("wss://example.com:443/", KEY)
    assert b"\r\nHost: [::1]:8080\r\n" in handshake.build_request("ws://[::1]:8080/", KEY)


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "v\r\nEvil: 1"), ("X-A", "v\n"), ("Bad Name", "v"), ("Host", "other")],
)
def test_build_request_refuses_injection(name: str, value: str) -> None:
    with pytest.raises(HandshakeError, match="invalid request header"):
        handshake.build_request("ws://h/", KEY, headers=[(name, value)])


def test_parse_status_line() -> None:
    assert handshake.parse_status_line("HTTP/1.1 101 Switching Protocols") == 101
    assert handshake.parse_status_line(b"HTTP/1.1 404 Not Found\r\n") == 404
    for bad in ["", "HTTP/1.1", "HTTP/1.1 abc x", "SPDY/3 101 x", "HTTP/1.1 1010 x"]:
        with pytest.raises(HandshakeError, match="invalid status line"):
            handshake.parse_status_line(bad)


def test_get_header() -> None:
    pairs = [("Upgrade", "websocket"), ("X-A", "1"), ("x-a", "2")]
    assert handshake.get_header(pairs, "upgrade") == "websocket"
    assert handshake.get_header(pairs, "X-A") == "1"
    assert handshake.get_header({"Content-Type": "text/plain"}, "content-type") == "text/plain"
    assert handshake.get_header(Headers(pairs), "UPGRADE") == "websocket"
    assert handshake.get_header(pairs, "missing") is None


def response(extra: str = "", accept: str | None = None) -> bytes:
    accept = handshake.accept_key(KEY) if accept is None else accept
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    ).encode()


def test_validate_response() -> None:
    headers = handshake.validate_response(response("X-Multi: a\r\nx-multi: b\r\n"), KEY)
    assert isinstance(headers, Headers)
    assert headers["upgrade"] == "websocket"
    assert headers.get_all("X-MULTI") == ["a", "b"]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (response(accept="wrong"), "invalid Sec-WebSocket-Accept"),
        (response("Sec-WebSocket-Accept: wrong\r\n"), "multiple Sec-WebSocket-Accept headers"),
        (
            response(f"Sec-WebSocket-Accept: {handshake.accept_key(KEY)}\r\n"),
            "multiple Sec-WebSocket-Accept headers",
        ),
        (response().replace(b"Upgrade: websocket\r\n", b""), "invalid Upgrade header"),
        (response().replace(b"Connection: Upgrade", b"Connection: close"), "Connection"),
        (response("Sec-WebSocket-Extensions: permessage-deflate\r\n"), "extension"),
        (response("Sec-WebSocket-Protocol: chat\r\n"), "not offered"),
        (response("Sec-WebSocket-Protocol: \r\n"), 'server chose subprotocol "", which was not'),
        (
            response("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n"),
            "multiple Sec-WebSocket-Protocol headers",
        ),
        (b"garbage\r\n\r\n", "invalid status line"),
        (b"HTTP/1.1 101 OK\r\nBad Header\r\n\r\n", "invalid header line"),
        (
            b"HTTP/1.1 101 OK\r\n",
            "closed during the opening handshake after 17 bytes of an incomplete HTTP response",
        ),
        (b"", "closed during the opening handshake before any response"),
        (SSH_BANNER, re.escape(f"server answered with non-HTTP data {SSH_BANNER!r}")),
        (TLS_ALERT, re.escape(f"non-HTTP data {TLS_ALERT!r}: this looks like TLS; use a wss://")),
    ],
)
def test_validate_response_failures(raw: bytes, match: str) -> None:
    with pytest.raises(HandshakeError, match=match):
        handshake.validate_response(raw, KEY)


def test_validate_response_subprotocol_offered() -> None:
    handshake.validate_response(response("Sec-WebSocket-Protocol: chat\r\n"), KEY, ["chat"])


def test_non_101_is_invalid_status() -> None:
    raw = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno entry"
    with pytest.raises(InvalidStatus) as info:
        handshake.validate_response(raw, KEY)
    assert info.value.status_code == 403
    assert info.value.headers["content-type"] == "text/plain"
    assert info.value.body == b"no entry"
    assert "HTTP 403" in str(info.value)


# ---- over a real connection, with both drivers ----------------------------------------------


@pytest.mark.parametrize(
    ("extra", "offered", "match"),
    [
        pytest.param(
            "Sec-WebSocket-Accept: AAAA\r\n",
            None,
            r'multiple Sec-WebSocket-Accept headers: \[".+", "AAAA"\]',
            id="second-accept-wrong",
        ),
        pytest.param(
            "Sec-WebSocket-Protocol: \r\n",
            None,
            'server chose subprotocol "", which was not offered',
            id="empty-subprotocol",
        ),
        pytest.param(
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n",
            ["chat"],
            r'multiple Sec-WebSocket-Protocol headers: \["chat", "chat"\]',
            id="repeated-subprotocol",
        ),
    ],
)
def test_invalid_upgrade_is_refused(
    raw_server: RawServer,
    connect: Callable[..., Any],
    extra: str,
    offered: list[str] | None,
    match: str,
) -> None:
    def script(conn: RawConnection) -> None:
        conn.upgrade(extra)

    with pytest.raises(HandshakeError, match=match):
        connect(raw_server.serve(script), subprotocols=offered)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        pytest.param(
            TLS_ALERT,
            re.escape(f"non-HTTP data {TLS_ALERT!r}: this looks like TLS; use a wss:// URL"),
            id="tls-alert",
        ),
        pytest.param(
            SSH_BANNER,
            re.escape(f"server answered with non-HTTP data {SSH_BANNER!r}") + "$",
            id="ssh",
        ),
    ],
)
def test_non_http_answer_is_named_without_waiting(
    raw_server: RawServer, connect: Callable[..., Any], answer: bytes, match: str
) -> None:
    """ws:// to a TLS (or SSH) port: the first bytes tell, before any timeout or EOF."""
    hold = threading.Event()

    def script(conn: RawConnection) -> None:
        conn.send(answer)
        hold.wait(5)  # the connection stays open: only the bytes can tell

    url = raw_server.serve(script)
    start = time.monotonic()
    try:
        with pytest.raises(HandshakeError, match=match):
            connect(url, open_timeout=5)
        assert time.monotonic() - start < 1
    finally:
        hold.set()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        pytest.param(
            b"HTTP/1.1 101 Switching",
            "closed during the opening handshake after 22 bytes of an incomplete HTTP response",
            id="partial-head",
        ),
        pytest.param(b"", "closed during the opening handshake before any response", id="nothing"),
    ],
)
def test_eof_during_the_head_says_what_arrived(
    raw_server: RawServer, connect: Callable[..., Any], answer: bytes, match: str
) -> None:
    def script(conn: RawConnection) -> None:
        conn.send(answer)

    with pytest.raises(HandshakeError, match=match):
        connect(raw_server.serve(script))

"""Type-checked use of the public API (mypy --strict; never run).

Every line here must type-check against the shipped stubs, and the ``reveal``-style asserts
pin the types users see.
"""

from __future__ import annotations

from typing import assert_type

import sigil_ws
from sigil_ws import handshake


def sync_client(url: str) -> None:
    tls = sigil_ws.TLSConfig(ca_file="ca.pem", verify=True, alpn=["http/1.1"])
    with sigil_ws.connect(
        url,
        open_timeout=5.0,
        close_timeout=None,
        headers={"Authorization": "Bearer t"},
        subprotocols=["chat"],
        origin="https://example.com",
        user_agent=None,
        max_size=None,
        tls=tls,
    ) as ws:
        assert_type(ws, sigil_ws.Connection)
        ws.send("text")
        ws.send(b"bytes")
        ws.send(bytearray(b"ba"))
        ws.send(memoryview(b"mv"))
        assert_type(ws.recv(), str | bytes)
        assert_type(ws.recv(timeout=0.5), str | bytes)
        for message in ws:
            assert_type(message, str | bytes)
        ws.ping(b"p")
        ws.ping()
        assert_type(ws.state, sigil_ws.State)
        assert_type(ws.latency, float)
        assert_type(ws.subprotocol, str | None)
        assert_type(ws.close_code, int | None)
        assert_type(ws.close_reason, str | None)
        assert_type(ws.response_headers, sigil_ws.Headers)
        assert_type(ws.local_address, tuple[str, int])
        assert_type(ws.remote_address, tuple[str, int])
        assert_type(ws.fileno(), int)
        assert_type((ws.url, ws.host, ws.port, ws.path), tuple[str, str, int, str])
        ws.close(1000, "bye")


def exceptions(url: str) -> None:
    try:
        sigil_ws.connect(url)
    except sigil_ws.InvalidStatus as e:
        assert_type(e.status_code, int)
        assert_type(e.headers, sigil_ws.Headers)
        assert_type(e.body, bytes)
    except sigil_ws.ConnectionClosed as e:
        assert_type(e.code, int)
        assert_type(e.reason, str)
    except (sigil_ws.TLSError, sigil_ws.ConcurrencyError, sigil_ws.WebSocketError):
        pass


def building_blocks() -> None:
    url = sigil_ws.parse_url("wss://example.com/x")
    assert_type(url, sigil_ws.WebSocketURL)
    assert_type(url.secure, bool)
    key = handshake.generate_key()
    assert_type(handshake.accept_key(key), str)
    assert_type(handshake.build_request("ws://h/", key, headers=[("A", "b")]), bytes)
    assert_type(handshake.parse_status_line("HTTP/1.1 101 OK"), int)
    assert_type(handshake.get_header([("A", "b")], "a"), str | None)
    assert_type(handshake.validate_response(b"", key), sigil_ws.Headers)


def sans_io() -> None:
    protocol = sigil_ws.Protocol("ws://h/", max_size=1024)
    data: bytes = protocol.data_to_send()
    protocol.receive_data(data)
    for event in protocol.events():
        if isinstance(event, sigil_ws.Message):
            assert_type(event.type, sigil_ws.MessageType)
            assert_type(event.data, str | bytes)
        elif isinstance(event, sigil_ws.Close):
            assert_type(event.code, int)
    protocol.send_text("x")
    protocol.send_close(1000, "bye")
    assert_type(protocol.state, sigil_ws.State)


async def asyncio_client(url: str) -> None:
    import sigil_ws.asyncio

    async with sigil_ws.asyncio.connect(url, max_queue=None, write_limit=2**16) as ws:
        assert_type(ws, sigil_ws.asyncio.Connection)
        await ws.send("text")
        await ws.send(memoryview(b"buffer"))
        assert_type(await ws.recv(timeout=1.0), str | bytes)
        async for message in ws:
            assert_type(message, str | bytes)
        await ws.ping()
        assert_type(ws.state, sigil_ws.State)
        assert_type(ws.latency, float)
        await ws.close(1001, "going away")
    ws2 = await sigil_ws.asyncio.connect(url)
    assert_type(ws2, sigil_ws.asyncio.Connection)
    await ws2.close()


def routes(url: str) -> None:
    import socket

    import sigil_ws.asyncio

    sigil_ws.connect(url, proxy="socks5h://u:p@proxy:1080", max_redirects=3)
    sigil_ws.connect(url, proxy=True)
    sigil_ws.connect(url, proxy=None, unix_socket="/run/app.sock")
    sigil_ws.connect(url, sock=socket.create_connection(("h", 80)))
    try:
        sigil_ws.connect(url)
    except sigil_ws.ProxyError as e:
        assert_type(e.status_code, int | None)
        assert_type(e.reply_code, int | None)
        assert_type(e.proxy, str | None)
    for ws in sigil_ws.reconnect(url, backoff_initial=0.5, backoff_max=30.0, backoff_factor=1.5):
        assert_type(ws, sigil_ws.Connection)
        break

    async def aio() -> None:
        async for ws in sigil_ws.asyncio.connect(url, proxy="http://proxy:3128"):
            assert_type(ws, sigil_ws.asyncio.Connection)
            break
        async for ws in sigil_ws.asyncio.reconnect(url, backoff_max=5.0):
            assert_type(ws, sigil_ws.asyncio.Connection)
            break

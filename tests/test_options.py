"""Argument and option checking: one rule for both clients at the edges.

Timeouts (NaN and negatives refused, infinity waits forever), close codes, bytes-like
messages and ping payloads, ``tls`` with the URL scheme, size limits, headers as a mapping in
the building blocks, and the defaults written in the signatures. Behaviour is checked for every
driver through the parametrised ``connect`` fixture.
"""

from __future__ import annotations

import array
import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import pytest

import sigil_ws
import sigil_ws.asyncio
import sigil_ws.handshake
from sigil_ws import State

Connect = Callable[..., Any]

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def echoed(ws: Any, message: str) -> None:
    """Sends ``message`` and leaves time for its echo to arrive before the next call."""
    ws.send(message)
    time.sleep(0.2)


# ---- timeouts of recv() and send() ---------------------------------------------------------


@pytest.mark.parametrize("timeout", [float("nan"), -1])
def test_recv_refuses_nan_and_negative_timeouts(
    ws_server: str, connect: Connect, timeout: float
) -> None:
    ws = connect(ws_server)
    with pytest.raises(ValueError, match=r"^timeout must be"):
        ws.recv(timeout=timeout)
    assert ws.state is State.OPEN


@pytest.mark.parametrize("timeout", [float("nan"), -1])
def test_recv_checks_timeout_before_taking_a_queued_message(
    ws_server: str, connect: Connect, timeout: float
) -> None:
    ws = connect(ws_server)
    echoed(ws, "queued")
    with pytest.raises(ValueError, match=r"^timeout must be"):
        ws.recv(timeout=timeout)
    assert ws.recv(timeout=5) == "queued"  # the refused call took nothing


def test_recv_infinite_timeout_waits_like_none(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server)
    echoed(ws, "forever")
    assert ws.recv(timeout=float("inf")) == "forever"
    ws.send("and again")
    assert ws.recv(timeout=float("inf")) == "and again"


@pytest.mark.parametrize("timeout", [float("nan"), -1])
def test_send_refuses_nan_and_negative_timeouts(
    ws_server: str, connect: Connect, timeout: float
) -> None:
    ws = connect(ws_server)
    with pytest.raises(ValueError, match=r"^timeout must be"):
        ws.send("never sent", timeout=timeout)
    ws.send("sent", timeout=float("inf"))
    assert ws.recv(timeout=5) == "sent"  # the refused message never went out


# ---- close codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [70000, -1])
def test_close_refuses_invalid_codes_and_stays_open(
    ws_server: str, connect: Connect, code: int
) -> None:
    ws = connect(ws_server)
    with pytest.raises(ValueError, match=rf"^invalid close code {code}: "):
        ws.close(code)
    assert ws.state is State.OPEN
    ws.send("still open")
    assert ws.recv(timeout=5) == "still open"


def test_close_checks_the_code_once_closed(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server)
    ws.close()
    assert ws.state is State.CLOSED
    with pytest.raises(ValueError, match=r"^invalid close code 70000: "):
        ws.close(70000)
    ws.close()  # idempotent with valid arguments
    assert ws.close_code == 1000


# ---- bytes-like messages and ping payloads --------------------------------------------------


def test_send_any_buffer_as_its_raw_bytes(ws_server: str, connect: Connect) -> None:
    ws = connect(ws_server)
    ints = array.array("i", [1, 2])
    ws.send(ints)
    assert ws.recv(timeout=5) == bytes(ints)
    assert len(bytes(ints)) == 8
    ws.send(memoryview(ints))
    assert ws.recv(timeout=5) == bytes(ints)
    ws.send(memoryview(b"abcdef")[::2])  # not contiguous: its bytes in order
    assert ws.recv(timeout=5) == b"ace"


@pytest.mark.parametrize("payload", [memoryview(b"x"), bytearray(b"x")])
def test_ping_takes_bytes_like_payloads(ws_server: str, connect: Connect, payload: Any) -> None:
    ws = connect(ws_server)
    ws.ping(payload)
    ws.send("after the ping")
    assert ws.recv(timeout=5) == "after the ping"
    assert ws.state is State.OPEN


# ---- tls and the URL scheme ----------------------------------------------------------------


def test_tls_is_a_tls_config_and_only_for_wss(ws_server: str, connect: Connect) -> None:
    with pytest.raises(ValueError, match=r"^tls is only for wss:// URLs, not ws://$"):
        connect(ws_server, tls=sigil_ws.TLSConfig())
    for url in [ws_server, ws_server.replace("ws://", "wss://")]:
        with pytest.raises(TypeError, match=r"^tls must be a sigil_ws\.TLSConfig, not object$"):
            connect(url, tls=object())


def test_protocol_tls_must_be_a_tls_config() -> None:
    with pytest.raises(TypeError, match=r"^tls must be a sigil_ws\.TLSConfig, not object$"):
        sigil_ws.Protocol("wss://h/", tls=object())


# ---- connect() options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("open_timeout", float("nan")),
        ("open_timeout", -1),
        ("close_timeout", -1),
        ("close_timeout", float("nan")),
        ("max_size", 0),
        ("max_size", -1),
        ("ping_interval", 0),
        ("ping_interval", -1),
        ("ping_interval", float("nan")),
        ("ping_timeout", -1),
        ("ping_timeout", float("nan")),
    ],
)
def test_connect_refuses_out_of_range_options(
    ws_server: str, connect: Connect, option: str, value: float
) -> None:
    with pytest.raises(ValueError, match=f"^{option} must be"):
        connect(ws_server, **{option: value})


@pytest.mark.parametrize(("option", "value"), [("max_queue", 0), ("write_limit", -1)])
def test_asyncio_connect_refuses_out_of_range_options(
    ws_server: str, option: str, value: int
) -> None:
    options: dict[str, Any] = {option: value}

    async def main() -> None:
        await sigil_ws.asyncio.connect(ws_server, **options)

    with pytest.raises(ValueError, match=f"^{option} must be"):
        asyncio.run(main())


# ---- building blocks and defaults ----------------------------------------------------------


def test_build_request_takes_headers_as_a_mapping() -> None:
    request = sigil_ws.handshake.build_request("ws://h/", KEY, headers={"X-A": "1"})
    assert b"\r\nX-A: 1\r\n" in request
    pairs = sigil_ws.handshake.build_request("ws://h/", KEY, headers=[("X-A", "1")])
    assert pairs == request


def test_signature_defaults_are_the_core_defaults() -> None:
    defaults = sigil_ws._core.DEFAULTS
    shared = ["open_timeout", "close_timeout", "max_size", "user_agent"]
    checked: list[tuple[Callable[..., Any], list[str]]] = [
        (sigil_ws.connect, shared),
        (sigil_ws.asyncio.connect, [*shared, "max_queue", "write_limit"]),
    ]
    for function, names in checked:
        parameters = inspect.signature(function).parameters
        for name in names:
            assert parameters[name].default == defaults[name], (function, name)

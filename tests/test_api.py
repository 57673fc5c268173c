"""The public API matches API.md (its names are listed here) and the exception hierarchy."""

from __future__ import annotations

import sigil_ws
import sigil_ws.asyncio
from sigil_ws import exceptions

# The public names of API.md (sync client, exceptions, building blocks). Kept here so that the
# repository stands alone. Named in API.md but not implemented yet: reconnect (module level and
# sigil_ws.asyncio.reconnect) and TRACE (the logging level).
API_NAMES = {
    # the sync client
    "connect",
    "Connection",
    "State",
    "TLSConfig",
    "Headers",
    # exceptions
    "WebSocketError",
    "InvalidURL",
    "HandshakeError",
    "InvalidStatus",
    "ProtocolError",
    "PayloadTooBig",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "TLSError",
    "ConcurrencyError",
    # building blocks
    "parse_url",
    "WebSocketURL",
    "handshake",
    "Message",
    "MessageType",
    "Protocol",
}
ASYNCIO_NAMES = {"connect", "Connection"}
HANDSHAKE_FUNCTIONS = [
    "generate_key",
    "accept_key",
    "build_request",
    "parse_status_line",
    "get_header",
    "validate_response",
]


def test_every_api_name_is_exported() -> None:
    missing = {n for n in API_NAMES if not hasattr(sigil_ws, n)}
    assert not missing
    assert not (API_NAMES - set(sigil_ws.__all__))
    for name in ASYNCIO_NAMES:
        assert hasattr(sigil_ws.asyncio, name), name
    assert not (ASYNCIO_NAMES - set(sigil_ws.asyncio.__all__))


def test_handshake_names() -> None:
    for name in HANDSHAKE_FUNCTIONS:
        assert callable(getattr(sigil_ws.handshake, name)), name


def test_all_is_sorted_and_complete() -> None:
    assert sigil_ws.__all__ == sorted(sigil_ws.__all__)
    for name in sigil_ws.__all__:
        assert hasattr(sigil_ws, name), name


def test_exception_hierarchy() -> None:
    e = exceptions
    assert issubclass(e.InvalidURL, e.WebSocketError) and issubclass(e.InvalidURL, ValueError)
    assert issubclass(e.InvalidStatus, e.HandshakeError)
    assert issubclass(e.PayloadTooBig, e.ProtocolError)
    assert issubclass(e.ConnectionClosedOK, e.ConnectionClosed)
    assert issubclass(e.ConnectionClosedError, e.ConnectionClosed)
    assert issubclass(e.TLSError, e.WebSocketError) and issubclass(e.TLSError, OSError)
    assert issubclass(e.ConcurrencyError, RuntimeError)
    for name in e.__all__:
        assert issubclass(getattr(e, name), e.WebSocketError)


def test_connection_closed_message() -> None:
    err = sigil_ws.ConnectionClosedError(1002, "")
    assert (err.code, err.reason) == (1002, "")
    assert str(err) == "connection closed: 1002 (protocol error)"
    assert str(sigil_ws.ConnectionClosedOK(1000, "bye")) == "connection closed: 1000 (OK) bye"


def test_state_is_an_int_enum() -> None:
    assert [s.value for s in sigil_ws.State] == [0, 1, 2, 3]
    assert sigil_ws.State.OPEN == 1


def test_headers_mapping() -> None:
    h = sigil_ws.Headers([("A", "1"), ("b", "2"), ("a", "3")])
    assert h["a"] == "1"
    assert h.get_all("A") == ["1", "3"]
    assert list(h) == ["A", "b"]
    assert len(h) == 2
    assert "B" in h
    assert h.raw_items() == [("A", "1"), ("b", "2"), ("a", "3")]

"""The public API matches ../shared/API.md and the exception hierarchy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sigil_ws
from sigil_ws import exceptions

API_MD = Path(__file__).resolve().parents[2] / "shared" / "API.md"


def api_names() -> set[str]:
    text = API_MD.read_text()
    names: set[str] = set()
    # `sigil_ws.Name` and the exception tree.
    names |= set(re.findall(r"sigil_ws\.([A-Za-z_]+)", text))
    names |= set(re.findall(r"^[│├└─ ]*([A-Z][A-Za-z]+)\(", text, re.M))
    names |= {"parse_url", "handshake", "Message", "Protocol", "connect"}
    names.discard("asyncio")  # the asyncio client is issue 4
    return names


@pytest.mark.skipif(not API_MD.exists(), reason=f"{API_MD} not found beside the repository")
def test_every_api_name_is_exported() -> None:
    missing = {n for n in api_names() if not hasattr(sigil_ws, n)}
    assert not missing
    assert not (api_names() - set(sigil_ws.__all__))


@pytest.mark.skipif(not API_MD.exists(), reason=f"{API_MD} not found beside the repository")
def test_handshake_names() -> None:
    text = API_MD.read_text()
    for name in re.findall(r"`handshake\.([a-z_]+)\(", text):
        assert callable(getattr(sigil_ws.handshake, name)), name


def test_all_is_sorted_and_complete() -> None:
    assert sorted(sigil_ws.__all__, key=str.lower) == sorted(sigil_ws.__all__, key=str.lower)
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

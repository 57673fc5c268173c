"""parse_url (RFC 6455 §3)."""

import pytest

import sigil_ws
from sigil_ws import InvalidURL, WebSocketURL, parse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://example.com", ("ws", "example.com", 80, "/")),
        ("wss://example.com", ("wss", "example.com", 443, "/")),
        ("ws://example.com:8080/chat", ("ws", "example.com", 8080, "/chat")),
        ("wss://example.com/feed?x=1&y=2", ("wss", "example.com", 443, "/feed?x=1&y=2")),
        ("ws://h?x", ("ws", "h", 80, "/?x")),
        ("ws://[::1]:9001/x", ("ws", "::1", 9001, "/x")),
        ("wss://[2001:db8::1]", ("wss", "2001:db8::1", 443, "/")),
        ("WS://EXAMPLE.com", ("ws", "example.com", 80, "/")),
        ("ws://h/é", ("ws", "h", 80, "/%C3%A9")),
    ],
)
def test_valid(url: str, expected: tuple[str, str, int, str]) -> None:
    parsed = parse_url(url)
    assert isinstance(parsed, WebSocketURL)
    assert tuple(parsed) == expected
    assert parsed.secure == (expected[0] == "wss")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://example.com", "unsupported scheme"),
        ("example.com", "missing scheme"),
        ("ws://h/path#frag", "fragment"),
        ("ws:///path", "missing host"),
        ("ws://h:0/", "invalid port"),
        ("ws://h:65536/", "invalid port"),
        ("ws://h:abc/", "invalid port"),
        ("ws://[::1/", "invalid host"),
        ("ws://ho st/", "invalid host"),
        ("ws://user:pw@h/", "user info"),
        ("ws://h/a b", "invalid character"),
        ("ws://h/a\r\nX-Evil: 1", "invalid character"),
    ],
)
def test_invalid(url: str, match: str) -> None:
    with pytest.raises(InvalidURL, match=match):
        parse_url(url)


def test_invalid_url_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="fragment"):
        parse_url("ws://h/#x")


def test_connect_refuses_bad_urls_before_any_io() -> None:
    with pytest.raises(InvalidURL, match="unsupported scheme"):
        sigil_ws.connect("https://example.com/")

"""WebSocket URLs (RFC 6455 §3)."""

from __future__ import annotations

from typing import NamedTuple

from . import _core

__all__ = ["WebSocketURL", "parse_url"]


class WebSocketURL(NamedTuple):
    """A parsed ``ws://`` or ``wss://`` URL. ``path`` includes the query."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def secure(self) -> bool:
        """True for ``wss://``."""
        return self.scheme == "wss"


def parse_url(url: str) -> WebSocketURL:
    """Parse a WebSocket URL.

    Args:
        url: ``ws://host[:port][/path][?query]`` or ``wss://…``.

    Returns:
        The parts, with the scheme's default port filled in and ``/`` for an empty path.

    Raises:
        InvalidURL: bad scheme, host or port, or a ``#fragment``.

    Example:
        >>> parse_url("wss://example.com/feed?x=1")
        WebSocketURL(scheme='wss', host='example.com', port=443, path='/feed?x=1')
    """
    return WebSocketURL(*_core.parse_url(url))

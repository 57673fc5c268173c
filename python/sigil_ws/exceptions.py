"""The exceptions of sigil-ws.

::

    WebSocketError(Exception)
    ├── InvalidURL(WebSocketError, ValueError)
    ├── HandshakeError(WebSocketError)
    │   ├── InvalidStatus(HandshakeError)
    │   └── ProxyError(HandshakeError)
    ├── ProtocolError(WebSocketError)
    │   └── PayloadTooBig(ProtocolError)
    ├── ConnectionClosed(WebSocketError)
    │   ├── ConnectionClosedOK
    │   └── ConnectionClosedError
    ├── TLSError(WebSocketError, OSError)
    └── ConcurrencyError(WebSocketError, RuntimeError)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .headers import Headers

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "InvalidStatus",
    "InvalidURL",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "TLSError",
    "WebSocketError",
]

# RFC 6455 §7.4.1 and the IANA registry, for readable messages.
_CLOSE_CODE_NAMES = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received",
    1006: "abnormal closure",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
}


class WebSocketError(Exception):
    """Base class of every sigil-ws exception."""


class InvalidURL(WebSocketError, ValueError):
    """The URL is not a valid ``ws://`` or ``wss://`` URL."""


class HandshakeError(WebSocketError):
    """The server's response is not a valid 101 upgrade."""


class InvalidStatus(HandshakeError):
    """The server answered the upgrade with a status other than 101.

    Attributes:
        status_code: the HTTP status.
        headers: the response headers.
        body: the first bytes of the response body that arrived with the headers.
    """

    def __init__(self, message: str, status_code: int, headers: Headers, body: bytes) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers
        self.body = body


class ProxyError(HandshakeError):
    """The proxy refused or failed the tunnel to the server (or its URL is unusable): the
    failure came from the proxy, not from the WebSocket server.

    Attributes:
        proxy: the proxy as ``scheme://host:port`` (never with its credentials), or ``None``
            when the proxy URL itself is invalid.
        status_code: the HTTP proxy's status (e.g. 407: it wants credentials), else ``None``.
        reply_code: the SOCKS reply code (RFC 1928 §6; SOCKS4 91-93), or 255 when no
            authentication method was acceptable; else ``None`` (refused SOCKS credentials
            say so in the message).
    """

    def __init__(
        self,
        message: str,
        proxy: str | None = None,
        status_code: int | None = None,
        reply_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.status_code = status_code
        self.reply_code = reply_code


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455."""


class PayloadTooBig(ProtocolError):
    """An incoming message exceeds ``max_size``."""


class ConnectionClosed(WebSocketError):
    """The connection is closed.

    Attributes:
        code: the close code (1006 when the connection dropped without a close frame, 1005
            when the peer's close frame carried no code).
        reason: the close reason.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(code, reason)

    def __str__(self) -> str:
        name = _CLOSE_CODE_NAMES.get(code := self.code)
        if name is None:
            name = "private use" if 4000 <= code < 5000 else "registered" if code >= 3000 else "?"
        text = f"connection closed: {code} ({name})"
        return f"{text} {self.reason}" if self.reason else text


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: code 1000 or 1001, or a close frame without a code
    (1005)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with any other code, or failed (1006 when it dropped without a
    close frame).

    When the library failed the connection because the peer broke the protocol, ``__cause__``
    holds the :class:`ProtocolError`.
    """


class TLSError(WebSocketError, OSError):
    """TLS handshake, certificate or host name failure, or unusable TLS settings."""


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two threads called ``recv()`` on one connection at the same time."""

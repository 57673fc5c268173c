"""sigil-ws: a fast, thread-friendly WebSocket client with a Rust core.

Example:
    >>> import sigil_ws
    >>> with sigil_ws.connect("ws://127.0.0.1:8765") as ws:  # doctest: +SKIP
    ...     ws.send("hello")
    ...     print(ws.recv())
"""

from . import handshake
from ._core import Connection, Protocol, __version__
from ._logging import TRACE
from .client import connect, reconnect
from .events import Close, Message, MessageType, Ping, Pong
from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidStatus,
    InvalidURL,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    TLSError,
    WebSocketError,
)
from .headers import Headers
from .state import State
from .tls import TLSConfig
from .url import WebSocketURL, parse_url

# Plain sorted order (tests/test_api.py), not ruff's constants-first.
__all__ = [  # noqa: RUF022
    "Close",
    "ConcurrencyError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "Headers",
    "InvalidStatus",
    "InvalidURL",
    "Message",
    "MessageType",
    "PayloadTooBig",
    "Ping",
    "Pong",
    "Protocol",
    "ProtocolError",
    "ProxyError",
    "State",
    "TLSConfig",
    "TLSError",
    "TRACE",
    "WebSocketError",
    "WebSocketURL",
    "__version__",
    "connect",
    "handshake",
    "parse_url",
    "reconnect",
]

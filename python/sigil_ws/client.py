"""The sync client: ``connect()`` normalises its options and hands them to the Rust driver."""

from __future__ import annotations

from collections.abc import Sequence

from . import _core, _options
from ._options import DEFAULT_USER_AGENT, HeadersLike
from .tls import TLSConfig

__all__ = ["DEFAULT_USER_AGENT", "connect"]


def connect(
    url: str,
    *,
    open_timeout: float | None = 10.0,
    close_timeout: float | None = 10.0,
    headers: HeadersLike | None = None,
    subprotocols: Sequence[str] | None = None,
    origin: str | None = None,
    user_agent: str | None = DEFAULT_USER_AGENT,
    max_size: int | None = 16 * 2**20,
    compression: str | None = "deflate",
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    tls: TLSConfig | None = None,
) -> _core.Connection:
    """Open a WebSocket connection.

    DNS, TCP, TLS and the HTTP upgrade run with the GIL released.

    Args:
        url: ``ws://`` or ``wss://`` URL.
        open_timeout: seconds for DNS + TCP + TLS + upgrade together; ``None`` for no limit.
        close_timeout: seconds ``close()`` waits for the peer's close frame.
        headers: extra request headers, a mapping or ``(name, value)`` pairs.
        subprotocols: offered in ``Sec-WebSocket-Protocol``.
        origin: the ``Origin`` header.
        user_agent: the ``User-Agent`` header; ``None`` omits it.
        max_size: largest incoming message in bytes (after decompression); ``None`` for no
            limit.
        compression: ``"deflate"`` offers permessage-deflate (RFC 7692); ``None`` offers
            nothing. What was negotiated is ``ws.extensions``.
        tls: :class:`TLSConfig` for ``wss://`` (refused for ``ws://``); ``None`` verifies
            against the system store.
        ping_interval: seconds between keepalive pings while the connection is open;
            ``None`` for no keepalive.
        ping_timeout: seconds a keepalive ping waits for its pong (or for any other data from
            the server) before the connection fails with 1011; ``None`` waits forever.

    Returns:
        An open :class:`sigil_ws.Connection`, also usable as a context manager.

    Raises:
        InvalidURL: the URL is malformed.
        InvalidStatus: the server answered with a status other than 101.
        HandshakeError: the upgrade response is invalid.
        TLSError: the TLS handshake or certificate verification failed.
        TimeoutError: ``open_timeout`` passed.
        OSError: the network failed (``ConnectionRefusedError``, ``socket.gaierror``, …).
        ValueError: an option is out of range.

    Example:
        >>> with connect("ws://127.0.0.1:8765") as ws:  # doctest: +SKIP
        ...     ws.send("hello")
        ...     print(ws.recv())
    """
    return _core.connect(
        url,
        _options.connect_options(
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            headers=headers,
            subprotocols=subprotocols,
            origin=origin,
            user_agent=user_agent,
            max_size=max_size,
            compression=compression,
            tls=tls,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        ),
    )

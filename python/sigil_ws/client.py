"""The sync client: ``connect()`` normalises its options and hands them to the Rust driver."""

from __future__ import annotations

import os
import socket
import ssl
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
    tls: TLSConfig | None = None,
    proxy: str | bool | None = True,
    max_redirects: int = 10,
    unix_socket: str | os.PathLike[str] | None = None,
    sock: socket.socket | None = None,
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
        proxy: ``True`` uses the environment's proxy (``ws://``: ``http_proxy``, ``wss://``:
            ``https_proxy``, then ``all_proxy``; ``no_proxy`` honoured); a URL
            ``http://``, ``socks5://``, ``socks5h://`` or ``socks4a://`` (with
            ``user:password@``) uses that proxy; ``None`` connects directly.
        max_redirects: 301/302/303/307/308 answers followed; ``0`` follows none. Credentials
            (``Authorization``, ``Cookie``, the URL's ``user:password@``) only go to the
            origin of ``url``; a redirect from ``wss://`` to ``ws://`` is refused.
        unix_socket: path of a Unix domain socket to connect to instead of TCP (the URL
            still gives Host and path).
        sock: an already connected stream socket to run the connection on (TLS is done on
            it for ``wss://``); the connection owns it from then on.

    Returns:
        An open :class:`sigil_ws.Connection`, also usable as a context manager.

    Raises:
        InvalidURL: the URL is malformed.
        InvalidStatus: the server answered with a status other than 101.
        ProxyError: the proxy refused the tunnel (``status_code``, ``reply_code``).
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
    fd = None
    if sock is not None:
        fd = _detach(sock)
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
            url=url,
            proxy=None if sock is not None else proxy,
            max_redirects=max_redirects,
            unix_socket=unix_socket,
        ),
        fd,
    )


def _detach(sock: socket.socket) -> int:
    """Takes the descriptor of a connected stream socket over from ``sock``."""
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
    if isinstance(sock, ssl.SSLSocket):
        raise TypeError("sock must be a plain socket: TLS for wss:// is done on it by sigil-ws")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError("sock must be a stream socket")
    if sock.fileno() < 0:
        raise ValueError("sock is closed")
    sock.setblocking(True)
    return sock.detach()

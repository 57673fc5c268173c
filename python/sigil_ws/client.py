"""The sync client: ``connect()`` normalises its options and hands them to the Rust driver."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from typing import Any

from . import _core, _logging, _options, _reconnect
from ._options import DEFAULT_USER_AGENT, HeadersLike
from .tls import TLSConfig

__all__ = ["DEFAULT_USER_AGENT", "connect", "reconnect"]


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
    max_queue: int | None = 16,
    tls: TLSConfig | None = None,
    proxy: str | bool | None = True,
    max_redirects: int = 10,
    unix_socket: str | os.PathLike[str] | None = None,
    sock: socket.socket | None = None,
    logger: _logging.LoggerLike = None,
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
        max_queue: messages read ahead while nobody calls ``recv()`` (the process's I/O
            thread reads ahead so that pings are answered, keepalive is timed and the
            server's close is seen); then reading pauses. ``None`` for no bound.
        proxy: ``True`` uses the environment's proxy (``ws://``: ``http_proxy``, ``wss://``:
            ``https_proxy``, then ``all_proxy``; ``no_proxy`` honoured); a URL
            ``http://``, ``https://``, ``socks5://``, ``socks5h://`` or ``socks4a://`` (with
            ``user:password@``) uses that proxy; ``None`` connects directly.
        max_redirects: 301/302/303/307/308 answers followed; ``0`` follows none. Credentials
            (``Authorization``, ``Cookie``, the URL's ``user:password@``) only go to the
            origin of ``url``; a redirect from ``wss://`` to ``ws://`` is refused.
        unix_socket: path of a Unix domain socket to connect to instead of TCP (the URL
            still gives Host and path).
        sock: an already connected stream socket to run the connection on (TLS is done on
            it for ``wss://``); the connection owns it from then on.
        logger: the ``logging.Logger`` (or ``LoggerAdapter``, or a logger's name) this
            connection logs on; ``None`` is ``logging.getLogger("sigil_ws")``. INFO: opened
            and closed; DEBUG: the handshake, proxy and redirect hops, keepalive pings and
            their latency; ``sigil_ws.TRACE``: every frame's header. Whether DEBUG and TRACE
            are on is read once, here. Secrets are never logged (see the logging page).

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
    log = _logging.resolve(logger)
    fd = None
    if sock is not None:
        fd = _detach(sock)
    options = _options.connect_options(
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
        url=url,
        proxy=None if sock is not None else proxy,
        max_redirects=max_redirects,
        unix_socket=unix_socket,
    )
    options["max_queue"] = _options.size("max_queue", max_queue)
    try:
        ws = _core.connect(url, options, fd, logger=log, journal=_logging.journal_mode(log))
    except Exception as exc:
        _logging.log_failed(log, url, exc)
        raise
    _logging.log_opened(log, ws, headers)
    return ws


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


def reconnect(
    url: str,
    *,
    backoff_initial: float = _reconnect.BACKOFF_INITIAL,
    backoff_max: float = _reconnect.BACKOFF_MAX,
    backoff_factor: float = _reconnect.BACKOFF_FACTOR,
    **options: Any,
) -> Iterator[_core.Connection]:
    """Connect, and connect again after each loss: yields a new open connection each time.

    Failed attempts are retried with exponential backoff and full jitter (the n-th delay is
    drawn from ``[0, min(backoff_max, backoff_initial * backoff_factor**n)]``), reset after a
    connection that stayed up; each attempt and its delay is logged at DEBUG. Retried:
    network errors, timeouts, 5xx and 429 answers (also a proxy's). Raised at once:
    ``InvalidURL``, TLS verification failures, other 4xx answers, a proxy refusing the
    credentials or the target.

    Args:
        url: as for :func:`connect`.
        backoff_initial: ceiling of the first delay, in seconds.
        backoff_max: largest ceiling, in seconds.
        backoff_factor: growth of the ceiling after each failure.
        **options: the options of :func:`connect` (``sock`` excepted: a socket serves once).

    Yields:
        Open connections; the previous one is closed when the next is asked for.

    Example:
        >>> for ws in reconnect("wss://example.com/feed"):  # doctest: +SKIP
        ...     try:
        ...         for message in ws:
        ...             handle(message)
        ...     except sigil_ws.ConnectionClosedError:
        ...         continue
    """
    if "sock" in options:
        raise TypeError("reconnect() cannot take sock: a given socket serves one connection")
    backoff = _reconnect.Backoff(backoff_initial, backoff_max, backoff_factor)
    log = _logging.resolve(options.get("logger"))
    attempt = 0
    while True:
        attempt += 1
        try:
            ws = connect(url, **options)
        except Exception as exc:
            if not _reconnect.retryable(exc):
                raise
            delay = backoff.next_delay()
            _reconnect.log_retry(url, exc, delay, attempt, log)
            time.sleep(delay)
            continue
        uptime = _reconnect.Uptime(backoff)
        try:
            yield ws
        finally:
            ws.close()
        if uptime.stayed_up():
            backoff.reset()
            attempt = 0
        else:
            # Accepted, then lost at once: wait before the next attempt as after a failure.
            delay = backoff.next_delay()
            _reconnect.log_lost(url, time.monotonic() - uptime.opened, delay, log)
            time.sleep(delay)

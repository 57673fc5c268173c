"""The sync client: ``connect()`` normalises its options and hands them to the Rust driver."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from . import _core
from .tls import TLSConfig

__all__ = ["DEFAULT_USER_AGENT", "connect"]

DEFAULT_USER_AGENT = f"sigil-ws/{_core.__version__}"

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]


def normalize_headers(headers: HeadersLike | None) -> list[tuple[str, str]] | None:
    """Extra request headers as a list of ``(name, value)`` string pairs."""
    if headers is None:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    result = []
    for pair in pairs:
        name, value = pair
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header names and values must be str, not {pair!r}")
        result.append((name, value))
    return result


def normalize_subprotocols(subprotocols: Sequence[str] | None) -> list[str] | None:
    """Offered subprotocols as a list of str (a lone str is refused: it is a common slip)."""
    if subprotocols is None:
        return None
    if isinstance(subprotocols, str):
        raise TypeError("subprotocols must be a sequence of str, not a str")
    return [str(p) for p in subprotocols]


def check_tls(tls: object) -> TLSConfig | None:
    """``tls`` as passed to connect(): a TLSConfig or None."""
    if tls is not None and not isinstance(tls, TLSConfig):
        raise TypeError(f"tls must be a sigil_ws.TLSConfig, not {type(tls).__name__}")
    return tls


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
        max_size: largest incoming message in bytes; ``None`` for no limit.
        tls: :class:`TLSConfig` for ``wss://``; ``None`` verifies against the system store.

    Returns:
        An open :class:`sigil_ws.Connection`, also usable as a context manager.

    Raises:
        InvalidURL: the URL is malformed.
        InvalidStatus: the server answered with a status other than 101.
        HandshakeError: the upgrade response is invalid.
        TLSError: the TLS handshake or certificate verification failed.
        TimeoutError: ``open_timeout`` passed.
        OSError: the network failed (``ConnectionRefusedError``, ``socket.gaierror``, …).

    Example:
        >>> with connect("ws://127.0.0.1:8765") as ws:  # doctest: +SKIP
        ...     ws.send("hello")
        ...     print(ws.recv())
    """
    return _core.connect(
        url,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        headers=normalize_headers(headers),
        subprotocols=normalize_subprotocols(subprotocols),
        origin=origin,
        user_agent=user_agent,
        max_size=max_size,
        tls=check_tls(tls),
    )

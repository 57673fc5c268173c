"""One normaliser for every entry point: the sync and asyncio ``connect()`` and the handshake
building blocks turn their arguments into the values the Rust core takes here.

Ranges and defaults are checked and defined once, in the Rust core (``src/options.rs``);
this module converts Python types (mappings of headers, sequences of subprotocols, TLSConfig).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import _core, _proxy
from .tls import TLSConfig

__all__ = [
    "DEFAULT_USER_AGENT",
    "HeadersLike",
    "connect_options",
    "headers",
    "interval",
    "size",
    "subprotocols",
    "timeout",
    "tls",
]

DEFAULTS: dict[str, Any] = _core.DEFAULTS
DEFAULT_USER_AGENT: str = DEFAULTS["user_agent"]

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]


def headers(value: HeadersLike | None) -> list[tuple[str, str]] | None:
    """Extra request headers as a list of ``(name, value)`` string pairs."""
    if value is None:
        return None
    pairs = value.items() if isinstance(value, Mapping) else value
    result = []
    for pair in pairs:
        name, text = pair
        if not isinstance(name, str) or not isinstance(text, str):
            raise TypeError(f"header names and values must be str, not {pair!r}")
        result.append((name, text))
    return result


def subprotocols(value: Sequence[str] | None) -> list[str] | None:
    """Offered subprotocols as a list of str (a lone str is refused: it is a common slip)."""
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("subprotocols must be a sequence of str, not a str")
    return [str(p) for p in value]


def tls(value: object) -> TLSConfig | None:
    """``tls`` as passed to connect(): a TLSConfig or None."""
    if value is not None and not isinstance(value, TLSConfig):
        raise TypeError(f"tls must be a sigil_ws.TLSConfig, not {type(value).__name__}")
    return value


def timeout(name: str, value: float | None) -> float | None:
    """Seconds to wait: ``None`` or infinity wait forever; NaN and negatives are refused."""
    if value is None:
        return None
    result: float | None = _core.check_option(name, value)
    return result


def interval(name: str, value: float | None) -> float | None:
    """A positive period in seconds (``ping_interval``); ``None`` or infinity turn it off."""
    result: float | None = _core.check_option(name, value)
    return result


def size(name: str, value: int | None) -> int | None:
    """A positive size (``max_size``, ``max_queue``) or None; ``write_limit`` may be 0."""
    result: int | None = _core.check_option(name, value)
    return result


def connect_options(
    *,
    open_timeout: float | None,
    close_timeout: float | None,
    headers: HeadersLike | None,
    subprotocols: Sequence[str] | None,
    origin: str | None,
    user_agent: str | None,
    max_size: int | None,
    compression: str | None,
    tls: TLSConfig | None,
    ping_interval: float | None,
    ping_timeout: float | None,
    url: str | None = None,
    proxy: str | bool | None = None,
    max_redirects: int = 10,
    unix_socket: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The options both clients share, normalised.

    With ``url``, ``proxy=True`` becomes the environment's proxy for it (or ``None``)."""
    if unix_socket is not None:
        unix_socket = os.fspath(unix_socket)
        proxy = None  # a Unix socket is the route: no proxy applies
    return dict(
        proxy=_proxy.select(proxy, url) if url is not None else None,
        max_redirects=_core.check_option("max_redirects", max_redirects),
        unix_socket=unix_socket,
        open_timeout=timeout("open_timeout", open_timeout),
        close_timeout=timeout("close_timeout", close_timeout),
        headers=_headers(headers),
        subprotocols=_subprotocols(subprotocols),
        origin=origin,
        user_agent=user_agent,
        max_size=size("max_size", max_size),
        compression=compression,
        tls=_tls(tls),
        ping_interval=interval("ping_interval", ping_interval),
        ping_timeout=timeout("ping_timeout", ping_timeout),
    )


_headers = headers
_subprotocols = subprotocols
_tls = tls

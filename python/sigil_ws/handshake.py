"""The opening handshake's building blocks (RFC 6455 §4)."""

from __future__ import annotations

from collections.abc import Sequence

from . import _core, _options
from ._core import accept_key, generate_key, parse_status_line, validate_response
from ._options import HeadersLike
from .headers import get_header

__all__ = [
    "accept_key",
    "build_request",
    "generate_key",
    "get_header",
    "parse_status_line",
    "validate_response",
]


def build_request(
    url: str,
    key: str,
    headers: HeadersLike | None = None,
    subprotocols: Sequence[str] | None = None,
) -> bytes:
    """The HTTP/1.1 upgrade request for ``url`` and ``key``.

    Args:
        url: ``ws://`` or ``wss://`` URL.
        key: the ``Sec-WebSocket-Key`` (see :func:`generate_key`).
        headers: extra headers, a mapping or ``(name, value)`` pairs, as in ``connect()``.
        subprotocols: offered in ``Sec-WebSocket-Protocol``.

    Raises:
        InvalidURL: the URL is malformed.
        HandshakeError: a header name or value would break the request.
    """
    return _core.build_request(
        url, key, _options.headers(headers), _options.subprotocols(subprotocols)
    )

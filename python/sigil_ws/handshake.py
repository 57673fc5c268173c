"""The opening handshake's building blocks (RFC 6455 §4)."""

from ._core import (
    accept_key,
    build_request,
    generate_key,
    parse_status_line,
    validate_response,
)
from .headers import get_header

__all__ = [
    "accept_key",
    "build_request",
    "generate_key",
    "get_header",
    "parse_status_line",
    "validate_response",
]

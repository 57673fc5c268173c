"""Logging: the ``sigil_ws`` logger, the ``TRACE`` level, and what never reaches a log.

Both clients log on ``logging.getLogger("sigil_ws")`` unless ``connect(logger=...)`` names
another. INFO: a connection opened and closed; DEBUG: the handshake, proxy and redirect hops,
keepalive pings and their latency, reconnect attempts; ``TRACE`` (5): every frame's header.

Secrets are redacted before any line is formatted: the ``user:password@`` of a URL (the
server's or a proxy's), and the values of the ``Authorization``, ``Proxy-Authorization``,
``Cookie`` and ``Set-Cookie`` headers. Frame payloads are never logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

__all__ = ["TRACE", "LoggerLike", "redact_headers", "redact_url", "resolve"]

#: Frame-by-frame tracing: below DEBUG (10), so that DEBUG never floods.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

#: The logger both clients use unless told otherwise.
DEFAULT_LOGGER = "sigil_ws"

#: Header names whose values are never logged (compared case-insensitively).
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

REDACTED = "[redacted]"

Logger: TypeAlias = "logging.Logger | logging.LoggerAdapter[Any]"
LoggerLike: TypeAlias = "logging.Logger | logging.LoggerAdapter[Any] | str | None"

# The userinfo of any URL in a piece of text: "//user:password@" (RFC 3986 §3.2.1).
_USERINFO = re.compile(r"(?<=//)[^/?#@\s]*@")


def resolve(logger: LoggerLike) -> Logger:
    """The logger of a connection: ``None`` is ``logging.getLogger("sigil_ws")``, a string
    names a logger, a ``Logger`` or ``LoggerAdapter`` is used as it is.

    Raises:
        TypeError: anything else.
    """
    if logger is None:
        return logging.getLogger(DEFAULT_LOGGER)
    if isinstance(logger, str):
        return logging.getLogger(logger)
    if isinstance(logger, logging.Logger | logging.LoggerAdapter):
        return logger
    raise TypeError(
        f"logger must be a logging.Logger, a LoggerAdapter or a name, not {type(logger).__name__}"
    )


def journal_mode(logger: Logger) -> int:
    """What the engine should record for this logger, decided once at connect time: 2 for
    frame headers too (TRACE on), 1 for keepalive notes (DEBUG on), 0 for nothing (the message
    path then pays one branch per frame)."""
    if logger.isEnabledFor(TRACE):
        return 2
    if logger.isEnabledFor(logging.DEBUG):
        return 1
    return 0


def redact_url(url: str) -> str:
    """``url`` (or any text) with the ``user:password@`` of each URL in it replaced."""
    return _USERINFO.sub(REDACTED + "@", url)


def redact_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> list[tuple[str, str]]:
    """Header pairs with the values of :data:`SECRET_HEADERS` replaced."""
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        pairs: Iterable[tuple[str, str]] = headers.items()
    elif hasattr(headers, "raw_items"):
        pairs = headers.raw_items()
    else:
        pairs = headers
    return [
        (str(name), REDACTED if str(name).lower() in SECRET_HEADERS else str(value))
        for name, value in pairs
    ]


def _format_headers(headers: Any) -> str:
    return ", ".join(f"{name}: {value}" for name, value in redact_headers(headers)) or "none"


def _format_extensions(extensions: list[tuple[str, dict[str, str | None]]]) -> str:
    parts = []
    for name, params in extensions:
        items = [k if v is None else f"{k}={v}" for k, v in params.items()]
        parts.append("; ".join([name, *items]))
    return ", ".join(parts) or "none"


def log_opened(logger: Logger, ws: Any, request_headers: Any) -> None:
    """INFO: the connection is open; DEBUG: its handshake (headers redacted)."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "handshake with %s: GET %s, request headers: %s; HTTP 101, response headers: %s",
            ws.url,
            ws.path,
            _format_headers(request_headers),
            _format_headers(ws.response_headers),
        )
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "connection opened to %s (subprotocol: %s, extensions: %s)",
            ws.url,
            ws.subprotocol,
            _format_extensions(ws.extensions),
        )


def log_failed(logger: Logger, url: str, exc: BaseException) -> None:
    """DEBUG: an attempt to connect failed (a refused upgrade shows its status and headers)."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    headers = getattr(exc, "headers", None)
    status = getattr(exc, "status_code", None)
    if status is not None and headers is not None:
        logger.debug(
            "handshake with %s refused: HTTP %d, response headers: %s",
            redact_url(url),
            status,
            _format_headers(headers),
        )
    logger.debug(
        "connection to %s failed: %s: %s",
        redact_url(url),
        type(exc).__name__,
        redact_url(str(exc)),
    )


_CLOSERS = {
    "us": "closed by us",
    "peer": "closed by the peer",
    "failure": "failed",
    "lost": "lost (no closing handshake)",
    "dropped": "dropped while open (no closing handshake)",
}


def _close_frame(frame: tuple[int, str] | None) -> str:
    if frame is None:
        return "none"
    code, reason = frame
    return f"{code} {reason!r}" if reason else str(code)


def log_closed(
    logger: Logger,
    url: str,
    closer: str,
    code: int,
    reason: str,
    sent: tuple[int, str] | None,
    received: tuple[int, str] | None,
) -> None:
    """INFO: the connection is over, who ended it, and the close frames both ways."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "connection to %s %s: code %d, reason %r (close frame sent: %s, received: %s)",
            url,
            _CLOSERS.get(closer, closer),
            code,
            reason,
            _close_frame(sent),
            _close_frame(received),
        )


def log_notes(logger: Logger, url: str, notes: list[tuple[Any, ...]]) -> None:
    """Logs what the engine recorded: frames at TRACE, keepalive pings and pongs at DEBUG."""
    for note in notes:
        kind = note[0]
        if kind == "frame":
            _, incoming, opcode, fin, rsv, length = note
            if logger.isEnabledFor(TRACE):
                logger.log(
                    TRACE,
                    "%s %s frame: fin=%d rsv=%d length=%d",
                    "<" if incoming else ">",
                    opcode,
                    fin,
                    rsv,
                    length,
                )
        elif kind == "keepalive_ping":
            logger.debug("keepalive ping sent to %s", url)
        elif kind == "pong":
            _, latency, keepalive = note
            logger.debug(
                "pong from %s for %s ping: latency %.1f ms",
                url,
                "the keepalive" if keepalive else "a",
                latency * 1000,
            )
        elif kind == "dropped":
            logger.debug("%d earlier log notes of %s dropped (too many at once)", note[1], url)


def log_tunnel(logger: Logger, proxy: str, host: str, port: int) -> None:
    """DEBUG: a proxy tunnel is open (the proxy without its credentials)."""
    logger.debug("tunnel open through %s to %s:%d", redact_url(proxy), host, port)


def log_redirect(logger: Logger, status: int, url: str) -> None:
    """DEBUG: the upgrade was redirected."""
    logger.debug("redirected (HTTP %d) to %s", status, redact_url(url))

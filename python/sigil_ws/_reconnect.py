"""Reconnecting, shared by both clients: the backoff (exponential, full jitter) and which
failures are worth another attempt. The loops themselves are ``sigil_ws.reconnect`` (sync)
and ``sigil_ws.asyncio.reconnect``.
"""

from __future__ import annotations

import logging
import math
import random
import time

from ._logging import Logger, redact_url
from .exceptions import (
    HandshakeError,
    InvalidStatus,
    InvalidURL,
    ProxyError,
    TLSError,
)

__all__ = ["BACKOFF_FACTOR", "BACKOFF_INITIAL", "BACKOFF_MAX", "Backoff", "retryable"]

logger = logging.getLogger("sigil_ws")

#: Ceiling of the first delay, in seconds (the delay itself is drawn below it).
BACKOFF_INITIAL = 1.0
#: Largest ceiling, in seconds.
BACKOFF_MAX = 60.0
#: Growth of the ceiling after each failed attempt.
BACKOFF_FACTOR = 2.0

# SOCKS5 replies (RFC 1928 §6) that may clear by themselves: general failure, network or host
# unreachable, connection refused, TTL expired. "Not allowed by ruleset", "command not
# supported" and "address type not supported" will not.
_TRANSIENT_SOCKS_REPLIES = {1, 3, 4, 5, 6}


def _transient_status(status: int) -> bool:
    return status >= 500 or status == 429


def retryable(exc: BaseException) -> bool:
    """True for a failure that another attempt may not meet: network errors, timeouts, 5xx
    and 429 answers (also from a proxy), a proxy that hung up or could not reach the server.
    False for what the caller must fix: a bad URL or option, a TLS verification failure,
    other 4xx answers, a proxy that refuses the credentials or the target."""
    if isinstance(exc, InvalidURL | ValueError | TypeError):
        return False
    if isinstance(exc, ProxyError):
        if exc.status_code is not None:
            return _transient_status(exc.status_code)
        if exc.reply_code is not None:
            return exc.reply_code in _TRANSIENT_SOCKS_REPLIES
        # A proxy that hung up mid-handshake may be restarting; refused credentials, a broken
        # answer or a bad proxy URL will not heal.
        return exc.proxy is not None and "closed the connection during" in str(exc)
    if isinstance(exc, InvalidStatus):
        return _transient_status(exc.status_code)
    if isinstance(exc, HandshakeError):
        return False  # an invalid upgrade, a redirect loop: the server must change
    if isinstance(exc, TLSError):
        # Certificates and configuration do not fix themselves; a TLS handshake cut short by
        # the network does.
        text = str(exc).lower()
        return not ("certificate" in text or "configuration" in text or "verif" in text)
    return isinstance(exc, OSError)  # includes TimeoutError and socket.gaierror


class Backoff:
    """Exponential backoff with full jitter: the n-th delay is drawn uniformly from
    ``[0, min(maximum, initial * factor**n)]`` ("Exponential Backoff And Jitter", AWS
    Architecture Blog, 2015), so that clients cut off together do not return together."""

    def __init__(
        self,
        initial: float = BACKOFF_INITIAL,
        maximum: float = BACKOFF_MAX,
        factor: float = BACKOFF_FACTOR,
    ) -> None:
        for name, value in (("backoff_initial", initial), ("backoff_max", maximum)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if not (isinstance(factor, int | float) and math.isfinite(factor) and factor >= 1):
            raise ValueError(f"backoff_factor must be a number >= 1, not {factor!r}")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)
        self.failures = 0

    def ceiling(self) -> float:
        """The largest delay the next failure may wait."""
        # Capped before the power can overflow.
        if (
            self.factor > 1
            and self.failures > math.log(self.maximum / self.initial, self.factor) + 1
        ):
            return self.maximum
        return min(self.maximum, self.initial * self.factor**self.failures)

    def next_delay(self) -> float:
        """A failure happened: the delay before the next attempt."""
        delay = random.uniform(0, self.ceiling())
        self.failures += 1
        return delay

    def reset(self) -> None:
        """A connection stayed up: the next failure starts from ``initial`` again."""
        self.failures = 0


class Uptime:
    """Whether a connection "stayed up": open at least as long as the ceiling of the delay
    that preceded it (and one second at least). A server that accepts and drops at once
    keeps the backoff growing; one that served for a while resets it."""

    def __init__(self, backoff: Backoff) -> None:
        self.threshold = max(1.0, backoff.ceiling())
        self.opened = time.monotonic()

    def stayed_up(self) -> bool:
        return time.monotonic() - self.opened >= self.threshold


def log_retry(
    url: str, exc: BaseException, delay: float, attempt: int, log: Logger = logger
) -> None:
    """Logs a failed attempt and the delay before the next one, at DEBUG (on ``log``, the
    connection's logger; credentials in the URL redacted)."""
    log.debug(
        "connection attempt %d to %s failed (%s: %s); retrying in %.2f s",
        attempt,
        redact_url(url),
        type(exc).__name__,
        redact_url(str(exc)),
        delay,
    )


def log_lost(url: str, uptime: float, delay: float, log: Logger = logger) -> None:
    """Logs a connection lost soon after it opened, and the delay before the next attempt."""
    log.debug(
        "connection to %s closed after %.2f s; reconnecting in %.2f s",
        redact_url(url),
        uptime,
        delay,
    )

"""Connection states."""

from enum import IntEnum

__all__ = ["State"]


class State(IntEnum):
    """The state of a connection (RFC 6455 §4, §7)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3

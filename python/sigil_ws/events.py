"""What the sans-IO :class:`sigil_ws.Protocol` reports from ``events()``."""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

__all__ = ["Close", "Fragment", "Message", "MessageType", "Ping", "Pong"]


class MessageType(Enum):
    """The type of a data message."""

    TEXT = "text"
    BINARY = "binary"


class Message(NamedTuple):
    """A complete received message: ``str`` data for text, ``bytes`` for binary."""

    type: MessageType
    data: str | bytes


class Fragment(NamedTuple):
    """A piece of a message streamed with :meth:`Protocol.stream_message`, more to come: text
    pieces end on a character boundary. The message's last piece is a :class:`Message`."""

    type: MessageType
    data: str | bytes


class Ping(NamedTuple):
    """The peer sent a ping; the pong is already queued in ``data_to_send()``."""

    data: bytes


class Pong(NamedTuple):
    """The peer sent a pong."""

    data: bytes


class Close(NamedTuple):
    """The peer's close frame (code 1005 when it had none); the reply is already queued."""

    code: int
    reason: str

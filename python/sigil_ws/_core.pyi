"""Stubs of the Rust extension module ``sigil_ws._core`` (checked by mypy's stubtest)."""

from collections.abc import Iterable
from typing import Any, Literal, final

from typing_extensions import Buffer

from .events import Close, Fragment, Message, Ping, Pong
from .exceptions import ConnectionClosed
from .headers import Headers
from .state import State

__all__ = [
    "DEFAULTS",
    "Connection",
    "Fragments",
    "Protocol",
    "Redirects",
    "Tunnel",
    "__version__",
    "accept_key",
    "build_request",
    "check_option",
    "connect",
    "generate_key",
    "parse_proxy",
    "parse_status_line",
    "parse_url",
    "validate_response",
]

__version__: str
DEFAULTS: dict[str, Any]

@final
class Connection:
    """A WebSocket connection driven by blocking sockets.

    Every method is safe to call from any thread; ``send()`` never waits for a ``recv()``
    blocked in another thread. Create it with ``sigil_ws.connect()``.
    """

    def recv(self, timeout: float | None = None) -> str | bytes:
        """Receives the next message: ``str`` for text, ``bytes`` for binary.

        Blocks with the GIL released. Replies to pings, reassembles fragments and validates
        UTF-8 on the way.

        Raises:
            TimeoutError: no message within ``timeout``; the connection stays usable.
            ConnectionClosedOK: the peer closed normally (1000/1001, or no code).
            ConnectionClosedError: the connection failed or closed with another code.
            ConcurrencyError: another thread is already in ``recv()``.
        """

    def recv_streaming(self, timeout: float | None = None) -> Fragments:
        """Receives the next message in pieces as its frames arrive: ``str`` pieces for text
        (each ends on a character boundary), ``bytes`` for binary. Leaving the iteration
        early drops the rest of that message; meanwhile ``recv()`` raises
        ``ConcurrencyError``. ``timeout`` applies to each piece."""

    def send(
        self,
        message: str | Buffer | Iterable[str] | Iterable[Buffer],
        *,
        compress: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Sends a message: ``str`` as text, any bytes-like object as binary, an iterable of
        ``str`` (or of bytes-like objects) as one fragmented message, each fragment sent as
        the iterable produces it.

        ``compress=False`` sends it uncompressed when permessage-deflate was negotiated
        (a fragmented message is compressed as one DEFLATE stream, each fragment flushed as
        it is sent).

        ``timeout`` bounds the wait for a peer that does not read (``TimeoutError``; the
        connection is then failed, since a frame may be half-written); for an iterable, each
        fragment's wait.
        """

    def ping(self, data: str | Buffer | None = None) -> None:
        """Sends a ping (at most 125 bytes); the matching pong updates ``latency``."""

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Closes the connection: close frame, wait up to ``close_timeout``, close the socket."""

    def __enter__(self) -> Connection: ...
    def __exit__(self, *_args: object) -> None: ...
    def __iter__(self) -> Connection: ...
    def __next__(self) -> str | bytes: ...
    @property
    def state(self) -> State:
        """The connection state."""

    @property
    def url(self) -> str:
        """The URL as connected, normalised (``ws://host:port/path?query``)."""

    @property
    def host(self) -> str:
        """The host of the URL."""

    @property
    def port(self) -> int:
        """The port connected to."""

    @property
    def path(self) -> str:
        """The resource name: path and query."""

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, or ``None``."""

    @property
    def response_headers(self) -> Headers:
        """The headers of the server's 101 response."""

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed, else ``None``."""

    @property
    def close_reason(self) -> str | None:
        """The close reason once the connection is closed, else ``None``."""

    @property
    def latency(self) -> float:
        """Seconds of the last ping/pong round trip; 0.0 before any."""

    @property
    def extensions(self) -> list[tuple[str, dict[str, str | None]]]:
        """The negotiated extensions; ``[]`` when none."""

    @property
    def local_address(self) -> tuple[str, int]:
        """``(host, port)`` of the local end."""

    @property
    def remote_address(self) -> tuple[str, int]:
        """``(host, port)`` of the server."""

    def fileno(self) -> int:
        """The socket's file descriptor."""

@final
class Fragments:
    """The iterator ``Connection.recv_streaming()`` returns: the pieces of one message."""

    def __iter__(self) -> Fragments: ...
    def __next__(self) -> str | bytes: ...
    def close(self) -> None:
        """Stops the iteration; the rest of the message is dropped."""

@final
class Protocol:
    """The sans-IO WebSocket client engine: bytes in, events out; messages in, bytes out.

    Creating it queues the upgrade request. Feed what the socket reads to ``receive_data()``
    (and ``receive_eof()`` at end of stream), collect ``events()``, and after every call write
    ``data_to_send()`` to the socket. It does no I/O and starts no threads.

    Threads may share one: its calls are serialised, each running whole (a thread that finds
    another inside a call waits for it). A call made while the same thread is inside a call
    already (a finaliser that runs during it) raises ``RuntimeError``.
    """

    def __new__(
        cls,
        url: str,
        *,
        key: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        subprotocols: list[str] | None = None,
        origin: str | None = None,
        user_agent: str | None = ...,
        max_size: int | None = 16777216,
        compression: str | None = "deflate",
        tls: Any = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
    ) -> Protocol: ...
    def receive_data(self, data: Buffer) -> None:
        """Feeds bytes read from the socket."""

    def receive_eof(self) -> None:
        """Signals that the socket reached end of stream."""

    def events(self) -> list[Message | Fragment | Ping | Pong | Close]:
        """Every event the received bytes complete."""

    def receive_messages(
        self, data: Buffer, limit: int | None = None, defer_failure: bool = False
    ) -> list[str | bytes | Fragment]:
        """Feeds bytes; returns at most ``limit`` messages they complete (the drivers' fast
        path). What is not returned waits undecoded for the next call (``b""`` feeds nothing).

        A protocol violation after returned messages (or with ``defer_failure``) is left
        unread and ``failure_deferred`` turns true; call again once the messages are consumed.
        """

    @property
    def failure_deferred(self) -> bool:
        """True when a frame that breaks the protocol waits unread."""

    @property
    def buffered(self) -> int:
        """Bytes received and not decoded yet."""

    def next_timer(self) -> float | None:
        """Seconds from now until ``handle_timer()`` has work (0.0 when due), or ``None``."""

    def handle_timer(self) -> None:
        """Runs the keepalive: queues the ping that is due, or fails the connection with 1011
        when its pong is overdue and nothing arrived since it was sent. Feed what the socket
        holds first; do not call it while reading is paused for a slow application."""

    def abort(self) -> None:
        """The transport failed or a deadline passed: closed with 1006 unless already ended."""

    def closed_exception(self) -> ConnectionClosed | None:
        """How the connection ended, as the exception ``recv()`` raises; ``None`` while open."""

    def send_exception(self) -> ConnectionClosed | None:
        """The exception a send raises once closing or closed; ``None`` while it may send."""

    def send_text(self, text: str, compress: bool = True) -> None:
        """Queues a text message (compressed when permessage-deflate was negotiated)."""

    def send_binary(self, data: Buffer, compress: bool = True) -> None:
        """Queues a binary message (compressed when permessage-deflate was negotiated)."""

    def send_fragment(self, data: str | Buffer, fin: bool, *, compress: bool = True) -> None:
        """Queues one fragment of a message sent in pieces: the first starts a text (``str``)
        or binary message, ``fin=True`` ends it; no other message until then. With
        permessage-deflate negotiated the message is compressed unless its first fragment
        is sent with ``compress=False``."""

    @property
    def sending_fragments(self) -> bool:
        """True while a message is being sent in fragments."""

    def stream_message(self) -> None:
        """Hands the message under way, or else the next one, out in pieces as its frames
        arrive: a ``Fragment`` for each piece but the last, then a ``Message``."""

    def stop_streaming(self) -> None:
        """Stops streaming: the rest of a message partly handed out is dropped."""

    def send_ping(self, data: str | Buffer | None = None) -> None:
        """Queues a ping (at most 125 bytes); its pong updates ``latency``."""

    def send_pong(self, data: str | Buffer | None = None) -> None:
        """Queues a pong (at most 125 bytes)."""

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        """Starts the closing handshake; does nothing once closing."""

    def data_to_send(self, max_bytes: int | None = None) -> bytes:
        """The bytes to write to the socket, in order; empties the outgoing buffer.

        With ``max_bytes``, at most that many (every part but the last is that long): the
        rest waits for the next calls, before anything queued meanwhile. A driver that
        writes a large message in parts as the socket drains holds one copy of it, not two;
        a ``bytes`` or ``str`` message of 64 KiB or more sent uncompressed over ``ws://``
        is not copied at all, but masked part by part from the object sent.
        """

    def close_expected(self) -> bool:
        """True while the peer's close frame is awaited: arm a close timeout."""

    @property
    def tcp_close(self) -> Literal["now", "after_peer", "shut_write"] | None:
        """How to close TCP once the connection is over (RFC 6455 §7.1.1); ``None`` before.

        ``"now"``: close the socket. ``"after_peer"``: keep reading, discarding what arrives,
        until the peer's end of stream (the server closes first) or the close timeout, then
        close. ``"shut_write"``: the connection failed; shut the write side down once the close
        frame is written, then wait as for ``"after_peer"`` (closing a socket with unread bytes
        makes the kernel reset the connection, which can destroy the close frame unread).
        """

    @property
    def state(self) -> State:
        """The connection state."""

    @property
    def handshake_complete(self) -> bool:
        """True once the upgrade succeeded."""

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, or ``None``."""

    @property
    def response_headers(self) -> Headers:
        """The headers of the 101 response."""

    @property
    def close_code(self) -> int | None:
        """The close code once closed, else ``None``."""

    @property
    def close_reason(self) -> str | None:
        """The close reason once closed, else ``None``."""

    @property
    def latency(self) -> float:
        """Seconds of the last ping/pong round trip; 0.0 before any."""

    @property
    def extensions(self) -> list[tuple[str, dict[str, str | None]]]:
        """The negotiated extensions; ``[]`` when none."""

    @property
    def url(self) -> str:
        """The URL, normalised (``ws://host:port/path?query``)."""

    @property
    def host(self) -> str:
        """The host of the URL."""

    @property
    def port(self) -> int:
        """The port of the URL."""

    @property
    def path(self) -> str:
        """The resource name: path and query."""

    def set_journal(self, frames: bool) -> None:
        """Starts recording notes for a log: keepalive pings and the latency of pongs, and,
        when ``frames``, the header of every frame received and sent (never a payload). Take
        them with ``take_notes()``. Without it nothing is recorded."""

    @property
    def has_journal(self) -> bool:
        """True once ``set_journal()`` was called."""

    def take_notes(self) -> list[tuple[Any, ...]]:
        """The notes recorded since the last call, oldest first, as tuples:
        ``("frame", incoming, opcode, fin, rsv, length)``, ``("keepalive_ping",)``,
        ``("pong", latency, keepalive)``, and ``("dropped", count)`` first when more than 1024
        notes waited."""

    @property
    def closer(self) -> str | None:
        """Who ended the connection once it is closed, else ``None``: ``"us"`` (we started
        the closing handshake), ``"peer"``, ``"failure"`` (we failed it: a protocol or TLS
        error, a keepalive timeout) or ``"lost"`` (no closing handshake: 1006)."""

    @property
    def close_sent(self) -> tuple[int, str] | None:
        """The close frame we sent, ``(code, reason)``, or ``None``."""

    @property
    def close_received(self) -> tuple[int, str] | None:
        """The close frame the peer sent, ``(code, reason)``, or ``None``."""

def check_option(name: str, value: Any) -> Any:
    """Checks one option by name (timeouts, sizes) and returns it normalised."""

def connect(
    url: str,
    options: dict[str, Any],
    sock: int | None = None,
    *,
    logger: Any = None,
    journal: int = 0,
) -> Connection:
    """Opens a connection (the Rust half of ``sigil_ws.connect``). ``logger`` is the
    connection's logger; ``journal`` what the engine records for it (0 nothing, 1 keepalive
    notes, 2 frame headers too)."""

def parse_proxy(url: str) -> tuple[str, str, int]:
    """Parses a proxy URL into ``(scheme, host, port)`` (the credentials stay in Rust)."""

@final
class Tunnel:
    """One proxy handshake (HTTP CONNECT, SOCKS5, SOCKS4a), sans-IO: write ``data_to_send()``
    to the proxy, feed what it sends to ``receive_data()`` until that returns the bytes that
    followed its answer (the tunnel is open)."""

    def __new__(cls, proxy: str, host: str, port: int) -> Tunnel: ...
    def data_to_send(self) -> bytes:
        """Takes the bytes to write to the proxy."""

    def receive_data(self, data: bytes) -> bytes | None:
        """Feeds bytes from the proxy; returns what followed its answer once the tunnel is
        open, else ``None``."""

    def eof_error(self) -> Exception:
        """The error for a proxy that closed the connection before the tunnel was open."""

    @property
    def proxy(self) -> str:
        """The proxy as ``scheme://host:port``, never with its credentials."""

@final
class Redirects:
    """A redirect chain of the upgrade: the URL and request headers of each hop, and whether
    a refusal is followed."""

    def __new__(
        cls, url: str, max_redirects: int, headers: list[tuple[str, str]] | None = None
    ) -> Redirects: ...
    @property
    def url(self) -> str:
        """The URL of this hop, without credentials."""

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The request headers of this hop."""

    @property
    def chain(self) -> list[str]:
        """The URLs connected to so far."""

    def follow(self, status: int, location: str | None = None) -> bool:
        """After a refused upgrade: ``True`` to go on at the new ``url``, ``False`` when the
        refusal is final."""

def parse_url(url: str) -> tuple[str, str, int, str]:
    """Parses a ``ws://`` or ``wss://`` URL into ``(scheme, host, port, path)``."""

def generate_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64-encoded (24 characters)."""

def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a key: base64(SHA-1(key + RFC 6455 GUID))."""

def build_request(
    url: str,
    key: str,
    headers: list[tuple[str, str]] | None = None,
    subprotocols: list[str] | None = None,
) -> bytes:
    """The HTTP/1.1 upgrade request for ``url`` and ``key``."""

def parse_status_line(line: str | bytes) -> int:
    """The status code of an HTTP/1.x status line; raises ``HandshakeError``."""

def validate_response(response: bytes, key: str, subprotocols: list[str] | None = None) -> Headers:
    """Checks a complete upgrade response; returns its headers; raises ``HandshakeError``."""

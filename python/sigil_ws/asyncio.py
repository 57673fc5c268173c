"""The asyncio client: the Rust engine driven from an ``asyncio.BufferedProtocol``.

It runs on the event loop's own socket (no thread per connection): the transport reads into one
buffer that the thread's connections share (no new ``bytes`` object per read), and
``buffer_updated`` feeds the bytes to the engine and pulls at most as many complete messages as
the receive queue has room for (the engine decodes lazily, so the rest waits undecoded and
reading pauses); frames and TLS records go out through ``transport.write``. TLS is done by
rustls inside the engine, so ``wss://`` behaves the same as in the sync client.

Example:
    >>> import sigil_ws.asyncio
    >>> async def main() -> None:
    ...     async with sigil_ws.asyncio.connect("ws://127.0.0.1:8765") as ws:
    ...         await ws.send("hello")
    ...         print(await ws.recv())
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from . import _core, _logging, _options, _reconnect
from ._options import DEFAULT_USER_AGENT, HeadersLike
from .events import Fragment
from .exceptions import ConcurrencyError, ConnectionClosed, ConnectionClosedOK, InvalidStatus
from .headers import Headers
from .state import State
from .tls import TLSConfig

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["Connection", "connect", "reconnect"]

Data = str | bytes

_logger = logging.getLogger("sigil_ws")


# The receive queue of a connection with nothing queued. An empty deque costs 760 bytes, more
# than the rest of an idle connection's own state, so idle connections share this one. It is
# never mutated: pull() replaces an empty queue instead of extending it, and
# messages are popped only from a non-empty queue.
_NO_MESSAGES: collections.deque[Data] = collections.deque()
# The same for the pieces of a message received in pieces (recv_streaming).
_NO_PIECES: collections.deque[Data | Fragment] = collections.deque()
# The driver hands the transport at most this many bytes at a time, and more only while it
# is not paused: a large message is copied into the transport's buffer a part at a time.
_WRITE_PART = 256 * 2**10
# The transport reads into a buffer of this size (asyncio's own read size): one per thread,
# shared by the thread's connections. get_buffer(), the read and buffer_updated() run in one
# callback of the loop (asyncio, its SSL transport and uvloop alike), and the engine copies
# what it is given, so no connection finds another's bytes in it. (A proactor loop, whose reads
# complete later, exists only on Windows, where the extension does not build: it uses Unix
# file descriptors.) A new bytes object per read would cost more: a read buffer above glibc's
# mmap threshold is mapped, shrunk with mremap and unmapped on every read that returns less
# than a full buffer.
_READ_SIZE = 256 * 2**10
# How long the TCP close waits for the peer's end of stream when close_timeout is None: the
# connection may have been dropped, and its socket must not linger forever.
_LINGER_DEFAULT: float = _core.DEFAULTS["close_timeout"]
_read_buffers = threading.local()


def _read_buffer() -> memoryview:
    """This thread's read buffer."""
    try:
        return cast(memoryview, _read_buffers.view)
    except AttributeError:
        view = _read_buffers.view = memoryview(bytearray(_READ_SIZE))
        return view


class _Driver(asyncio.BufferedProtocol):
    """Moves bytes between the transport and the engine; owns the receive queue."""

    # Slots: an idle connection should cost as little memory as possible.
    __slots__ = (
        "close_timeout",
        "closed_logged",
        "drain_waiters",
        "engine",
        "fragmenting",
        "handshake",
        "is_lost",
        "is_terminated",
        "journal",
        "linger",
        "logger",
        "loop",
        "lost",
        "max_queue",
        "message_waiter",
        "messages",
        "opened",
        "pieces",
        "pieces_abandoned",
        "read_buffer",
        "reading_paused",
        "recv_in_progress",
        "streaming",
        "terminated",
        "timer",
        "transport",
        "write_limit",
        "writing_paused",
    )

    def __init__(
        self,
        engine: _core.Protocol,
        max_queue: int | None,
        write_limit: int,
        logger: _logging.Logger | None = None,
        close_timeout: float | None = _LINGER_DEFAULT,
    ) -> None:
        self.engine = engine
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.write_limit = write_limit
        self.loop = asyncio.get_running_loop()
        self.read_buffer = _read_buffer()
        self.transport: asyncio.Transport | None = None
        # Pending until the upgrade completes or fails; connect() drops it afterwards.
        self.handshake: asyncio.Future[None] | None = self.loop.create_future()
        self.messages = _NO_MESSAGES
        self.message_waiter: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        # The connection is lost / the engine terminated; the futures exist only once
        # close() waits for them.
        self.is_lost = False
        self.lost: asyncio.Future[None] | None = None
        self.is_terminated = False
        self.terminated: asyncio.Future[None] | None = None
        self.recv_in_progress = False
        # A message is received in pieces (recv_streaming): while it is, what the engine
        # hands out goes to `pieces` (Fragment objects, then the last piece, then any whole
        # messages after it), and `messages` stays empty.
        self.streaming = False
        self.pieces = _NO_PIECES
        # The iteration was collected unfinished (see abandon_later): its message is dropped
        # on the loop, before anything else receives.
        self.pieces_abandoned = False
        # Set while a message is sent in fragments: other sends wait for it.
        self.fragmenting: asyncio.Future[None] | None = None
        # The keepalive's next wake-up (engine.next_timer()), while the connection is open.
        self.timer: asyncio.TimerHandle | None = None
        # The end of the wait for the peer's end of stream, once the TCP close is under way
        # (see close_transport).
        self.linger: asyncio.TimerHandle | None = None
        # Logging: the engine records notes (DEBUG or TRACE was on at connect time); the
        # connection was handed to the application; its end was logged.
        self.logger = logger if logger is not None else _logger
        self.journal = engine.has_journal
        self.opened = False
        self.closed_logged = False

    # ---- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        # pause_writing() fires above write_limit, resume_writing() below a quarter of it.
        self.transport.set_write_buffer_limits(high=self.write_limit)
        self.flush()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.pull(self.read_buffer[:nbytes])

    def pull(self, data: Buffer = b"") -> None:
        """Feeds ``data`` and takes as many messages as the queue has room for."""
        if self.streaming:
            self.pull_pieces(data)
            return
        room = None if self.max_queue is None else self.max_queue - len(self.messages)
        try:
            # While messages wait in the queue, a violation is left unread so that the
            # application can still answer them; recv() applies it once the queue is empty.
            # (Fragment items come only while streaming, and go to pull_pieces.)
            messages: list[Data] = self.engine.receive_messages(  # type: ignore[assignment]
                data, room, bool(self.messages)
            )
        except BaseException as exc:  # a refused upgrade, a failed TLS handshake
            self.fail_handshake(exc)
            return
        if messages:
            if self.messages:
                self.messages.extend(messages)
            else:
                self.messages = collections.deque(messages)
            self.wake_receiver()
        self.after_input()

    def pull_pieces(self, data: Buffer) -> None:
        """``pull`` while a message is received in pieces."""
        room = None if self.max_queue is None else self.max_queue - len(self.pieces)
        try:
            items = self.engine.receive_messages(data, room, bool(self.pieces))
        except BaseException as exc:
            self.fail_handshake(exc)
            return
        if items:
            if self.pieces:
                self.pieces.extend(items)
            else:
                self.pieces = collections.deque(items)
            self.wake_receiver()
        self.after_input()

    def start_pieces(self) -> None:
        """The next message is received in pieces (the message queue is empty)."""
        self.streaming = True
        self.engine.stream_message()

    def end_pieces(self) -> None:
        """Its last piece was taken: what came after it are whole messages."""
        self.streaming = False
        # Past the last piece, the engine handed out whole messages only.
        self.messages = cast("collections.deque[Data]", self.pieces)
        self.pieces = _NO_PIECES

    def abandon_pieces(self) -> None:
        """The application stopped reading the message: the rest of it is dropped."""
        if not self.streaming:
            return
        pieces = self.pieces
        while pieces:
            if not isinstance(pieces.popleft(), Fragment):
                # Its last piece had arrived: the engine hands out whole messages again.
                self.end_pieces()
                self.after_input()
                return
        self.engine.stop_streaming()
        self.end_pieces()
        self.after_input()

    def abandon_later(self) -> None:
        """A ``recv_streaming()`` iteration was finalised before its message ended. That runs
        in whatever thread collects it, maybe in the middle of the driver's own code (a
        collection inside an allocation): the rest is dropped later, on the loop, by
        ``reap_pieces()``, as soon as the loop turns or something receives."""
        self.pieces_abandoned = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing reads anymore
            self.loop.call_soon_threadsafe(self.reap_pieces)

    def reap_pieces(self) -> None:
        """On the loop: drops the message of an iteration finalised unfinished."""
        if self.pieces_abandoned:
            self.pieces_abandoned = False
            self.abandon_pieces()

    def pop_piece(self) -> Data | Fragment:
        pieces = self.pieces
        piece = pieces.popleft()
        if not pieces and self.reading_paused:
            self.pull()
        return piece

    def eof_received(self) -> bool:
        self.engine.receive_eof()
        self.pull()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        # What arrived is still delivered (pulled as the queue empties); then the engine
        # reports 1006 unless it ended otherwise.
        self.is_lost = True
        self.engine.receive_eof()
        self.pull()
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(
                exc or ConnectionResetError("connection closed during the opening handshake")
            )
        self.is_lost = True
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)
        self.mark_terminated()
        self.release_drain_waiters()
        self.cancel_timer()
        if self.linger is not None:
            self.linger.cancel()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.flush()
        if not self.writing_paused:
            # Everything queued is in the transport (a large message may have paused it
            # again: the waiters wait for the rest).
            self.release_drain_waiters()

    def release_drain_waiters(self) -> None:
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.drain_waiters.clear()

    # ---- engine plumbing ------------------------------------------------------------------

    def flush(self) -> None:
        """Writes whatever the engine queued, unless the transport holds more than
        ``write_limit`` already: then the bytes wait in the engine, where pongs coalesce to
        the latest one (a peer that pings and never reads cannot make memory grow).

        The bytes go in parts of ``_WRITE_PART`` until the transport pauses: a large
        message waits in the engine, not copied whole into the transport's buffer too."""
        if self.journal:
            self.log_notes()
        if self.writing_paused:
            return
        data = self.engine.data_to_send(_WRITE_PART)
        if not data:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            # Nowhere to write: what is queued is dropped (in parts: a large message kept
            # in the caller's object is not copied whole to be thrown away).
            while self.engine.data_to_send(_WRITE_PART):
                pass
            return
        transport.write(data)
        while len(data) == _WRITE_PART and not self.writing_paused:
            data = self.engine.data_to_send(_WRITE_PART)
            if not data or transport.is_closing():
                return
            transport.write(data)

    def flush_all(self) -> None:
        """Writes everything queued, paused or not (the transport is about to close, and
        flushes its buffer first)."""
        data = self.engine.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def after_input(self) -> None:
        self.flush()
        if (
            self.handshake is not None
            and not self.handshake.done()
            and self.engine.handshake_complete
        ):
            self.handshake.set_result(None)
            self.arm_timer()
        if self.engine.state is State.CLOSED:
            self.mark_terminated()
            self.close_transport()
        elif self.transport is not None and not self.is_lost:
            queued = len(self.pieces) if self.streaming else len(self.messages)
            full = self.engine.failure_deferred or (
                self.max_queue is not None and queued >= self.max_queue
            )
            if full and not self.reading_paused:
                # Stop reading so that a consumer that stops never makes memory grow: what
                # was read waits undecoded in the engine.
                self.transport.pause_reading()
                self.reading_paused = True
            elif not full and self.reading_paused:
                self.reading_paused = False
                self.transport.resume_reading()
                self.arm_timer()

    def close_transport(self) -> None:
        """Closes TCP once the connection is over, as the engine says (``tcp_close``, RFC 6455
        §7.1.1): at once, or once the peer's end of stream arrives (``eof_received`` lets the
        transport close itself), reading and discarding until then, for ``close_timeout`` at
        most. After a failure the write side is shut down first, once the close frame is
        written (``write_eof`` waits for the buffer): closing a socket with unread bytes makes
        the kernel reset the connection, which can destroy the close frame before the peer
        reads it. Nothing awaits this: ``recv()`` raises at once."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.linger is not None:
            return
        how = self.engine.tcp_close
        if how is None:  # not over yet
            return
        self.flush_all()
        if how != "now" and not self.is_lost:
            if how == "shut_write" and transport.can_write_eof():
                transport.write_eof()
            if self.reading_paused:
                # Nothing is decoded any more (RFC 6455 §7.1.7: an endpoint that failed the
                # connection "MUST NOT continue to attempt to process data"): read on to the
                # end of stream.
                self.reading_paused = False
                transport.resume_reading()
            wait = _LINGER_DEFAULT if self.close_timeout is None else self.close_timeout
            self.linger = self.loop.call_later(wait, self.linger_expired)
            return
        transport.close()

    def linger_expired(self) -> None:
        """The peer did not close TCP within ``close_timeout``: RFC 6455 §7.1.1, "In abnormal
        cases (such as not having received a TCP Close from the server after a reasonable
        amount of time) a client MAY initiate the TCP Close"."""
        if self.transport is not None:
            self.transport.abort()

    # ---- keepalive ------------------------------------------------------------------------

    def arm_timer(self) -> None:
        """Sets the wake-up for the engine's next keepalive deadline, if it has one."""
        self.cancel_timer()
        delay = self.engine.next_timer()
        if delay is not None:
            self.timer = self.loop.call_later(delay, self.on_timer)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def on_timer(self) -> None:
        # Read before judging: a loop that was blocked may have the pong in the socket
        # already. A zero-delay timer runs after the loop has polled the sockets once more
        # (asyncio and uvloop alike), so what arrived meanwhile is fed first.
        self.timer = self.loop.call_later(0, self.run_timer)

    def run_timer(self) -> None:
        self.timer = None
        if self.reading_paused:
            # The application is behind: the pong may wait in the socket behind messages.
            # The timer is armed again when reading resumes.
            return
        self.engine.handle_timer()
        self.after_input()
        if self.engine.state is State.OPEN:
            self.arm_timer()

    def fail_handshake(self, exc: BaseException) -> None:
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(exc)
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def log_notes(self) -> None:
        """Logs what the engine recorded (frames at TRACE, keepalive at DEBUG)."""
        notes = self.engine.take_notes()
        if notes:
            _logging.log_notes(self.logger, self.engine.url, notes)

    def log_closed(self) -> None:
        """Logs the end of the connection, once."""
        engine = self.engine
        closer = engine.closer
        if self.closed_logged or closer is None:
            return
        self.closed_logged = True
        if self.journal:
            self.log_notes()
        _logging.log_closed(
            self.logger,
            engine.url,
            closer,
            engine.close_code or 1006,
            engine.close_reason or "",
            engine.close_sent,
            engine.close_received,
        )

    def mark_terminated(self) -> None:
        if self.opened and not self.closed_logged:
            self.log_closed()
        self.cancel_timer()
        self.is_terminated = True
        if self.terminated is not None and not self.terminated.done():
            self.terminated.set_result(None)
        self.wake_receiver()

    async def wait_terminated(self) -> None:
        if not self.is_terminated:
            if self.terminated is None:
                self.terminated = self.loop.create_future()
            await asyncio.shield(self.terminated)

    async def wait_lost(self) -> None:
        if not self.is_lost:
            if self.lost is None:
                self.lost = self.loop.create_future()
            await asyncio.shield(self.lost)

    def wake_receiver(self) -> None:
        if self.message_waiter is not None and not self.message_waiter.done():
            self.message_waiter.set_result(None)

    def pop_message(self) -> Data:
        messages = self.messages
        message = messages.popleft()
        if not messages and self.reading_paused:
            self.refill(messages)
        return message

    def refill(self, messages: collections.deque[Data]) -> None:
        """The queue ran dry while reading is paused: decode the next batch that waits in the
        engine. The message just popped is not handled yet, so a violation stays deferred
        (the next recv() on an empty queue applies it)."""
        engine = self.engine
        if engine.failure_deferred:
            return
        batch: list[Data] = engine.receive_messages(  # type: ignore[assignment]
            b"", self.max_queue, True
        )
        messages.extend(batch)
        if len(batch) < (self.max_queue or 0) or engine.failure_deferred:
            # The engine ran dry (or stopped at a violation): replies out, read on.
            self.after_input()

    async def drain(self) -> None:
        if self.writing_paused and not self.is_lost:
            waiter = self.loop.create_future()
            self.drain_waiters.append(waiter)
            await waiter

    def abort(self) -> None:
        """Gives up on the connection (a deadline passed): 1006 unless it already ended."""
        self.cancel_timer()
        if self.transport is not None:
            self.transport.abort()
        self.engine.abort()
        self.mark_terminated()


async def _async_items(items: Iterable[Any]) -> AsyncGenerator[Any, None]:
    for item in items:
        yield item


class _Pieces:
    """The async iterator :meth:`Connection.recv_streaming` returns."""

    __slots__ = ("_connection", "_state", "_timeout")

    def __init__(self, connection: Connection, timeout: float | None) -> None:
        self._connection = connection
        self._timeout = timeout
        # "new", "armed" (no piece taken yet), "started", "done"
        self._state = "new"

    def __aiter__(self) -> _Pieces:
        return self

    async def __anext__(self) -> Data:
        if self._state == "done":
            raise StopAsyncIteration
        connection = self._connection
        driver = connection._driver
        if self._state == "new":
            if driver.pieces_abandoned:
                driver.reap_pieces()
            if driver.streaming:
                raise ConcurrencyError("another recv_streaming() iteration is under way")
            if driver.messages:
                # A whole message came first: it is its own one piece.
                self._state = "done"
                return driver.pop_message()
            if driver.recv_in_progress:
                raise ConcurrencyError(
                    "cannot receive while another coroutine is already running recv()"
                )
            driver.start_pieces()
            self._state = "armed"
        try:
            item = await connection._next_piece(self._timeout)
        except ConnectionClosed:
            self._state = "done"
            driver.end_pieces()
            raise
        if isinstance(item, Fragment):
            self._state = "started"
            return item.data
        started = self._state == "started"
        self._state = "done"
        driver.end_pieces()
        if started and not item:
            # A message sent with an empty last frame ends without an empty piece.
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stops the iteration; the rest of the message is dropped."""
        self._stop()

    def _stop(self) -> None:
        if self._state in ("armed", "started"):
            self._connection._driver.abandon_pieces()
        self._state = "done"

    def __del__(self) -> None:
        if self._state in ("armed", "started"):
            self._state = "done"
            self._connection._driver.abandon_later()


class Connection:
    """An asyncio WebSocket connection. Create it with :func:`connect`.

    Same members as the sync :class:`sigil_ws.Connection`, awaited where they do I/O.
    """

    __slots__ = (
        "__weakref__",
        "_close_timeout",
        "_driver",
        "_engine",
        "_fileno",
        "_transport",
    )

    def __init__(self, driver: _Driver, close_timeout: float | None) -> None:
        self._driver = driver
        self._engine = driver.engine
        self._close_timeout = close_timeout
        assert driver.transport is not None
        self._transport = driver.transport
        sock = self._transport.get_extra_info("socket")
        self._fileno: int = sock.fileno() if sock is not None else -1

    # ---- receiving ------------------------------------------------------------------------

    async def recv(self, timeout: float | None = None) -> Data:
        """Receive the next message: ``str`` for text, ``bytes`` for binary.

        Cancelling it loses no message and leaves the connection usable.

        Args:
            timeout: seconds to wait; ``None`` waits forever.

        Raises:
            TimeoutError: no message within ``timeout``; the connection stays usable.
            ConnectionClosedOK: the peer closed normally (1000/1001, or no code).
            ConnectionClosedError: the connection failed or closed with another code.
            ConcurrencyError: another coroutine is already in ``recv()``.
        """
        if timeout is not None:
            # Checked before a queued message is taken, as the sync client does.
            timeout = _options.timeout("timeout", timeout)
        driver = self._driver
        if driver.messages:
            return driver.pop_message()
        if driver.pieces_abandoned:
            driver.reap_pieces()
            if driver.messages:
                return driver.pop_message()
        if driver.recv_in_progress:
            raise ConcurrencyError(
                "cannot call recv() while another coroutine is already running recv()"
            )
        if driver.streaming:
            raise ConcurrencyError(
                "cannot call recv() while a recv_streaming() iteration is under way"
            )
        driver.recv_in_progress = True
        try:
            if timeout is None:
                # No deadline to arm (asyncio.timeout(None) costs a context manager per wait).
                await self._messages_queued(driver)
            else:
                async with asyncio.timeout(timeout):
                    await self._messages_queued(driver)
        except TimeoutError:
            raise TimeoutError("timed out waiting for a message") from None
        finally:
            driver.recv_in_progress = False
        return driver.pop_message()

    async def _messages_queued(self, driver: _Driver) -> None:
        """Waits until a message is queued (``recv()`` on an empty queue)."""
        while not driver.messages:
            # Messages wait undecoded in the engine only if the queue filled up or a violation
            # was held back behind them, and either pauses reading (after_input). Else every
            # message that arrived was taken by buffer_updated(), and pulling would find
            # nothing. (A lost connection leaves reading_paused as it was; it pulls anyway, so
            # that nothing left in the engine can be missed once no more input comes.)
            if driver.reading_paused or driver.is_lost:
                driver.pull()
                if driver.messages:
                    return
            exc = self._engine.closed_exception()
            if exc is not None:
                driver.close_transport()
                raise exc
            # Waiting on an empty queue: let it go (see _NO_MESSAGES).
            driver.messages = _NO_MESSAGES
            driver.message_waiter = driver.loop.create_future()
            try:
                await driver.message_waiter
            finally:
                driver.message_waiter = None

    async def _pieces_queued(self, driver: _Driver) -> None:
        """Waits until a piece of the message under way is queued."""
        while not driver.pieces:
            driver.pull()
            if driver.pieces:
                return
            exc = self._engine.closed_exception()
            if exc is not None:
                driver.close_transport()
                raise exc
            driver.message_waiter = driver.loop.create_future()
            try:
                await driver.message_waiter
            finally:
                driver.message_waiter = None

    def recv_streaming(self, timeout: float | None = None) -> AsyncIterator[Data]:
        """Receive the next message in pieces as its frames arrive.

        ``async for piece in ws.recv_streaming():`` yields ``str`` pieces for a text message
        (each ends on a character boundary) or ``bytes`` pieces for a binary one. UTF-8 and
        ``max_size`` apply to the whole message, as for :meth:`recv`. Stopping before the
        last piece (leaving the loop, ``aclose()``) drops the rest of that message. While the
        iteration is under way, :meth:`recv` raises ``ConcurrencyError``.

        Args:
            timeout: seconds to wait for each piece; ``None`` waits forever.

        Raises (from the iteration):
            TimeoutError: no piece within ``timeout``; the iteration may go on.
            ConnectionClosedOK, ConnectionClosedError: as for :meth:`recv`.
            ConcurrencyError: another coroutine is receiving.
        """
        if timeout is not None:
            timeout = _options.timeout("timeout", timeout)
        return _Pieces(self, timeout)

    async def _next_piece(self, timeout: float | None) -> Data | Fragment:
        """The next item of a message received in pieces: a ``Fragment``, then the last piece."""
        driver = self._driver
        if driver.pieces:
            return driver.pop_piece()
        if driver.recv_in_progress:
            raise ConcurrencyError(
                "cannot receive while another coroutine is already running recv()"
            )
        driver.recv_in_progress = True
        try:
            if timeout is None:
                await self._pieces_queued(driver)
            else:
                async with asyncio.timeout(timeout):
                    await self._pieces_queued(driver)
        except TimeoutError:
            raise TimeoutError("timed out waiting for a message") from None
        finally:
            driver.recv_in_progress = False
        return driver.pop_piece()

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> Data:
        """The next message; the iteration ends on a normal close (1000/1001)."""
        driver = self._driver
        messages = driver.messages
        if messages:
            # The hot path: no further coroutine, and pop_message() inlined (a Python call
            # is about 1 % of a compressed 1 KiB message's cost here).
            message = messages.popleft()
            if not messages and driver.reading_paused:
                driver.refill(messages)
            return message
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    # ---- sending --------------------------------------------------------------------------

    def _check_open(self) -> None:
        exc = self._engine.send_exception()
        if exc is not None:
            raise exc

    async def send(
        self,
        message: str
        | Buffer
        | Iterable[str]
        | Iterable[Buffer]
        | AsyncIterable[str]
        | AsyncIterable[Buffer],
        *,
        compress: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary; an iterable or async
        iterable of ``str`` (or of bytes-like objects) as one fragmented message.

        Waits while the transport holds more than ``write_limit`` bytes. Each fragment goes
        out as soon as the iterable produces it, and an empty last frame ends the message;
        meanwhile other sends wait (RFC 6455 §5.4: no other message between the fragments).
        An empty iterable sends nothing. If the iterable raises, or a fragment is of the
        wrong type, once part of the message is sent the connection is failed with 1011.

        Args:
            message: the message.
            compress: with permessage-deflate negotiated, ``False`` sends this message
                uncompressed.
            timeout: seconds to wait for a peer that does not read (for an iterable, for
                each fragment); ``None`` waits forever.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TimeoutError: ``timeout`` passed; the connection is then failed.
            TypeError: the message is neither text, a bytes-like object nor an iterable of
                them (a mapping is refused), or mixes text and binary fragments.
        """
        if timeout is not None:
            timeout = _options.timeout("timeout", timeout)
        exc = self._engine.send_exception()
        if exc is not None:
            raise exc
        try:
            if isinstance(message, str):
                self._engine.send_text(message, compress)
            else:
                # Not bytes-like: TypeError, then it may be an iterable of fragments.
                self._engine.send_binary(message, compress)  # type: ignore[arg-type]
        except TypeError:
            await self._send_fragments(message, compress, timeout)
            return
        except ConcurrencyError:
            # Another coroutine sends a message in fragments: this one goes after it.
            await self._fragments_sent()
            await self.send(message, compress=compress, timeout=timeout)
            return
        driver = self._driver
        driver.flush()
        if driver.writing_paused:
            # The transport holds more than write_limit: wait for the peer to read.
            await self._drain(timeout)

    async def _drain(self, timeout: float | None) -> None:
        self._driver.flush()
        if timeout is None:
            await self._driver.drain()
            return
        try:
            async with asyncio.timeout(timeout):
                await self._driver.drain()
        except TimeoutError:
            # Part of the message may be in the transport: the stream cannot go on.
            self._driver.abort()
            raise TimeoutError("timed out waiting for the peer to read") from None

    async def _fragments_sent(self) -> None:
        """Waits until no message is being sent in fragments."""
        while (waiter := self._driver.fragmenting) is not None:
            await asyncio.shield(waiter)

    async def _send_fragments(self, message: object, compress: bool, timeout: float | None) -> None:
        """``send()`` of an iterable or async iterable: one message in fragments, each sent
        (and drained) as it is produced."""
        kind = type(message).__name__
        if isinstance(message, Mapping) or not isinstance(message, Iterable | AsyncIterable):
            raise TypeError(
                "message must be str, a bytes-like object or an (async) iterable of them, "
                f"not {kind}"
            )
        # A generator of ours over a plain iterable is closed here, not left to the loop's
        # finaliser: a failed send would otherwise leave it for a later collection, which may
        # come after the loop has closed (seen on free-threaded CPython).
        own: AsyncGenerator[Any, None] | None = None
        if isinstance(message, AsyncIterable):
            items: AsyncIterator[Any] = aiter(message)
        else:
            items = own = _async_items(message)
        await self._fragments_sent()
        driver = self._driver
        driver.fragmenting = driver.loop.create_future()
        # Each fragment goes out as soon as the iterable produces it (a stream of tokens is
        # not held back by one); an empty last frame ends the message.
        text: bool | None = None
        try:
            async for fragment in items:
                if text is None:
                    text = isinstance(fragment, str)
                self._check_open()
                self._engine.send_fragment(fragment, False, compress=compress)
                await self._drain(timeout)
            if text is not None:
                self._check_open()
                self._engine.send_fragment("" if text else b"", True)
                await self._drain(timeout)
        except BaseException:
            # Half a message may be on the wire: nothing else can follow it.
            if self._engine.sending_fragments and self._engine.state is State.OPEN:
                self._engine.send_close(1011, "error in fragmented message")
                driver.flush()
            raise
        finally:
            if own is not None:
                await own.aclose()
            waiter, driver.fragmenting = driver.fragmenting, None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def ping(self, data: str | Buffer | None = None) -> None:
        """Send a ping (at most 125 bytes); the matching pong updates :attr:`latency`."""
        self._check_open()
        self._engine.send_ping(data)
        self._driver.flush()
        await self._driver.drain()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close: send a close frame, wait up to ``close_timeout`` for the peer's, close the
        socket. Idempotent.

        Raises:
            ValueError: the code may not be sent or the reason exceeds 123 bytes.
        """
        driver = self._driver
        # Checks the arguments, also once closed; does nothing more then.
        self._engine.send_close(code, reason)
        driver.flush()
        try:
            async with asyncio.timeout(self._close_timeout):
                await driver.wait_terminated()
                # RFC 6455 §7.1.1: the client "SHOULD wait for a TCP Close from the server".
                driver.close_transport()
                await driver.wait_lost()
        except TimeoutError:
            driver.abort()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- attributes -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The connection state."""
        return self._engine.state

    @property
    def url(self) -> str:
        """The URL as connected, normalised (``ws://host:port/path?query``)."""
        return self._engine.url

    @property
    def host(self) -> str:
        """The host of the URL."""
        return self._engine.host

    @property
    def port(self) -> int:
        """The port connected to."""
        return self._engine.port

    @property
    def path(self) -> str:
        """The resource name: path and query."""
        return self._engine.path

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, or ``None``."""
        return self._engine.subprotocol

    @property
    def response_headers(self) -> Headers:
        """The headers of the server's 101 response."""
        return self._engine.response_headers

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed, else ``None``."""
        return self._engine.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason once the connection is closed, else ``None``."""
        return self._engine.close_reason

    @property
    def latency(self) -> float:
        """Seconds of the last ping/pong round trip; 0.0 before any."""
        return self._engine.latency

    @property
    def extensions(self) -> list[tuple[str, dict[str, str | None]]]:
        """The negotiated extensions, e.g. ``[("permessage-deflate", {})]``; ``[]`` when none."""
        return self._engine.extensions

    @property
    def local_address(self) -> tuple[str, int]:
        """``(host, port)`` of the local end."""
        return _address(self._transport.get_extra_info("sockname"))

    @property
    def remote_address(self) -> tuple[str, int]:
        """``(host, port)`` of the server."""
        return _address(self._transport.get_extra_info("peername"))

    def fileno(self) -> int:
        """The socket's file descriptor."""
        return self._fileno

    def __repr__(self) -> str:
        return f"<sigil_ws.asyncio.Connection {self.url} {self.state.name}>"


def _address(name: Any) -> tuple[str, int]:
    """``(host, port)`` of a socket name; a Unix socket's path (``""`` unnamed) with port 0."""
    if isinstance(name, (str, bytes)) or name is None:
        return (os.fsdecode(name or ""), 0)
    return (name[0], name[1])


class _TunnelProtocol(asyncio.Protocol):
    """Moves the bytes of a proxy handshake between the transport and a ``_core.Tunnel``."""

    def __init__(self, tunnel: _core.Tunnel) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.tunnel.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self.done.done() or self.transport is None:
            return
        try:
            rest = self.tunnel.receive_data(data)
        except BaseException as exc:  # the proxy refused: ProxyError
            self.done.set_exception(exc)
            return
        out = self.tunnel.data_to_send()
        if out:
            self.transport.write(out)
        if rest is not None:
            # Nothing more is read until the WebSocket driver takes the transport over.
            self.transport.pause_reading()
            self.done.set_result(rest)

    def eof_received(self) -> bool:
        if not self.done.done():
            self.done.set_exception(self.tunnel.eof_error())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(self.tunnel.eof_error() if exc is None else exc)


# RFC 8305 §5: "The recommended value for a default delay is 250 milliseconds." (the
# Connection Attempt Delay between the first IPv6 attempt and the next family's).
_HAPPY_EYEBALLS_DELAY = 0.25


def _happy_eyeballs(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """Happy Eyeballs for the standard event loop (its ``create_connection`` races the
    addresses, alternating families). uvloop has no such option: it tries them in turn."""
    if isinstance(loop, asyncio.BaseEventLoop):
        return {"happy_eyeballs_delay": _HAPPY_EYEBALLS_DELAY, "interleave": 1}
    return {}


async def _route(
    engine: _core.Protocol,
    factory: Callable[[], _Driver],
    proxy: str | None,
    unix_socket: str | None,
    sock: socket.socket | None,
    logger: _logging.Logger = _logger,
) -> tuple[asyncio.Transport, _Driver]:
    """Connects to the engine's server along the route: a given socket, a Unix socket, a proxy
    tunnel or TCP (with Happy Eyeballs)."""
    loop = asyncio.get_running_loop()
    if sock is not None:
        return await loop.create_connection(factory, sock=sock)
    if unix_socket is not None:
        return await loop.create_unix_connection(factory, unix_socket)
    if proxy is None:
        return await loop.create_connection(
            factory,
            engine.host,
            engine.port,
            **_happy_eyeballs(loop),
        )
    scheme, proxy_host, proxy_port = _core.parse_proxy(proxy)
    target = engine.host
    if scheme == "socks5":
        # socks5:// sends the proxy an address: the name is resolved here.
        infos = await loop.getaddrinfo(target, engine.port, type=socket.SOCK_STREAM)
        target = str(infos[0][4][0])
    tunnel = _core.Tunnel(proxy, target, engine.port)
    context = ssl.create_default_context() if scheme == "https" else None
    transport, handshake = await loop.create_connection(
        lambda: _TunnelProtocol(tunnel),
        proxy_host,
        proxy_port,
        ssl=context,
        **_happy_eyeballs(loop),
    )
    try:
        rest = await handshake.done
    except BaseException:
        transport.abort()
        raise
    _logging.log_tunnel(logger, tunnel.proxy, engine.host, engine.port)
    driver = factory()
    transport.set_protocol(driver)
    driver.connection_made(transport)
    transport.resume_reading()
    if rest:
        driver.pull(rest)
    return transport, driver


async def _open(
    url: str,
    options: dict[str, Any],
    max_queue: int | None,
    write_limit: int,
    sock: socket.socket | None = None,
    logger: _logging.Logger = _logger,
) -> Connection:
    """Connects with options that ``_options.connect_options`` normalised, following
    redirects with the engine's rules (``_core.Redirects``)."""
    options = dict(options)
    open_timeout = options.pop("open_timeout")
    close_timeout = options.pop("close_timeout")
    proxy = options.pop("proxy")
    unix_socket = options.pop("unix_socket")
    # A given socket serves one request: no redirect can be followed on it.
    max_redirects = 0 if sock is not None else options.pop("max_redirects")
    options.pop("max_redirects", None)
    redirects = _core.Redirects(url, max_redirects, options.pop("headers"))
    journal = _logging.journal_mode(logger)
    transport: asyncio.Transport | None = None
    try:
        async with asyncio.timeout(open_timeout):
            while True:
                engine = _core.Protocol(redirects.url, headers=redirects.headers, **options)
                if journal:
                    engine.set_journal(journal == 2)
                transport, driver = await _route(
                    engine,
                    functools.partial(
                        _Driver, engine, max_queue, write_limit, logger, close_timeout
                    ),
                    proxy,
                    unix_socket,
                    sock,
                    logger,
                )
                sock = None
                raw = transport.get_extra_info("socket")
                if raw is not None and raw.family in (socket.AF_INET, socket.AF_INET6):
                    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                assert driver.handshake is not None
                try:
                    await driver.handshake
                except InvalidStatus as exc:
                    transport.abort()
                    transport = None
                    if not redirects.follow(exc.status_code, exc.headers.get("Location")):
                        raise
                    _logging.log_redirect(logger, exc.status_code, redirects.url)
                    continue
                driver.handshake = None
                connection = Connection(driver, close_timeout)
                driver.opened = True
                _logging.log_opened(logger, connection, redirects.headers)
                if driver.is_terminated:  # the server closed at once
                    driver.log_closed()
                return connection
    except TimeoutError:
        if transport is not None:
            transport.abort()
        timeout = TimeoutError("timed out during the opening handshake")
        _logging.log_failed(logger, url, timeout)
        raise timeout from None
    except BaseException as failure:
        if isinstance(failure, Exception):
            _logging.log_failed(logger, url, failure)
        # Includes cancellation: never leave a socket open behind a failed connect().
        if transport is not None:
            transport.abort()
        raise


class connect:
    """Open a WebSocket connection: ``await connect(...)`` or ``async with connect(...)``.

    Takes the options of :func:`sigil_ws.connect`, plus:

    Args:
        max_queue: received messages held before reading from the socket pauses;
            ``None`` for no bound.
        write_limit: bytes buffered in the transport above which ``send()`` waits for it to
            drain.
        logger: the ``logging.Logger`` (or ``LoggerAdapter``, or a logger's name) this
            connection logs on; ``None`` is ``logging.getLogger("sigil_ws")``. INFO: opened
            and closed (who closed, the codes); DEBUG: the handshake, proxy and redirect hops,
            keepalive pings and their latency; ``sigil_ws.TRACE``: every frame's header.
            Whether DEBUG and TRACE are on is read once, when the connection opens.
    """

    def __init__(
        self,
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
        write_limit: int = 32 * 2**10,
        tls: TLSConfig | None = None,
        proxy: str | bool | None = True,
        max_redirects: int = 10,
        unix_socket: str | os.PathLike[str] | None = None,
        sock: socket.socket | None = None,
        logger: _logging.LoggerLike = None,
    ) -> None:
        # Checked here, so that bad options raise at the call as in the sync client.
        self._logger = _logging.resolve(logger)
        self._options = _options.connect_options(
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
        if sock is not None and not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
        if isinstance(sock, ssl.SSLSocket):
            raise TypeError("sock must be a plain socket: TLS for wss:// is done on it by sigil-ws")
        self._sock = sock
        self._max_queue = _options.size("max_queue", max_queue)
        self._write_limit = cast(int, _options.size("write_limit", write_limit))
        self._url = url
        self._connection: Connection | None = None

    def _open(self) -> Awaitable[Connection]:
        sock, self._sock = self._sock, None  # a socket serves one connection
        return _open(
            self._url, self._options, self._max_queue, self._write_limit, sock, self._logger
        )

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._open().__await__()

    def __aiter__(self) -> AsyncIterator[Connection]:
        """``async for ws in connect(...)``: reconnects after each loss, with the default
        backoff (see :func:`reconnect` to choose it)."""
        return _reconnecting(self, _reconnect.Backoff())

    async def __aenter__(self) -> Connection:
        self._connection = await self._open()
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.close()


async def _reconnecting(opener: connect, backoff: _reconnect.Backoff) -> AsyncIterator[Connection]:
    """The reconnect loop of ``async for``: the same rules as ``sigil_ws.reconnect``."""
    if opener._sock is not None:
        raise TypeError("cannot reconnect with sock: a given socket serves one connection")
    attempt = 0
    while True:
        attempt += 1
        try:
            ws = await opener._open()
        except Exception as exc:
            if not _reconnect.retryable(exc):
                raise
            delay = backoff.next_delay()
            _reconnect.log_retry(opener._url, exc, delay, attempt, opener._logger)
            await asyncio.sleep(delay)
            continue
        uptime = _reconnect.Uptime(backoff)
        try:
            yield ws
        finally:
            await ws.close()
        if uptime.stayed_up():
            backoff.reset()
            attempt = 0
        else:
            delay = backoff.next_delay()
            _reconnect.log_lost(
                opener._url, time.monotonic() - uptime.opened, delay, opener._logger
            )
            await asyncio.sleep(delay)


def reconnect(
    url: str,
    *,
    backoff_initial: float = _reconnect.BACKOFF_INITIAL,
    backoff_max: float = _reconnect.BACKOFF_MAX,
    backoff_factor: float = _reconnect.BACKOFF_FACTOR,
    **options: Any,
) -> AsyncIterator[Connection]:
    """``async for ws in reconnect(url, ...)``: a new open connection after each loss.

    The rules of :func:`sigil_ws.reconnect` (backoff with full jitter, which failures are
    retried); ``options`` are those of :func:`connect` (``sock`` excepted).

    Raises:
        TypeError: ``sock`` was given.
        ValueError: a backoff or connect option is out of range (at the call).
    """
    if "sock" in options:
        raise TypeError("reconnect() cannot take sock: a given socket serves one connection")
    backoff = _reconnect.Backoff(backoff_initial, backoff_max, backoff_factor)
    return _reconnecting(connect(url, **options), backoff)

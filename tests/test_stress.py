"""Thread-safety stress, bounded in time, for GIL and free-threaded builds alike.

Each test shares connections (or one sans-IO ``Protocol``) between threads, then checks what
the peer and the threads saw: nothing lost, duplicated or reordered within one sender, no
exception but the documented ones, no deadlock (every wait has a deadline; each test a pytest
timeout). The sizes suit CI on two cores (the whole file takes well under 30 s);
``SIGIL_SOAK=full`` runs them longer:

    SIGIL_SOAK=full python -m pytest tests/test_stress.py

The peer is a ``websockets`` server of this module that records what it received, echoed and
how its connections ended, so that the tests compare both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import logging
import math
import os
import random
import socket
import struct
import sys
import threading
import time
import warnings
import weakref
import zlib
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop
from websockets.exceptions import ConnectionClosed as ServerConnectionClosed
from websockets.sync.server import ServerConnection, serve

import sigil_ws
import sigil_ws.asyncio
from sigil_ws import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    Message,
    MessageType,
    Ping,
    Protocol,
    State,
    handshake,
)
from sigil_ws.events import Fragment

from .conftest import FREE_THREADED, RawConnection, RawServer, open_fds, server_frame

FULL = os.environ.get("SIGIL_SOAK") == "full"


def size(ci: int, full: int) -> int:
    return full if FULL else ci


# ---- threads that report how they ended ------------------------------------------------------


class Crew:
    """Threads whose exceptions are kept, joined against one deadline."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[tuple[str, BaseException]] = []
        self._lock = threading.Lock()

    def spawn(self, name: str, target: Callable[[], object]) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except BaseException as e:
                with self._lock:
                    self.errors.append((name, e))

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()
        return thread

    def join(self, limit: float) -> None:
        """Waits ``limit`` seconds at most for every thread; fails on a thread still running
        (a deadlock) or on any thread's exception."""
        deadline = time.monotonic() + limit
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        assert not stuck, f"threads still running after {limit} s: {stuck}"
        if self.errors:
            name, error = self.errors[0]
            raise AssertionError(f"thread {name} failed: {error!r}") from error


@contextlib.contextmanager
def alongside(
    inspector: Callable[[], None], start: threading.Event, stop: threading.Event
) -> Iterator[None]:
    """Runs ``inspector`` in a thread of its own and sets ``start`` for every thread; on
    leaving, sets ``stop`` and joins the inspector (its failure fails the test)."""
    inspecting = Crew()
    inspecting.spawn("inspector", inspector)
    start.set()
    try:
        yield
    finally:
        stop.set()
        inspecting.join(10)


def run_loop(loop: str, main: Coroutine[Any, Any, None]) -> None:
    """Runs ``main`` in a new event loop of this thread: ``"uvloop"`` or ``"asyncio"``."""
    if loop == "uvloop":
        uvloop.run(main)
    else:
        asyncio.run(main)


def wait_for(predicate: Callable[[], bool], limit: float, what: str) -> None:
    """Polls ``predicate`` until it holds; fails after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {limit} s"
        time.sleep(0.01)


# ---- the recording peer ------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the server saw on one connection."""

    received: list[str | bytes] = field(default_factory=list)
    echoed: list[str | bytes] = field(default_factory=list)
    pongs: int = 0
    # websockets skips the handler of a connection closed during its handshake: a test that
    # needs the handler waits for this before it closes.
    started: threading.Event = field(default_factory=threading.Event)
    pinged: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    close_code: int | None = None


class StressServer:
    """A websockets server whose handler behaves by path and records into a ``Ledger``:

    - ``/echo/T``: echoes every message;
    - ``/pinger/T/K``: sends K messages ``push-k``, each followed by a ping whose pong it
      awaits, then sets ``pinged`` and reads until the client closes;
    - ``/push/T/K``: sends K messages, then reads until the client closes;
    - ``/release/T/K``: sends K messages, waits for ``release``, then closes (1000).
    """

    def __init__(self) -> None:
        self.ledgers: dict[str, Ledger] = {}
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        self.server = serve(
            self.handler,
            "127.0.0.1",
            0,
            max_size=None,
            # Unbounded: with a bound, websockets' own reader can wait for the handler to take
            # a message while the handler's send() waits for that reader to see the close.
            max_queue=None,
            ping_interval=None,
            close_timeout=10,
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"

    def new(self, kind: str, *args: int) -> tuple[str, Ledger]:
        """The URL of a new connection of ``kind`` and the ledger it will record into."""
        ledger = Ledger()
        with self._lock:
            token = str(next(self._tokens))
            self.ledgers[token] = ledger
        return "/".join([self.base, kind, token, *map(str, args)]), ledger

    def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        kind, token, *args = ws.request.path.strip("/").split("/")
        ledger = self.ledgers[token]
        ledger.started.set()
        try:
            if kind == "echo":
                echoing = True
                for message in ws:
                    ledger.received.append(message)
                    if echoing:
                        try:
                            ws.send(message)
                        except ServerConnectionClosed:
                            # The client's close came: what it sent before still arrives.
                            echoing = False
                        else:
                            ledger.echoed.append(message)
            elif kind == "pinger":
                for k in range(int(args[0])):
                    ws.send(f"push-{k}")
                    if ws.ping(f"k{k}").wait(10):
                        ledger.pongs += 1
                ledger.pinged.set()
                for message in ws:
                    ledger.received.append(message)
            elif kind == "push":
                for k in range(int(args[0])):
                    ws.send(f"push-{k}")
                for message in ws:
                    ledger.received.append(message)
            elif kind == "release":
                for k in range(int(args[0])):
                    ws.send(f"push-{k}")
                ledger.release.wait(20)
                ws.close(1000, "released")
        except ServerConnectionClosed:
            pass
        finally:
            ledger.close_code = ws.close_code
            ledger.ended.set()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture(scope="module")
def stress() -> Iterator[StressServer]:
    server = StressServer()
    try:
        yield server
    finally:
        server.close()


class Tally(logging.Handler):
    """Keeps every record of a logger, for counting log lines across threads."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.records if str(r.msg).startswith(prefix))


_loggers = itertools.count()


@pytest.fixture
def tally() -> Iterator[tuple[logging.Logger, Tally]]:
    """A logger of its own at DEBUG (so that the engine journals pongs) and its records."""
    logger = logging.getLogger(f"sigil_ws.test_stress.{next(_loggers)}")
    handler = Tally()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)


# ---- messages that carry their sender, their number and a checkable body -----------------------


def message(sender: int, seq: int) -> str | bytes:
    """Message ``seq`` of ``sender``: text and binary alternate; sizes vary, every 97th is
    over 64 KiB (the large-message paths); the body is a function of both numbers."""
    head = f"{sender}:{seq}:"
    n = 80_000 if seq % 97 == 96 else (sender * 131 + seq * 17) % 700
    if seq % 2:
        return head.encode() + (bytes([sender, seq % 256, 0xFF]) * (n // 3 + 1))[:n]
    return head + ("é" + chr(ord("a") + (sender + seq) % 26)) * (n // 3)


def key(data: str | bytes) -> tuple[int, int]:
    """(sender, seq) of a message made by ``message``; asserts its body is intact."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    sender, seq, _ = text.split(":", 2)
    found = (int(sender), int(seq))
    assert data == message(*found), f"message {found} corrupted ({len(data)} bytes)"
    return found


def by_sender(keys: list[tuple[int, int]]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for sender, seq in keys:
        grouped.setdefault(sender, []).append(seq)
    return grouped


# ---- 1. one sync connection: 8 senders, a receiver, an inspector, a closer ---------------------


@dataclass
class SenderLog:
    ok: list[tuple[int, float]] = field(default_factory=list)  # (seq, started)
    # (seq, ended, exception)
    refused: list[tuple[int, float, ConnectionClosed]] = field(default_factory=list)


@dataclass
class ReceiverLog:
    got: list[tuple[tuple[int, int], float]] = field(default_factory=list)  # (key, started)
    end: ConnectionClosed | None = None


def static_properties(ws: sigil_ws.Connection) -> dict[str, object]:
    """The read-only properties that never change once the connection is open."""
    return {
        "url": ws.url,
        "host": ws.host,
        "port": ws.port,
        "path": ws.path,
        "subprotocol": ws.subprotocol,
        "response_headers": list(ws.response_headers.items()),
        "extensions": ws.extensions,
        "local_address": ws.local_address,
        "remote_address": ws.remote_address,
        "fileno": ws.fileno(),
        "http_version": getattr(ws, "http_version", "1.1"),
    }


def inspect_until(
    ws: sigil_ws.Connection, stop: threading.Event, static: dict[str, object], pings: bool
) -> int:
    """Reads every read-only property in a loop until ``stop``; checks that the state only
    moves forward, that the close code appears with CLOSED (and is 1000), that latency is a
    sane number (0.0 without pings, never back to 0.0 once measured) and that the rest never
    changes. Returns the number of turns."""
    turns = 0
    last_state = State.OPEN
    last_latency = 0.0
    while True:
        stopping = stop.is_set()
        code = ws.close_code
        reason = ws.close_reason
        state = ws.state
        latency = ws.latency
        assert isinstance(state, State)
        assert state >= last_state, f"state went back from {last_state!r} to {state!r}"
        last_state = state
        if code is not None:
            # Read before the state: once the code is known, the state is CLOSED.
            assert state is State.CLOSED, (code, state)
            assert code == 1000 and reason == "", (code, reason)
        if state is State.CLOSED:
            assert ws.close_code == 1000, ws.close_code
        elif state is State.OPEN:
            assert code is None and reason is None, (code, reason, state)
        assert isinstance(latency, float) and math.isfinite(latency) and latency >= 0.0
        if not pings:
            assert latency == 0.0, latency
        assert latency >= 0.0 and (last_latency == 0.0 or latency > 0.0), (last_latency, latency)
        last_latency = latency
        assert static_properties(ws) == static
        turns += 1
        if stopping:
            return turns
        if not FREE_THREADED:
            # A thread that never blocks holds the GIL for whole switch intervals, and every
            # thread that blocks (the server's too) then waits that long to go on.
            time.sleep(0.0005)


def shared_connection_round(
    stress: StressServer,
    compression: str | None,
    delay: float,
    cap: int,
    logger: logging.Logger,
) -> None:
    url, ledger = stress.new("echo")
    ws = sigil_ws.connect(
        url,
        compression=compression,
        ping_interval=None,
        open_timeout=10,
        close_timeout=10,
        logger=logger,
    )
    assert ledger.started.wait(10)
    static = static_properties(ws)
    if compression is None:
        assert ws.extensions == []
    else:
        assert [name for name, _ in ws.extensions] == ["permessage-deflate"]
    senders = 8
    logs = [SenderLog() for _ in range(senders)]
    received = ReceiverLog()
    start, stop = threading.Event(), threading.Event()
    close_called, close_returned = [math.inf], [math.inf]
    inspector_turns = [0]

    def sender(n: int) -> None:
        log = logs[n]
        start.wait(10)
        for seq in range(cap):
            started = time.monotonic()
            try:
                ws.send(message(n, seq))
            except ConnectionClosed as e:
                log.refused.append((seq, time.monotonic(), e))
                if len(log.refused) == 3:
                    return
            else:
                assert not log.refused, f"sender {n}: send {seq} succeeded after a refusal"
                log.ok.append((seq, started))

    def receiver() -> None:
        start.wait(10)
        last: dict[int, int] = {}
        while True:
            started = time.monotonic()
            try:
                data = ws.recv(timeout=20)
            except ConnectionClosed as e:
                received.end = e
                return
            n, seq = key(data)
            assert seq > last.get(n, -1), f"sender {n}: {seq} after {last[n]}"
            last[n] = seq
            received.got.append(((n, seq), started))

    def closer() -> None:
        start.wait(10)
        time.sleep(delay)
        close_called[0] = time.monotonic()
        ws.close()
        close_returned[0] = time.monotonic()
        assert ws.state is State.CLOSED and ws.close_code == 1000

    def inspector() -> None:
        start.wait(10)
        inspector_turns[0] = inspect_until(ws, stop, static, pings=False)

    crew = Crew()
    for n in range(senders):
        crew.spawn(f"sender-{n}", functools.partial(sender, n))
    crew.spawn("receiver", receiver)
    crew.spawn("closer", closer)
    with alongside(inspector, start, stop):
        crew.join(40)
    assert inspector_turns[0] > 0

    # The receiver saw a normal close, after close() began.
    assert isinstance(received.end, ConnectionClosedOK), received.end
    assert received.end.code == 1000

    # Sends: each sender's successes are 0..k-1, and everything refused came after; a refusal
    # is ConnectionClosedOK 1000 and ends after close() was called (none is spurious), and
    # every send begun after close() returned was refused.
    for n, log in enumerate(logs):
        assert [seq for seq, _ in log.ok] == list(range(len(log.ok))), n
        for seq, ended, e in log.refused:
            assert isinstance(e, ConnectionClosedOK) and e.code == 1000, (n, seq, e)
            assert ended > close_called[0], f"sender {n}: send {seq} refused before close()"
        for seq, started in log.ok:
            assert started < close_returned[0], f"sender {n}: send {seq} began after close()"
        assert log.ok or log.refused

    # The server's handler reads what arrived before the close frame after the closing
    # handshake: wait for it to end.
    assert ledger.ended.wait(10) and ledger.close_code == 1000

    # The server got exactly the messages whose send() returned: none lost or duplicated or
    # reordered on the way out, none of those refused.
    server = by_sender([key(m) for m in ledger.received])
    sent = {n: [seq for seq, _ in log.ok] for n, log in enumerate(logs) if log.ok}
    assert server == sent

    # The receiver got a prefix of what the server echoed, in the server's order: what close()
    # dropped is only what had not been handed to recv() yet (the tail), never a message in
    # the middle; and no recv() begun after close() returned got a message.
    echoed = [key(m) for m in ledger.echoed]
    got = [k for k, _ in received.got]
    assert got == echoed[: len(got)], "the receiver's messages are not a prefix of the echoes"
    late = [k for k, started in received.got if started > close_returned[0]]
    assert not late, f"recv() begun after close() returned got {late[:3]}"

    # After the fact, from this thread: everything refuses, close() is idempotent.
    with pytest.raises(ConnectionClosedOK):
        ws.recv(timeout=1)
    with pytest.raises(ConnectionClosedOK):
        ws.send("late")
    with pytest.raises(ConnectionClosed):
        ws.ping(b"late")
    ws.close()
    assert ws.state is State.CLOSED and ws.close_code == 1000


ROUNDS = size(4, 40)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("compression", [None, "deflate"])
def test_one_connection_shared_by_senders_receiver_inspector_and_closer(
    stress: StressServer, compression: str | None
) -> None:
    """8 threads send numbered messages on one connection while one receives, one reads the
    properties and one closes at a random moment (the first round at once)."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    logger = logging.getLogger(f"sigil_ws.test_stress.shared.{seed}")
    handler = Tally()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        for round in range(ROUNDS):
            delay = 0.0 if round == 0 else rng.uniform(0.0, 0.4)
            before = (handler.count("connection opened"), handler.count("connection to"))
            try:
                shared_connection_round(stress, compression, delay, size(1500, 20000), logger)
            except AssertionError as e:
                raise AssertionError(f"seed {seed}, round {round}, delay {delay:.3f}: {e}") from e
            # Logged once each, although several threads ran into the close at once.
            after = (handler.count("connection opened"), handler.count("connection to"))
            assert after == (before[0] + 1, before[1] + 1), (before, after)
    finally:
        logger.removeHandler(handler)


# ---- 2. pings from several threads on one connection while messages flow -----------------------


@pytest.mark.timeout(60)
def test_pings_from_many_threads_while_messages_flow(
    stress: StressServer, tally: tuple[logging.Logger, Tally]
) -> None:
    """4 threads ping (each ping its own payload) while one sends, one receives and one reads
    ``latency``: every ping gets its pong (the engine journals each pong once: counted in the
    log), the messages arrive in order, and latency is a sane number that, once measured,
    never goes back to 0.0."""
    logger, records = tally
    url, ledger = stress.new("echo")
    ws = sigil_ws.connect(url, ping_interval=None, open_timeout=10, close_timeout=10, logger=logger)
    static = static_properties(ws)
    pingers, pings, count = 4, size(100, 1000), size(3000, 30000)
    start, stop = threading.Event(), threading.Event()
    latencies: list[float] = []

    def pinger(n: int) -> None:
        start.wait(10)
        for k in range(pings):
            ws.ping(f"{n}-{k}".encode())
            latencies.append(ws.latency)
            if k % 8 == 0:
                time.sleep(0.001)

    def sender() -> None:
        start.wait(10)
        for seq in range(count):
            ws.send(message(0, seq))

    def receiver() -> None:
        start.wait(10)
        for seq in range(count):
            assert key(ws.recv(timeout=20)) == (0, seq)

    def inspector() -> None:
        start.wait(10)
        assert inspect_until(ws, stop, static, pings=True) > 0

    crew = Crew()
    for n in range(pingers):
        crew.spawn(f"pinger-{n}", functools.partial(pinger, n))
    crew.spawn("sender", sender)
    crew.spawn("receiver", receiver)
    with alongside(inspector, start, stop):
        crew.join(40)
        # A fence: its echo comes after every pong (the server answers in order), and recv()
        # logs what the engine journaled until then.
        ws.send("fence")
        assert ws.recv(timeout=10) == "fence"
    assert ws.latency > 0.0
    assert all(math.isfinite(x) and x >= 0.0 for x in latencies)
    assert records.count("pong from") == pingers * pings
    ws.close()
    assert ws.close_code == 1000
    with pytest.raises(ConnectionClosed):
        ws.ping(b"after close")
    assert ledger.ended.wait(10) and ledger.close_code == 1000
    assert [key(m) for m in ledger.received[:-1]] == [(0, seq) for seq in range(count)]
    assert records.count("connection to") == 1


# ---- 3. connections opened and closed from many threads, served by the I/O thread --------------


def settled_fds(limit: int, timeout: float) -> int:
    """This process's open descriptors, once they are ``limit`` or fewer (the in-process
    server closes its side a moment after the client), or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while len(open_fds()) > limit and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(open_fds())


def collect_leftovers() -> None:
    """After a test that may break a connection (a known bug): collects what it left, such as
    a transport its loop never closed, here rather than in a later test's collection."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def warm_up(stress: StressServer) -> None:
    """One connection opened and closed (the I/O thread starts on the first)."""
    url, ledger = stress.new("echo")
    with sigil_ws.connect(url, open_timeout=10):
        assert ledger.started.wait(10)
    assert ledger.ended.wait(10)


PUSHED = 5  # under max_queue (16): the I/O thread reads all of them ahead and keeps reading


@pytest.mark.timeout(60)
def test_connections_opened_and_closed_from_many_threads(stress: StressServer) -> None:
    """8 threads each open and close connections, a few open at a time, nobody receiving: some
    just idle, some send one message, some get messages and pings from the server, which
    must be answered by the process's I/O thread (the messages are read ahead meanwhile and
    come out of recv() afterwards, in order), and on some the server closes, which the I/O
    thread must see and answer (then sends refuse, and recv() hands out what came before).
    Every close is clean on both ends and every socket is released."""
    warm_up(stress)  # the I/O thread and its descriptors exist
    baseline = settled_fds(0, 0)
    threads, per_thread, at_once = 8, size(24, 240), 4
    kinds = ["idle", "send", "pinger", "release"]
    ledgers: list[Ledger] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(n)
        held: list[tuple[str, sigil_ws.Connection, Ledger]] = []

        def close_one() -> None:
            kind, ws, ledger = held.pop(rng.randrange(len(held)))
            if kind == "pinger":
                assert ledger.pinged.wait(10), "the server's pings are still unanswered"
                assert ledger.pongs == PUSHED
                for k in range(PUSHED):
                    assert ws.recv(timeout=10) == f"push-{k}"
            elif kind == "release":
                ledger.release.set()
                wait_for(lambda: ws.state is State.CLOSED, 10, "the server's close unseen")
                assert ws.close_code == 1000 and ws.close_reason == "released"
                with pytest.raises(ConnectionClosedOK):
                    ws.send("too late")
                for k in range(PUSHED):
                    assert ws.recv(timeout=10) == f"push-{k}"
                with pytest.raises(ConnectionClosedOK):
                    ws.recv(timeout=10)
            ws.close()
            assert ws.state is State.CLOSED and ws.close_code == 1000, ws.close_code

        for i in range(per_thread):
            kind = kinds[(n + i) % len(kinds)]
            if kind in ("pinger", "release"):
                url, ledger = stress.new(kind, PUSHED)
            else:
                url, ledger = stress.new("echo")
            ws = sigil_ws.connect(url, open_timeout=10, close_timeout=10, ping_interval=None)
            assert ledger.started.wait(10)
            if kind == "send":
                ws.send(f"{n}-{i}")
            with lock:
                ledgers.append(ledger)
            held.append((kind, ws, ledger))
            if len(held) >= at_once:
                close_one()
        while held:
            close_one()

    crew = Crew()
    for n in range(threads):
        crew.spawn(f"worker-{n}", functools.partial(worker, n))
    crew.join(40)
    assert len(ledgers) == threads * per_thread
    for ledger in ledgers:
        assert ledger.ended.wait(10), "the server never saw the connection end"
        assert ledger.close_code == 1000
    sends = sorted(m for ledger in ledgers for m in ledger.received)
    assert sends == sorted(
        f"{n}-{i}"
        for n in range(threads)
        for i in range(per_thread)
        if kinds[(n + i) % len(kinds)] == "send"
    )
    gc.collect()
    assert settled_fds(baseline, 10) <= baseline


# ---- 4. event loops in four threads at once ----------------------------------------------------


async def asyncio_connection(url: str, sender: int, count: int) -> None:
    """One asyncio connection: a task sends numbered messages, another receives them and checks
    their order, a third pings; then a fence proves every pong came back before it."""
    async with sigil_ws.asyncio.connect(
        url, ping_interval=None, open_timeout=10, close_timeout=10
    ) as ws:

        async def send() -> None:
            for seq in range(count):
                await ws.send(message(sender, seq))

        async def receive() -> None:
            for seq in range(count):
                assert key(await ws.recv(timeout=20)) == (sender, seq)

        async def ping() -> None:
            for k in range(10):
                await ws.ping(f"{sender}-{k}")
                await asyncio.sleep(0)

        await asyncio.gather(send(), receive(), ping())
        await ws.send("fence")
        assert await ws.recv(timeout=20) == "fence"
        assert ws.latency > 0.0
        state = ws.state
        assert state is State.OPEN
    assert ws.state is State.CLOSED and ws.close_code == 1000
    with pytest.raises(ConnectionClosedOK):
        await ws.send("after close")


@pytest.mark.timeout(60)
def test_event_loops_in_four_threads(stress: StressServer) -> None:
    """asyncio.run() in three threads and uvloop.run() in a fourth, at once, each running
    several connections concurrently: every message arrives in order, on both ends."""
    loops, per_loop, count = 4, size(4, 16), size(400, 4000)
    ledgers: dict[int, Ledger] = {}
    urls: dict[int, str] = {}
    for sender in range(loops * per_loop):
        urls[sender], ledgers[sender] = stress.new("echo")

    def loop_thread(n: int) -> None:
        async def main() -> None:
            senders = range(n * per_loop, (n + 1) * per_loop)
            async with asyncio.timeout(40):
                await asyncio.gather(*(asyncio_connection(urls[s], s, count) for s in senders))

        run_loop("uvloop" if n == loops - 1 else "asyncio", main())

    crew = Crew()
    for n in range(loops):
        crew.spawn(f"loop-{n}", functools.partial(loop_thread, n))
    crew.join(50)
    for sender, ledger in ledgers.items():
        assert ledger.ended.wait(10) and ledger.close_code == 1000
        assert [key(m) for m in ledger.received[:-1]] == [(sender, seq) for seq in range(count)]
        assert ledger.received[-1] == "fence"


@pytest.mark.timeout(60)
def test_asyncio_properties_read_from_another_thread(stress: StressServer) -> None:
    """A monitoring thread reads an asyncio connection's read-only properties while its loop
    exchanges messages: the loop's calls succeed, the reads return sane values."""
    url, ledger = stress.new("echo")
    count = size(1000, 10000)
    failures: list[str] = []
    box: list[sigil_ws.asyncio.Connection] = []
    done = threading.Event()

    def watcher() -> None:
        wait_for(lambda: bool(box) or done.is_set(), 20, "no connection")
        while box and not done.is_set():
            ws = box[0]
            for name in ("state", "latency", "close_code", "subprotocol", "extensions"):
                try:
                    getattr(ws, name)
                except RuntimeError as e:
                    failures.append(f"watcher: {name}: {e}")
            if not FREE_THREADED:
                time.sleep(0.0005)  # see inspect_until

    async def main() -> None:
        try:
            async with sigil_ws.asyncio.connect(
                url, ping_interval=None, open_timeout=10, close_timeout=2
            ) as ws:
                box.append(ws)
                for seq in range(count):
                    await ws.send(message(0, seq))
                    # A failed transport callback can leave recv() waiting for good.
                    assert key(await ws.recv(timeout=3)) == (0, seq)
        except (RuntimeError, ConnectionClosed, TimeoutError) as e:
            failures.append(f"loop: {e!r}")
        finally:
            done.set()

    crew = Crew()
    crew.spawn("watcher", watcher)
    crew.spawn("loop", lambda: asyncio.run(main()))
    try:
        crew.join(50)
        assert not failures, f"{len(failures)} failures: {sorted(set(failures))[:6]}"
        assert ledger.ended.wait(10) and ledger.close_code == 1000
    finally:
        box.clear()  # else the failure's traceback keeps the connection past the collection
        collect_leftovers()


# ---- 5. one sans-IO Protocol used from two threads at once -------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@dataclass
class Frame:
    opcode: int
    fin: bool
    rsv1: bool
    payload: bytes


def client_frames(data: bytes) -> list[Frame]:
    """Parses the client's (masked) frames; asserts nothing is left over."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b1 & 0x80, "unmasked client frame"
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            (n,) = struct.unpack("!H", data[pos : pos + 2])
            pos += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[pos : pos + 8])
            pos += 8
        mask, pos = data[pos : pos + 4], pos + 4
        body = data[pos : pos + n]
        assert len(body) == n, "truncated frame"
        pos += n
        unmasked = bytes(a ^ b for a, b in zip(body, itertools.cycle(mask)))
        frames.append(Frame(b0 & 0x0F, bool(b0 & 0x80), bool(b0 & 0x40), unmasked))
    return frames


def client_messages(frames: list[Frame], deflate: bool) -> list[tuple[int, bytes]]:
    """The data messages (opcode, payload) of ``frames``, inflated with one context-taking-over
    stream when permessage-deflate was negotiated."""
    inflater = zlib.decompressobj(-15)
    messages = []
    for frame in frames:
        if frame.opcode in (1, 2):
            assert frame.fin, "unexpected fragmentation"
            payload = frame.payload
            if frame.rsv1:
                assert deflate
                payload = inflater.decompress(payload + b"\x00\x00\xff\xff")
            messages.append((frame.opcode, payload))
    return messages


def opened_protocol(deflate: bool) -> Protocol:
    protocol = Protocol(
        "ws://example.com/stress", key=KEY, compression="deflate" if deflate else None
    )
    request = protocol.data_to_send()
    assert request.startswith(b"GET /stress HTTP/1.1\r\n")
    extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    protocol.receive_data(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {handshake.accept_key(KEY)}\r\n{extension}\r\n".encode()
    )
    assert protocol.events() == []
    assert protocol.state is State.OPEN
    return protocol


@pytest.mark.timeout(60)
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_one_protocol_used_from_two_threads(deflate: bool) -> None:
    """Two threads drive one ``sigil_ws.Protocol`` at once, with no lock of their own: A feeds
    the server's messages and pings, collects the events and sends; B sends text, binary and
    pings, takes ``data_to_send()`` and reads the properties. The Protocol serialises the
    calls (none raises): everything comes out as if one thread made them, the events in
    order, each thread's frames in order, whole and (with deflate) inflating, a pong for the
    last ping of every run of pings. Then A closes while B keeps sending: B's sends are
    refused with ConnectionClosedOK, and no data frame follows the close frame."""
    protocol = opened_protocol(deflate)
    rounds = size(3000, 30000)
    out: list[bytes] = []
    out_lock = threading.Lock()  # orders the chunks as data_to_send() handed them out
    events: list[object] = []
    sent_b: list[str | bytes] = []
    refused_b: list[ConnectionClosed] = []
    start, closed = threading.Event(), threading.Event()

    def take() -> None:
        with out_lock:
            out.append(protocol.data_to_send())

    def thread_a() -> None:
        start.wait(10)
        for i in range(rounds):
            frame = server_frame(1, f"m{i}".encode())
            if i % 7 == 0:
                frame += server_frame(9, b"%d" % i)
            protocol.receive_data(frame)
            events.extend(protocol.events())
            protocol.send_text(f"a:{i}")
            if i % 5 == 0:
                take()
        protocol.send_close(1000, "done")
        closed.set()

    def thread_b() -> None:
        start.wait(10)
        i = 0
        while True:
            payload: str | bytes = f"b:{i}" if i % 3 else b"b:%d" % i
            was_closed = closed.is_set()
            try:
                if isinstance(payload, str):
                    protocol.send_text(payload)
                else:
                    protocol.send_binary(payload)
            except ConnectionClosed as e:
                refused_b.append(e)
                if len(refused_b) == 3:
                    return
            else:
                assert not refused_b, "a send succeeded after a refusal"
                assert not was_closed, "a send succeeded after send_close() returned"
                sent_b.append(payload)
            if i % 100 == 0:
                try:
                    protocol.send_ping(b"p%d" % i)
                except ConnectionClosed as e:
                    # A's close (nothing else closes).
                    assert isinstance(e, ConnectionClosedOK) and e.reason == "done", e
            if i % 3 == 0:
                take()
            state = protocol.state
            assert state in (State.OPEN, State.CLOSING), state
            assert protocol.latency >= 0.0
            assert protocol.buffered >= 0
            assert protocol.close_code is None
            i += 1
            assert i < 50 * rounds, "thread B was never refused"

    crew = Crew()
    crew.spawn("A", thread_a)
    crew.spawn("B", thread_b)
    start.set()
    crew.join(40)
    out.append(protocol.data_to_send())

    frames = client_frames(b"".join(out))
    # Nothing but pongs, pings, data and one close frame at the end.
    assert [f.opcode for f in frames].count(8) == 1 and frames[-1].opcode == 8
    assert frames[-1].payload == struct.pack("!H", 1000) + b"done"
    data = client_messages(frames, deflate)
    if deflate:
        assert any(f.rsv1 for f in frames), "nothing was compressed"
    texts = [payload.decode() for opcode, payload in data if opcode == 1]
    assert [t for t in texts if t.startswith("a:")] == [f"a:{i}" for i in range(rounds)]
    assert [(1, t.encode()) if isinstance(t, str) else (2, t) for t in sent_b] == [
        (opcode, payload) for opcode, payload in data if payload.startswith(b"b:")
    ]
    assert len(data) == rounds + len(sent_b)
    pings = [f.payload for f in frames if f.opcode == 9]
    assert pings == [b"p%d" % i for i in range(0, 100 * len(pings), 100)]
    # A pong may answer only the latest of several pings (RFC 6455 5.5.3): the pongs are an
    # increasing subsequence of the server's pings, ending with the last.
    pongs = [int(f.payload) for f in frames if f.opcode == 10]
    server_pings = list(range(0, rounds, 7))
    assert pongs == sorted(set(pongs)) and set(pongs) <= set(server_pings)
    assert pongs[-1] == server_pings[-1]
    assert [e for e in events if isinstance(e, Message)] == [
        Message(MessageType.TEXT, f"m{i}") for i in range(rounds)
    ]
    assert [e.data for e in events if isinstance(e, Ping)] == [b"%d" % i for i in server_pings]
    assert len(events) == rounds + len(server_pings)
    assert all(isinstance(e, ConnectionClosedOK) and e.code == 1000 for e in refused_b)
    assert protocol.state is State.CLOSING


# ---- 6. unclosed connections collected by the garbage collector of another thread -------------


class Freed:
    """Notes the threads that free objects held by ``hold``."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        # Outside the cycles: a weak reference collected with its referent calls nothing.
        self._refs: list[weakref.ref[Holder]] = []

    def hold(self, item: object) -> None:
        """Puts ``item`` in a reference cycle, that only the cycle collector frees."""
        holder = Holder(item)
        self._refs.append(weakref.ref(holder, self._note))

    def _note(self, _: weakref.ref[Holder]) -> None:
        self.threads.append(threading.current_thread().name)


class Holder:
    def __init__(self, item: object) -> None:
        self.item = item
        self.me = self


@pytest.fixture
def collector_only() -> Iterator[None]:
    """Automatic collections off, so that the tests' cycles are freed where they collect."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("collector_only")
def test_unclosed_sync_connections_collected_in_another_thread(
    stress: StressServer, tally: tuple[logging.Logger, Tally]
) -> None:
    """Thread A opens connections and drops them unclosed (in reference cycles) while thread B
    collects in a loop, as the I/O thread serves the rest: some sent a message whose echo
    waits read ahead, some have messages pushed to them, some idle. Every one is freed by B,
    logs its end once, and its socket is released (the server sees it go)."""
    logger, records = tally
    warm_up(stress)  # the I/O thread and its descriptors exist
    baseline = settled_fds(0, 0)
    count = size(40, 400)
    ledgers: list[tuple[str, Ledger]] = []
    freed = Freed()
    made = threading.Event()

    def thread_a() -> None:
        for i in range(count):
            kind = ("send", "push", "idle")[i % 3]
            url, ledger = stress.new("push", PUSHED) if kind == "push" else stress.new("echo")
            ws = sigil_ws.connect(url, open_timeout=10, ping_interval=None, logger=logger)
            assert ledger.started.wait(10)
            if kind == "send":
                ws.send(f"hello {i}")
            ledgers.append((kind, ledger))
            freed.hold(ws)
            del ws
        made.set()

    def thread_b() -> None:
        while not made.is_set():
            gc.collect()
            time.sleep(0.001)
        gc.collect()

    crew = Crew()
    crew.spawn("A", thread_a)
    crew.spawn("B", thread_b)
    crew.join(40)
    assert freed.threads == ["B"] * count
    for i, (kind, ledger) in enumerate(ledgers):
        assert ledger.ended.wait(10), f"connection {i} ({kind}) still open on the server"
        if kind == "send":
            assert ledger.received == [f"hello {i}"]
    assert records.count("connection to") == count
    assert settled_fds(baseline, 10) <= baseline


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("collector_only")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_unclosed_asyncio_connections_collected_in_another_thread(
    stress: StressServer, loop: str
) -> None:
    """An event loop thread opens connections and drops them unclosed while its loop runs;
    another thread collects them. The transports (the loop's) keep serving them: when the
    server later closes, the driver completes the closing handshake with nobody holding the
    connection, and the sockets are released, while the loop still runs."""
    url, _ = stress.new("echo")
    count = size(12, 120)
    ledgers = [stress.new("release", PUSHED) for _ in range(count)]
    freed = Freed()
    dropped, collected = threading.Event(), threading.Event()
    in_loop_fds: list[int] = []

    async def main() -> None:
        # The loop's own descriptors (uvloop opens one more on its first connection).
        async with sigil_ws.asyncio.connect(url, open_timeout=10, ping_interval=None):
            pass
        baseline = len(open_fds())
        for address, _ in ledgers:
            ws = await sigil_ws.asyncio.connect(
                address, open_timeout=10, close_timeout=10, ping_interval=None
            )
            await ws.send("hello")
            freed.hold(ws)
            del ws
        dropped.set()
        async with asyncio.timeout(20):
            while not collected.is_set():
                await asyncio.sleep(0.005)
            for _, ledger in ledgers:
                ledger.release.set()
            while not all(ledger.ended.is_set() for _, ledger in ledgers):
                await asyncio.sleep(0.005)
            while len(open_fds()) > baseline:
                await asyncio.sleep(0.005)
        in_loop_fds.append(len(open_fds()) - baseline)

    crew = Crew()
    crew.spawn("loop", lambda: run_loop(loop, main()))
    if not dropped.wait(20):
        crew.join(1)
        pytest.fail("the loop never dropped its connections")
    gc.collect()
    collected.set()
    crew.join(40)
    assert freed.threads == ["MainThread"] * count
    assert len(in_loop_fds) == 1 and in_loop_fds[0] <= 0
    for _, ledger in ledgers:
        assert ledger.close_code == 1000, ledger.close_code


# ---- 6b. an abandoned recv_streaming() iteration collected in another thread ------------------

# What the server floods the client with while another thread collects: pings (64 KiB of
# them), which the client's loop decodes and answers, mostly inside the engine.
PINGS = server_frame(9, b"p" * 125) * (65536 // 127)


@dataclass
class Streamed:
    """The raw server's side of one attempt."""

    blast: threading.Event = field(default_factory=threading.Event)
    blasting: threading.Event = field(default_factory=threading.Event)
    collected: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


def streaming_server(raw_server: RawServer, attempts: dict[str, Streamed]) -> str:
    """A server that sends the first piece of a text message; on ``blast`` pings until
    ``collected``, then the rest of the message and a message "after"; on ``done`` a close
    frame and closes TCP first (RFC 6455 §7.1.1: the client waits for that). It discards what
    the client sends (pongs, its close frame) until the client closes."""

    def script(conn: RawConnection) -> None:
        attempt = attempts[conn.request.split(b" ")[1].decode().strip("/")]
        conn.upgrade(trailing=server_frame(1, b"first piece ", fin=False))
        conn.sock.settimeout(20)

        def discard() -> None:
            with contextlib.suppress(OSError):
                while conn.sock.recv(65536):
                    pass

        reader = threading.Thread(target=discard, daemon=True)
        reader.start()
        try:
            if attempt.blast.wait(20):
                deadline = time.monotonic() + 20
                conn.send(PINGS)
                attempt.blasting.set()
                while not attempt.collected.is_set() and time.monotonic() < deadline:
                    conn.send(PINGS)
                conn.send(server_frame(0, b"rest") + server_frame(1, b"after"))
                if attempt.done.wait(20):
                    conn.send(server_frame(8, struct.pack("!H", 1000)))
                    conn.sock.shutdown(socket.SHUT_WR)
                    reader.join(10)  # until the client closes the connection
        finally:
            with contextlib.suppress(OSError):  # a client that broke the connection
                conn.sock.shutdown(socket.SHUT_RDWR)
            reader.join(5)

    return raw_server.serve(script)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("collector_only")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_abandoned_asyncio_streaming_iteration_collected_in_another_thread(
    raw_server: RawServer, monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    """An application leaves a ``recv_streaming()`` iteration after the first piece, and the
    iterator ends up in a reference cycle; another thread's collection finalises it while the
    loop decodes the rest of that message. Dropping the rest must work as with ``aclose()``:
    the next ``recv()`` returns the next message, and the finaliser raises nothing."""
    unraisable: list[str] = []
    monkeypatch.setattr(
        sys, "unraisablehook", lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value}")
    )
    count = size(24, 240)
    attempts = {str(i): Streamed() for i in range(count)}
    url = streaming_server(raw_server, attempts)
    freed = Freed()
    outcomes: list[str] = []

    async def main() -> None:
        for i in range(count):
            attempt = attempts[str(i)]
            ws = await sigil_ws.asyncio.connect(
                f"{url}/{i}",
                open_timeout=10,
                close_timeout=5,
                ping_interval=None,
                compression=None,
                max_size=None,
                max_queue=None,
            )
            pieces = ws.recv_streaming(timeout=10)
            assert await anext(pieces) == "first piece "
            freed.hold(pieces)
            del pieces
            attempt.blast.set()
            async with asyncio.timeout(20):
                while not attempt.collected.is_set():
                    await asyncio.sleep(0.001)
            try:
                outcomes.append(str(await ws.recv(timeout=10)))
            except (ConcurrencyError, ConnectionClosed) as e:
                outcomes.append(repr(e))
            attempt.done.set()
            await ws.close()

    crew = Crew()
    crew.spawn("loop", lambda: run_loop(loop, main()))
    for i in range(count):
        if not attempts[str(i)].blasting.wait(20):
            break
        gc.collect()
        attempts[str(i)].collected.set()
    try:
        crew.join(40)
    finally:
        collect_leftovers()
    assert freed.threads == ["MainThread"] * count
    wrong = [o for o in outcomes if o != "after"]
    assert not wrong and not unraisable, (
        f"{len(wrong)} of {count} connections broken: {sorted(set(wrong))}; "
        f"finaliser errors: {sorted(set(unraisable))}"
    )


def collect_after(event: threading.Event) -> None:
    assert event.wait(20)
    gc.collect()


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("collector_only")
def test_abandoned_sync_streaming_iteration_collected_in_another_thread(
    raw_server: RawServer,
) -> None:
    """The sync client's counterpart: an iterator of ``recv_streaming()`` left after its first
    piece and collected by another thread while the I/O thread and ``recv()`` decode the
    rest. The next ``recv()`` returns the next message."""
    count = size(24, 240)
    attempts = {str(i): Streamed() for i in range(count)}
    url = streaming_server(raw_server, attempts)
    freed = Freed()
    for i in range(count):
        attempt = attempts[str(i)]
        ws = sigil_ws.connect(
            f"{url}/{i}", open_timeout=10, close_timeout=5, ping_interval=None, max_size=None
        )
        pieces = ws.recv_streaming(timeout=10)
        assert next(pieces) == "first piece "
        freed.hold(pieces)
        del pieces
        attempt.blast.set()
        crew = Crew()
        crew.spawn("collector", functools.partial(collect_after, attempt.blasting))
        crew.join(30)
        attempt.collected.set()
        assert ws.recv(timeout=10) == "after", i
        attempt.done.set()
        ws.close()
        assert ws.close_code == 1000
    assert freed.threads == ["collector"] * count


# ---- a bug found on the way: stopping a compressed message's streaming mid-message -------------

COMPRESSION = [pytest.param(False, id="plain"), pytest.param(True, id="deflate")]


class Frames:
    """A server's frames, each message compressed (one DEFLATE stream, context taken over)
    when ``compressed``."""

    def __init__(self, compressed: bool) -> None:
        self.compressed = compressed
        self.compressor = zlib.compressobj(wbits=-15)

    def __call__(self, opcode: int, data: bytes, *, fin: bool) -> bytes:
        if not self.compressed:
            return server_frame(opcode, data, fin=fin)
        payload = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        rsv = 4 if opcode else 0  # RSV1 on a compressed message's first frame
        return server_frame(opcode, payload[:-4] if fin else payload, fin=fin, rsv=rsv)


@pytest.mark.parametrize("compressed", COMPRESSION)
def test_stop_streaming_mid_message_drops_its_rest(compressed: bool) -> None:
    """Protocol: after ``stop_streaming()`` in the middle of a message, the rest of that
    message is dropped and the next one comes out whole (single-threaded, deterministic)."""
    protocol = opened_protocol(compressed)
    frame = Frames(compressed)
    protocol.stream_message()
    first = protocol.receive_messages(frame(1, b"first ", fin=False))
    assert first == [Fragment(MessageType.TEXT, "first ")]
    protocol.stop_streaming()
    rest = frame(0, b"middle ", fin=False) + frame(0, b"rest", fin=True)
    assert protocol.receive_messages(rest + frame(1, b"after", fin=True)) == ["after"]


@pytest.mark.parametrize("compressed", COMPRESSION)
def test_sync_recv_streaming_left_mid_message_drops_its_rest(
    raw_server: RawServer, compressed: bool
) -> None:
    """The same through the sync client: leaving a ``recv_streaming()`` loop after the first
    piece, then ``recv()``."""
    sent = threading.Event()

    def script(conn: RawConnection) -> None:
        frame = Frames(compressed)
        extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if compressed else ""
        conn.upgrade(extension, trailing=frame(1, b"first ", fin=False))
        sent.wait(10)
        conn.send(frame(0, b"rest", fin=True) + frame(1, b"after", fin=True))
        conn.expect_close(1000)
        conn.send(server_frame(8, struct.pack("!H", 1000)))

    ws = sigil_ws.connect(raw_server.serve(script), open_timeout=10, close_timeout=5)
    try:
        for piece in ws.recv_streaming(timeout=10):
            assert piece == "first "
            break
        sent.set()
        assert ws.recv(timeout=10) == "after"
    finally:
        sent.set()
        ws.close()


# ---- 7. a bytearray rewritten by another thread while it is sent -----------------------------


def unmasked_payload(frame: bytes) -> bytes:
    """The payload of one masked binary frame of 64 KiB or more (quickly: as integers)."""
    assert frame[0] == 0x82 and frame[1] == 0x80 | 127, frame[:2]
    (n,) = struct.unpack("!Q", frame[2:10])
    mask, body = frame[10:14], frame[14:]
    assert len(body) == n and n % 4 == 0
    key = int.from_bytes(mask * (n // 4))
    return (int.from_bytes(body) ^ key).to_bytes(n)


@pytest.mark.timeout(60)
def test_a_bytearray_rewritten_while_sent_is_framed_whole() -> None:
    """Thread B rewrites a 256 KiB bytearray in place (slice assignment, all one byte then all
    another) while thread A sends it with ``Protocol.send_binary``, which frames it straight
    from its memory: each frame holds one version, never a mix. (Free-threaded, the send holds
    the object's critical section, which bytearray's writes take too.)"""
    protocol = opened_protocol(False)
    n = 256 * 1024
    data = bytearray(b"a" * n)
    versions = [b"a" * n, b"b" * n]
    stop = threading.Event()
    sends = size(200, 2000)
    seen: list[bytes] = []

    def writer() -> None:
        k = 0
        while not stop.is_set():
            data[:] = versions[k % 2]
            k += 1

    def sender() -> None:
        try:
            for _ in range(sends):
                protocol.send_binary(data)
                seen.append(unmasked_payload(protocol.data_to_send()))
        finally:
            stop.set()

    crew = Crew()
    crew.spawn("writer", writer)
    crew.spawn("sender", sender)
    crew.join(40)
    mixed = [i for i, payload in enumerate(seen) if payload not in versions]
    assert len(seen) == sends
    assert not mixed, f"{len(mixed)} of {sends} frames mix both versions"

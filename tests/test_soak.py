"""Soak and load, marked ``slow``: connect/close cycles, a million messages, many connections,
threads sharing one connection while it closes.

Counts fit CI (a few seconds each). ``SIGIL_SOAK=full`` runs the sizes of the reliability
report (docs/reliability.md):

    SIGIL_SOAK=full python -m pytest -m slow tests/test_soak.py

``SIGIL_COMPARE=1`` adds the websockets clients to the scenarios the same harness can run
them in; ``SIGIL_RELIABILITY_LOG=FILE`` appends one JSON line of figures per scenario (what
scripts/reliability.py reads). The servers are websockets echo servers in child processes, so
that their memory does not count in this process's RSS.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import sigil_ws
import sigil_ws.asyncio
from sigil_ws import ConnectionClosed

from .conftest import child_server, open_fds, rss

pytestmark = pytest.mark.slow

FULL = os.environ.get("SIGIL_SOAK") == "full"
COMPARE = os.environ.get("SIGIL_COMPARE") == "1"


def size(ci: int, full: int) -> int:
    return full if FULL else ci


def record(scenario: str, client: str, **figures: Any) -> None:
    """Appends the figures of one run to $SIGIL_RELIABILITY_LOG, if set."""
    path = os.environ.get("SIGIL_RELIABILITY_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"scenario": scenario, "client": client, **figures}) + "\n")


CLIENTS = ["sync", "asyncio"] + (["websockets-sync", "websockets-asyncio"] if COMPARE else [])

ASYNC_ECHO = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None,
                     backlog=2048) as s:
        print(s.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    """ws://127.0.0.1:PORT of a websockets asyncio echo server in a child process."""
    with child_server(ASYNC_ECHO) as url:
        yield url


# ---- the clients, behind one small interface ---------------------------------------------------


class Client:
    """Opens connections with one client library and runs coroutines for the asyncio ones."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop() if "asyncio" in name else None

    def run(self, coro: Any) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()

    def cycle(self, url: str) -> None:
        """One connect, one round trip, one close."""
        if self.name == "sync":
            with sigil_ws.connect(url, compression=None) as ws:
                ws.send("x")
                assert ws.recv() == "x"
        elif self.name == "asyncio":

            async def go() -> None:
                async with sigil_ws.asyncio.connect(url, compression=None) as ws:
                    await ws.send("x")
                    assert await ws.recv() == "x"

            self.run(go())
        elif self.name == "websockets-sync":
            from websockets.sync.client import connect

            with connect(url, compression=None) as ws:
                ws.send("x")
                assert ws.recv() == "x"
        else:
            from websockets.asyncio.client import connect as aconnect

            async def go() -> None:
                async with aconnect(url, compression=None) as ws:
                    await ws.send("x")
                    assert await ws.recv() == "x"

            self.run(go())

    def stream(self, url: str, count: int, batch: int, sample: Callable[[int], None]) -> None:
        """``count`` messages echoed on one connection, ``batch`` in flight at a time."""
        payloads = [f"{i:08d}".encode() * 8 for i in range(batch)]
        if self.name in ("sync", "websockets-sync"):
            if self.name == "sync":
                ws: Any = sigil_ws.connect(url, compression=None)
            else:
                from websockets.sync.client import connect

                ws = connect(url, compression=None)
            with ws:
                for done in range(0, count, batch):
                    for p in payloads:
                        ws.send(p)
                    for p in payloads:
                        assert ws.recv() == p
                    sample(done + batch)
            return

        async def go() -> None:
            if self.name == "asyncio":
                ws: Any = await sigil_ws.asyncio.connect(url, compression=None)
            else:
                from websockets.asyncio.client import connect as aconnect

                ws = await aconnect(url, compression=None)
            async with ws:
                for done in range(0, count, batch):
                    for p in payloads:
                        await ws.send(p)
                    for p in payloads:
                        assert await ws.recv() == p
                    sample(done + batch)

        self.run(go())


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    c = Client(str(request.param))
    yield c
    c.close()


def flat(samples: list[int], slack: int) -> bool:
    """The samples after the first (warm-up) stay within ``slack`` of the second."""
    return all(s - samples[1] <= slack for s in samples[1:])


# ---- connect/close cycles -----------------------------------------------------------------


@pytest.mark.timeout(1800)
def test_connect_close_cycles_keep_rss_and_fds_flat(echo_url: str, client: Client) -> None:
    """20k connect/round-trip/close cycles (CI: 1000): RSS and open fds sampled every 10 %
    stay flat after the first sample."""
    cycles = size(1000, 20_000)
    every = cycles // 10
    rss_samples: list[int] = []
    fd_samples: list[int] = []
    start = time.monotonic()
    for i in range(cycles):
        client.cycle(echo_url)
        if (i + 1) % every == 0:
            rss_samples.append(rss())
            fd_samples.append(len(open_fds()))
    elapsed = time.monotonic() - start
    growth = rss_samples[-1] - rss_samples[1]
    record(
        "connect-close cycles",
        client.name,
        count=cycles,
        seconds=round(elapsed, 1),
        rss_growth_kib=growth // 1024,
        fds=sorted(set(fd_samples)),
    )
    assert len(set(fd_samples[1:])) == 1, f"open fds drift: {fd_samples}"
    assert flat(rss_samples, 4 * 2**20), f"RSS grows: {[s // 2**20 for s in rss_samples]} MiB"


# ---- a million messages on one connection ------------------------------------------------


@pytest.mark.timeout(1800)
def test_a_million_messages_keep_rss_flat(echo_url: str, client: Client) -> None:
    """1M echoed 64-byte messages on one connection (CI: 50k), 100 in flight: RSS sampled
    every 10 % stays flat."""
    count = size(50_000, 1_000_000)
    every = count // 10
    samples: list[int] = []

    def sample(done: int) -> None:
        if done % every == 0:
            samples.append(rss())

    start = time.monotonic()
    client.stream(echo_url, count, 100, sample)
    elapsed = time.monotonic() - start
    record(
        "messages on one connection",
        client.name,
        count=count,
        seconds=round(elapsed, 1),
        rss_growth_kib=(samples[-1] - samples[1]) // 1024,
    )
    assert flat(samples, 2 * 2**20), f"RSS grows: {[s // 2**20 for s in samples]} MiB"


# ---- many connections -------------------------------------------------------------------


@pytest.mark.timeout(1800)
def test_asyncio_connections_times_round_trips(echo_url: str) -> None:
    """1000 asyncio connections open at once, 100 round trips each (CI: 200 x 20)."""
    conns, trips = size(200, 1000), size(20, 100)

    async def one(i: int, ready: asyncio.Barrier) -> int:
        async with sigil_ws.asyncio.connect(echo_url, compression=None, open_timeout=60) as ws:
            await ready.wait()
            for j in range(trips):
                msg = f"{i}:{j}"
                await ws.send(msg)
                assert await ws.recv() == msg
            return trips

    async def main() -> int:
        ready = asyncio.Barrier(conns)
        return sum(await asyncio.gather(*(one(i, ready) for i in range(conns))))

    before = len(open_fds())
    start = time.monotonic()
    total = asyncio.run(main())
    elapsed = time.monotonic() - start
    record(
        "asyncio connections x round trips",
        "asyncio",
        connections=conns,
        round_trips=total,
        seconds=round(elapsed, 1),
    )
    assert total == conns * trips
    assert len(open_fds()) <= before + 2


@pytest.mark.timeout(1800)
def test_sync_threads_each_with_a_connection(echo_url: str) -> None:
    """200 threads, each with its own sync connection, round trips at the same time (CI: 50)."""
    threads_n, trips = size(50, 200), size(20, 100)
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def worker(i: int) -> None:
        try:
            with sigil_ws.connect(echo_url, compression=None, open_timeout=60) as ws:
                barrier.wait(60)
                for j in range(trips):
                    msg = f"{i}:{j}".encode()
                    ws.send(msg)
                    assert ws.recv() == msg
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    before = len(open_fds())
    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    assert not errors, errors[:3]
    record(
        "sync threads each with a connection",
        "sync",
        threads=threads_n,
        round_trips=threads_n * trips,
        seconds=round(elapsed, 1),
    )
    assert len(open_fds()) <= before + 2


# ---- senders, an iterator and a closer on one connection -------------------------------------


def share_and_close(url: str, delay: float) -> tuple[list[list[int]], list[list[int]], Any]:
    """One iteration: 8 senders, a reader iterating, a close() after ``delay`` seconds.
    Returns what each sender sent, what came back per sender, and the connection."""
    ws = sigil_ws.connect(url, compression=None)
    sent: list[list[int]] = [[] for _ in range(8)]
    received: list[list[int]] = [[] for _ in range(8)]
    outcomes: dict[str, BaseException | None] = {}

    def sender(t: int) -> None:
        try:
            for n in range(100_000):
                ws.send(f"{t}:{n}:" + "z" * (n % 97))
                sent[t].append(n)
        except ConnectionClosed:
            pass
        except BaseException as e:
            outcomes[f"sender {t}"] = e

    def reader() -> None:
        try:
            for message in ws:
                assert isinstance(message, str)
                t, n, pad = message.split(":")
                assert pad == "z" * (int(n) % 97), "a corrupted message"
                received[int(t)].append(int(n))
            outcomes["reader"] = None
        except BaseException as e:
            outcomes["reader"] = e

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(8)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    time.sleep(delay)
    closer = threading.Thread(target=ws.close)
    closer.start()
    for t in [*threads, closer]:
        t.join(20)
    assert not any(t.is_alive() for t in [*threads, closer]), "deadlock"
    errors = {k: v for k, v in outcomes.items() if v is not None}
    assert not errors, errors
    assert "reader" in outcomes, "the iterator did not end with ConnectionClosedOK"
    return sent, received, ws


@pytest.mark.timeout(1800)
def test_senders_iterator_and_closer_share_a_connection(echo_url: str) -> None:
    """8 threads send numbered messages while one thread iterates the echoes and another
    closes at a random moment; 200 iterations (CI: 30). Per sender, what comes back is a
    prefix of what it sent, in order and intact; nothing deadlocks; the iterator ends with
    ConnectionClosedOK (the for loop ends)."""
    iterations = size(30, 200)
    rng = random.Random(16)
    received_total = 0
    for it in range(iterations):
        sent, received, ws = share_and_close(echo_url, rng.uniform(0.0, 0.05))
        assert ws.close_code == 1000, f"iteration {it}"
        for t in range(8):
            got = received[t]
            assert got == sent[t][: len(got)], f"iteration {it}, thread {t}: lost or reordered"
            received_total += len(got)
    record(
        "8 senders + iterator + closer",
        "sync",
        iterations=iterations,
        messages_echoed=received_total,
    )

"""Faults on a real network path: a fault-injecting TCP proxy of our own (tests/faultproxy.py)
between the clients and the websockets reference server, plain and TLS.

- 10k messages of mixed sizes (1 B to 1 MiB) echoed through delay, jitter, re-chunking and
  stalls arrive intact and in order (sync and asyncio, ws and wss);
- a connection cut (FIN) or reset (RST) in the middle of a frame or a TLS record, or in the
  middle of the opening handshake, gives the typed error, in bounded time.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

import sigil_ws
import sigil_ws.asyncio
from sigil_ws import ConnectionClosedError, HandshakeError, TLSConfig

from .conftest import Certs, InThread
from .faultproxy import FaultProxy, Faults

Connect = Callable[..., Any]


@pytest.fixture(params=["sync", "asyncio"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["ws", "wss"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def upstream(scheme: str, ws_server: str, wss_server: str) -> tuple[str, int]:
    parts = urlsplit(ws_server if scheme == "ws" else wss_server)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@pytest.fixture
def proxies() -> Iterator[list[FaultProxy]]:
    made: list[FaultProxy] = []
    yield made
    for p in made:
        p.close()


def tls_options(scheme: str, certs: Certs) -> dict[str, Any]:
    return {"tls": TLSConfig(ca_data=certs.ca_pem)} if scheme == "wss" else {}


def mixed_sizes(count: int, seed: int) -> list[int]:
    """``count`` sizes from 1 B to 1 MiB: mostly small, some large, a few of 1 MiB."""
    rng = random.Random(seed)
    sizes = []
    for i in range(count):
        r = rng.random()
        if i % 1000 == 0:
            sizes.append(2**20)
        elif r < 0.9:
            sizes.append(rng.randint(1, 2048))
        elif r < 0.99:
            sizes.append(rng.randint(2049, 65536))
        else:
            sizes.append(rng.randint(65537, 2**20))
    return sizes


def payload(i: int, size: int) -> bytes:
    """Message ``i``: its number, then a pattern, so that loss, reorder and corruption show."""
    head = i.to_bytes(4, "big")
    body = (head * (size // 4 + 1))[: max(0, size - 4)]
    return (head + body)[:size] if size >= 4 else head[4 - size :]


COUNT = 10_000


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ten_thousand_mixed_messages_through_delay_and_stalls(
    proxies: list[FaultProxy],
    upstream: tuple[str, int],
    scheme: str,
    tls_certs: Certs,
    connect: Connect,
) -> None:
    """10k messages (1 B to 1 MiB, 30 MB) echoed through 2 ms delay + 3 ms jitter each way,
    chunks of 1..9000 bytes, a 200 ms stall every 4 MB: every echo is intact and in order."""
    down = Faults(delay=0.002, jitter=0.003, max_chunk=9000, stall_every=4 << 20, stall=0.2)
    up = Faults(delay=0.002, jitter=0.003, max_chunk=9000, stall_every=4 << 20, stall=0.2, seed=7)
    proxy = FaultProxy(upstream, down=down, up=up)
    proxies.append(proxy)
    ws = connect(proxy.url(scheme, "/echo"), max_size=None, **tls_options(scheme, tls_certs))
    sizes = mixed_sizes(COUNT, seed=16)
    window = threading.Semaphore(64)  # messages in flight: bounds the memory the test holds

    def sender() -> None:
        for i, size in enumerate(sizes):
            window.acquire(timeout=60)
            ws.send(payload(i, size))

    sending = InThread(sender)
    start = time.monotonic()
    for i, size in enumerate(sizes):
        got = ws.recv(timeout=60)
        assert isinstance(got, bytes)
        assert len(got) == size, f"message {i}: {len(got)} bytes, not {size}"
        assert got == payload(i, size), f"message {i} corrupted or out of order"
        window.release()
    outcome = sending.wait(10)
    assert outcome is not None and outcome.error is None, outcome
    assert proxy.stats.stalls >= 2
    assert time.monotonic() - start < 240


def push(proxy: FaultProxy, scheme: str, count: int = 20, size: int = 100_000) -> str:
    return proxy.url(scheme, f"/push/{count}/{size}")


@pytest.mark.parametrize("fault", ["cut", "reset"])
def test_cut_or_reset_mid_frame_gives_connection_closed_error(
    proxies: list[FaultProxy],
    upstream: tuple[str, int],
    scheme: str,
    tls_certs: Certs,
    connect: Connect,
    fault: str,
) -> None:
    """The server pushes 100 kB messages; the proxy ends the connection 250,007 bytes in (in
    the third frame, inside a TLS record over wss): the complete messages before arrive, then
    ConnectionClosedError 1006, within the timeout."""
    at = 250_007
    down = Faults(cut_after=at) if fault == "cut" else Faults(reset_after=at)
    proxy = FaultProxy(upstream, down=down)
    proxies.append(proxy)
    ws = connect(push(proxy, scheme), **tls_options(scheme, tls_certs))
    received = 0
    start = time.monotonic()
    with pytest.raises(ConnectionClosedError) as info:
        while True:
            assert ws.recv(timeout=10) == b"x" * 100_000
            received += 1
    assert info.value.code == 1006
    assert time.monotonic() - start < 10
    assert proxy.stats.cut
    # A reset may discard what the client's kernel had not handed over yet; a FIN never does.
    assert received == 2 if fault == "cut" else received <= 2


@pytest.mark.parametrize("fault", ["cut", "reset"])
@pytest.mark.parametrize("at", [20, 100])
def test_cut_or_reset_in_the_opening_handshake(
    proxies: list[FaultProxy],
    upstream: tuple[str, int],
    scheme: str,
    tls_certs: Certs,
    driver: str,
    fault: str,
    at: int,
) -> None:
    """The proxy ends the connection 20 or 100 bytes into the server's answer (the 101
    response, or the TLS handshake): connect() raises a typed error (HandshakeError, TLSError
    or OSError) at once, never a hang or another exception."""
    down = Faults(cut_after=at) if fault == "cut" else Faults(reset_after=at)
    proxy = FaultProxy(upstream, down=down)
    proxies.append(proxy)
    url = proxy.url(scheme, "/echo")
    options = {"open_timeout": 5, **tls_options(scheme, tls_certs)}

    def attempt() -> object:
        if driver == "sync":
            return sigil_ws.connect(url, **options)

        async def go() -> object:
            return await sigil_ws.asyncio.connect(url, **options)

        return asyncio.run(go())

    outcome = InThread(attempt).wait(6)
    assert outcome is not None, "connect() still blocked"
    assert isinstance(outcome.error, (HandshakeError, OSError)), outcome
    assert not isinstance(outcome.error, TimeoutError), outcome
    assert outcome.elapsed < 3

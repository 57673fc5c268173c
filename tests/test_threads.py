"""Threads: the GIL is released while blocked, send() never waits for recv(), signals work."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import pytest

import sigil_ws
from sigil_ws import ConcurrencyError, ConnectionClosedOK, TLSConfig

from .conftest import Certs

Connect = Callable[..., sigil_ws.Connection]


def spin(duration: float) -> int:
    """Pure-Python work: loop iterations completed in ``duration`` seconds."""
    count = 0
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        count += 1
    return count


def recv_timing_out(ws: sigil_ws.Connection, timeout: float, outcome: list[str]) -> None:
    """Runs recv() in a thread; records "timeout" when it times out as expected."""
    try:
        ws.recv(timeout=timeout)
    except TimeoutError:
        outcome.append("timeout")


def test_python_thread_runs_while_another_is_blocked_in_recv(
    ws_server: str, sync_connect: Connect
) -> None:
    ws = sync_connect(ws_server)
    baseline = spin(0.3)
    outcome: list[str] = []
    blocked = threading.Thread(target=recv_timing_out, args=(ws, 2, outcome))
    blocked.start()
    time.sleep(0.05)
    assert blocked.is_alive()
    during = spin(0.3)
    blocked.join()
    assert outcome == ["timeout"]
    # With the GIL held by recv() the loop would barely run; released, it runs at full speed
    # (allowing for a noisy two-core machine).
    assert during > 0.5 * baseline, (during, baseline)


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_send_completes_while_recv_is_blocked(
    ws_server: str, wss_server: str, tls_certs: Certs, sync_connect: Connect, secure: bool
) -> None:
    if secure:
        ws = sync_connect(wss_server, tls=TLSConfig(ca_data=tls_certs.ca_pem))
    else:
        ws = sync_connect(ws_server)
    received: list[str | bytes] = []
    reader = threading.Thread(target=lambda: received.append(ws.recv(timeout=10)))
    reader.start()
    time.sleep(0.1)
    assert reader.is_alive(), "recv() is blocked: nothing was sent yet"
    start = time.monotonic()
    for i in range(100):
        ws.send(f"from the other thread {i}")
    assert time.monotonic() - start < 2, "send() did not wait for the blocked recv()"
    reader.join(10)
    assert received == ["from the other thread 0"]
    for i in range(1, 100):
        assert ws.recv(timeout=5) == f"from the other thread {i}"


def test_two_concurrent_recv_calls_raise(ws_server: str, sync_connect: Connect) -> None:
    ws = sync_connect(ws_server)
    outcome: list[str] = []
    reader = threading.Thread(target=recv_timing_out, args=(ws, 1, outcome))
    reader.start()
    time.sleep(0.1)
    with pytest.raises(ConcurrencyError, match="another thread is already running recv"):
        ws.recv(timeout=1)
    reader.join()
    assert outcome == ["timeout"]


def test_close_from_another_thread_wakes_recv(ws_server: str, sync_connect: Connect) -> None:
    ws = sync_connect(ws_server)
    outcome: list[BaseException] = []

    def reader() -> None:
        try:
            ws.recv(timeout=10)
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    start = time.monotonic()
    ws.close()
    t.join(5)
    assert time.monotonic() - start < 3
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosedOK)
    assert ws.state is sigil_ws.State.CLOSED


def test_many_threads_sending_on_one_connection(ws_server: str, sync_connect: Connect) -> None:
    """Frames from concurrent senders never interleave: every message comes back whole."""
    ws = sync_connect(ws_server)
    senders, per_sender = 8, 200
    payload = {n: bytes([n]) * (1000 + n) for n in range(senders)}

    def sender(n: int) -> None:
        for _ in range(per_sender):
            ws.send(payload[n])

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for t in threads:
        t.start()
    counts = dict.fromkeys(range(senders), 0)
    for _ in range(senders * per_sender):
        message = ws.recv(timeout=10)
        assert isinstance(message, bytes)
        n = message[0]
        assert message == payload[n]
        counts[n] += 1
    for t in threads:
        t.join()
    assert counts == dict.fromkeys(range(senders), per_sender)


def test_connections_in_parallel_threads(ws_server: str) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with sigil_ws.connect(ws_server, open_timeout=5) as ws:
                for i in range(200):
                    ws.send(f"{n}-{i}")
                    assert ws.recv(timeout=5) == f"{n}-{i}"
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


class Alarm(Exception):
    pass


def test_signal_interrupts_recv(ws_server: str, sync_connect: Connect) -> None:
    """A signal handler's exception surfaces from recv() (so Ctrl-C works), promptly."""
    ws = sync_connect(ws_server)

    def on_alarm(signum: int, frame: object) -> None:
        raise Alarm

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        start = time.monotonic()
        with pytest.raises(Alarm):
            ws.recv(timeout=10)
        assert time.monotonic() - start < 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    ws.send("still usable")
    assert ws.recv(timeout=5) == "still usable"

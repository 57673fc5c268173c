"""Threads: the GIL is released while blocked, send() never waits for recv(), signals work."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

import sigil_ws
from sigil_ws import ConcurrencyError, ConnectionClosedOK, TLSConfig

from .conftest import Certs, InThread, RawConnection, RawServer, run_bounded

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
    outcome: list[str] = []
    blocked = threading.Thread(target=recv_timing_out, args=(ws, 3, outcome))
    blocked.start()
    time.sleep(0.05)
    assert blocked.is_alive()
    # With the GIL held by recv() this thread could not run a single bytecode until recv() timed
    # out: the loop would start only after the blocked thread had ended. Released, the loop runs
    # to its end while recv() is still waiting. (Not a speed ratio: other test workers share the
    # two cores, so how fast the loop runs says nothing.)
    during = spin(0.3)
    still_blocked = blocked.is_alive()
    blocked.join()
    assert outcome == ["timeout"]
    assert still_blocked, "recv() held the GIL: this thread ran only after it returned"
    assert during > 0, during


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


FORKED_FROM_A_THREAD = """
import os, signal, sys, threading
import sigil_ws

url = sys.argv[1]
parent_ws = sigil_ws.connect(url)
try:
    parent_ws.recv(timeout=0.05)  # the main thread waits once: it is known as the main thread
except TimeoutError:
    pass


class Alarm(Exception):
    pass


def on_alarm(signum, frame):
    raise Alarm


def fork_and_wait():
    pid = os.fork()
    if pid == 0:
        # This thread is the child's only thread, so its main thread: signals reach it.
        signal.signal(signal.SIGALRM, on_alarm)
        ws = sigil_ws.connect(url)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        try:
            ws.recv(timeout=5)
        except Alarm:
            os._exit(0)
        except TimeoutError:
            os._exit(3)
        os._exit(4)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)


t = threading.Thread(target=fork_and_wait)
t.start()
t.join()
"""


@pytest.mark.timeout(30)
def test_signal_interrupts_recv_in_a_child_forked_from_a_thread(raw_server: RawServer) -> None:
    """After os.fork() from a thread, that thread is the child's main thread: a signal
    handler's exception still ends its recv(), not the recv() timeout."""
    hold = threading.Event()
    try:
        url = silent_after_upgrade(raw_server, hold, upgrade=True)
        child = subprocess.run(
            [sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORKED_FROM_A_THREAD, url],
            capture_output=True,
            text=True,
            timeout=25,
        )
    finally:
        hold.set()
    assert child.stdout.strip() == "0", (child.stdout, child.stderr[-800:])


# ---- regressions: Ctrl-C, writes without a deadline, the README iteration pattern ----------------

# The child restores Python's SIGINT handler: a parent running in the background may have
# left SIGINT ignored, and then Python installs no KeyboardInterrupt handler.
CHILD_PRELUDE = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "import sigil_ws, sigil_ws.asyncio\n"
    "url = sys.argv[1]\n"
)


def interrupt_child(script: str, url: str) -> tuple[float, str]:
    """Runs ``script`` in a fresh interpreter; once it prints "ready" (it is about to block),
    sends SIGINT 0.3 s later. Returns the seconds the child took to exit after the signal and
    its stderr; fails if the child is still running 1.5 s after the signal."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_PRELUDE + script, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if readable else ""
        if line != "ready\n":
            proc.kill()
            pytest.fail(f"the child never got ready: {line!r} {proc.communicate()[1]}")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=1.5)
        except subprocess.TimeoutExpired:
            stderr = None
        if stderr is None:
            proc.kill()
            _, stderr = proc.communicate()
            pytest.fail(f"still running 1.5 s after SIGINT; stderr: {stderr[-500:]!r}")
        return time.monotonic() - start, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def assert_keyboard_interrupt(elapsed: float, stderr: str) -> None:
    assert elapsed < 1.5
    assert "KeyboardInterrupt" in stderr, stderr
    assert "TimeoutError" not in stderr, stderr


def silent_after_upgrade(raw_server: RawServer, hold: threading.Event, upgrade: bool) -> str:
    """A server that (optionally) upgrades and then neither reads nor writes until ``hold``."""

    def script(conn: RawConnection) -> None:
        if upgrade:
            conn.upgrade()
        hold.wait(15)

    return raw_server.serve(script)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "script",
    [
        pytest.param(
            "print('ready', flush=True)\nsigil_ws.connect(url, open_timeout=30)\n", id="sync"
        ),
        pytest.param(
            "import asyncio\n"
            "async def main() -> None:\n"
            "    await sigil_ws.asyncio.connect(url, open_timeout=30)\n"
            "print('ready', flush=True)\n"
            "asyncio.run(main())\n",
            id="asyncio",
        ),
    ],
)
def test_ctrl_c_interrupts_connect(raw_server: RawServer, script: str) -> None:
    """API.md: Ctrl-C reaches the caller promptly from connect(), not once open_timeout passed
    (nor as a TimeoutError)."""
    hold = threading.Event()
    try:
        url = silent_after_upgrade(raw_server, hold, upgrade=False)
        assert_keyboard_interrupt(*interrupt_child(script, url))
    finally:
        hold.set()


@pytest.mark.timeout(20)
def test_ctrl_c_interrupts_close(raw_server: RawServer) -> None:
    """A server that never answers the close frame: Ctrl-C ends close() long before
    close_timeout."""
    hold = threading.Event()
    script = (
        "ws = sigil_ws.connect(url, close_timeout=30)\nprint('ready', flush=True)\nws.close()\n"
    )
    try:
        url = silent_after_upgrade(raw_server, hold, upgrade=True)
        assert_keyboard_interrupt(*interrupt_child(script, url))
    finally:
        hold.set()


@pytest.mark.timeout(20)
def test_ctrl_c_interrupts_a_blocked_send(raw_server: RawServer) -> None:
    """A server that never reads: send() blocks once the socket buffers are full; Ctrl-C
    ends it.

    The messages are 16 MiB: with 1 MiB ones the signal often lands where the rest of the
    interrupted write still fits in the socket buffer, and the bug goes unseen.
    """
    hold = threading.Event()
    script = (
        "ws = sigil_ws.connect(url)\nprint('ready', flush=True)\n"
        "while True:\n    ws.send(b'x' * 2**24)\n"
    )
    try:
        url = silent_after_upgrade(raw_server, hold, upgrade=True)
        assert_keyboard_interrupt(*interrupt_child(script, url))
    finally:
        hold.set()


@pytest.mark.timeout(20)
def test_close_ends_a_send_blocked_on_a_peer_that_does_not_read(
    raw_server: RawServer, sync_connect: Connect
) -> None:
    """close() from another thread returns within close_timeout (plus margin) although a
    send() holds the socket; that send() then raises ConnectionClosed."""
    hold = threading.Event()
    try:
        ws = sync_connect(silent_after_upgrade(raw_server, hold, upgrade=True), close_timeout=1)
        sent = [0]

        def sender() -> None:
            while True:
                ws.send(b"x" * 65536)
                sent[0] += 1

        sending = InThread(sender)
        assert sending.wait(0.5) is None, f"send() never blocked: {sending.outcomes}"
        assert sent[0] > 0
        start = time.monotonic()
        closed = run_bounded(ws.close, 2.5)
        assert closed is not None, "close() still blocked after 2.5 s"
        assert closed.error is None
        assert ws.state is sigil_ws.State.CLOSED
        ended = sending.wait(max(0.0, start + 3 - time.monotonic()))
        assert ended is not None, "send() still blocked 3 s after close()"
        assert isinstance(ended.error, sigil_ws.ConnectionClosed), ended
    finally:
        hold.set()


@pytest.mark.timeout(40)
def test_iterating_thread_ends_normally_when_another_thread_closes(ws_server: str) -> None:
    """The README pattern: one thread runs ``for m in ws: handle(m)``, another sends and then
    closes. The iteration just stops (the close is normal), never with ConcurrencyError.

    The race: close() takes the receiving side while the iterating thread is in handle();
    echoes of 1 MiB keep close() busy long enough for the next iteration to run into it
    (today about half of the attempts fail).
    """
    for attempt in range(40):
        ws = sigil_ws.connect(ws_server, open_timeout=5, close_timeout=2)
        first = threading.Event()

        def iterate(ws: sigil_ws.Connection = ws, first: threading.Event = first) -> None:
            for _ in ws:
                first.set()
                time.sleep(0.001)  # handle(message)

        iterating = InThread(iterate)
        for i in range(3):
            ws.send(bytes([i]) * 2**20)
        assert first.wait(5), f"attempt {attempt}: no echo"
        ws.close()
        outcome = iterating.wait(5)
        assert outcome is not None, f"attempt {attempt}: the iteration did not end"
        assert outcome.error is None, f"attempt {attempt}: {outcome.error!r}"
        assert ws.state is sigil_ws.State.CLOSED

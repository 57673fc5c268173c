"""Peers for the tests, all on 127.0.0.1 port 0.

- ``ws_server``: the ``websockets`` package's sync server (the reference peer), in a thread.
  Its handler picks a behaviour from the request path (see ``reference_handler``).
- ``raw_server``: a raw-socket server of our own that plays a script of bytes, for malformed
  and adversarial traffic.
- ``tls_certs`` / ``wss_server``: real TLS with certificates made by ``trustme``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import trustme
import uvloop
from websockets.sync.server import Server, ServerConnection, serve

import sigil_ws
import sigil_ws.asyncio

T = TypeVar("T")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---- the reference peer ------------------------------------------------------------------------


def reference_handler(ws: ServerConnection) -> None:
    """Behaviour by path: /echo (default), /headers, /close/CODE, /push/N/SIZE, /silent,
    /ping-then-echo."""
    assert ws.request is not None
    path = ws.request.path.split("?")[0]
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] == "echo":
        for message in ws:
            ws.send(message)
    elif parts[0] == "headers":
        ws.send(json.dumps(dict(ws.request.headers.raw_items())))
        for message in ws:
            ws.send(message)
    elif parts[0] == "close":
        ws.close(int(parts[1]), "bye" if len(parts) < 3 else parts[2])
    elif parts[0] == "push":
        count, size = int(parts[1]), int(parts[2])
        payload = b"x" * size
        for _ in range(count):
            ws.send(payload)
        ws.close(1000, "done")
    elif parts[0] == "silent":
        time.sleep(30)
    else:
        ws.close(1008, "unknown path")


def _select_subprotocol(ws: ServerConnection, offered: Any) -> str | None:
    return "chat" if "chat" in offered else None


@pytest.fixture(scope="session")
def ws_server() -> Iterator[str]:
    """ws://127.0.0.1:PORT of a websockets echo/behaviour server."""
    server = serve(
        reference_handler,
        "127.0.0.1",
        0,
        compression=None,
        max_size=None,
        select_subprotocol=_select_subprotocol,
        ping_interval=None,
    )
    yield from _run_server(server, "ws")


def _run_server(server: Server, scheme: str) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.socket.getsockname()[1]
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(5)


@dataclass
class Certs:
    """A trustme CA and a server certificate for localhost and 127.0.0.1."""

    ca: trustme.CA
    server_context: ssl.SSLContext
    ca_pem: bytes
    ca_file: str


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Certs(ca, context, ca.cert_pem.bytes(), str(ca_file))


@pytest.fixture(scope="session")
def wss_server(tls_certs: Certs) -> Iterator[str]:
    """wss://127.0.0.1:PORT of the reference server, with a trustme certificate."""
    server = serve(
        reference_handler,
        "127.0.0.1",
        0,
        compression=None,
        max_size=None,
        ssl=tls_certs.server_context,
        select_subprotocol=_select_subprotocol,
        ping_interval=None,
    )
    yield from _run_server(server, "wss")


# ---- the raw scripted server -------------------------------------------------------------------


def server_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """A frame as a (possibly misbehaving) server would send it."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("client closed the connection")
        data += chunk
    return data


def read_client_frame(sock: socket.socket) -> tuple[int, bool, bytes]:
    """Reads one frame from the client: (opcode, fin, unmasked payload). Asserts it is masked."""
    b0, b1 = read_exact(sock, 2)
    assert b1 & 0x80, "client frames must be masked"
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", read_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", read_exact(sock, 8))
    key = read_exact(sock, 4)
    data = read_exact(sock, n)
    return b0 & 0x0F, bool(b0 & 0x80), bytes(b ^ key[i % 4] for i, b in enumerate(data))


def accept_for(request: bytes) -> str:
    import base64
    import hashlib

    for line in request.decode("latin-1").split("\r\n"):
        if line.lower().startswith("sec-websocket-key:"):
            key = line.split(":", 1)[1].strip()
            return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    raise AssertionError("no Sec-WebSocket-Key in request")


def upgrade_response(request: bytes, extra: str = "") -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_for(request)}\r\n{extra}\r\n"
    ).encode()


@dataclass
class RawConnection:
    """The server side of one accepted connection, given to a script."""

    sock: socket.socket
    request: bytes

    def upgrade(self, extra: str = "", trailing: bytes = b"") -> None:
        self.sock.sendall(upgrade_response(self.request, extra) + trailing)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> tuple[int, bool, bytes]:
        return read_client_frame(self.sock)

    def expect_close(self, code: int) -> bytes:
        """Reads frames until a close frame; asserts its code; returns its reason."""
        while True:
            opcode, _, payload = self.recv_frame()
            if opcode == 8:
                assert struct.unpack("!H", payload[:2])[0] == code, payload
                return payload[2:]


Script = Callable[[RawConnection], None]


@dataclass
class RawServer:
    """Accepts connections and runs ``script`` on each in a thread; records script errors."""

    sock: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    script: Script | None = None
    errors: list[BaseException] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.sock.getsockname()[1]}"

    def serve(self, script: Script) -> str:
        self.script = script
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)
        return self.url

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, conn: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            assert self.script is not None
            self.script(RawConnection(conn, request))
        except (EOFError, ConnectionResetError, BrokenPipeError):
            pass
        except BaseException as e:  # reported by the fixture
            self.errors.append(e)
        finally:
            conn.close()
            self.done.set()

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone does not on Linux.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    server = RawServer()
    try:
        yield server
    finally:
        server.close()
    if server.errors:
        raise server.errors[0]


def open_fds() -> set[int]:
    """This process's open file descriptors (Linux)."""
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


class LoopThread:
    """An event loop running in its own thread, so sync-style tests can drive asyncio code."""

    def __init__(self, uvloop: bool = False) -> None:
        if uvloop:
            import uvloop as uv

            self.loop: asyncio.AbstractEventLoop = uv.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class AsyncioFacade:
    """The sync Connection API over a sigil_ws.asyncio Connection, for parametrised tests."""

    def __init__(self, runner: LoopThread, connection: sigil_ws.asyncio.Connection) -> None:
        self._runner = runner
        self._connection = connection

    def send(self, message: Any, **kwargs: Any) -> None:
        self._runner.run(self._connection.send(message, **kwargs))

    def recv(self, timeout: float | None = None) -> str | bytes:
        return self._runner.run(self._connection.recv(timeout))

    def ping(self, data: Any = None) -> None:
        self._runner.run(self._connection.ping(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._runner.run(self._connection.close(code, reason))

    def __iter__(self) -> Iterator[str | bytes]:
        while True:
            try:
                yield self.recv()
            except sigil_ws.ConnectionClosedOK:
                return

    def __enter__(self) -> AsyncioFacade:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __repr__(self) -> str:
        return repr(self._connection)


@pytest.fixture
def sync_connect() -> Iterator[Callable[..., sigil_ws.Connection]]:
    """sigil_ws.connect, closing every connection the test opened."""
    opened: list[sigil_ws.Connection] = []

    def _connect(url: str, **options: Any) -> sigil_ws.Connection:
        options.setdefault("open_timeout", 5)
        options.setdefault("close_timeout", 2)
        ws = sigil_ws.connect(url, **options)
        opened.append(ws)
        return ws

    yield _connect
    for ws in opened:
        ws.close()


@pytest.fixture(params=["sync", "asyncio", "uvloop"])
def driver(request: pytest.FixtureRequest) -> str:
    """Which client a behaviour test runs against."""
    return str(request.param)


@pytest.fixture
def connect(driver: str) -> Iterator[Callable[..., Any]]:
    """Opens a connection with the driver under test, with the sync API; closes it after."""
    opened: list[Any] = []
    runner = None if driver == "sync" else LoopThread(uvloop=driver == "uvloop")

    def _connect(url: str, **options: Any) -> Any:
        options.setdefault("open_timeout", 5)
        options.setdefault("close_timeout", 2)
        if runner is None:
            ws: Any = sigil_ws.connect(url, **options)
        else:
            ws = AsyncioFacade(runner, runner.run(sigil_ws.asyncio.connect(url, **options)))
        opened.append(ws)
        return ws

    yield _connect
    for ws in opened:
        ws.close()
    if runner is not None:
        runner.stop()


# ---- helpers for the regression tests ----------------------------------------------------------


def rss() -> int:
    """This process's resident set size in bytes (Linux), once the C allocator has given its
    free memory back (glibc's malloc_trim): so that it counts live memory, not what earlier
    tests freed (which new allocations would reuse unseen) or what malloc keeps cached."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def heap_in_use() -> int:
    """Bytes that glibc's malloc has handed out and not taken back, in every arena, mmapped
    chunks included (``malloc_info``), after ``malloc_trim``: what the process holds in the C
    heap, not what the allocator keeps free for reuse. sigil-ws's Rust core allocates there;
    so do Python objects above 512 bytes on a GIL build, while a free-threaded build puts every
    Python object in its own allocator (mimalloc), which this does not see: pair it with
    ``tracemalloc`` for the Python side."""
    libc = ctypes.CDLL(None)
    libc.malloc_trim(0)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.NamedTemporaryFile("r", suffix=".xml") as report:
        stream = libc.fopen(report.name.encode(), b"w")
        if not stream or libc.malloc_info(0, stream) != 0:
            raise OSError("malloc_info failed")
        libc.fclose(stream)
        xml = report.read()
    # The totals over every arena follow the last per-arena <heap> element.
    totals = xml[xml.rfind("</heap>") :]

    def field(kind: str, name: str) -> int:
        found = re.search(rf'<{kind} type="{name}"(?: count="\d+")? size="(\d+)"', totals)
        if found is None:
            raise LookupError(f"malloc_info has no {kind} {name}: {totals[:200]!r}")
        return int(found.group(1))

    free = field("total", "fast") + field("total", "rest")
    return field("system", "current") - free + field("total", "mmap")


ECHO_PEAK = """
import asyncio, sys, tracemalloc
import sigil_ws, sigil_ws.asyncio

def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise LookupError(field)

url, driver, size, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fresh = sys.argv[5] == "fresh"
payload = b"x" * size

def message(i):
    return bytes([i]) * size if fresh else payload

def reset_peak():
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

if fresh:
    del payload

if driver == "sync":
    ws = sigil_ws.connect(url, max_size=None)
    ws.send(b"warm"); ws.recv()
    reset_peak(); idle = rss("VmRSS"); tracemalloc.start()
    for i in range(rounds):
        ws.send(message(i))
        assert len(ws.recv()) == size
    peak = rss("VmHWM"); objects = tracemalloc.get_traced_memory()[1]
    ws.close()
else:
    async def main():
        ws = await sigil_ws.asyncio.connect(url, max_size=None)
        await ws.send(b"warm"); await ws.recv()
        reset_peak(); idle = rss("VmRSS"); tracemalloc.start()
        for i in range(rounds):
            await ws.send(message(i))
            assert len(await ws.recv()) == size
        peak = rss("VmHWM"); objects = tracemalloc.get_traced_memory()[1]
        await ws.close()
        return idle, peak, objects
    idle, peak, objects = asyncio.run(main())
print(idle, peak, objects)
"""


def echo_peak(url: str, driver: str, size: int, rounds: int, *, fresh: bool) -> list[int]:
    """Echoes ROUNDS messages of SIZE bytes in a fresh process and returns its RSS when idle,
    its peak RSS, and the peak of its Python objects (tracemalloc), in bytes. With ``fresh``
    each message is made in its round and dropped after it; else one payload, made before
    idle, is sent every round."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            ECHO_PEAK,
            url,
            driver,
            str(size),
            str(rounds),
            "fresh" if fresh else "same",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=True,
    )
    return [int(n) for n in out.stdout.split()]


ECHO_SERVER = """
from websockets.sync.server import serve

def echo(ws):
    for message in ws:
        ws.send(message)

with serve(echo, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None) as s:
    print(s.socket.getsockname()[1], flush=True)
    s.serve_forever()
"""


@contextlib.contextmanager
def child_server(script: str) -> Iterator[str]:
    """ws://127.0.0.1:PORT of a server run by ``script`` (Python source that prints its port,
    then serves) in a child process, killed on leaving the block."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"ws://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="session")
def ws_echo_process() -> Iterator[str]:
    """ws://127.0.0.1:PORT of a websockets echo server in a child process: for memory tests,
    where the in-process reference server's own buffers would count in our RSS (its handler
    holds the last message until the next one)."""
    with child_server(ECHO_SERVER) as url:
        yield url


@dataclass
class Outcome:
    """How a call run by ``run_bounded`` ended."""

    elapsed: float
    value: object = None
    error: BaseException | None = None


class InThread:
    """Runs ``call`` in a daemon thread and records how it ends."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.outcomes: list[Outcome] = []
        self.start = time.monotonic()
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            value = call()
        except BaseException as e:
            self.outcomes.append(Outcome(time.monotonic() - self.start, error=e))
        else:
            self.outcomes.append(Outcome(time.monotonic() - self.start, value=value))

    def wait(self, limit: float) -> Outcome | None:
        """The outcome, or ``None`` when the call is still running ``limit`` seconds from
        now."""
        self.thread.join(limit)
        return self.outcomes[0] if self.outcomes else None


def run_bounded(call: Callable[[], object], limit: float) -> Outcome | None:
    """Runs ``call`` in a daemon thread and waits at most ``limit`` seconds for it.

    Returns ``None`` when the call is still blocked, so that a test fails with an assertion
    instead of hanging; the thread ends once the test releases the peer it is blocked on.
    """
    return InThread(call).wait(limit)


def send_until(sock: socket.socket, data: bytes, stop: threading.Event, deadline: float) -> bool:
    """Sends ``data`` without blocking past ``stop`` or ``deadline``: False if they came first.

    For servers whose client may stop reading: a plain ``sendall`` would block forever. The
    socket must have a (short) timeout.
    """
    view = memoryview(data)
    while view:
        if stop.is_set() or time.monotonic() > deadline:
            return False
        try:
            view = view[sock.send(view) :]
        except TimeoutError:
            continue
    return True


def drain(sock: socket.socket, stop: threading.Event) -> None:
    """Reads and discards what the client sends until it goes away or ``stop`` is set."""
    while not stop.is_set():
        try:
            if not sock.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def streaming_server(
    raw_server: RawServer,
    chunks: Iterable[bytes],
    stop: threading.Event,
    *,
    interval: float = 0.0,
    start: threading.Event | None = None,
    finished: threading.Event | None = None,
    discard_input: bool = False,
    limit: float = 15.0,
) -> str:
    """A server that upgrades, then sends ``chunks`` (``interval`` seconds apart). It reads
    nothing, or with ``discard_input`` reads and discards everything (so that what the client
    writes never backs up). It stops when ``stop`` is set, when the client goes away, or after
    ``limit`` seconds; once the chunks run out it sets ``finished`` and idles until then."""

    def script(conn: RawConnection) -> None:
        conn.upgrade()
        deadline = time.monotonic() + limit
        conn.sock.settimeout(0.05)
        if discard_input:
            threading.Thread(target=drain, args=(conn.sock, stop), daemon=True).start()
        if start is not None:
            start.wait(limit)
        for chunk in chunks:
            if not send_until(conn.sock, chunk, stop, deadline):
                return
            if interval and stop.wait(interval):
                return
        if finished is not None:
            finished.set()
        stop.wait(max(0.0, deadline - time.monotonic()))

    return raw_server.serve(script)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[T]], T]:
    """Runs a coroutine to completion on the default loop or on uvloop (asyncio tests)."""

    def _run(awaitable: Awaitable[T]) -> T:
        async def main() -> T:
            return await awaitable

        if request.param == "uvloop":
            return uvloop.run(main())
        return asyncio.run(main())

    return _run

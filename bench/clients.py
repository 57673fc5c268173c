"""One benchmark measurement in a fresh process: ``python bench/clients.py CLIENT SCENARIO ...``.

Prints one JSON line: ``count`` (messages, round trips or connections), ``seconds`` (wall time
of the timed part), ``cpu`` (user + system seconds of this process during the timed part),
``rss_kb`` (peak RSS), ``gil`` (whether the GIL was on at the end: always on a GIL build; on a
free-threaded one, an extension module without free-threading support turns it on), and
``per_conn_kb`` for the idle scenario.

Scenarios (every client gets the same semantics: compression off, keepalive off, no size
limit, binary messages, each message delivered to Python as an object):

    pingpong URL SIZE SECONDS     send SIZE bytes, receive the echo, for SECONDS
    push URL N SIZE               receive N messages of SIZE bytes pushed by the server
    setup URL SECONDS             connect + handshake + close, for SECONDS
    threads URL K N SIZE          K threads, each with its own connection, each receiving a push
                                  of N messages and timing itself from just before its first
                                  receive to its last message: ``seconds`` runs from the first
                                  worker's start to the last one's end, ``cpu`` is the process's
                                  CPU over that span, ``workers`` has each worker's count,
                                  seconds, CPU (its own thread's) and start (from the first),
                                  ``overlap`` the share of the span when all of them ran
    idle URL K [HOLD]             hold K open connections; RSS per connection; with HOLD
                                  seconds, the CPU while they stay idle (with
                                  ``BENCH_KEEPALIVE=SECONDS``, each client's own keepalive
                                  pings at that interval)

With ``BENCH_DEFLATE=1`` in the environment (the compression scenarios, against the native
server's ``--deflate`` mode) every client offers permessage-deflate, ``pingpong`` sends JSON-like
text messages (64 distinct ones in turn, from :func:`market_message`) and ``push`` receives the
server's compressed JSON-like text.

The floors are clients too: ``raw`` (a plain socket reading the push stream into one reused
buffer, against the raw server; ``URL`` is then ``tcp://127.0.0.1:PORT``; with ``threads``, K
such sockets in K threads, timed like the clients') and ``pyobj`` (a C-level iterator yielding a
new bytes object per message, with the same loop). The native floors are in ``bench/native``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, cast

CA_FILE = os.environ.get("BENCH_CA_FILE")
DEFLATE = os.environ.get("BENCH_DEFLATE") == "1"
# Keepalive ping interval in seconds for the idle-keepalive scenario; off everywhere else.
KEEPALIVE = float(os.environ.get("BENCH_KEEPALIVE", "0")) or None
MASK64 = (1 << 64) - 1


def next_random(state: list[int]) -> int:
    """xorshift64*, the generator bench/native's deflate.rs uses."""
    x = state[0]
    x ^= x >> 12
    x ^= (x << 25) & MASK64
    x ^= x >> 27
    state[0] = x
    return (x * 0x2545F4914F6CDD1D) & MASK64


def market_message(state: list[int], seq: int, size: int) -> str:
    """A JSON-like market-data message of exactly SIZE characters (bench/native's twin)."""
    base = 1_764_000_000_000 + seq * 7
    out = f'{{"stream":"btcusdt@trade","seq":{seq},"data":['
    records: list[str] = []
    length = len(out)
    while True:
        r = next_random(state)
        record = (
            f'{{"e":"trade","E":{base},"s":"BTCUSDT","t":{3_000_000_000 + seq * 16 + (r & 15)},'
            f'"p":"{43_000 + (r >> 8) % 400}.{(r >> 20) % 100:02}","q":"0.{(r >> 28) % 10**8:08}",'
            f'"b":{9_000_000_000 + ((r * 7919) & MASK64) % 999_999_999},"T":{base - (r >> 60)},'
            f'"m":{"true" if r & 1 else "false"}}}'
        )
        extra = len(record) + (1 if records else 0)
        if length + extra + 2 > size:
            break
        records.append(record)
        length += extra
    return (out + ",".join(records) + "]}").ljust(size)


def echoed(received: Any, payload: str) -> bool:
    """Whether an echo is the text sent (websocket-rs hands out a buffer object, not str)."""
    if isinstance(received, str):
        return received == payload
    return bytes(memoryview(received)) == payload.encode()


def json_payloads(size: int) -> list[str]:
    state = [0x9E3779B97F4A7C15]
    return [market_message(state, seq, size) for seq in range(64)]


def ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=CA_FILE)


def gil_enabled() -> bool:
    """Whether the GIL is on now (an extension without free-threading support turns it on)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def cpu() -> float:
    """User + system CPU seconds of this process (all threads), at nanosecond resolution."""
    return time.process_time()


def peak_rss_kb() -> int:
    """VmHWM: this process's peak RSS (ru_maxrss would include the parent's, kept over exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def rss_now_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class Timer:
    def __enter__(self) -> Timer:
        self.c0, self.t0 = cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = cpu() - self.c0


def report(count: int, timer: Timer, **extra: Any) -> None:
    result = {
        "count": count,
        "seconds": timer.seconds,
        "cpu": timer.cpu,
        "rss_kb": peak_rss_kb(),
        "gil": gil_enabled(),
        **extra,
    }
    print(json.dumps(result), flush=True)


# ---- sync clients: connect(url) -> object with send/recv/close and iteration ---------------------


def sigil_sync_connect(url: str) -> Any:
    import sigil_ws

    tls = sigil_ws.TLSConfig(ca_file=CA_FILE) if url.startswith("wss") else None
    compression = "deflate" if DEFLATE else None
    return sigil_ws.connect(
        url, max_size=None, tls=tls, compression=compression, ping_interval=KEEPALIVE
    )


def websockets_sync_connect(url: str) -> Any:
    from websockets.sync.client import connect

    compression = "deflate" if DEFLATE else None
    kwargs: dict[str, Any] = {"compression": compression, "max_size": None}
    if url.startswith("wss"):
        kwargs["ssl"] = ssl_context()
    try:
        return connect(url, ping_interval=KEEPALIVE, **kwargs)
    except TypeError:
        return connect(url, **kwargs)


class WebsocketClientAdapter:
    """websocket-client with the iteration protocol the scenarios use."""

    def __init__(self, url: str) -> None:
        import websocket

        sslopt = {"ca_certs": CA_FILE} if url.startswith("wss") else None
        self.ws = websocket.create_connection(url, sslopt=sslopt, skip_utf8_validation=False)
        assert self.ws.sock is not None
        self.ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def recv(self) -> Any:
        return self.ws.recv()

    def __iter__(self) -> Any:
        import websocket

        while True:
            try:
                opcode, data = self.ws.recv_data(control_frame=False)
            except websocket.WebSocketConnectionClosedException:
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return
            yield data

    def close(self) -> None:
        self.ws.close()


def websocket_rs_sync_connect(url: str) -> Any:
    from websocket_rs.sync.client import connect  # type: ignore[import-not-found]

    return connect(url, tcp_nodelay=True)


SYNC_CLIENTS: dict[str, Callable[[str], Any]] = {
    "sigil-ws": sigil_sync_connect,
    "websockets": websockets_sync_connect,
    "websocket-client": WebsocketClientAdapter,
    "websocket-rs": websocket_rs_sync_connect,
}


def sync_pingpong(connect: Callable[[str], Any], url: str, size: int, seconds: float) -> None:
    ws = connect(url)
    if DEFLATE:
        return sync_pingpong_text(ws, json_payloads(size), seconds)
    payload = b"p" * size
    for _ in range(20):  # warm up
        ws.send(payload)
        ws.recv()
    count = 0
    with Timer() as timer:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(10):
                ws.send(payload)
                ws.recv()
            count += 10
    ws.close()
    report(count, timer)


def sync_pingpong_text(ws: Any, payloads: list[str], seconds: float) -> None:
    for payload in payloads[:20]:  # warm up
        ws.send(payload)
        assert echoed(ws.recv(), payload)
    count = 0
    with Timer() as timer:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for payload in payloads:
                ws.send(payload)
                ws.recv()
            count += len(payloads)
    ws.close()
    report(count, timer)


def sync_push(connect: Callable[[str], Any], url: str, n: int, size: int) -> None:
    count = 0
    with Timer() as timer:
        ws = connect(f"{url}/push?n={n}&size={size}")
        for _msg in ws:
            count += 1
    ws.close()
    assert count == n, (count, n)
    report(count, timer)


def sync_setup(connect: Callable[[str], Any], url: str, seconds: float) -> None:
    count = 0
    with Timer() as timer:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            connect(f"{url}/echo").close()
            count += 1
    report(count, timer)


def sync_threads(connect: Callable[[str], Any], url: str, k: int, n: int, size: int) -> None:
    """K threads, each receiving its own push over its own connection, each timing itself."""
    clocks = [WorkerClock() for _ in range(k)]
    counts = [0] * k
    barrier = threading.Barrier(k)

    def worker(i: int) -> None:
        ws = connect(f"{url}/push?n={n}&size={size}")
        barrier.wait()
        clock = clocks[i]
        clock.start()
        count = 0
        for _msg in ws:
            count += 1
        clock.stop()
        counts[i] = count
        ws.close()

    run_workers(worker, k, barrier)
    assert counts == [n] * k, counts
    report_workers(counts, clocks)


class WorkerClock:
    """One worker's own start and end: wall clock, this thread's CPU and the process's CPU.

    The scenario's span is from the first worker's start to the last one's end; the process CPU
    read at those two moments covers every thread, the libraries' own background threads too.
    """

    def start(self) -> None:
        self.t0, self.thread0, self.process0 = time.perf_counter(), time.thread_time(), cpu()

    def stop(self) -> None:
        self.t1, self.thread1, self.process1 = time.perf_counter(), time.thread_time(), cpu()


def run_workers(worker: Callable[[int], None], k: int, barrier: threading.Barrier) -> None:
    """Run worker(0..K-1) in K threads; a worker's exception fails the measurement (and breaks
    the barrier the others wait at)."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            worker(i)
        except BaseException as e:
            errors.append(e)
            barrier.abort()
            raise

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def report_workers(counts: list[int], clocks: list[WorkerClock]) -> None:
    """The aggregate over the span from the first start to the last end, and each worker."""
    first = min(clocks, key=lambda c: c.t0)
    last = max(clocks, key=lambda c: c.t1)
    span = last.t1 - first.t0
    workers = [
        {
            "count": count,
            "seconds": c.t1 - c.t0,
            "cpu": c.thread1 - c.thread0,
            "start": c.t0 - first.t0,
        }
        for count, c in zip(counts, clocks, strict=True)
    ]
    result = {
        "count": sum(counts),
        "seconds": span,
        "cpu": last.process1 - first.process0,
        "rss_kb": peak_rss_kb(),
        "workers": workers,
        # All workers running at once: the share of the span from the last start to the first
        # end (1.0 when they start and end together, 0 or less when one ends before another
        # starts).
        "overlap": (min(c.t1 for c in clocks) - max(c.t0 for c in clocks)) / span,
        "gil": gil_enabled(),
    }
    print(json.dumps(result), flush=True)


def sync_idle(connect: Callable[[str], Any], url: str, k: int, hold: float = 0.0) -> None:
    first = connect(f"{url}/echo")  # load the library's code and caches before measuring
    before = rss_now_kb()
    with Timer() as timer:
        conns = [connect(f"{url}/echo") for _ in range(k)]
    with Timer() as held:
        time.sleep(hold)
    after = rss_now_kb()
    for c in [first, *conns]:
        c.close()
    report(k, timer, per_conn_kb=(after - before) / k, **hold_figures(held, hold))


def hold_figures(held: Timer, hold: float) -> dict[str, float]:
    """CPU (percent of one core) while the connections were held idle, when they were."""
    return {"hold_cpu_pct": 100 * held.cpu / held.seconds} if hold else {}


# ---- asyncio clients ------------------------------------------------------------------------


class AsyncClient:
    """connect / send / recv / iterate / close over each library's asyncio API."""

    async def connect(self, url: str) -> Any:
        raise NotImplementedError

    async def send(self, ws: Any, data: bytes | str) -> None:
        await ws.send(data)

    async def recv(self, ws: Any) -> Any:
        return await ws.recv()

    async def count_messages(self, ws: Any) -> int:
        count = 0
        async for _msg in ws:
            count += 1
        return count

    async def close(self, ws: Any) -> None:
        await ws.close()


class SigilAsync(AsyncClient):
    async def connect(self, url: str) -> Any:
        import sigil_ws
        import sigil_ws.asyncio

        tls = sigil_ws.TLSConfig(ca_file=CA_FILE) if url.startswith("wss") else None
        compression = "deflate" if DEFLATE else None
        return await sigil_ws.asyncio.connect(url, max_size=None, tls=tls, compression=compression)


class WebsocketsAsync(AsyncClient):
    async def connect(self, url: str) -> Any:
        from websockets.asyncio.client import connect

        ssl_arg = ssl_context() if url.startswith("wss") else None
        compression = "deflate" if DEFLATE else None
        return await connect(
            url, compression=compression, max_size=None, ping_interval=KEEPALIVE, ssl=ssl_arg
        )


class PicowsWebsockets(AsyncClient):
    """picows' websockets-compatible client, the picows API that can compress."""

    async def connect(self, url: str) -> Any:
        from picows.websockets import connect

        compression = "deflate" if DEFLATE else None
        return await connect(url, compression=compression, max_size=None, ping_interval=None)


class AiohttpAsync(AsyncClient):
    async def connect(self, url: str) -> Any:
        import aiohttp

        self.session = aiohttp.ClientSession()
        ssl_arg: Any = ssl_context() if url.startswith("wss") else False
        return await self.session.ws_connect(
            url,
            compress=15 if DEFLATE else 0,
            autoping=KEEPALIVE is not None,
            max_msg_size=0,
            ssl=ssl_arg,
            heartbeat=KEEPALIVE,
        )

    async def send(self, ws: Any, data: bytes | str) -> None:
        if isinstance(data, str):
            await ws.send_str(data)
        else:
            await ws.send_bytes(data)

    async def recv(self, ws: Any) -> Any:
        return (await ws.receive()).data

    async def count_messages(self, ws: Any) -> int:
        import aiohttp

        count = 0
        async for msg in ws:
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                count += 1
        return count

    async def close(self, ws: Any) -> None:
        await ws.close()
        await self.session.close()


class PicowsAsync(AsyncClient):
    """picows' callback API (its fast path), with each payload materialised as bytes."""

    async def connect(self, url: str) -> Any:
        import picows

        loop = asyncio.get_running_loop()

        class Listener(picows.WSListener):
            def __init__(self) -> None:
                self.queue: asyncio.Queue[bytes] = asyncio.Queue()
                self.count = 0
                self.counting = "/push" in url
                self.done = loop.create_future()

            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type == picows.WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()
                    if not self.done.done():
                        self.done.set_result(None)
                    return
                data = frame.get_payload_as_bytes()
                self.count += 1
                if not self.counting:
                    self.queue.put_nowait(data)

            def on_ws_disconnected(self, transport: Any) -> None:
                if not self.done.done():
                    self.done.set_result(None)

        ssl_arg = ssl_context() if url.startswith("wss") else None
        keepalive: dict[str, Any] = {}
        if KEEPALIVE is not None:
            # picows pings a connection that has been idle this long (its default strategy).
            keepalive = {"enable_auto_ping": True, "auto_ping_idle_timeout": KEEPALIVE}
        transport, listener = await picows.ws_connect(
            Listener, url, ssl_context=ssl_arg, **keepalive
        )
        # Frames may arrive before ws_connect returns: they are counted from the start and
        # queued only while the scenario reads them one by one.
        cast(Listener, listener).counting = "/push" in url
        return transport, listener

    async def send(self, ws: Any, data: bytes | str) -> None:
        import picows

        if isinstance(data, str):
            ws[0].send(picows.WSMsgType.TEXT, data.encode())
        else:
            ws[0].send(picows.WSMsgType.BINARY, data)

    async def recv(self, ws: Any) -> Any:
        return await ws[1].queue.get()

    async def count_messages(self, ws: Any) -> int:
        await ws[1].done
        return int(ws[1].count)

    async def close(self, ws: Any) -> None:
        transport = ws[0]
        if not transport.is_disconnected:
            transport.send_close()
            transport.disconnect()
        await transport.wait_disconnected()


class WebsocketRsAsync(AsyncClient):
    async def connect(self, url: str) -> Any:
        import websocket_rs  # type: ignore[import-not-found]

        if DEFLATE:
            return await websocket_rs.connect(url, compression=True)
        return await websocket_rs.connect(url)

    async def send(self, ws: Any, data: bytes | str) -> None:
        ws.send(data)

    async def close(self, ws: Any) -> None:
        ws.close()


ASYNC_CLIENTS: dict[str, Callable[[], AsyncClient]] = {
    "sigil-ws-asyncio": SigilAsync,
    "websockets-asyncio": WebsocketsAsync,
    "aiohttp": AiohttpAsync,
    "picows": PicowsAsync,
    "picows-websockets": PicowsWebsockets,
    "websocket-rs-asyncio": WebsocketRsAsync,
}
UVLOOP_CLIENTS = {"picows"}


async def async_pingpong(client: AsyncClient, url: str, size: int, seconds: float) -> None:
    ws = await client.connect(url)
    if DEFLATE:
        return await async_pingpong_text(client, ws, json_payloads(size), seconds)
    payload = b"p" * size
    for _ in range(20):
        await client.send(ws, payload)
        await client.recv(ws)
    count = 0
    with Timer() as timer:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(10):
                await client.send(ws, payload)
                await client.recv(ws)
            count += 10
    await client.close(ws)
    report(count, timer)


async def async_pingpong_text(
    client: AsyncClient, ws: Any, payloads: list[str], seconds: float
) -> None:
    for payload in payloads[:20]:
        await client.send(ws, payload)
        assert echoed(await client.recv(ws), payload)
    count = 0
    with Timer() as timer:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for payload in payloads:
                await client.send(ws, payload)
                await client.recv(ws)
            count += len(payloads)
    await client.close(ws)
    report(count, timer)


async def async_push(client: AsyncClient, url: str, n: int, size: int) -> None:
    with Timer() as timer:
        ws = await client.connect(f"{url}/push?n={n}&size={size}")
        count = await client.count_messages(ws)
    await client.close(ws)
    assert count == n, (count, n)
    report(count, timer)


async def async_setup(client: AsyncClient, url: str, seconds: float) -> None:
    count = 0
    with Timer() as timer:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await client.close(await client.connect(f"{url}/echo"))
            count += 1
    report(count, timer)


async def async_idle(client: AsyncClient, url: str, k: int, hold: float = 0.0) -> None:
    first = await client.connect(f"{url}/echo")
    before = rss_now_kb()
    with Timer() as timer:
        conns = [await client.connect(f"{url}/echo") for _ in range(k)]
    with Timer() as held:
        await asyncio.sleep(hold)
    after = rss_now_kb()
    for c in [first, *conns]:
        await client.close(c)
    report(k, timer, per_conn_kb=(after - before) / k, **hold_figures(held, hold))


# ---- floors ---------------------------------------------------------------------------------


def raw_connect(url: str, n: int, size: int) -> socket.socket:
    """Ask the raw server for its push stream of N frames of SIZE bytes."""
    host, port = url.removeprefix("tcp://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"push {n} {size}\n".encode())
    return sock


def raw_read(sock: socket.socket, n: int, size: int) -> None:
    """Read the push stream to its end into one reused buffer."""
    frame = len(frame_header(size)) + size
    view = memoryview(bytearray(1 << 20))
    total = 0
    while True:
        got = sock.recv_into(view)
        if not got:
            break
        total += got
    sock.close()
    assert total == n * frame, (total, n * frame)


def raw_push(url: str, n: int, size: int) -> None:
    with Timer() as timer:
        raw_read(raw_connect(url, n, size), n, size)
    report(n, timer)


def raw_threads(url: str, k: int, n: int, size: int) -> None:
    """K threads, each reading its own push stream (recv_into releases the GIL), each timing
    itself like the clients' threads scenario."""
    clocks = [WorkerClock() for _ in range(k)]
    barrier = threading.Barrier(k)

    def worker(i: int) -> None:
        sock = raw_connect(url, n, size)
        barrier.wait()
        clocks[i].start()
        raw_read(sock, n, size)
        clocks[i].stop()

    run_workers(worker, k, barrier)
    report_workers([n] * k, clocks)


def frame_header(size: int) -> bytes:
    if size < 126:
        return bytes([0x82, size])
    if size < 65536:
        return bytes([0x82, 126]) + size.to_bytes(2, "big")
    return bytes([0x82, 127]) + size.to_bytes(8, "big")


def pyobj_push(n: int, size: int) -> None:
    data = io.BytesIO(b"x" * (n * size))
    count = 0
    with Timer() as timer:
        for _msg in iter(partial(data.read, size), b""):
            count += 1
    assert count == n
    report(count, timer)


# ---- entry point ----------------------------------------------------------------------------


def main() -> None:
    client, scenario, *args = sys.argv[1:]
    if client == "raw" and scenario == "threads":
        raw_threads(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif client == "raw":
        raw_push(args[0], int(args[1]), int(args[2]))
    elif client == "pyobj":
        pyobj_push(int(args[1]), int(args[2]))
    elif client in SYNC_CLIENTS:
        connect = SYNC_CLIENTS[client]
        sync_runs: dict[str, Callable[..., None]] = {
            "pingpong": lambda u, s, t: sync_pingpong(connect, u, int(s), float(t)),
            "push": lambda u, n, s: sync_push(connect, u, int(n), int(s)),
            "setup": lambda u, t: sync_setup(connect, u, float(t)),
            "threads": lambda u, k, n, s: sync_threads(connect, u, int(k), int(n), int(s)),
            "idle": lambda u, k, h="0": sync_idle(connect, u, int(k), float(h)),
        }
        sync_runs[scenario](*args)
    elif client in ASYNC_CLIENTS:
        impl = ASYNC_CLIENTS[client]()
        async_runs: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {
            "pingpong": lambda u, s, t: async_pingpong(impl, u, int(s), float(t)),
            "push": lambda u, n, s: async_push(impl, u, int(n), int(s)),
            "setup": lambda u, t: async_setup(impl, u, float(t)),
            "idle": lambda u, k, h="0": async_idle(impl, u, int(k), float(h)),
        }
        coro = async_runs[scenario](*args)
        if client in UVLOOP_CLIENTS:
            import uvloop

            uvloop.run(coro)
        else:
            asyncio.run(coro)
    else:
        sys.exit(f"unknown client {client!r}")


if __name__ == "__main__":
    main()

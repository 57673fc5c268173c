"""A small fault-injecting TCP proxy for the tests: between a client and a real server it
delays, jitters, re-chunks and stalls the bytes of each direction, or cuts or resets the
connection after a given number of bytes (in the middle of a frame or a TLS record, wherever
that count falls). Threads and blocking sockets only; every wait is bounded.

Order is always kept: jitter changes when a chunk leaves, never which leaves first.
"""

from __future__ import annotations

import queue
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Faults:
    """What happens to the bytes of one direction."""

    delay: float = 0.0
    """Seconds added to every chunk."""
    jitter: float = 0.0
    """Up to this many seconds more, at random per chunk (order kept)."""
    max_chunk: int = 65536
    """Bytes are forwarded in chunks of 1..max_chunk bytes, cut at random."""
    stall_every: int = 0
    """After about this many bytes, stop forwarding for ``stall`` seconds (0: never)."""
    stall: float = 0.0
    cut_after: int | None = None
    """Close both connections (FIN) once this many bytes went through."""
    reset_after: int | None = None
    """Reset both connections (RST) once this many bytes went through."""
    seed: int = 0


@dataclass
class Stats:
    forwarded: list[int] = field(default_factory=lambda: [0, 0])
    stalls: int = 0
    cut: bool = False


class FaultProxy:
    """Listens on 127.0.0.1; forwards each connection to ``upstream`` with ``down`` faults on
    the server-to-client direction and ``up`` faults on the client-to-server one."""

    def __init__(
        self, upstream: tuple[str, int], down: Faults | None = None, up: Faults | None = None
    ) -> None:
        self.upstream = upstream
        self.down = down or Faults()
        self.up = up or Faults()
        self.stats = Stats()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def url(self, scheme: str, path: str = "/") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        t.start()
        self.threads.append(t)

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            self.sockets += [client, server]
            pair = (client, server)
            self._spawn(self._pump, server, client, self.down, 0, pair)
            self._spawn(self._pump, client, server, self.up, 1, pair)

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        faults: Faults,
        direction: int,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        """Reads ``src``; a writer thread sends each chunk to ``dst`` once its time has come."""
        rng = random.Random(faults.seed + direction)
        chunks: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
        self._spawn(self._writer, dst, chunks, faults, direction, pair)
        last_due = 0.0
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                chunks.put(None)
                return
            now = time.monotonic()
            while data:
                n = rng.randint(1, max(1, faults.max_chunk))
                piece, data = data[:n], data[n:]
                due = now + faults.delay + rng.uniform(0, faults.jitter)
                last_due = max(last_due, due)  # jitter never reorders
                chunks.put((last_due, piece))

    def _writer(
        self,
        dst: socket.socket,
        chunks: queue.Queue[tuple[float, bytes] | None],
        faults: Faults,
        direction: int,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        since_stall = 0
        while True:
            try:
                item = chunks.get(timeout=60)
            except queue.Empty:
                return
            if item is None:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            due, piece = item
            wait = due - time.monotonic()
            if wait > 0 and self.closed.wait(wait):
                return
            sent = self.stats.forwarded[direction]
            for limit, reset in ((faults.cut_after, False), (faults.reset_after, True)):
                if limit is not None and sent + len(piece) >= limit:
                    self._send(dst, piece[: limit - sent])
                    self.stats.cut = True
                    self._end(pair, reset)
                    return
            if not self._send(dst, piece):
                return
            self.stats.forwarded[direction] += len(piece)
            since_stall += len(piece)
            if faults.stall_every and since_stall >= faults.stall_every:
                since_stall = 0
                self.stats.stalls += 1
                if self.closed.wait(faults.stall):
                    return

    @staticmethod
    def _send(dst: socket.socket, data: bytes) -> bool:
        try:
            dst.sendall(data)
            return True
        except OSError:
            return False

    @staticmethod
    def _end(pair: tuple[socket.socket, socket.socket], reset: bool) -> None:
        for s in pair:
            try:
                if reset:
                    # Linger 0: the close sends RST. SHUT_RD wakes the pump blocked in recv()
                    # on this socket (close() alone does not), which holds it open until then.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RD)
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(5)

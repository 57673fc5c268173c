"""Many WebSocket connections in one thread: ``sigil_ws.Protocol`` under a ``selectors`` loop.

Each connection is a non-blocking socket and an engine. The loop waits on every socket at
once, feeds what arrives to its engine, writes the engine's output as the socket takes it
(non-blocking sends may take part of it: the rest waits for the socket to become writable),
and wakes up when an engine's keepalive is due. This is the shape of a driver for any event
loop: trio, gevent, or a game's main loop.

Run it against any echo server, or without an argument to start the ``websockets`` package's
echo server on 127.0.0.1 first:

    python examples/sans_io_selectors.py [ws://host:port/path] [connections]
"""

from __future__ import annotations

import selectors
import socket
import sys
import threading
import time

import sigil_ws
from sigil_ws import Message, State


class Connection:
    """One socket and its engine; the loop calls ``readable()`` and ``writable()``."""

    def __init__(
        self,
        url: str,
        messages: list[str],
        *,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
    ) -> None:
        self.protocol = sigil_ws.Protocol(
            url, ping_interval=ping_interval, ping_timeout=ping_timeout
        )
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.sock.connect_ex((self.protocol.host, self.protocol.port))  # completes later
        self.outgoing = bytearray(self.protocol.data_to_send())  # the upgrade request
        self.to_send = list(messages)
        self.received: list[str | bytes] = []
        self.expected = len(messages)
        self.error: sigil_ws.WebSocketError | None = None

    def readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # reset: like an end of stream, the engine reports 1006
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        try:
            events = self.protocol.events()  # pongs and close replies are queued already
        except sigil_ws.WebSocketError as e:
            # A refused upgrade, or a peer that broke the protocol: the engine is CLOSED, with
            # the close frame that fails the connection queued (1002, 1007 or 1009).
            self.error = e
            events = []
        self.received += [e.data for e in events if isinstance(e, Message)]
        self.after_events()

    def after_events(self) -> None:
        if self.protocol.handshake_complete and self.to_send:
            for text in self.to_send:  # the upgrade is done: send everything at once
                self.protocol.send_text(text)
            self.to_send.clear()
        if len(self.received) == self.expected and self.protocol.state is State.OPEN:
            self.protocol.send_close(1000, "all echoed")
        self.outgoing += self.protocol.data_to_send()

    def timer(self) -> None:
        """The keepalive: queue the ping that is due, or fail with 1011 if its pong is late."""
        self.protocol.handle_timer()
        self.outgoing += self.protocol.data_to_send()

    def writable(self) -> None:
        try:
            sent = self.sock.send(self.outgoing)
        except BlockingIOError:
            return
        except OSError:
            self.protocol.abort()
            self.outgoing.clear()
            return
        del self.outgoing[:sent]

    @property
    def finished(self) -> bool:
        return self.protocol.state is State.CLOSED and not self.outgoing


def run_all(connections: list[Connection], timeout: float = 30.0) -> None:
    """The event loop: until every connection has closed, or ``timeout`` passes."""
    selector = selectors.DefaultSelector()
    for c in connections:
        selector.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    deadline = time.monotonic() + timeout
    open_ = set(connections)
    while open_:
        left = deadline - time.monotonic()
        if left <= 0:
            for c in open_:
                c.protocol.abort()  # the closing handshake did not finish in time: 1006
            break
        # Sleep until a socket is ready, or until the earliest keepalive is due.
        timers = [t for c in open_ if (t := c.protocol.next_timer()) is not None]
        ready = selector.select(min([left, *timers]))
        touched = {key.data for key, _ in ready}
        for key, mask in ready:
            c = key.data
            if mask & selectors.EVENT_READ:
                c.readable()
            if mask & selectors.EVENT_WRITE and c.outgoing:
                c.writable()
        # Timers run after the reads, so that a pong that has arrived counts.
        for c in open_:
            if c.protocol.next_timer() == 0.0:
                c.timer()
                touched.add(c)
        for c in touched:
            if c.finished:
                selector.unregister(c.sock)
                c.sock.close()
                open_.discard(c)
                continue
            # Watch for room to write only while there is something to write.
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.outgoing else 0)
            selector.modify(c.sock, events, c)
    for c in open_:
        selector.unregister(c.sock)
        c.sock.close()
    selector.close()


def run(url: str, count: int) -> list[Connection]:
    connections = [Connection(url, [f"{n}:{i}" for i in range(100)]) for n in range(count)]
    started = time.perf_counter()
    run_all(connections)
    elapsed = time.perf_counter() - started
    for n, c in enumerate(connections):
        assert c.received == [f"{n}:{i}" for i in range(100)], c.received[:3]
        assert c.protocol.close_code == 1000, c.protocol.close_code
    print(f"{count} connections x 100 messages echoed and closed in {elapsed:.2f} s, one thread")
    return connections


def main() -> None:
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    if len(sys.argv) > 1:
        run(sys.argv[1], count)
        return
    from websockets.sync.server import ServerConnection, serve

    def echo(connection: ServerConnection) -> None:
        for message in connection:
            connection.send(message)

    with serve(echo, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        run(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/", count)
        server.shutdown()
    print("OK")


if __name__ == "__main__":
    main()

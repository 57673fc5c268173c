"""A WebSocket client of your own over a plain blocking socket, driving ``sigil_ws.Protocol``.

The engine does no I/O: it takes the bytes the socket read, reports events, and queues the
bytes to write. This driver adds the socket, a deadline for the closing handshake and nothing
else: the upgrade, framing, masking, UTF-8, automatic pongs and close replies are the engine's.

Run it against any echo server, or without an argument to start the ``websockets`` package's
echo server on 127.0.0.1 first:

    python examples/sans_io_socket.py [ws://host:port/path]
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import sigil_ws
from sigil_ws import Message, State


class SocketClient:
    """One connection: a TCP socket and the engine, in the calling thread."""

    def __init__(
        self, url: str, *, timeout: float = 10.0, compression: str | None = "deflate"
    ) -> None:
        self.protocol = sigil_ws.Protocol(url, compression=compression)
        self.sock = socket.create_connection((self.protocol.host, self.protocol.port), timeout)
        self.pending: list[Message] = []
        try:
            self.flush()  # the upgrade request, queued by the engine when it was made
            while not self.protocol.handshake_complete:
                self.read()  # events() raises HandshakeError (or InvalidStatus) on a bad answer
        except BaseException:
            self.sock.close()
            raise

    def flush(self) -> None:
        """Write what the engine queued: frames, automatic pongs, close replies."""
        if data := self.protocol.data_to_send():
            self.sock.sendall(data)

    def read(self) -> None:
        """One socket read through the engine; keeps the messages it completes."""
        data = self.sock.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        try:
            # Message, Ping, Pong or Close: the engine has already queued the pong or the close
            # reply; a peer that breaks the protocol raises ProtocolError here, after the engine
            # queued the close frame that fails the connection (1002, 1007 or 1009).
            events = self.protocol.events()
        finally:
            self.flush()
            if self.protocol.state is State.CLOSED:
                self.sock.close()  # the closing handshake is over, or the connection failed
        self.pending.extend(e for e in events if isinstance(e, Message))

    def send(self, message: str | bytes) -> None:
        if (error := self.protocol.send_exception()) is not None:
            raise error
        if isinstance(message, str):
            self.protocol.send_text(message)
        else:
            self.protocol.send_binary(message)
        self.flush()

    def recv(self) -> str | bytes:
        """The next message; ``ConnectionClosed`` once the connection has ended."""
        while not self.pending:
            if (closed := self.protocol.closed_exception()) is not None:
                raise closed
            self.read()
        return self.pending.pop(0).data

    def ping(self, data: bytes = b"") -> None:
        self.protocol.send_ping(data)
        self.flush()

    def close(self, code: int = 1000, reason: str = "", timeout: float = 10.0) -> None:
        """The closing handshake: send our close, read until the peer's arrives or time runs out."""
        self.protocol.send_close(code, reason)
        self.flush()
        deadline = time.monotonic() + timeout
        try:
            while self.protocol.close_expected():
                self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                self.read()
        except (TimeoutError, OSError):
            self.protocol.abort()  # no close frame in time: closed with 1006
        finally:
            self.sock.close()


def run(url: str) -> None:
    client = SocketClient(url, compression="deflate")
    print("negotiated:", client.protocol.extensions or "no extension")
    client.send("hello from a custom loop")
    print("text  :", client.recv())
    client.send(b"\x00\x01\x02")
    print("binary:", client.recv())
    client.ping(b"are you there")
    client.send("after the ping")
    client.recv()
    print(f"latency: {client.protocol.latency * 1e6:.0f} us")
    client.close(1000, "done")
    assert client.protocol.state is State.CLOSED
    print("closed:", client.protocol.close_code, client.protocol.close_reason)


def main() -> None:
    if len(sys.argv) > 1:
        run(sys.argv[1])
        return
    from websockets.sync.server import ServerConnection, serve

    def echo(connection: ServerConnection) -> None:
        for message in connection:
            connection.send(message)

    with serve(echo, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        run(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/")
        server.shutdown()
    print("OK")


if __name__ == "__main__":
    main()

"""How the TCP connection ends (RFC 6455 §7.1.1, §7.1.7): after the client fails the
connection, its close frame reaches a peer that is still sending (the client shuts its write
side down and reads until the peer's end of stream, instead of closing a socket with unread
bytes, which the kernel answers with a reset that destroys the close frame on the peer's
side); after the closing handshake, the server closes TCP first; and nobody waits for either:
``recv()`` raises at once."""

from __future__ import annotations

import gc
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import sigil_ws
import sigil_ws.asyncio
from sigil_ws import ConnectionClosedError

from .conftest import (
    AsyncioFacade,
    LoopThread,
    RawConnection,
    RawServer,
    read_client_frame,
    server_frame,
)

MIB = 2**20
# Several MiB: more than the socket buffers of both ends hold, so that the server is still
# sending when the client fails the connection.
FLOOD = 8 * MIB


class Flood:
    """A raw server that sends one binary message of ``FLOOD`` bytes to a client whose
    ``max_size`` is smaller, waits until the client reports the failure (``raised``) and a
    moment more (time for a client that closes its socket at once to do it), then reads
    what the client sent: its close frame, then its end of stream.

    A client that closes its socket with bytes unread makes the kernel answer with a reset,
    which fails the server's send (and, with a peer such as Node's ws, loses the close frame
    it has not read yet); a client that never reads again leaves the send stuck."""

    def __init__(self, raw_server: RawServer) -> None:
        self.raised = threading.Event()
        self.done = threading.Event()
        self.close_code: int | None = None
        self.end: str | None = None
        self.sent: str | None = None
        self.url = raw_server.serve(self.script)

    def script(self, conn: RawConnection) -> None:
        conn.upgrade()
        frame = server_frame(2, b"x" * FLOOD)

        def send() -> None:
            try:
                conn.sock.sendall(frame)
                self.sent = "all"
            except OSError as e:
                self.sent = type(e).__name__

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            assert self.raised.wait(10), "recv() did not raise"
            time.sleep(0.3)
            conn.sock.settimeout(10)
            try:
                opcode, _, payload = read_client_frame(conn.sock)
                assert opcode == 8, opcode
                (self.close_code,) = struct.unpack("!H", payload[:2])
                while conn.sock.recv(65536):
                    pass
                self.end = "eof"
            except OSError as e:
                self.end = type(e).__name__
            # The client reads (and discards) until our end of stream: all of it goes.
            sender.join(10)
        finally:
            self.done.set()

    def outcome(self) -> tuple[int | None, str | None, str | None]:
        """(the client's close code, how its stream ended, how our send ended)."""
        assert self.done.wait(30), "the server never finished"
        return self.close_code, self.end, self.sent


def test_the_close_code_reaches_a_peer_still_sending(raw_server: RawServer, connect: Any) -> None:
    """1009 from the header of a message over max_size: recv() raises at once (before the
    server reads anything), and the server reads the close frame and an orderly end of
    stream, not a reset."""
    flood = Flood(raw_server)
    ws = connect(flood.url, max_size=MIB, close_timeout=10)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv()
    assert info.value.code == 1009
    flood.raised.set()
    assert flood.outcome() == (1009, "eof", "all")
    assert ws.close_code == 1009


def test_the_close_code_reaches_the_peer_after_the_connection_is_dropped(
    raw_server: RawServer,
) -> None:
    """The same with the sync connection dropped as soon as recv() raised: its TCP close goes
    on without it."""
    flood = Flood(raw_server)
    ws = sigil_ws.connect(flood.url, max_size=MIB, close_timeout=10, open_timeout=5)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv()
    assert info.value.code == 1009
    del ws, info
    gc.collect()
    flood.raised.set()
    assert flood.outcome() == (1009, "eof", "all")


def test_the_wait_for_the_peer_ends_at_close_timeout(raw_server: RawServer, connect: Any) -> None:
    """A peer that reads the close frame and the client's end of stream but never closes: the
    client keeps reading (discarding) for close_timeout, then closes TCP, without any call
    from the application; the peer's next bytes then meet a reset."""
    result: dict[str, Any] = {}
    done = threading.Event()
    close_timeout = 0.5

    def script(conn: RawConnection) -> None:
        try:
            conn.upgrade(trailing=b"\x82\x7f" + struct.pack("!Q", 2 * MIB))
            conn.expect_close(1009)
            read = time.monotonic()
            conn.sock.settimeout(10)
            result["end"] = conn.sock.recv(1)
            deadline = read + 20
            while time.monotonic() < deadline:
                try:
                    conn.sock.sendall(b"x" * 1024)
                except OSError as e:
                    result["send"] = type(e).__name__
                    break
                time.sleep(0.02)
            result["after"] = time.monotonic() - read
        finally:
            done.set()

    ws = connect(raw_server.serve(script), max_size=MIB, close_timeout=close_timeout)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv()
    assert info.value.code == 1009
    assert done.wait(30)
    assert result["end"] == b"", "the write side was not shut down"
    assert result.get("send") in ("ConnectionResetError", "BrokenPipeError"), result
    # The client read on until its close_timeout (counted from before the close frame went).
    assert result["after"] >= close_timeout * 0.8, result


class Handshake:
    """A raw server that completes the closing handshake (started by ``closer``), waits a
    moment, checks that the client has not closed TCP meanwhile, closes its write side first
    and then waits for the client's end of stream."""

    def __init__(self, raw_server: RawServer, closer: str) -> None:
        self.closer = closer
        self.done = threading.Event()
        self.events: list[str] = []
        self.url = raw_server.serve(self.script)

    def script(self, conn: RawConnection) -> None:
        try:
            conn.upgrade()
            if self.closer == "server":
                conn.send(server_frame(8, struct.pack("!H", 1000)))
                conn.expect_close(1000)
            else:
                conn.expect_close(1000)
                conn.send(server_frame(8, struct.pack("!H", 1000)))
            self.events.append("handshake")
            time.sleep(0.3)
            try:
                self.events.append(
                    "client closed first"
                    if conn.sock.recv(1, socket.MSG_DONTWAIT) == b""
                    else "data"
                )
            except BlockingIOError:
                pass
            conn.sock.shutdown(socket.SHUT_WR)
            self.events.append("server closed")
            conn.sock.settimeout(10)
            if conn.sock.recv(1) == b"":
                self.events.append("client closed")
        finally:
            self.done.set()


@pytest.mark.parametrize("closer", ["client", "server"])
def test_the_server_closes_tcp_first(raw_server: RawServer, connect: Any, closer: str) -> None:
    """RFC 6455 §7.1.1: after the closing handshake the client waits for the server's TCP
    close, then closes its own side, whoever started the handshake and whether or not the
    application calls anything meanwhile."""
    server = Handshake(raw_server, closer)
    ws = connect(server.url, close_timeout=10)
    if closer == "client":
        ws.close()
    assert server.done.wait(20)
    assert server.events == ["handshake", "server closed", "client closed"]
    assert ws.close_code == 1000


# ---- against Node's ws (Debian's node-ws), when installed ----------------------------------------

NODE_PATH = os.pathsep.join(p for p in ("/usr/share/nodejs", os.environ.get("NODE_PATH")) if p)
NODE_WS_SERVER = """
const { WebSocketServer } = require("ws");
const size = Number(process.env.SIZE);
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
wss.on("listening", () => console.log(wss.address().port));
wss.on("connection", (ws) => {
  ws.on("error", () => {});
  ws.on("close", (code) => console.log(JSON.stringify({ code })));
  ws.send(Buffer.alloc(size));
});
"""


def node_ws() -> str | None:
    """Why Node's ws cannot run here, or None when it can."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed"
    found = subprocess.run(
        [node, "-e", "require('ws')"],
        env={**os.environ, "NODE_PATH": NODE_PATH},
        capture_output=True,
        timeout=30,
    )
    return None if found.returncode == 0 else "the ws module is not installed (node-ws)"


@pytest.fixture(scope="module")
def node_ws_server() -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    """ws://… of a Node ws server that sends each client a ``FLOOD`` message, and a function
    that returns what ws reported when the next connection closed (its close event's code)."""
    missing = node_ws()
    if missing is not None:
        pytest.skip(missing)
    proc = subprocess.Popen(
        ["node", "-e", NODE_WS_SERVER],
        env={**os.environ, "NODE_PATH": NODE_PATH, "SIZE": str(FLOOD)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    arrived = threading.Condition()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with arrived:
                lines.append(line)
                arrived.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def next_line() -> str:
        with arrived:
            assert arrived.wait_for(lambda: lines, 20), "ws reported nothing"
            return lines.pop(0)

    def next_close() -> dict[str, Any]:
        report: dict[str, Any] = json.loads(next_line())
        return report

    try:
        port = int(next_line())
        yield f"ws://127.0.0.1:{port}", next_close
    finally:
        proc.kill()
        proc.wait(5)
        reader.join(5)
        proc.stdout.close()


def test_node_ws_sees_1009(
    node_ws_server: tuple[str, Callable[[], dict[str, Any]]], driver: str
) -> None:
    """The report of issue 33: ws sends a message over the client's max_size; the application
    closes the connection as soon as recv() raises and lets it go; ws must see the client's
    1009, not 1006 (a reset that destroyed the close frame), every time."""
    url, next_close = node_ws_server
    runner = None if driver == "sync" else LoopThread(uvloop=driver == "uvloop")
    reports = []
    try:
        for _ in range(10):
            options: dict[str, Any] = {"max_size": 64 * 2**10, "close_timeout": 10}
            if runner is None:
                ws: Any = sigil_ws.connect(url, open_timeout=5, **options)
            else:
                opened = runner.run(sigil_ws.asyncio.connect(url, open_timeout=5, **options))
                ws = AsyncioFacade(runner, opened)
                del opened
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv()
            assert info.value.code == 1009
            ws.close()
            del ws, info
            gc.collect()
            reports.append(next_close()["code"])
    finally:
        if runner is not None:
            runner.stop()
    assert reports == [1009] * 10

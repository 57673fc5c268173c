"""The examples the documentation shows run, against real peers.

``examples/sans_io_socket.py`` is the sans-IO page's complete driver: its ``SocketClient`` is
run against the reference server (echo, large messages, the server's close) and against a
scripted server that breaks the upgrade or the protocol, and the script itself end to end.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

import sigil_ws

from .conftest import RawConnection, RawServer, server_frame

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sans_io() -> ModuleType:
    return load("sans_io_socket")


def test_sans_io_example_runs_end_to_end() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "sans_io_socket.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "text  : hello from a custom loop" in out.stdout
    assert "permessage-deflate" in out.stdout  # the websockets server accepted the offer
    assert "closed: 1000 done" in out.stdout
    assert out.stdout.rstrip().endswith("OK")


@pytest.mark.parametrize("compression", ["deflate", None])
def test_sans_io_client_echoes_and_closes(
    sans_io: ModuleType, ws_server: str, compression: str | None
) -> None:
    client = sans_io.SocketClient(f"{ws_server}/echo", compression=compression)
    client.send("héllo")
    assert client.recv() == "héllo"
    big = bytes(range(256)) * 4096  # 1 MiB: many socket reads for one message
    client.send(big)
    assert client.recv() == big
    client.ping(b"p")
    client.send("after")
    assert client.recv() == "after"
    client.close(1000, "bye")
    assert client.protocol.state is sigil_ws.State.CLOSED
    assert client.protocol.close_code == 1000


def test_sans_io_client_sees_the_servers_close(sans_io: ModuleType, ws_server: str) -> None:
    client = sans_io.SocketClient(f"{ws_server}/close/1001/gone")
    with pytest.raises(sigil_ws.ConnectionClosedOK) as info:
        client.recv()
    assert (info.value.code, info.value.reason) == (1001, "gone")
    with pytest.raises(sigil_ws.ConnectionClosedOK):
        client.send("too late")
    client.close()


def test_sans_io_client_refused_upgrade(sans_io: ModuleType, raw_server: RawServer) -> None:
    def refuse(conn: RawConnection) -> None:
        conn.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")

    url = raw_server.serve(refuse)
    with pytest.raises(sigil_ws.InvalidStatus) as info:
        sans_io.SocketClient(url)
    assert (info.value.status_code, info.value.body) == (403, b"nope")


def test_sans_io_client_fails_a_protocol_violation_with_1002(
    sans_io: ModuleType, raw_server: RawServer
) -> None:
    codes: list[bytes] = []

    def violate(conn: RawConnection) -> None:
        conn.upgrade()
        assert conn.recv_frame() == (0x1, True, b"go")
        conn.send(server_frame(0x3, b"reserved opcode"))
        codes.append(conn.expect_close(1002))

    client = sans_io.SocketClient(raw_server.serve(violate))
    client.send("go")
    with pytest.raises(sigil_ws.ProtocolError, match="reserved opcode"):
        client.recv()
    raw_server.done.wait(5)
    assert codes and not raw_server.errors  # the close frame with 1002 reached the server
    assert client.protocol.state is sigil_ws.State.CLOSED
    closed = client.protocol.closed_exception()
    assert isinstance(closed, sigil_ws.ConnectionClosedError) and closed.code == 1002


@pytest.fixture(scope="module")
def selectors_example() -> ModuleType:
    return load("sans_io_selectors")


def test_selectors_example_runs_end_to_end() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "sans_io_selectors.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "50 connections x 100 messages echoed and closed" in out.stdout
    assert out.stdout.rstrip().endswith("OK")


def test_selectors_example_many_connections_in_one_thread(
    selectors_example: ModuleType, ws_server: str, raw_server: RawServer
) -> None:
    """Twenty connections to the reference server and one that is refused, in one loop: the
    refused one ends with its InvalidStatus, the others all echo and close with 1000."""
    raw_server.serve(lambda conn: conn.send(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"))
    good = [
        selectors_example.Connection(f"{ws_server}/echo", [f"{n}:{i}" for i in range(50)])
        for n in range(20)
    ]
    refused = selectors_example.Connection(raw_server.url, ["never sent"])
    started = time.monotonic()
    selectors_example.run_all([*good, refused], timeout=20)
    assert time.monotonic() - started < 15
    for n, c in enumerate(good):
        assert c.error is None
        assert c.received == [f"{n}:{i}" for i in range(50)]
        assert (c.protocol.close_code, c.protocol.close_reason) == (1000, "all echoed")
        assert c.sock.fileno() == -1  # closed by the loop
    assert isinstance(refused.error, sigil_ws.InvalidStatus)
    assert refused.error.status_code == 503
    assert refused.protocol.state is sigil_ws.State.CLOSED


def test_selectors_example_runs_the_keepalive(
    selectors_example: ModuleType, raw_server: RawServer
) -> None:
    """A server that upgrades, then never answers: the loop wakes for the keepalive, sends a
    ping, and fails the connection with 1011 once ping_timeout passes without a pong."""
    seen: list[tuple[int, bytes]] = []

    def silent(conn: RawConnection) -> None:
        conn.upgrade()
        while True:
            opcode, _, payload = conn.recv_frame()
            seen.append((opcode, payload))
            if opcode == 0x8:
                return

    raw_server.serve(silent)
    c = selectors_example.Connection(
        raw_server.url, ["no echo"], ping_interval=0.1, ping_timeout=0.2
    )
    started = time.monotonic()
    selectors_example.run_all([c], timeout=10)
    assert time.monotonic() - started < 5
    assert c.protocol.close_code == 1011
    raw_server.done.wait(5)
    assert [op for op, _ in seen] == [0x1, 0x9, 0x8]  # the message, one ping, the close
    assert seen[-1][1][:2] == (1011).to_bytes(2, "big")

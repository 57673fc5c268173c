"""The command-line client, run as ``python -m sigil_ws`` against real servers: through a pipe,
and through a real pseudo-terminal (pexpect) whose screen is rendered by a terminal emulator
(pyte), so that what the user sees is what is asserted."""

from __future__ import annotations

import inspect
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pyte
import pytest
from websockets.sync.server import ServerConnection, serve

import sigil_ws

from .conftest import Certs

CLI = [sys.executable, "-m", "sigil_ws"]


def run_cli(
    *args: str, input: str | bytes = b"", timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """The CLI with its input from a pipe; waits for it to exit."""
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        [*CLI, *args], input=data, capture_output=True, timeout=timeout, check=False
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/"


def received_headers(out: str) -> dict[str, str]:
    """The request headers that the reference server's /headers path sends back first."""
    first = out.splitlines()[0]
    headers: dict[str, str] = json.loads(first)
    return {name.lower(): value for name, value in headers.items()}


# ---- a server the test drives: it records what it receives and sends on demand ------------------


@dataclass
class PushServer:
    url: str
    received: queue.Queue[str | bytes] = field(default_factory=queue.Queue)
    connections: queue.Queue[ServerConnection] = field(default_factory=queue.Queue)

    def connection(self) -> ServerConnection:
        return self.connections.get(timeout=10)


@pytest.fixture
def push_server() -> Iterator[PushServer]:
    state = PushServer("")

    def handler(ws: ServerConnection) -> None:
        state.connections.put(ws)
        for message in ws:
            state.received.put(message)

    server = serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
    try:
        yield state
    finally:
        server.shutdown()
        thread.join(5)


# ---- through a pipe ----------------------------------------------------------------------------


def test_pipe_sends_each_line_and_prints_the_replies(ws_server: str) -> None:
    result = run_cli(ws_server + "/echo", input="one\ntwo words\n\nthé\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "one\ntwo words\n\nthé\n"
    assert result.stderr == ""


def test_pipe_waits_for_replies_that_come_late(push_server: PushServer) -> None:
    def answer_late() -> None:
        ws = push_server.connection()
        assert push_server.received.get(timeout=10) == "question"
        time.sleep(0.4)
        ws.send("late answer")

    thread = threading.Thread(target=answer_late, daemon=True)
    thread.start()
    result = run_cli(push_server.url, input="question\n")
    thread.join(10)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "late answer\n"


def test_pipe_exits_on_the_servers_normal_close_while_input_stays_open(ws_server: str) -> None:
    # The input never ends: the reader must interrupt the main thread's read of stdin.
    proc = subprocess.Popen(
        [*CLI, ws_server + "/close/1000/done"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.communicate()


def test_pipe_abnormal_close_exits_1_with_the_code(ws_server: str) -> None:
    result = run_cli(ws_server + "/close/1011/broken", input="")
    assert result.returncode == 1
    assert result.stderr == "sigil-ws: connection closed: 1011 (internal error) broken\n"


def test_pipe_json_is_pretty_printed(ws_server: str) -> None:
    result = run_cli("--json", "--eof-wait", "0.3", ws_server, input='{"a": [1, "é"]}\nnot json\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{\n  "a": [\n    1,\n    "é"\n  ]\n}\nnot json\n'


def test_pipe_hex_sends_binary_and_shows_binary_as_hex(ws_server: str) -> None:
    result = run_cli("--hex", "--eof-wait", "0.3", ws_server, input="00 01 ff\ncafe\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0001ff\ncafe\n"


def test_pipe_a_line_that_cannot_be_sent_is_reported_and_exits_1(ws_server: str) -> None:
    result = run_cli("--hex", "--eof-wait", "0.3", ws_server, input="zz\n00\n")
    assert result.stdout == "00\n"
    assert result.stderr == "sigil-ws: not sent: not hex: b'zz'\n"
    assert result.returncode == 1
    result = run_cli("--eof-wait", "0.3", ws_server, input=b"\xff\xfe\nok\n")
    assert result.stdout == "ok\n"
    assert "not UTF-8" in result.stderr
    assert result.returncode == 1


def test_refused_connection_exits_1_with_one_line() -> None:
    url = refused_url()
    result = run_cli(url, input="hello\n")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"sigil-ws: cannot connect to {url}: ConnectionRefusedError: [Errno 111] "
        "Connection refused\n"
    )


def test_invalid_url_and_bad_arguments() -> None:
    result = run_cli("http://example.com/")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "InvalidURL" in result.stderr
    result = run_cli("--header", "no colon", "ws://127.0.0.1:9/")
    assert result.returncode == 2
    assert "expected 'Name: value'" in result.stderr
    result = run_cli("--insecure", "ws://127.0.0.1:9/")
    assert result.returncode == 2
    assert "apply to wss:// URLs only" in result.stderr


def test_headers_subprotocols_and_compression_reach_the_server(ws_server: str) -> None:
    result = run_cli(
        "-H",
        "X-One: 1",
        "--header",
        "X-Two:  two words ",
        "--subprotocol",
        "chat",
        "-s",
        "other",
        "--origin",
        "https://example.com",
        "--eof-wait",
        "0.3",
        ws_server + "/headers",
    )
    assert result.returncode == 0, result.stderr
    headers = received_headers(result.stdout)
    assert headers["x-one"] == "1"
    assert headers["x-two"] == "two words"
    assert headers["sec-websocket-protocol"] == "chat, other"
    assert headers["origin"] == "https://example.com"
    assert "permessage-deflate" in headers["sec-websocket-extensions"]
    result = run_cli("--no-compression", "--eof-wait", "0.3", ws_server + "/headers")
    assert result.returncode == 0, result.stderr
    assert "sec-websocket-extensions" not in received_headers(result.stdout)


def test_tls_ca_file_and_insecure(wss_server: str, tls_certs: Certs) -> None:
    result = run_cli("--ca-file", tls_certs.ca_file, "--eof-wait", "0.3", wss_server, input="s\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "s\n"
    # The trustme CA is not in the system store.
    result = run_cli(wss_server, input="s\n")
    assert result.returncode == 1
    assert result.stderr.startswith(f"sigil-ws: cannot connect to {wss_server}: TLSError: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    result = run_cli("--insecure", "--eof-wait", "0.3", wss_server, input="s\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "s\n"


@pytest.mark.parametrize(
    ("flag", "value", "option"),
    [("--proxy", "http://127.0.0.1:9/", "proxy"), ("--ping-interval", "5", "ping_interval")],
)
def test_options_of_newer_connect_pass_through(
    ws_server: str, flag: str, value: str, option: str
) -> None:
    """--proxy and --ping-interval go to connect() where it takes them, and are refused with
    a clear message where it does not."""
    if option not in inspect.signature(sigil_ws.connect).parameters:
        result = run_cli(flag, value, ws_server)
        assert result.returncode == 2
        assert f"{flag} needs a sigil-ws whose connect() takes {option}=" in result.stderr
    elif option == "proxy":
        # A proxy that refuses: the connection fails through it.
        result = run_cli(flag, refused_url().replace("ws://", "http://"), ws_server)
        assert result.returncode == 1
        assert "cannot connect" in result.stderr
        result = run_cli(flag, "none", "--eof-wait", "0.3", ws_server, input="direct\n")
        assert (result.returncode, result.stdout) == (0, "direct\n")
    else:
        result = run_cli(flag, value, "--eof-wait", "0.3", ws_server, input="kept\n")
        assert (result.returncode, result.stdout) == (0, "kept\n")


def test_console_script_and_version() -> None:
    script = Path(sys.executable).with_name("sigil-ws")
    assert script.exists(), f"no {script}: is the package installed with its scripts?"
    out = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=20, check=True
    )
    assert out.stdout == f"sigil-ws {sigil_ws.__version__}\n"


# ---- through a terminal ------------------------------------------------------------------------


class Terminal:
    """The CLI on a pseudo-terminal; ``lines`` is the screen as a terminal would show it."""

    def __init__(
        self, *args: str, rows: int = 24, columns: int = 80, command: list[str] = CLI
    ) -> None:
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        env = dict(os.environ, TERM="xterm", INPUTRC="/dev/null", LC_ALL="C.UTF-8")
        self.child = pexpect.spawn(
            command[0], [*command[1:], *args], env=env, dimensions=(rows, columns)
        )
        self.ended = False

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    @property
    def cursor(self) -> tuple[int, int]:
        return self.screen.cursor.y, self.screen.cursor.x

    def text(self) -> str:
        return "\n".join(line for line in self.lines if line)

    def pump(self, wait: float = 0.05) -> None:
        if self.ended:
            return
        try:
            while True:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=wait))
                wait = 0
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            self.ended = True

    def wait_for(self, what: Callable[[list[str]], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not what(self.lines):
            if time.monotonic() > deadline or self.ended:
                raise AssertionError("the screen never showed it:\n" + self.text())
            self.pump()

    def wait_cursor(self, line: str, column: int, timeout: float = 10.0) -> None:
        """Waits until the cursor is at ``column`` of a row that shows ``line``."""
        deadline = time.monotonic() + timeout
        while True:
            row, at = self.cursor
            if (self.lines[row], at) == (line, column):
                return
            if time.monotonic() > deadline or self.ended:
                raise AssertionError(
                    f"the cursor is at {at} of {self.lines[row]!r}, not at {column} of {line!r}"
                )
            self.pump()

    def wait_exit(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while not self.ended:
            if time.monotonic() > deadline:
                raise AssertionError("the client did not exit:\n" + self.text())
            self.pump()
        self.child.close()
        assert self.child.exitstatus is not None, self.child.signalstatus
        return int(self.child.exitstatus)

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def kill(self) -> None:
        self.child.close(force=True)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    started: list[Terminal] = []

    def start(*args: str, rows: int = 24, command: list[str] = CLI) -> Terminal:
        term = Terminal(*args, rows=rows, command=command)
        started.append(term)
        term.wait_for(lambda lines: any(line.startswith("Connected to") for line in lines))
        term.wait_for(lambda lines: "> " in [line + " " for line in lines if line][-1:])
        return term

    yield start
    for term in started:
        term.kill()


def test_terminal_incoming_messages_keep_the_typed_line(
    push_server: PushServer, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(push_server.url)
    ws = push_server.connection()
    term.send("hello wor")
    term.wait_for(lambda lines: "> hello wor" in lines)
    ws.send("first incoming")
    ws.send("second\nline")
    term.wait_for(lambda lines: "> hello wor" in lines and "< first incoming" in lines)
    term.wait_for(lambda lines: "  line" in lines)
    lines = [line for line in term.lines if line]
    assert lines[-4:] == ["< first incoming", "< second", "  line", "> hello wor"]
    term.wait_cursor("> hello wor", len("> hello wor"))
    # The line is still readline's: editing and sending it works as if nothing had happened.
    term.send("ld\r")
    assert push_server.received.get(timeout=10) == "hello world"
    # A message while the cursor is inside the line: the cursor stays where it was.
    term.send("abcdef\x1b[D\x1b[D\x1b[D")
    term.wait_for(lambda lines: "> abcdef" in lines)
    ws.send(b"\x00\x01\xfe")
    term.wait_for(lambda lines: "< [binary, 3 bytes] 00 01 fe" in lines)
    term.wait_cursor("> abcdef", len("> abc"))
    term.send("X\r")
    assert push_server.received.get(timeout=10) == "abcXdef"


def test_terminal_a_burst_of_messages_is_shown_whole_and_in_order(
    push_server: PushServer, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(push_server.url, rows=60)
    ws = push_server.connection()
    for round in range(3):
        term.send(f"typing {round}")
        term.wait_for(lambda lines, round=round: f"> typing {round}" in lines)
        for i in range(15):
            ws.send(f"burst {round}.{i}")
        term.wait_for(lambda lines, round=round: f"< burst {round}.14" in lines)
        lines = [line for line in term.lines if line.startswith(("<", ">"))]
        shown = [line for line in lines if line.startswith(f"< burst {round}.")]
        assert shown == [f"< burst {round}.{i}" for i in range(15)]
        assert lines[-1] == f"> typing {round}"
        term.send("\r")
        assert push_server.received.get(timeout=10) == f"typing {round}"


# The CLI as it runs where readline's redisplay cannot be reached (libedit, no ctypes).
WITHOUT_REDISPLAY = [
    sys.executable,
    "-c",
    "import sys, sigil_ws._cli as cli; cli._Readline.load = lambda: None; sys.exit(cli.main())",
]


def test_terminal_without_readline_redisplay_still_keeps_the_line(
    push_server: PushServer, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(push_server.url, command=WITHOUT_REDISPLAY)
    ws = push_server.connection()
    term.send("hello wor")
    term.wait_for(lambda lines: "> hello wor" in lines)
    ws.send("incoming")
    term.wait_for(lambda lines: "< incoming" in lines)
    term.wait_cursor("> hello wor", len("> hello wor"))
    term.send("ld\r")
    assert push_server.received.get(timeout=10) == "hello world"
    term.send("\x04")
    assert term.wait_exit() == 0
    assert [line for line in term.lines if line][-1] == "Connection closed: 1000 (OK)"


def test_terminal_control_characters_from_the_server_are_shown_escaped(
    push_server: PushServer, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(push_server.url)
    push_server.connection().send("\x1b[2J\x1b[Hevil\x07")
    term.wait_for(lambda lines: "< \\x1b[2J\\x1b[Hevil\\x07" in lines)
    assert any(line.startswith("Connected to") for line in term.lines)  # nothing was erased


def test_terminal_ctrl_d_closes_normally(
    push_server: PushServer, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(push_server.url)
    ws = push_server.connection()
    term.send("\x04")
    assert term.wait_exit() == 0
    assert "Connection closed: 1000 (OK)" in term.text()
    assert ws.close_code == 1000


def test_terminal_ctrl_c_closes_normally(
    push_server: PushServer, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(push_server.url)
    ws = push_server.connection()
    term.send("half typed")
    term.wait_for(lambda lines: "> half typed" in lines)
    term.send("\x03")
    assert term.wait_exit() == 0
    assert "Traceback" not in term.text()
    assert ws.close_code == 1000
    assert push_server.received.empty()


@pytest.mark.parametrize(("code", "status"), [(1000, 0), (1001, 0), (1008, 1)])
def test_terminal_server_close_ends_the_prompt(
    push_server: PushServer, terminal: Callable[..., Terminal], code: int, status: int
) -> None:
    term = terminal(push_server.url)
    ws = push_server.connection()
    term.send("typing")
    term.wait_for(lambda lines: "> typing" in lines)
    ws.close(code, "server leaves")
    assert term.wait_exit() == status
    assert f"Connection closed: {code} " in term.text()
    assert "server leaves" in term.text()
    assert push_server.received.empty()

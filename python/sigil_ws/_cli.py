"""The command-line client: ``python -m sigil_ws URL``, also installed as ``sigil-ws``.

In a terminal it is interactive: each line typed at the ``>`` prompt is sent as a text message,
and received messages are printed above the prompt as they arrive, with the line being typed
redrawn intact below them. Ctrl-D or Ctrl-C closes the connection normally and exits.

When standard input is not a terminal (a pipe or a file), each input line is sent as one
message and each received message is printed on standard output, one per line, nothing else.
When the input ends, the client keeps printing until no message has arrived for ``--eof-wait``
seconds (1 by default: the replies to the last lines are in), then closes normally (1000).

Received binary messages are shown as hex. Exit status: 0 after a normal close (1000 or 1001,
or a close frame without a code), 1 when the connection cannot be opened (one line on standard
error saying why) or closes abnormally, or when an input line cannot be sent; 2 for bad
arguments; 130 when Ctrl-C interrupts the non-interactive mode.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import inspect
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TextIO

from ._core import Connection, __version__
from .client import connect
from .exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, WebSocketError
from .tls import TLSConfig
from .url import parse_url

__all__ = ["main"]

PROG = "sigil-ws"
PROMPT = "> "

# C0 and C1 control characters but tab and newline: a server's text must not drive the terminal.
_CONTROLS = {
    code: f"\\x{code:02x}"
    for code in (*range(0x20), *range(0x7F, 0xA0))
    if code not in (0x09, 0x0A)
}


class _UsageError(Exception):
    """A command-line argument that cannot be used."""


class _Wake(Exception):
    """Raised in the main thread to stop reading input once the connection has ended."""


# ---- arguments ---------------------------------------------------------------------------------


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', not {text!r}")
    return name.strip(), value.strip()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more, not {text!r}")
    return value


def _interval(text: str) -> float | None:
    return _seconds(text) or None


def _proxy(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "An interactive WebSocket client. In a terminal, lines typed at the prompt are "
            "sent and received messages are printed as they arrive. With input from a pipe or "
            "a file, each line is sent, replies are printed, and a normal close follows the end "
            "of the input."
        ),
        epilog=(
            "Exit status: 0 after a normal close, 1 if the connection fails or closes "
            "abnormally, 2 for bad arguments."
        ),
    )
    parser.add_argument("url", metavar="URL", help="ws:// or wss:// URL")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        type=_header,
        default=[],
        metavar="'NAME: VALUE'",
        help="send this request header (repeatable)",
    )
    parser.add_argument(
        "-s",
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this subprotocol (repeatable)",
    )
    parser.add_argument("--origin", help="the Origin header")
    parser.add_argument(
        "--ca-file",
        metavar="PEM",
        help="trust the CA certificates in this PEM file instead of the system's (wss://)",
    )
    parser.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate and host name (wss://; for tests only)",
    )
    parser.add_argument(
        "--proxy",
        type=_proxy,
        default=argparse.SUPPRESS,
        metavar="URL",
        help=(
            "connect through this proxy (http://, https://, socks5://, socks5h://, "
            "socks4a://), or 'none' for a direct connection; default: from the environment"
        ),
    )
    parser.add_argument(
        "--no-compression", action="store_true", help="do not offer permessage-deflate"
    )
    parser.add_argument(
        "--ping-interval",
        type=_interval,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="seconds between keepalive pings, 0 for none (default: the library's)",
    )
    parser.add_argument(
        "--open-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds to open the connection, 0 for no limit (default: %(default)s)",
    )
    parser.add_argument(
        "--eof-wait",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help=(
            "when the input is not a terminal: after it ends, wait until no message has "
            "arrived for this long before closing; 'inf' waits for the server to close "
            "(default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--hex",
        action="store_true",
        help=(
            "input lines are hex (spaces allowed) and are sent as binary messages; received "
            "binary messages are always shown as hex"
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="pretty-print received text messages that are JSON"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def connect_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``connect()`` that the command line asks for.

    ``--proxy`` and ``--ping-interval`` are passed only when given, and refused with a clear
    message when this version's ``connect()`` lacks the option.
    """
    options: dict[str, Any] = {
        "open_timeout": args.open_timeout or None,
    }
    if args.header:
        options["headers"] = args.header
    if args.subprotocol:
        options["subprotocols"] = args.subprotocol
    if args.origin is not None:
        options["origin"] = args.origin
    if args.no_compression:
        options["compression"] = None
    if args.ca_file is not None or args.insecure:
        if not parse_url(args.url).secure:
            raise _UsageError("--ca-file and --insecure apply to wss:// URLs only")
        options["tls"] = TLSConfig(ca_file=args.ca_file, verify=not args.insecure)
    accepted = inspect.signature(connect).parameters
    given = vars(args)
    for name, flag in (("proxy", "--proxy"), ("ping_interval", "--ping-interval")):
        if name not in given:
            continue
        if name not in accepted:
            raise _UsageError(
                f"{flag} needs a sigil-ws whose connect() takes {name}= (this is {__version__})"
            )
        options[name] = given[name]
    return options


# ---- output ------------------------------------------------------------------------------------


def _format(message: str | bytes, *, interactive: bool, pretty_json: bool) -> str:
    if isinstance(message, bytes):
        if interactive:
            return f"< [binary, {len(message)} bytes] {message.hex(' ')}"
        return message.hex()
    text = message
    if pretty_json:
        try:
            text = json.dumps(json.loads(message), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    if not interactive:
        return text
    return "< " + text.translate(_CONTROLS).replace("\n", "\n  ")


class _Readline:
    """GNU readline's own redisplay, reached through ctypes, to redraw the prompt and the line
    being typed after printing above them. :meth:`load` gives ``None`` where it cannot be had
    (no readline module, libedit): the console then redraws by hand."""

    _STATE_CALLBACK = 0x0080000  # RL_STATE_CALLBACK: readline.h, readline 6 to 8

    def __init__(self, library: ctypes.CDLL) -> None:
        self.state = ctypes.c_ulong.in_dll(library, "rl_readline_state")
        self.clear_visible_line: Callable[[], int] = library.rl_clear_visible_line
        self.on_new_line: Callable[[], int] = library.rl_on_new_line
        self.redisplay: Callable[[], None] = library.rl_redisplay

    @classmethod
    def load(cls) -> _Readline | None:
        try:
            import readline
        except ImportError:
            return None
        path = getattr(readline, "__file__", None)
        if path is None or "libedit" in (readline.__doc__ or ""):
            return None
        try:
            return cls(ctypes.CDLL(path))
        except (OSError, ValueError, AttributeError):
            return None

    def active(self) -> bool:
        """True while input() is inside readline (the prompt is on the screen)."""
        return bool(self.state.value & self._STATE_CALLBACK)


class _Console:
    """Prints received messages and notes, and reads the lines to send.

    Interactive, only the main thread writes to the terminal: the reader thread queues what it
    received and signals the main thread (``notify``). If that thread is waiting in readline,
    the signal interrupts readline's wait and the handler (:meth:`show_pending`) prints above
    the prompt, then has readline redraw the prompt and the typed line, cursor included; the
    wait then goes on. Readline is not in the middle of anything then, so nothing races.
    """

    def __init__(self, *, interactive: bool, pretty_json: bool) -> None:
        self.interactive = interactive
        self.pretty_json = pretty_json
        self.notify: Callable[[], None] | None = None  # wakes the main thread ...
        self.notify_signals: set[signal.Signals] = set()  # ... with these signals
        self._pending: collections.deque[tuple[TextIO, str]] = collections.deque()
        self._notified = False
        self._drawing = False
        self._prompting = False  # in input(): the prompt is on the screen
        self._lock = threading.Lock()
        self._readline = None
        if interactive:
            try:
                import readline  # noqa: F401 (input() edits the line once readline is imported)
            except ImportError:
                pass
            self._readline = _Readline.load()

    @property
    def has_pending(self) -> bool:
        """Something is queued for the main thread to print."""
        return bool(self._pending)

    @property
    def can_redraw(self) -> bool:
        """Readline's redisplay is at hand (else the reader thread redraws by hand)."""
        return self._readline is not None

    def message(self, message: str | bytes) -> None:
        """Shows a received message (from any thread)."""
        text = _format(message, interactive=self.interactive, pretty_json=self.pretty_json)
        self._emit(sys.stdout, text)

    def note(self, text: str) -> None:
        """Shows a status line on standard error (from any thread)."""
        self._emit(sys.stderr, text)

    def _emit(self, stream: TextIO, text: str) -> None:
        if not self.interactive:
            with self._lock:
                stream.write(text + "\n")
                stream.flush()
        elif self.notify is None:
            self._print_over_prompt(stream, text)
        else:
            self._pending.append((stream, text))
            if not self._notified:
                self._notified = True
                self.notify()

    def show_pending(self) -> None:
        """Prints what is queued (main thread only), above the prompt if it is on screen.

        The reader's signal is blocked meanwhile, so that its handler does not run this again
        halfway through; one that comes is delivered when it is unblocked, and prints then.
        A handler already under way when the block begins finds ``_drawing`` set and leaves
        the work to this call, which prints everything queued before the block.
        """
        if self._drawing:
            return
        signals = self.notify_signals
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signals) if signals else None
        self._drawing = True
        try:
            self._notified = False
            if not self._pending:
                return
            readline = self._readline
            redraw = readline is not None and readline.active()
            if redraw and readline is not None:
                readline.clear_visible_line()
            while self._pending:
                stream, text = self._pending.popleft()
                stream.write(text + "\n")
                stream.flush()
            if redraw and readline is not None:
                readline.on_new_line()
                readline.redisplay()
        finally:
            self._drawing = False
            if blocked is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _print_over_prompt(self, stream: TextIO, text: str) -> None:
        # No main-thread signal here (or no readline redisplay): clear the prompt's line,
        # print, and write the prompt and the typed line again, the cursor at its end.
        try:
            import readline

            typed = readline.get_line_buffer()
        except ImportError:
            typed = ""
        with self._lock:
            prompt = self._prompting
            if prompt:
                sys.stdout.write("\r\x1b[K")
                sys.stdout.flush()
            stream.write(text + "\n")
            stream.flush()
            if prompt:
                sys.stdout.write(PROMPT + typed)
                sys.stdout.flush()

    def read_line(self) -> str | bytes | None:
        """The next line to send without its line ending, ``None`` at the end of the input.

        Interactive, it is read with readline (a ``str``); otherwise it is the raw line
        (``bytes``), decoded by the caller.
        """
        if self.interactive:
            self._prompting = True
            try:
                return input(PROMPT)
            except EOFError:
                sys.stdout.write("\n")
                return None
            finally:
                self._prompting = False
        line = sys.stdin.buffer.readline()
        if not line:
            return None
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        return line


# ---- the session -------------------------------------------------------------------------------


class _Session:
    """One connection: a reader thread prints what arrives, the main thread sends the input.

    The reader wakes the main thread with SIGUSR1 (``pthread_kill``): to show messages in
    interactive mode, and when the connection has ended, to interrupt a read of the input.
    """

    def __init__(
        self, ws: Connection, console: _Console, *, hex_input: bool, eof_wait: float
    ) -> None:
        self.ws = ws
        self.console = console
        self.hex_input = hex_input
        self.eof_wait = eof_wait
        self.last_message = time.monotonic()
        self.ended: ConnectionClosed | None = None  # set by the reader once the connection ends
        self.reader_done = threading.Event()
        self.in_input = False  # main thread only: reading the input, _Wake may be raised
        self.bad_lines = 0
        main = threading.main_thread()
        self.main_ident = main.ident
        self.can_signal = threading.current_thread() is main and hasattr(signal, "pthread_kill")
        if self.can_signal and console.can_redraw:
            console.notify = self._wake_main
            console.notify_signals = {signal.SIGUSR1}

    def _wake_main(self) -> None:
        if self.main_ident is not None:
            signal.pthread_kill(self.main_ident, signal.SIGUSR1)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        # In the main thread, between two bytecodes or inside readline's wait for a key.
        if not self.in_input:
            return  # sending or closing: the main thread looks at the queue and the end itself
        self.console.show_pending()
        if self.reader_done.is_set():
            self.in_input = False  # at most one _Wake
            raise _Wake

    def receive(self) -> None:
        """The reader thread: prints every message until the connection ends."""
        try:
            for message in self.ws:
                self.last_message = time.monotonic()
                self.console.message(message)
            # The iteration also ends when close() is called by the main thread: the code is
            # the one that the closing handshake ended with.
            code, reason = self.ws.close_code or 1005, self.ws.close_reason or ""
            normal = code in (1000, 1001, 1005)
            self.ended = (ConnectionClosedOK if normal else ConnectionClosedError)(code, reason)
        except ConnectionClosed as exc:
            self.ended = exc
        except (WebSocketError, OSError) as exc:
            self.ended = ConnectionClosedError(1006, str(exc))
        finally:
            self.reader_done.set()
            if self.can_signal:
                self._wake_main()

    def run(self) -> int:
        """Sends the input until it ends or the connection does; returns the exit status."""
        if self.can_signal:
            # Kept after the session: the reader's last signal may still be pending then, and
            # _on_signal does nothing once the input is no longer read.
            signal.signal(signal.SIGUSR1, self._on_signal)
        reader = threading.Thread(target=self.receive, name="sigil-ws-cli-reader", daemon=True)
        reader.start()
        input_done = threading.Event()
        if self.can_signal:
            nudger = threading.Thread(
                target=self._nudge, args=(input_done,), name="sigil-ws-cli-nudge", daemon=True
            )
            nudger.start()
        interrupted = False
        try:
            try:
                try:
                    self._send_input()
                    if not self.console.interactive:
                        self._linger()
                except KeyboardInterrupt:
                    self.in_input = False
                    interrupted = True
                    if self.console.interactive:
                        sys.stdout.write("\n")
            except _Wake:  # also if it comes while handling Ctrl-C
                pass
            self.in_input = False
            input_done.set()
            if self.ended is None:
                try:
                    self.ws.close()
                except ConnectionClosed:
                    pass
                except (WebSocketError, OSError) as exc:
                    self.console.note(f"{PROG}: closing failed: {exc}")
            reader.join(5.0)
        except KeyboardInterrupt:
            self.console.show_pending()
            return 130  # a second Ctrl-C while closing
        self.console.show_pending()
        return self._report(interrupted)

    def _nudge(self, input_done: threading.Event) -> None:
        # A signal that lands while the main thread runs C code other than its wait (readline
        # handling a key or printing the prompt, a read just about to start) is recorded by
        # Python's C handler but its Python handler only runs at the next interruption. So
        # while there is something to show or the connection has ended, signal again.
        while not input_done.wait(0.05):
            if self.console.has_pending or self.reader_done.is_set():
                self._wake_main()

    def _send_input(self) -> None:
        while True:
            self.in_input = True
            self.console.show_pending()  # what arrived while the main thread was sending
            if self.reader_done.is_set():
                return
            line = self.console.read_line()
            self.in_input = False
            if line is None:
                return
            message = self._message(line)
            if message is None:
                self.bad_lines += 1
                continue
            try:
                self.ws.send(message)
            except ConnectionClosed:
                return

    def _linger(self) -> None:
        # After the end of the input: wait for the replies, until eof_wait passes without one.
        self.last_message = max(self.last_message, time.monotonic())
        while not self.reader_done.is_set():
            if self.eof_wait == float("inf"):
                self.reader_done.wait()
                return
            left = self.last_message + self.eof_wait - time.monotonic()
            if left <= 0:
                return
            self.reader_done.wait(left)

    def _message(self, line: str | bytes) -> str | bytes | None:
        if self.hex_input:
            try:
                text = line.decode("ascii") if isinstance(line, bytes) else line
                return bytes.fromhex(text)
            except ValueError:
                self.console.note(f"{PROG}: not sent: not hex: {line!r}")
                return None
        if isinstance(line, bytes):
            try:
                return line.decode()
            except UnicodeDecodeError:
                self.console.note(f"{PROG}: not sent: not UTF-8 (--hex sends binary): {line!r}")
                return None
        return line

    def _report(self, interrupted: bool) -> int:
        ended = self.ended
        if ended is None:  # the reader did not see the end within its time
            ended = ConnectionClosedError(self.ws.close_code or 1006, self.ws.close_reason or "")
        if self.console.interactive:
            text = str(ended)
            self.console.note(text[:1].upper() + text[1:])
            self.console.show_pending()
        elif not isinstance(ended, ConnectionClosedOK):
            self.console.note(f"{PROG}: {ended}")
        if interrupted and not self.console.interactive:
            return 130
        if not isinstance(ended, ConnectionClosedOK):
            return 1
        return 1 if self.bad_lines and not self.console.interactive else 0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command-line client; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        options = connect_options(args)
    except _UsageError as exc:
        parser.error(str(exc))
    except WebSocketError as exc:  # InvalidURL from parse_url
        print(f"{PROG}: {args.url}: {exc}", file=sys.stderr)
        return 1
    interactive = sys.stdin.isatty()
    try:
        ws = connect(args.url, **options)
    except KeyboardInterrupt:
        return 130
    except (WebSocketError, OSError, ValueError) as exc:
        print(f"{PROG}: cannot connect to {args.url}: {_describe(exc)}", file=sys.stderr)
        return 1
    if interactive:
        details = [f"Connected to {ws.url}"]
        if ws.subprotocol:
            details.append(f"subprotocol {ws.subprotocol}")
        if ws.extensions:
            details.append("extensions " + ", ".join(name for name, _ in ws.extensions))
        print("; ".join(details) + ". Ctrl-D to close.", file=sys.stderr, flush=True)
    console = _Console(interactive=interactive, pretty_json=args.json)
    return _Session(ws, console, hex_input=args.hex, eof_wait=args.eof_wait).run()

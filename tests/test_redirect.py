"""Redirects of the upgrade, Basic auth from the URL, Unix sockets and a given socket, against
the websockets package's server (its process_request answers 3xx)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.datastructures import Headers as WSHeaders
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve, unix_serve

import sigil_ws
from tests.conftest import Certs, reference_handler

pytestmark = pytest.mark.timeout(30)

Redirect = Callable[[str], "tuple[int, str] | None"]


class Redirector:
    """A websockets server whose ``rules`` map a request path to ``(status, Location)``;
    other paths get the reference handler (``/echo``, ``/headers``)."""

    def __init__(self, ssl_context: Any = None) -> None:
        self.rules: dict[str, tuple[int, str]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.server: Server = serve(
            reference_handler,
            "127.0.0.1",
            0,
            process_request=self._process,
            ssl=ssl_context,
            compression=None,
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.scheme = "ws" if ssl_context is None else "wss"

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.socket.getsockname()[1]}"

    def _process(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append((request.path, dict(request.headers.raw_items())))
        rule = self.rules.get(request.path)
        if rule is None:
            return None
        status, location = rule
        response = connection.respond(status, "moved\n")
        response.headers = WSHeaders(
            [(k, v) for k, v in response.headers.raw_items()] + [("Location", location)]
        )
        return response

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def redirector() -> Iterator[Callable[..., Redirector]]:
    made: list[Redirector] = []

    def make(ssl_context: Any = None) -> Redirector:
        made.append(Redirector(ssl_context))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_follows_redirects(
    redirector: Callable[..., Redirector], connect: Callable[..., Any], status: int
) -> None:
    r = redirector()
    r.rules["/old"] = (status, "/a/b")
    r.rules["/a/b"] = (status, "../echo?x=1")  # relative: resolved against /a/b
    ws = connect(f"{r.base}/old")
    assert ws.url == f"{r.base}/echo?x=1"
    assert ws.path == "/echo?x=1"
    ws.send("moved")
    assert ws.recv() == "moved"
    assert [path for path, _ in r.requests] == ["/old", "/a/b", "/echo?x=1"]


def test_max_redirects(redirector: Callable[..., Redirector], connect: Callable[..., Any]) -> None:
    r = redirector()
    for i in range(3):
        r.rules[f"/{i}"] = (302, f"/{i + 1}")
    r.rules["/3"] = (302, "/echo")
    with pytest.raises(sigil_ws.HandshakeError, match=r"too many redirects \(max_redirects=2\)"):
        connect(f"{r.base}/0", max_redirects=2)
    with pytest.raises(sigil_ws.InvalidStatus) as e:
        connect(f"{r.base}/0", max_redirects=0)
    assert e.value.status_code == 302
    assert e.value.headers["Location"] == "/1"
    assert connect(f"{r.base}/0", max_redirects=4).path == "/echo"


def test_redirect_loop_names_the_chain(
    redirector: Callable[..., Redirector], connect: Callable[..., Any]
) -> None:
    r = redirector()
    r.rules["/a"] = (301, "/b")
    r.rules["/b"] = (301, f"{r.base}/a")
    chain = f"{r.base}/a -> {r.base}/b -> {r.base}/a"
    with pytest.raises(sigil_ws.HandshakeError) as e:
        connect(f"{r.base}/a")
    assert str(e.value) == f"redirect loop: {chain}"
    assert not isinstance(e.value, sigil_ws.InvalidStatus)


def test_never_from_wss_to_ws(
    redirector: Callable[..., Redirector],
    connect: Callable[..., Any],
    tls_certs: Certs,
    ws_server: str,
) -> None:
    r = redirector(tls_certs.server_context)
    r.rules["/down"] = (301, f"{ws_server}/echo")
    with pytest.raises(sigil_ws.HandshakeError, match="it drops TLS"):
        connect(f"{r.base}/down", tls=sigil_ws.TLSConfig(ca_data=tls_certs.ca_pem))


def test_credentials_stay_with_their_origin(
    redirector: Callable[..., Redirector], connect: Callable[..., Any]
) -> None:
    first, other = redirector(), redirector()
    first.rules["/start"] = (307, "/same")
    first.rules["/same"] = (307, f"{other.base}/headers")
    ws = connect(
        first.base.replace("://", "://alice:p%40ss@") + "/start",
        headers={"Cookie": "session=1", "X-Trace": "t"},
    )
    sent_to_other = json.loads(ws.recv())
    assert "Authorization" not in sent_to_other
    assert "Cookie" not in sent_to_other
    assert sent_to_other["X-Trace"] == "t"
    # The first origin got them on both of its hops.
    basic = "Basic " + base64.b64encode(b"alice:p@ss").decode()
    assert [h.get("Authorization") for _, h in first.requests] == [basic, basic]
    assert [h.get("Cookie") for _, h in first.requests] == ["session=1"] * 2
    # The URL shown never holds the password.
    assert "p%40ss" not in ws.url and "alice" not in ws.url


def test_basic_auth_from_the_url(connect: Callable[..., Any], ws_server: str) -> None:
    ws = connect(ws_server.replace("://", "://user:pa%3Ass@") + "/headers")
    headers = json.loads(ws.recv())
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:pa:ss").decode()
    assert ws.url == f"{ws_server}/headers"
    # An explicit Authorization header wins.
    ws = connect(ws_server.replace("://", "://u:p@") + "/headers", headers={"Authorization": "x"})
    assert json.loads(ws.recv())["Authorization"] == "x"


# ---- unix_socket and sock ----------------------------------------------------------------------


@pytest.fixture
def unix_server(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "ws.sock")
    server = unix_serve(reference_handler, path, compression=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        thread.join(5)


def test_unix_socket(unix_server: str, connect: Callable[..., Any]) -> None:
    ws = connect("ws://example.com:8080/headers?x=1", unix_socket=unix_server)
    headers = json.loads(ws.recv())
    assert headers["Host"] == "example.com:8080"
    ws.send("over a unix socket")
    assert ws.recv() == "over a unix socket"
    assert ws.remote_address == (unix_server, 0)
    assert ws.local_address == ("", 0)
    assert ws.url == "ws://example.com:8080/headers?x=1"


def test_unix_socket_missing(connect: Callable[..., Any], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        connect("ws://localhost/", unix_socket=str(tmp_path / "nothing.sock"))


def test_given_socket(connect: Callable[..., Any], ws_server: str) -> None:
    host, port = ws_server.removeprefix("ws://").split(":")
    sock = socket.create_connection((host, int(port)))
    fd = sock.fileno()
    ws = connect(f"{ws_server}/echo", sock=sock)
    ws.send("given")
    assert ws.recv() == "given"
    assert ws.fileno() == fd
    assert ws.remote_address == (host, int(port))


def test_given_socket_with_tls(
    connect: Callable[..., Any], wss_server: str, tls_certs: Certs
) -> None:
    host, port = wss_server.removeprefix("wss://").split(":")
    sock = socket.create_connection((host, int(port)))
    ws = connect(f"{wss_server}/echo", sock=sock, tls=sigil_ws.TLSConfig(ca_data=tls_certs.ca_pem))
    ws.send("tls on a given socket")
    assert ws.recv() == "tls on a given socket"


def test_given_socket_must_be_plain(
    connect: Callable[..., Any], wss_server: str, tls_certs: Certs
) -> None:
    import ssl

    host, port = wss_server.removeprefix("wss://").split(":")
    context = ssl.create_default_context(cadata=tls_certs.ca_pem.decode())
    with (
        context.wrap_socket(
            socket.create_connection((host, int(port))), server_hostname=host
        ) as tls_sock,
        pytest.raises(TypeError, match="plain socket"),
    ):
        connect(f"{wss_server}/echo", sock=tls_sock)


# ---- Happy Eyeballs (asyncio; the sync client's is tested in src/blocking/net.rs) -------------


def test_asyncio_happy_eyeballs(ws_server: str) -> None:
    """A name with a dead IPv6 address and a working IPv4 one connects over IPv4 after the
    250 ms attempt delay, not after open_timeout. The name's addresses come from the event
    loop's resolver (overridden: /etc/hosts is not ours to edit); the sockets are real: the
    IPv6 address is a listener whose full accept queue drops SYNs."""
    import asyncio
    import time

    import sigil_ws.asyncio

    live_port = int(ws_server.rsplit(":", 1)[1])
    dead = socket.socket(socket.AF_INET6)
    dead.bind(("::1", 0))
    dead.listen(0)
    filler = socket.create_connection(dead.getsockname()[:2])
    dead_port = dead.getsockname()[1]

    class DualStackLoop(asyncio.SelectorEventLoop):
        async def getaddrinfo(self, host: Any, port: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            if host != "dual.test":
                return await super().getaddrinfo(host, port, **kwargs)
            tcp = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            return [
                (socket.AF_INET6, *tcp, ("::1", dead_port, 0, 0)),
                (socket.AF_INET, *tcp, ("127.0.0.1", live_port)),
            ]

    async def main() -> tuple[float, tuple[str, int]]:
        start = time.monotonic()
        # Both addresses share one port in the URL: route the IPv6 one to the dead listener.
        async with sigil_ws.asyncio.connect(
            f"ws://dual.test:{live_port}/echo", open_timeout=5, proxy=None
        ) as ws:
            took = time.monotonic() - start
            await ws.send("eyeballs")
            assert await ws.recv() == "eyeballs"
            return took, ws.remote_address

    loop = DualStackLoop()
    try:
        took, remote = loop.run_until_complete(main())
    finally:
        loop.close()
        filler.close()
        dead.close()
    assert remote == ("127.0.0.1", live_port)
    assert 0.25 <= took < 2, took

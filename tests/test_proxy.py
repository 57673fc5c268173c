"""Proxies against real ones from Debian's packages (tinyproxy: HTTP CONNECT with and without
Basic auth; dante: SOCKS5 with and without username/password, SOCKS4a; stunnel: TLS in front
of tinyproxy for an https:// proxy), started on 127.0.0.1 with config files written here; and
raw scripted proxies for the refusals a real one rarely shows.

Outside CI a missing binary skips its tests (install them with ``scripts/ci-proxies.sh``); in
CI (``CI=true``) it fails them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sigil_ws
from tests.conftest import Certs

pytestmark = pytest.mark.timeout(60)

# The system user whose password dante's "username" method checks (scripts/ci-proxies.sh).
SOCKS_USER = "sigilws-proxy"
SOCKS_PASSWORD = "sigilws-proxy-pw"


def require(binary: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(p)), None
    )
    if path is None:
        message = f"{binary} is not installed (run scripts/ci-proxies.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"proxy exited: {log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"proxy did not listen: {log.read_text(errors='replace')}")


class Proxies:
    """Starts proxy processes for one test and stops them after it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], port: int, name: str) -> None:
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.processes.append(process)
        wait_listening(port, process, log)

    def tinyproxy(
        self, auth: tuple[str, str] | None = None, connect_port: int | None = None
    ) -> str:
        """http://127.0.0.1:PORT of a tinyproxy, with Basic auth when ``auth`` is given,
        allowing CONNECT to ``connect_port`` only when given."""
        binary = require("tinyproxy")
        port = free_port()
        lines = [
            "Listen 127.0.0.1",
            f"Port {port}",
            "Timeout 30",
            "MaxClients 20",
            "LogLevel Info",
            "Allow 127.0.0.1",
        ]
        if auth is not None:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        if connect_port is not None:
            lines.append(f"ConnectPort {connect_port}")
        config = self.tmp / f"tinyproxy-{port}.conf"
        config.write_text("\n".join(lines) + "\n")
        self.start([binary, "-d", "-c", str(config)], port, f"tinyproxy-{port}")
        return f"http://127.0.0.1:{port}"

    def dante(self, auth: bool = False) -> str:
        """127.0.0.1:PORT of a dante SOCKS server (SOCKS4a and SOCKS5), with the system
        password database's username method when ``auth``."""
        binary = require("danted")
        if auth:
            try:
                import pwd

                pwd.getpwnam(SOCKS_USER)
            except KeyError:
                message = f"the user {SOCKS_USER} is missing (run scripts/ci-proxies.sh)"
                if os.environ.get("CI") == "true":
                    pytest.fail(message)
                pytest.skip(message)
        port = free_port()
        config = self.tmp / f"sockd-{port}.conf"
        config.write_text(
            "logoutput: stderr\n"
            f"internal: 127.0.0.1 port = {port}\n"
            "external: 127.0.0.1\n"
            f"socksmethod: {'username' if auth else 'none'}\n"
            "clientmethod: none\n"
            "user.privileged: root\n"
            "user.unprivileged: nobody\n"
            "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
            "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
        )
        self.start(
            [binary, "-f", str(config), "-p", str(self.tmp / f"sockd-{port}.pid")],
            port,
            f"sockd-{port}",
        )
        return f"127.0.0.1:{port}"

    def stunnel(self, target: str, certs: Certs) -> str:
        """https://localhost:PORT: stunnel with a trustme certificate in front of ``target``
        (an http:// proxy)."""
        binary = require("stunnel4") if shutil.which("stunnel4") else require("stunnel")
        port = free_port()
        pem = self.tmp / "stunnel.pem"
        cert = certs.ca.issue_cert("localhost", "127.0.0.1")
        pem.write_bytes(
            cert.private_key_pem.bytes() + b"".join(c.bytes() for c in cert.cert_chain_pems)
        )
        config = self.tmp / f"stunnel-{port}.conf"
        config.write_text(
            "foreground = yes\n"
            f"pid = {self.tmp}/stunnel-{port}.pid\n"
            "debug = 4\n"
            "[proxy]\n"
            f"accept = 127.0.0.1:{port}\n"
            f"connect = {target.removeprefix('http://')}\n"
            f"cert = {pem}\n"
        )
        self.start([binary, str(config)], port, f"stunnel-{port}")
        return f"https://localhost:{port}"

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[Proxies]:
    p = Proxies(tmp_path)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests choose their proxies: none from the environment they run in."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def echo_through(ws: Any) -> None:
    ws.send("through the proxy")
    assert ws.recv() == "through the proxy"


# ---- HTTP CONNECT: tinyproxy -------------------------------------------------------------------


def test_http_connect(
    proxies: Proxies,
    connect: Callable[..., Any],
    ws_server: str,
) -> None:
    proxy = proxies.tinyproxy()
    ws = connect(f"{ws_server}/echo", proxy=proxy)
    echo_through(ws)
    assert ws.remote_address == ("127.0.0.1", port_of(proxy))


def test_http_connect_basic_auth(
    proxies: Proxies,
    connect: Callable[..., Any],
    ws_server: str,
) -> None:
    proxy = proxies.tinyproxy(auth=("alice", "pa.ss-x_y"))
    # Percent-encoded in the URL ("%2E" is "."), decoded before it is sent.
    ws = connect(f"{ws_server}/echo", proxy=proxy.replace("://", "://alice:pa%2Ess-x_y@"))
    echo_through(ws)


def test_http_connect_bad_credentials(
    proxies: Proxies,
    connect: Callable[..., Any],
    ws_server: str,
) -> None:
    proxy = proxies.tinyproxy(auth=("alice", "right"))
    for url in (proxy, proxy.replace("://", "://alice:wrong-secret@")):
        with pytest.raises(
            sigil_ws.ProxyError, match=r"^proxy http://127\.0\.0\.1:\d+ refused"
        ) as e:
            connect(f"{ws_server}/echo", proxy=url)
        # tinyproxy answers 407 without credentials, 401 with wrong ones.
        assert e.value.status_code in (401, 407)
        assert e.value.reply_code is None
        assert e.value.proxy == proxy
        assert "wrong-secret" not in str(e.value)
        assert isinstance(e.value, sigil_ws.HandshakeError)


def test_http_proxy_refuses_the_target(
    proxies: Proxies,
    connect: Callable[..., Any],
    ws_server: str,
) -> None:
    proxy = proxies.tinyproxy(connect_port=443)
    with pytest.raises(sigil_ws.ProxyError, match="refused the tunnel: HTTP 403") as e:
        connect(f"{ws_server}/echo", proxy=proxy)
    assert e.value.status_code == 403


# ---- SOCKS: dante ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4a"])
def test_socks(proxies: Proxies, connect: Callable[..., Any], ws_server: str, scheme: str) -> None:
    proxy = proxies.dante()
    # A name, so that socks5h:// sends it and socks5:// resolves it first; dante resolves no
    # SOCKS4a names, so socks4a:// sends it the address (the name form is tested below).
    url = ws_server if scheme == "socks4a" else ws_server.replace("127.0.0.1", "localhost")
    ws = connect(f"{url}/echo", proxy=f"{scheme}://{proxy}")
    echo_through(ws)
    assert ws.remote_address == ("127.0.0.1", port_of(proxy))


def test_socks5_username_password(
    proxies: Proxies,
    connect: Callable[..., Any],
    ws_server: str,
) -> None:
    proxy = proxies.dante(auth=True)
    ws = connect(f"{ws_server}/echo", proxy=f"socks5h://{SOCKS_USER}:{SOCKS_PASSWORD}@{proxy}")
    echo_through(ws)


def test_socks5_bad_credentials(
    proxies: Proxies,
    connect: Callable[..., Any],
    ws_server: str,
) -> None:
    proxy = proxies.dante(auth=True)
    with pytest.raises(sigil_ws.ProxyError, match="refused the user name and password") as e:
        connect(f"{ws_server}/echo", proxy=f"socks5h://{SOCKS_USER}:wrong-secret@{proxy}")
    assert e.value.reply_code is None  # an RFC 1929 status, not a reply code
    assert "wrong-secret" not in str(e.value)
    # Without credentials, dante accepts none of the offered methods.
    with pytest.raises(sigil_ws.ProxyError, match="none of the offered authentication") as e:
        connect(f"{ws_server}/echo", proxy=f"socks5h://{proxy}")
    assert e.value.reply_code == 0xFF


def test_socks5_refused_target(
    proxies: Proxies,
    connect: Callable[..., Any],
) -> None:
    proxy = proxies.dante()
    with pytest.raises(sigil_ws.ProxyError, match=r"connection refused \(reply code 5\)") as e:
        connect(f"ws://127.0.0.1:{free_port()}/", proxy=f"socks5://{proxy}")
    assert e.value.reply_code == 5
    assert e.value.status_code is None


# ---- https:// proxies: stunnel in front of tinyproxy --------------------------------------------


def test_https_proxy(
    proxies: Proxies,
    connect: Callable[..., Any],
    driver: str,
    wss_server: str,
    tls_certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = proxies.stunnel(proxies.tinyproxy(), tls_certs)
    if driver == "sync":
        # The sync client loads the default store once per process: run it in a process of
        # its own whose store is the test CA (and leave this one's alone).
        script = (
            "import sys, sigil_ws\n"
            "url, proxy, ca = sys.argv[1:]\n"
            "tls = sigil_ws.TLSConfig(ca_data=open(ca, 'rb').read())\n"
            "with sigil_ws.connect(url, proxy=proxy, tls=tls, open_timeout=5) as ws:\n"
            "    ws.send('through the proxy')\n"
            "    assert ws.recv() == 'through the proxy'\n"
            "    print(ws.remote_address[1])\n"
        )
        env = dict(os.environ, SSL_CERT_FILE=tls_certs.ca_file)
        done = subprocess.run(
            [sys.executable, "-c", script, f"{wss_server}/echo", proxy, tls_certs.ca_file],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(port_of(proxy))
        # Against the real default store, the test CA's proxy certificate is refused.
        env.pop("SSL_CERT_FILE")
        done = subprocess.run(
            [sys.executable, "-c", script, f"{wss_server}/echo", proxy, tls_certs.ca_file],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 1
        assert "sigil_ws.exceptions.TLSError" in done.stderr, done.stderr
        return
    # The proxy's certificate is verified against the default store: point it at the CA.
    monkeypatch.setenv("SSL_CERT_FILE", tls_certs.ca_file)
    ws = connect(
        f"{wss_server}/echo",
        proxy=proxy,
        tls=sigil_ws.TLSConfig(ca_data=tls_certs.ca_pem),
    )
    echo_through(ws)


# ---- the environment ---------------------------------------------------------------------------


def test_proxy_from_environment(
    proxies: Proxies,
    connect: Callable[..., Any],
    ws_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = proxies.tinyproxy()
    direct_port = port_of(ws_server)
    # ws:// uses http_proxy.
    monkeypatch.setenv("http_proxy", proxy)
    assert connect(f"{ws_server}/echo").remote_address[1] == port_of(proxy)
    # proxy=None connects directly whatever the environment says.
    assert connect(f"{ws_server}/echo", proxy=None).remote_address[1] == direct_port
    # no_proxy is honoured.
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    assert connect(f"{ws_server}/echo").remote_address[1] == direct_port
    monkeypatch.delenv("no_proxy")
    # https_proxy is for wss:// only; all_proxy is the fallback.
    monkeypatch.delenv("http_proxy")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    assert connect(f"{ws_server}/echo").remote_address[1] == direct_port
    monkeypatch.setenv("ALL_PROXY", proxy)
    assert connect(f"{ws_server}/echo").remote_address[1] == port_of(proxy)


def test_wss_uses_https_proxy(
    proxies: Proxies,
    connect: Callable[..., Any],
    wss_server: str,
    tls_certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = proxies.tinyproxy()
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", proxy)
    ws = connect(f"{wss_server}/echo", tls=sigil_ws.TLSConfig(ca_data=tls_certs.ca_pem))
    echo_through(ws)
    assert ws.remote_address[1] == port_of(proxy)


ENVIRONMENTS = [
    {},
    {"http_proxy": "http://a:1"},
    {"HTTP_PROXY": "http://upper:1", "http_proxy": "http://lower:1"},
    {"HTTP_PROXY": "http://upper:1", "http_proxy": ""},
    {"HTTP_PROXY": "http://upper:1", "REQUEST_METHOD": "GET"},
    {"http_proxy": "http://lower:1", "REQUEST_METHOD": "GET"},
    {"HTTPS_PROXY": "proxy:3128", "ALL_PROXY": "socks5h://s:1", "WS_PROXY": "http://w:1"},
    {"all_proxy": "http://all:1", "no_proxy": "*"},
    {"http_proxy": "http://a:1", "NO_PROXY": ".example.com, localhost ,,10.0.0.1:8080"},
    {"http_proxy": "http://a:1", "no_proxy": "Example.COM,[::1]"},
]
HOSTS = [
    "example.com:80",
    "www.example.com:443",
    "badexample.com:80",
    "localhost:8080",
    "10.0.0.1:8080",
    "10.0.0.1:9",
    "[::1]:80",
    "EXAMPLE.com:1",
]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_environment_rules_are_urllibs(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.request

    from sigil_ws import _proxy

    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    proxies = _proxy.environment_proxies()
    assert proxies == urllib.request.getproxies_environment()
    for host in HOSTS:
        expected = urllib.request.proxy_bypass_environment(host, proxies)
        assert _proxy.bypass(host, proxies.get("no")) == expected, host


# ---- refusals from raw scripted proxies --------------------------------------------------------


class ScriptedProxy:
    """A proxy that plays ``script(conn)`` on each connection and records what it read."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.script = script
        self.received: list[bytes] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self.script(conn)
                except (ConnectionError, TimeoutError):
                    pass
                except BaseException as e:
                    self.errors.append(e)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)
        assert not self.errors, self.errors


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[socket.socket], None]], ScriptedProxy]]:
    made: list[ScriptedProxy] = []

    def make(script: Callable[[socket.socket], None]) -> ScriptedProxy:
        made.append(ScriptedProxy(script))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def read_head(conn: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def test_http_proxy_407_carries_the_status(
    connect: Callable[..., Any], scripted: Callable[..., ScriptedProxy]
) -> None:
    heads: list[bytes] = []

    def refuse(conn: socket.socket) -> None:
        heads.append(read_head(conn))
        conn.sendall(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="x"\r\nContent-Length: 0\r\n\r\n'
        )

    proxy = scripted(refuse)
    with pytest.raises(sigil_ws.ProxyError, match="refused the tunnel: HTTP 407") as e:
        connect("ws://example.invalid:8080/path", proxy=f"http://u%40x:p%20w@{proxy.address}")
    assert e.value.status_code == 407
    # RFC 9112 §3.2.3: authority form, the port always written; Basic credentials decoded.
    assert heads == [
        b"CONNECT example.invalid:8080 HTTP/1.1\r\nHost: example.invalid:8080\r\n"
        b"Proxy-Authorization: Basic dUB4OnAgdw==\r\n\r\n"
    ]


def test_http_proxy_that_is_not_http(
    connect: Callable[..., Any], scripted: Callable[..., ScriptedProxy]
) -> None:
    def garbage(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"SSH-2.0-OpenSSH\r\n")

    proxy = scripted(garbage)
    with pytest.raises(sigil_ws.ProxyError, match="sent an invalid response"):
        connect("ws://example.invalid/", proxy=f"http://{proxy.address}")


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5, 6, 7, 8])
def test_socks5_failure_codes(
    connect: Callable[..., Any], scripted: Callable[..., ScriptedProxy], code: int
) -> None:
    def refuse(conn: socket.socket) -> None:
        assert conn.recv(3) == b"\x05\x01\x00"
        conn.sendall(b"\x05\x00")
        conn.recv(1024)
        conn.sendall(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))

    proxy = scripted(refuse)
    with pytest.raises(sigil_ws.ProxyError, match=rf"\(reply code {code}\)$") as e:
        connect("ws://example.invalid/", proxy=f"socks5h://{proxy.address}")
    assert e.value.reply_code == code
    assert str(e.value).startswith(f"SOCKS proxy socks5h://{proxy.address} refused")


def test_socks4a_sends_the_name(
    connect: Callable[..., Any], scripted: Callable[..., ScriptedProxy]
) -> None:
    requests: list[bytes] = []

    def refuse(conn: socket.socket) -> None:
        requests.append(conn.recv(1024))
        conn.sendall(bytes([0, 92, 0, 0, 0, 0, 0, 0]))

    proxy = scripted(refuse)
    with pytest.raises(sigil_ws.ProxyError, match=r"identd .*\(reply code 92\)$") as e:
        connect("ws://example.invalid:8080/", proxy=f"socks4a://bob@{proxy.address}")
    assert e.value.reply_code == 92
    assert requests[0] == b"\x04\x01\x1f\x90\x00\x00\x00\x01bob\x00example.invalid\x00"


def test_socks_server_closing_mid_negotiation(
    connect: Callable[..., Any], scripted: Callable[..., ScriptedProxy]
) -> None:
    def hang_up(conn: socket.socket) -> None:
        conn.recv(3)
        conn.sendall(b"\x05")  # half of the method selection, then gone

    proxy = scripted(hang_up)
    with pytest.raises(
        sigil_ws.ProxyError, match="closed the connection during the proxy handshake"
    ):
        connect("ws://example.invalid/", proxy=f"socks5h://{proxy.address}")


def test_open_timeout_covers_the_proxy(
    connect: Callable[..., Any], scripted: Callable[..., ScriptedProxy]
) -> None:
    def silent(conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            conn.recv(1024)
            conn.recv(1024)
        except TimeoutError:
            pass

    proxy = scripted(silent)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        connect("ws://example.invalid/", proxy=f"http://{proxy.address}", open_timeout=0.5)
    assert time.monotonic() - start < 3


def test_invalid_proxy_urls(connect: Callable[..., Any], ws_server: str) -> None:
    for bad in ("ftp://h:1", "http://h:0", "http://u:secret%zz@h"):
        with pytest.raises(sigil_ws.ProxyError, match=r"^invalid proxy URL") as e:
            connect(ws_server, proxy=bad)
        assert "secret" not in str(e.value)
        assert e.value.proxy is None


def test_headers_echo_through_proxy(
    proxies: Proxies, connect: Callable[..., Any], ws_server: str
) -> None:
    """The Host header names the server, not the proxy."""
    proxy = proxies.tinyproxy()
    ws = connect(f"{ws_server}/headers", proxy=proxy)
    headers = json.loads(ws.recv())
    assert headers["Host"] == ws_server.removeprefix("ws://")

"""wss:// with real TLS: certificates made by trustme, the reference server behind ssl."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

import sigil_ws
from sigil_ws import TLSConfig, TLSError

from .conftest import Certs

Connect = Callable[..., sigil_ws.Connection]


def test_round_trip_with_ca_data(wss_server: str, tls_certs: Certs, connect: Connect) -> None:
    ws = connect(wss_server, tls=TLSConfig(ca_data=tls_certs.ca_pem))
    ws.send("secure")
    assert ws.recv() == "secure"
    big = os.urandom(3 * 2**20)
    ws.send(big)
    assert ws.recv() == big


def test_ca_file_and_localhost_name(wss_server: str, tls_certs: Certs, connect: Connect) -> None:
    url = wss_server.replace("127.0.0.1", "localhost")
    ws = connect(url, tls=TLSConfig(ca_file=tls_certs.ca_file))
    ws.send(b"bytes")
    assert ws.recv() == b"bytes"


def test_close_over_tls(wss_server: str, tls_certs: Certs) -> None:
    with sigil_ws.connect(
        wss_server + "/push/3/100", tls=TLSConfig(ca_data=tls_certs.ca_pem)
    ) as ws:
        assert list(ws) == [b"x" * 100] * 3
        assert ws.close_code == 1000


def test_untrusted_certificate_fails(wss_server: str) -> None:
    other_ca = trustme.CA()
    with pytest.raises(TLSError, match=r"(?i)certificate"):
        sigil_ws.connect(wss_server, tls=TLSConfig(ca_data=other_ca.cert_pem.bytes()))


def test_system_store_does_not_trust_the_test_ca(wss_server: str) -> None:
    with pytest.raises(TLSError, match=r"(?i)certificate"):
        sigil_ws.connect(wss_server, open_timeout=5)


def test_hostname_mismatch_fails(wss_server: str, tls_certs: Certs) -> None:
    with pytest.raises(TLSError, match=r"(?i)not valid for name"):
        sigil_ws.connect(
            wss_server,
            tls=TLSConfig(ca_data=tls_certs.ca_pem, server_hostname="example.org"),
        )


def test_verify_false_is_explicit(wss_server: str, connect: Connect) -> None:
    ws = connect(wss_server, tls=TLSConfig(verify=False))
    ws.send("unverified")
    assert ws.recv() == "unverified"


def test_bad_tls_settings(wss_server: str) -> None:
    with pytest.raises(TLSError, match=r"cannot read /nonexistent\.pem"):
        sigil_ws.connect(wss_server, tls=TLSConfig(ca_file="/nonexistent.pem"))
    with pytest.raises(TLSError, match="no certificate found"):
        sigil_ws.connect(wss_server, tls=TLSConfig(ca_data="not a pem"))
    with pytest.raises(TLSError, match="key_file given without cert_file"):
        sigil_ws.connect(wss_server, tls=TLSConfig(key_file="/k.pem"))


def test_tls_to_a_plain_server_fails(ws_server: str) -> None:
    url = ws_server.replace("ws://", "wss://")
    with pytest.raises(TLSError):
        sigil_ws.connect(url, tls=TLSConfig(verify=False), open_timeout=5)


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
def test_trust_store_environment_is_honoured(
    wss_server: str, tls_certs: Certs, tmp_path: Path, variable: str
) -> None:
    """The default trust store reads SSL_CERT_FILE / SSL_CERT_DIR (in a fresh interpreter,
    since the system store is loaded once per process)."""
    code = (
        "import sigil_ws, sys\n"
        "with sigil_ws.connect(sys.argv[1], open_timeout=5) as ws:\n"
        "    ws.send('env'); assert ws.recv() == 'env'\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    if variable == "SSL_CERT_FILE":
        env[variable] = tls_certs.ca_file
    else:
        (tmp_path / "test-ca.pem").write_bytes(tls_certs.ca_pem)
        env[variable] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", code, wss_server],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.stdout.strip() == "ok", out.stderr


# ---- client certificates and ALPN, against a raw TLS server of our own -------------------------


@pytest.fixture
def mtls_server(tls_certs: Certs) -> Iterator[tuple[str, list[object]]]:
    """A TLS server that requires a client certificate and records what it saw."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert = tls_certs.ca.issue_cert("127.0.0.1")
    server_cert.configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    tls_certs.ca.configure_trust(context)
    context.set_alpn_protocols(["http/1.1"])
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[object] = []

    def serve() -> None:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        try:
            with context.wrap_socket(raw, server_side=True) as conn:
                seen.append(conn.getpeercert()["subjectAltName"])  # type: ignore[index]
                seen.append(conn.selected_alpn_protocol())
                from .conftest import upgrade_response

                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                conn.sendall(upgrade_response(request) + b"\x81\x02ok")
                conn.recv(4096)
        except (ssl.SSLError, OSError) as e:
            seen.append(e)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"wss://127.0.0.1:{listener.getsockname()[1]}", seen
    listener.close()
    thread.join(5)


def test_client_certificate_and_alpn(
    mtls_server: tuple[str, list[object]], tls_certs: Certs, tmp_path: pytest.TempPathFactory
) -> None:
    url, seen = mtls_server
    client_cert = tls_certs.ca.issue_cert("client@example.com")
    cert_file = os.path.join(str(tmp_path), "client.pem")
    key_file = os.path.join(str(tmp_path), "client.key")
    client_cert.cert_chain_pems[0].write_to_path(cert_file)
    client_cert.private_key_pem.write_to_path(key_file)
    tls = TLSConfig(
        ca_data=tls_certs.ca_pem, cert_file=cert_file, key_file=key_file, alpn=["http/1.1"]
    )
    with sigil_ws.connect(url, tls=tls, open_timeout=5, close_timeout=0.5) as ws:
        assert ws.recv(timeout=5) == "ok"
    assert "client@example.com" in str(seen[0])
    assert seen[1] == "http/1.1"


# ---- regressions: a TLS failure after the handshake --------------------------------------------


@pytest.fixture
def corrupting_tls_server(tls_certs: Certs) -> Iterator[tuple[str, threading.Event]]:
    """A TLS server that completes the TLS and WebSocket handshakes, then, once the test sets
    the event, writes a corrupted TLS record straight to the TCP socket (past the SSL
    object) and keeps the connection open."""
    listener = socket.create_server(("127.0.0.1", 0))
    corrupt = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        try:
            with tls_certs.server_context.wrap_socket(raw, server_side=True) as conn:
                from .conftest import upgrade_response

                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                conn.sendall(upgrade_response(request))
                corrupt.wait(10)
                # An application-data record whose contents do not decrypt.
                fd = os.dup(conn.fileno())
                try:
                    os.write(fd, b"\x17\x03\x03\x00\x20" + os.urandom(32))
                finally:
                    os.close(fd)
                done.wait(10)
        except (ssl.SSLError, OSError):
            pass
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"wss://127.0.0.1:{listener.getsockname()[1]}", corrupt
    done.set()
    corrupt.set()
    listener.close()
    thread.join(5)
    assert not errors


@pytest.mark.timeout(15)
def test_tls_failure_after_the_handshake_fails_the_connection(
    corrupting_tls_server: tuple[str, threading.Event], tls_certs: Certs, connect: Connect
) -> None:
    """API.md: a TLS failure after the handshake fails the connection like a protocol error:
    recv() raises ConnectionClosedError (1006) with the TLSError as __cause__; CLOSED."""
    url, corrupt = corrupting_tls_server
    ws = connect(url, tls=TLSConfig(ca_data=tls_certs.ca_pem))
    corrupt.set()
    with pytest.raises(sigil_ws.ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1006
    assert isinstance(info.value.__cause__, TLSError), repr(info.value.__cause__)
    assert ws.state is sigil_ws.State.CLOSED

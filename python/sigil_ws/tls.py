"""TLS settings for ``wss://``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TLSConfig"]


@dataclass(frozen=True, kw_only=True)
class TLSConfig:
    """rustls settings for ``wss://`` connections.

    Args:
        ca_file: PEM file of trusted CA certificates, replacing the system trust store.
        ca_data: PEM text of trusted CA certificates, replacing the system trust store.
        cert_file: PEM file of the client certificate chain (and key, without ``key_file``).
        key_file: PEM file of the client's private key.
        verify: verify the server's certificate and host name. ``False`` is for tests only.
        server_hostname: the name sent as SNI and verified, instead of the URL's host.
        alpn: ALPN protocols to offer, in order.

    By default the system trust store is used; it honours ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR``.
    """

    ca_file: str | os.PathLike[str] | None = None
    ca_data: str | bytes | None = None
    cert_file: str | os.PathLike[str] | None = None
    key_file: str | os.PathLike[str] | None = None
    verify: bool = True
    server_hostname: str | None = None
    alpn: Sequence[str] | None = None

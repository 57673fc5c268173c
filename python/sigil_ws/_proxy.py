"""Which proxy a connection uses: ``proxy=True`` reads the environment.

The choice is made here, in Python, with the standard library's own reading of the
environment (``urllib.request.getproxies()`` and ``proxy_bypass()``), so that ``http_proxy``,
``HTTPS_PROXY``, ``all_proxy`` and ``no_proxy`` mean exactly what they mean to urllib (and to
pip and requests, which follow it): upper and lower case, the CGI rule that ignores
``HTTP_PROXY`` when ``REQUEST_METHOD`` is set, ``no_proxy`` suffixes, ``*`` and ports. The
Rust core receives the chosen URL (or ``None``) and runs the tunnel; it never reads the
environment, so a Rust caller's connection never depends on it.
"""

from __future__ import annotations

import urllib.request

from .url import parse_url

__all__ = ["select"]


def select(proxy: str | bool | None, url: str) -> str | None:
    """The proxy URL for ``url``.

    Args:
        proxy: ``True`` for the environment's (``ws://`` uses ``http_proxy``, ``wss://``
            ``https_proxy``, both fall back to ``all_proxy``; ``no_proxy`` honoured), a proxy
            URL, or ``None`` (or ``False``) for a direct connection.
        url: the WebSocket URL being opened.

    Returns:
        The proxy URL, or ``None`` to connect directly.

    Raises:
        TypeError: ``proxy`` has another type.
    """
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, str):
        return proxy
    if proxy is not True:
        raise TypeError(f"proxy must be True, None or a URL, not {type(proxy).__name__}")
    try:
        target = parse_url(_without_credentials(url))
    except ValueError:
        return None  # connect() reports the bad URL itself
    proxies = urllib.request.getproxies()
    key = "https" if target.secure else "http"
    chosen = proxies.get(key) or proxies.get("all")
    if not chosen:
        return None
    host = f"[{target.host}]" if ":" in target.host else target.host
    if urllib.request.proxy_bypass(f"{host}:{target.port}"):
        return None
    # As urllib and pip do, a value without a scheme names an HTTP proxy.
    return chosen if "://" in chosen else f"http://{chosen}"


def _without_credentials(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    return f"{scheme}://{authority.rpartition('@')[2]}{rest[end:]}"

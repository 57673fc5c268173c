"""Which proxy a connection uses: ``proxy=True`` reads the environment.

The rules are those of the standard library's ``urllib.request.getproxies()`` and
``proxy_bypass()`` on Unix, so that ``http_proxy``, ``HTTPS_PROXY``, ``all_proxy`` and
``no_proxy`` mean what they mean to urllib (and to pip and requests, which follow it): any
case, lowercase winning over uppercase, an empty lowercase value unsetting it, the CGI rule
that ignores ``HTTP_PROXY`` when ``REQUEST_METHOD`` is set, ``no_proxy`` as a comma-separated
list of host suffixes (a leading dot ignored) or ``*``. They are
written here rather than imported, because importing ``urllib.request`` costs 40 ms (it pulls
in ``http.client`` and ``email``), most of ``import sigil_ws``; tests/test_proxy.py checks the
two agree. The Rust core receives the chosen URL (or ``None``) and runs the tunnel; it never
reads the environment, so a Rust caller's connection never depends on it.
"""

from __future__ import annotations

import os
import re

from .url import parse_url

__all__ = ["bypass", "environment_proxies", "select"]


def environment_proxies() -> dict[str, str]:
    """The ``*_proxy`` variables as ``{scheme: url}`` (``"no"`` for ``no_proxy``), as
    ``urllib.request.getproxies_environment()`` reads them."""
    found: dict[str, str] = {}
    # Any case first; then the lowercase spellings, which win (and unset when empty).
    for name, value in os.environ.items():
        key = name.lower()
        if value and key.endswith("_proxy"):
            found[key[:-6]] = value
    if "REQUEST_METHOD" in os.environ:
        # A CGI script: HTTP_PROXY may come from the client's "Proxy:" header (httpoxy).
        found.pop("http", None)
    for name, value in os.environ.items():
        if name.endswith("_proxy"):
            key = name[:-6]
            if value:
                found[key] = value
            else:
                found.pop(key, None)
    return found


def bypass(host: str, no_proxy: str | None) -> bool:
    """True when ``no_proxy`` exempts ``host`` (``name`` or ``name:port``), as
    ``urllib.request.proxy_bypass_environment()`` decides: an entry matches the host (with or
    without its port) or a suffix of it after a dot."""
    if no_proxy is None:
        return False
    if no_proxy == "*":
        return True
    host = host.lower()
    match = re.fullmatch(r"(.*):([0-9]*)", host)
    name = match.group(1) if match else host
    for entry in no_proxy.split(","):
        entry = entry.strip().lstrip(".").lower()
        if not entry:
            continue
        if entry in (name, host) or name.endswith("." + entry) or host.endswith("." + entry):
            return True
    return False


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
    proxies = environment_proxies()
    if not proxies:
        return None
    try:
        target = parse_url(_without_credentials(url))
    except ValueError:
        return None  # connect() reports the bad URL itself
    chosen = proxies.get("https" if target.secure else "http") or proxies.get("all")
    if not chosen:
        return None
    host = f"[{target.host}]" if ":" in target.host else target.host
    if bypass(f"{host}:{target.port}", proxies.get("no")):
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

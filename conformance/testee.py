"""Autobahn|Testsuite testee: the sync sigil-ws client echoing every message back unchanged.

Usage: python testee.py ws://127.0.0.1:9001 AGENT
"""

from __future__ import annotations

import sys
import urllib.parse

import sigil_ws


def run_case(server: str, case: int, agent: str) -> None:
    url = f"{server}/runCase?case={case}&agent={urllib.parse.quote(agent)}"
    try:
        with sigil_ws.connect(url, open_timeout=10, close_timeout=5) as ws:
            for message in ws:
                ws.send(message)
    except sigil_ws.WebSocketError:
        # Failed connections are what many cases test; the report grades them.
        pass
    except OSError:
        pass


def main() -> None:
    server, agent = sys.argv[1], sys.argv[2]
    with sigil_ws.connect(f"{server}/getCaseCount") as ws:
        count = int(ws.recv())
    for case in range(1, count + 1):
        run_case(server, case, agent)
    with sigil_ws.connect(f"{server}/updateReports?agent={urllib.parse.quote(agent)}") as ws:
        try:
            for _ in ws:
                pass
        except sigil_ws.ConnectionClosed:
            pass


if __name__ == "__main__":
    main()

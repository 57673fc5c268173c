"""Autobahn|Testsuite testee: the asyncio sigil-ws client echoing every message back.

Usage: python testee_asyncio.py ws://127.0.0.1:9001 AGENT [--uvloop]
"""

from __future__ import annotations

import asyncio
import sys
import urllib.parse

import sigil_ws
import sigil_ws.asyncio


async def run_case(server: str, case: int, agent: str) -> None:
    url = f"{server}/runCase?case={case}&agent={urllib.parse.quote(agent)}"
    try:
        async with sigil_ws.asyncio.connect(url, open_timeout=10, close_timeout=5) as ws:
            async for message in ws:
                await ws.send(message)
    except (sigil_ws.WebSocketError, OSError):
        # Failed connections are what many cases test; the report grades them.
        pass


async def main(server: str, agent: str) -> None:
    async with sigil_ws.asyncio.connect(f"{server}/getCaseCount") as ws:
        count = int(await ws.recv())
    for case in range(1, count + 1):
        await run_case(server, case, agent)
    url = f"{server}/updateReports?agent={urllib.parse.quote(agent)}"
    async with sigil_ws.asyncio.connect(url) as ws:
        try:
            async for _ in ws:
                pass
        except sigil_ws.ConnectionClosed:
            pass


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.run(main(sys.argv[1], sys.argv[2]))
    else:
        asyncio.run(main(sys.argv[1], sys.argv[2]))

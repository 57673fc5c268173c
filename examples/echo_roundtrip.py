"""Round trip against a local echo server: the README's first command.

Starts the ``websockets`` package's echo server on 127.0.0.1 (a thread, no internet), then
talks to it with sigil-ws from several threads at once.
"""

from __future__ import annotations

import threading
import time

from websockets.sync.server import ServerConnection, serve

import sigil_ws


def echo(connection: ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def main() -> None:
    with serve(echo, "127.0.0.1", 0, compression=None) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        url = f"ws://127.0.0.1:{port}/"

        with sigil_ws.connect(url) as ws:
            ws.send("hello, sigil-ws")
            print("text  :", ws.recv())
            ws.send(b"\x00\x01\x02")
            print("binary:", ws.recv())
            ws.ping(b"hi")
            ws.send("after ping")
            ws.recv()
            print(f"state : {ws.state!r}, latency {ws.latency * 1e6:.0f} us")

        # One connection per thread, all receiving with the GIL released.
        def worker(n: int, results: list[int]) -> None:
            with sigil_ws.connect(url) as ws:
                for i in range(1000):
                    ws.send(f"{n}:{i}")
                    assert ws.recv() == f"{n}:{i}"
                results.append(n)

        results: list[int] = []
        start = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(n, results)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        print(f"threads: {len(results)} x 1000 round trips in {elapsed:.2f} s")
        server.shutdown()
    print("OK")


if __name__ == "__main__":
    main()

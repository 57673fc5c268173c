"""permessage-deflate against Python's zlib module (the C zlib), both ways, in the sans-IO
``Protocol`` (no sockets): seeded random messages, several per connection so that context
takeover matters, under every parameter the extension negotiates.

- Server to client: messages compressed by ``zlib.compressobj(wbits=-N)`` as RFC 7692 §7.2.1
  says (a sync flush, its 00 00 ff ff removed; a full flush or a final block now and then),
  cut into random frames, fed in random chunks: the messages that come out are the ones
  compressed.
- Client to server: what ``send_text``/``send_binary``/``send_fragment`` write, inflated by
  ``zlib.decompressobj(wbits=-N)`` with N the negotiated ``client_max_window_bits``, reset
  per message under ``client_no_context_takeover``: the payloads inflate to the messages sent.
  C zlib keeps exactly 2^N bytes of history from one call to the next, so a match into an
  earlier message past the window fails with "invalid distance too far back" (within one
  message, one call, it does not check: the Rust unit tests' reference inflater does).

``SIGIL_ZLIB_SEEDS`` sets how many seeds run per parameter set (default 4).
"""

from __future__ import annotations

import json
import os
import random
import zlib

import pytest

from sigil_ws import Message, MessageType, Ping, Protocol, State, handshake
from tests.test_protocol import client_frames

from .conftest import server_frame

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
TAIL = b"\x00\x00\xff\xff"
SEEDS = range(int(os.environ.get("SIGIL_ZLIB_SEEDS", "4")))

# Negotiated answers: (extension parameters, server window bits, no server context takeover,
# client window bits, no client context takeover).
Params = tuple[str, int, bool, int, bool]
PARAMS: list[Params] = [
    ("", 15, False, 15, False),
    ("; server_no_context_takeover", 15, True, 15, False),
    ("; client_no_context_takeover", 15, False, 15, True),
    ("; server_no_context_takeover; client_no_context_takeover", 15, True, 15, True),
    *[(f"; server_max_window_bits={n}", n, False, 15, False) for n in (9, 10, 12)],
    *[(f"; client_max_window_bits={n}", 15, False, n, False) for n in (8, 9, 10, 12, 15)],
    ("; client_no_context_takeover; client_max_window_bits=9", 15, False, 9, True),
]
IDS = [p[0].lstrip("; ") or "default" for p in PARAMS]


def opened(extension: str, max_size: int | None = None) -> Protocol:
    p = Protocol("ws://example.com/chat", key=KEY, max_size=max_size, compression="deflate")
    p.data_to_send()
    p.receive_data(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {handshake.accept_key(KEY)}\r\n"
            f"Sec-WebSocket-Extensions: permessage-deflate{extension}\r\n\r\n"
        ).encode()
    )
    assert p.events() == []
    assert p.state is State.OPEN
    return p


def message(rng: random.Random, history: list[bytes]) -> tuple[bool, bytes]:
    """A text or binary message: JSON, words, noise, or an echo of an earlier message (a
    match into the window of the previous messages)."""
    kind = rng.randrange(5)
    if kind == 0:
        doc = [{"id": rng.randrange(10**6), "name": rng.choice(["ab", "cdé", "€"])}]
        return True, json.dumps(doc * rng.randrange(1, 300)).encode()
    if kind == 1:
        words = ["deflate", "window", "context", "takeover", "ünïcode", "ws", " "]
        return True, " ".join(rng.choices(words, k=rng.randrange(0, 3000))).encode()
    if kind == 2:
        return False, rng.randbytes(rng.randrange(0, 5000))
    if kind == 3 and history:
        old = rng.choice(history)
        return False, old[rng.randrange(len(old) + 1) :] + rng.randbytes(rng.randrange(50))
    return False, bytes(rng.randrange(4) for _ in range(rng.randrange(0, 70_000)))


def frames(rng: random.Random, opcode: int, payload: bytes) -> bytes:
    """A compressed message in 1 to 4 frames (RSV1 on the first), pings between them."""
    cuts = sorted(rng.randrange(len(payload) + 1) for _ in range(rng.randrange(4)))
    parts = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    out = b""
    for i, part in enumerate(parts):
        if i:
            out += server_frame(9, b"p%d" % i)
        out += server_frame(
            opcode if i == 0 else 0, part, fin=i == len(parts) - 1, rsv=4 if i == 0 else 0
        )
    return out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("params", PARAMS, ids=IDS)
def test_python_zlib_compresses_we_inflate(params: Params, seed: int) -> None:
    """Messages Python's zlib compresses (any level, memLevel, strategy) inflate to
    themselves, across messages, whatever the frames and reads they come in."""
    extension, server_bits, server_nct, _, _ = params
    rng = random.Random(f"s2c-{extension}-{seed}")
    p = opened(extension)
    level = rng.choice([1, 6, 9])
    mem_level = rng.choice([1, 8, 9])
    strategy = rng.choice([zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED, zlib.Z_RLE])

    def compressor() -> zlib._Compress:
        return zlib.compressobj(level, zlib.DEFLATED, -server_bits, mem_level, strategy)

    c = compressor()
    sent: list[Message] = []
    history: list[bytes] = []
    stream = b""
    for _ in range(rng.randrange(3, 12)):
        text, data = message(rng, history)
        history.append(data)
        if server_nct:
            c = compressor()
        end = rng.random()
        if end < 0.1:
            # A final block ends the DEFLATE stream: the next message starts a new one.
            payload = c.compress(data) + c.flush(zlib.Z_FINISH)
            c = compressor()
        else:
            flush = zlib.Z_FULL_FLUSH if end < 0.2 else zlib.Z_SYNC_FLUSH
            payload = c.compress(data) + c.flush(flush)
            assert payload.endswith(TAIL)
            payload = payload[:-4]
        stream += frames(rng, 1 if text else 2, payload)
        kind = MessageType.TEXT if text else MessageType.BINARY
        sent.append(Message(kind, data.decode() if text else data))
    received = []
    while stream:
        n = rng.choice([1, 7, 100, 4096, 65_536])
        p.receive_data(stream[:n])
        stream = stream[n:]
        received += [e for e in p.events() if not isinstance(e, Ping)]
    assert p.state is State.OPEN
    assert received == sent


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("params", PARAMS, ids=IDS)
def test_we_compress_python_zlib_inflates(params: Params, seed: int) -> None:
    """What we send inflates in Python's zlib with exactly the negotiated window, message
    after message: whole messages, and messages sent in fragments."""
    extension, _, _, client_bits, client_nct = params
    rng = random.Random(f"c2s-{extension}-{seed}")
    p = opened(extension)
    d = zlib.decompressobj(wbits=-client_bits)
    history: list[bytes] = []
    compressed = 0
    for _ in range(rng.randrange(3, 12)):
        text, data = message(rng, history)
        history.append(data)
        if rng.random() < 0.3:
            cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 4)))
            parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            for i, part in enumerate(parts):
                # A text fragment is a str: cut on character boundaries only.
                piece: str | bytes = part
                if text:
                    piece = part.decode(errors="ignore")
                p.send_fragment(piece, fin=i == len(parts) - 1)
            if text:
                data = b"".join(part.decode(errors="ignore").encode() for part in parts)
        elif text:
            p.send_text(data.decode())
        else:
            p.send_binary(data)
        out = client_frames(p.data_to_send())
        assert out, "nothing written"
        first = out[0][0]
        assert first & 0x0F == (1 if text else 2)
        assert all(b0 & 0x70 == 0 for b0, _ in out[1:]), "RSV bits on a continuation"
        assert out[-1][0] & 0x80, "the message does not end"
        payload = b"".join(body for _, body in out)
        if first & 0x40:
            compressed += 1
            if client_nct:
                d = zlib.decompressobj(wbits=-client_bits)
            inflated = d.decompress(payload + TAIL)
            assert d.unconsumed_tail == b""
            assert not d.eof, "a final block in our message"
        else:
            # RFC 7692 §2: an incompressible message may go as it is.
            assert first & 0x70 == 0
            inflated = payload
        assert inflated == data
    assert compressed > 0

"""Writes the seed corpus of the fuzz targets (fuzz/seeds/TARGET/NAME), in each target's input
format: Autobahn-shaped frame sequences, real upgrade responses, URLs, UTF-8 edge cases and
permessage-deflate payloads. Deterministic; run it again after changing a target's format.

Usage: python scripts/fuzz_seeds.py
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "fuzz" / "seeds"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = base64.b64encode(
    hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
).decode()


def write(target: str, name: str, data: bytes) -> None:
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# ---- engine: a config byte, then ops (see fuzz/fuzz_targets/engine.rs) -------------------------


def chunk(data: bytes) -> bytes:
    assert len(data) < 256
    return bytes([len(data)]) + data


def frame(b0: int, payload: bytes = b"") -> bytes:
    """Op 1: a server frame with first byte ``b0``, unmasked."""
    return b"\x01" + bytes([b0, 0]) + chunk(payload)


def raw(data: bytes) -> bytes:
    """Op 0: raw bytes."""
    return b"".join(b"\x00" + chunk(data[i : i + 255]) for i in range(0, len(data), 255))


DELIVER, POLL = b"\x05", b"\x07"


def deliver_into(read_size: int) -> bytes:
    """Op 6: deliver through take_input/receive_into, ``read_size`` bytes per read."""
    return b"\x06" + bytes([read_size - 1])


def defer(on: bool) -> bytes:
    """Op 12: set_defer_failure."""
    return b"\x0c" + bytes([on])


def text(s: bytes, compress: bool = False) -> bytes:
    return b"\x08" + bytes([compress]) + chunk(s)


def binary(s: bytes, compress: bool = False) -> bytes:
    return b"\x09" + bytes([compress]) + chunk(s)


def ping(s: bytes) -> bytes:
    return b"\x0a" + chunk(s)


def close(code: int) -> bytes:
    # Op 11: code % 3 == 1 sends 1000, == 2 sends the code as is.
    return b"\x0b" + struct.pack("!H", code)


def compressed(b0: int, payload: bytes) -> bytes:
    """Op 4: a message compressed by the target's server-side compressor."""
    return b"\x04" + bytes([b0]) + chunk(payload)


def engine_seeds() -> None:
    plain = 0x00 | 1  # max_size 4096, no compression
    close_1000 = struct.pack("!H", 1000)
    seeds = {
        # Autobahn 1.x: text and binary messages of the sizes that change the length form.
        "1-text": [frame(0x81, b"Hello, world"), DELIVER, POLL, frame(0x88, close_1000)],
        "1-binary-125": [frame(0x82, b"\xfe" * 125), frame(0x82, b"\x00" * 126), POLL],
        "1-empty": [frame(0x81), frame(0x82), POLL, frame(0x88)],
        # 2.x: pings and pongs, with our own pings and messages interleaved.
        "2-ping-pong": [
            frame(0x89, b"ping"),
            DELIVER,
            ping(b"ours"),
            frame(0x8A, b"ours"),
            frame(0x8A, b"unsolicited"),
            POLL,
            text(b"after"),
        ],
        "2-ping-125": [frame(0x89, b"*" * 125), frame(0x89, b"*" * 126)],
        # 3.x: reserved bits; 4.x: reserved opcodes.
        "3-rsv": [frame(0x81, b"ok"), frame(0xC1, b"rsv1"), frame(0x81, b"never")],
        "4-opcode": [frame(0x83), frame(0x8B, b"x")],
        # 5.x: fragmentation, control frames between fragments.
        "5-fragments": [
            frame(0x01, b"frag"),
            frame(0x89, b"p"),
            DELIVER,
            frame(0x00, b"men"),
            frame(0x80, b"ted"),
            POLL,
        ],
        "5-bad-continuation": [frame(0x80, b"lonely"), frame(0x01, b"a"), frame(0x01, b"b")],
        "5-fragmented-ping": [frame(0x09, b"p"), frame(0x80)],
        # 6.x: UTF-8, valid and not, split inside code points.
        "6-utf8": [
            frame(0x01, "κόσμε".encode()[:3]),
            frame(0x80, "κόσμε".encode()[3:]),
            frame(0x81, b"\xf4\x90\x80\x80"),
        ],
        "6-utf8-surrogate": [frame(0x81, b"\xed\xa0\x80")],
        # 7.x: close codes and reasons.
        "7-close-reason": [frame(0x88, struct.pack("!H", 4001) + b"custom"), text(b"late")],
        "7-close-bad": [frame(0x88, b"\x03"), frame(0x88, struct.pack("!H", 1005))],
        "7-close-utf8": [frame(0x88, close_1000 + b"\xff")],
        "7-client-close": [text(b"hi"), close(1000 * 3 + 1), frame(0x81, b"still"), POLL],
        "7-client-close-code": [close(3002), frame(0x88, struct.pack("!H", 3002)), POLL],
        # 9.x: sizes around max_size, 16- and 64-bit lengths.
        "9-big": [
            raw(b"\x82\x7e\x10\x00" + b"a" * 200),
            DELIVER,
            raw(b"b" * 255),
            POLL,
        ],
        "9-huge-len": [b"\x03\x82" + struct.pack("!Q", 2**63 - 1), POLL],
        "9-len-msb": [b"\x03\x82" + struct.pack("!Q", 2**63), POLL],
        # The sync driver's input path, and the asyncio driver's deferred failures.
        "read-into": [
            frame(0x81, b"read straight into the engine's buffer"),
            frame(0x82, b"\x00" * 200),
            deliver_into(7),
            POLL,
            frame(0x89, b"p"),
            deliver_into(256),
            POLL,
        ],
        "deferred": [
            defer(True),
            frame(0x81, b"ok"),
            frame(0xC1, b"violation"),
            frame(0x81, b"never"),
            DELIVER,
            POLL,
            defer(False),
            POLL,
        ],
        # A masked server frame (RFC 6455 §5.1: the client must fail).
        "masked": [b"\x01\x81\x80\x00" + chunk(b"masked")],
    }
    for name, ops in seeds.items():
        write("engine", name, bytes([plain]) + b"".join(ops))
    # Other max_size settings, the same stream.
    write("engine", "max125", bytes([0]) + b"".join(seeds["9-big"]))
    write("engine", "unlimited", bytes([3]) + b"".join(seeds["9-huge-len"]))
    # 12.x/13.x: permessage-deflate negotiated (config bits 2 and 3), each parameter variant.
    for variant in range(4):
        config = 1 | 4 | 8 | variant << 4
        ops = [
            compressed(0x00, b"Hello" * 20),
            compressed(0x03, b"fragmented into frames " * 4),
            DELIVER,
            text(b"compressed reply", True),
            binary(b"\x00" * 100, True),
            binary(b"plain", False),
            compressed(0x01, b""),
            frame(0xC1, b"\x00"),  # an empty compressed message, by hand
            frame(0xC1, b"\xf2\x48\xcd\xc9\xc9\x07\x00"),  # RFC 7692 §7.2.3.1 "Hello"
            POLL,
        ]
        write("engine", f"12-deflate-{variant}", bytes([config]) + b"".join(ops))
    bomb = deflate(b"\x00" * 200_000)
    bomb_frame = b"\xc2\x7e" + struct.pack("!H", len(bomb)) + bomb
    write("engine", "13-bomb", bytes([1 | 4 | 8]) + raw(bomb_frame))
    # Compression offered but not accepted: RSV1 is then a violation.
    write("engine", "12-not-negotiated", bytes([1 | 4]) + frame(0xC1, b"\x00"))
    # A raw handshake (config bit 6): the response comes from the stream itself.
    response = (
        f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    ).encode()
    write("engine", "raw-handshake", bytes([1 | 0x40]) + raw(response) + frame(0x81, b"hi"))
    refusal = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!"
    write("engine", "raw-refusal", bytes([1 | 0x40]) + raw(refusal))
    write("engine", "raw-not-http", bytes([1 | 0x40]) + raw(b"\x16\x03\x01\x00\xa5\x01"))
    # A subprotocol chosen (config bit 7).
    write("engine", "subprotocol", bytes([1 | 0x80]) + frame(0x81, b"chat"))


# ---- http_head: a mode byte (bit 0: template; high nibble: number of cuts), cuts, bytes -------


def http_seeds() -> None:
    responses = {
        "websockets": (
            "HTTP/1.1 101 Switching Protocols\r\nDate: Wed, 25 Nov 2026 17:00:00 GMT\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {ACCEPT}\r\nServer: Python/3.11 websockets/15.0\r\n\r\n"
        ),
        "nginx-deflate": (
            "HTTP/1.1 101 Switching Protocols\r\nServer: nginx/1.22.1\r\nConnection: upgrade\r\n"
            "upgrade: WebSocket\r\n"
            f"sec-websocket-accept: {ACCEPT}\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
            "client_max_window_bits=12\r\nSec-WebSocket-Protocol: chat\r\n\r\n\x81\x02hi"
        ),
        "bare-lf": (
            f"HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: keep-alive, Upgrade\n"
            f"Sec-WebSocket-Accept: {ACCEPT}\n\n"
        ),
        "401": (
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=x\r\n"
            "Content-Length: 12\r\n\r\nunauthorized"
        ),
        "redirect": "HTTP/1.1 302 Found\r\nLocation: wss://example.com/\r\n\r\n",
        "folded": "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n  folded\r\n\r\n",
        "two-accepts": (
            f"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        ),
        "tls-alert": "\x15\x03\x03\x00\x02\x02\x46",
        "ssh": "SSH-2.0-OpenSSH_9.2\r\n",
    }
    for name, text in responses.items():
        data = text.encode("latin-1")
        write("http_head", name, bytes([0x30]) + bytes([5, 17, 2]) + data)
    extras = {
        "ext-deflate": "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=9",
        "ext-bad-bits": "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7",
        "ext-twice": "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate",
        "ext-unknown": "Sec-WebSocket-Extensions: x-webkit-deflate-frame",
        "proto": "Sec-WebSocket-Protocol: superchat",
        "proto-list": "Sec-WebSocket-Protocol: chat, superchat",
        "proto-unoffered": "Sec-WebSocket-Protocol: mqtt",
    }
    for name, line in extras.items():
        write("http_head", name, bytes([0x01]) + line.encode())


# ---- url: the string itself ---------------------------------------------------------------------


def url_seeds() -> None:
    urls = [
        "ws://example.com/chat",
        "wss://EXAMPLE.com:443/path?query=1&x=%20y",
        "ws://[::1]:9001/runCase?case=1&agent=sigil",
        "wss://[2001:db8::1]/",
        "ws://127.0.0.1:8765",
        "WS://host?only-query",
        "ws://user:pass@host/",
        "ws://host/#fragment",
        "ws://host:0/",
        "ws://host:65536/",
        "ws://hôst.example/päth",
        "ws://host/a b",
        "http://example.com/",
        " ws://padded/ ",
    ]
    for i, u in enumerate(urls):
        write("url", f"url-{i:02}", u.encode())


# ---- utf8: a cut count byte, the cuts, the text ------------------------------------------------


def utf8_seeds() -> None:
    cases = [
        "κόσμε".encode(),
        "Hello-µ@ßöäüàá-UTF-8!!".encode(),
        b"\xf0\x90\x80\x80",
        b"\xf4\x8f\xbf\xbf",
        b"\xf4\x90\x80\x80",
        b"\xed\x9f\xbf\xed\xa0\x80",
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        b"\xef\xbf\xbe\xef\xbf\xbf",
        b"\x80",
        b"\xf8\x88\x80\x80\x80",
        "😀 emoji 👍🏽".encode(),
    ]
    for i, c in enumerate(cases):
        cuts = bytes([0, 1, 0, 2])
        write("utf8", f"utf8-{i:02}", bytes([len(cuts)]) + cuts + c)


# ---- frame: raw header bytes, read also as fields ---------------------------------------------


def frame_seeds() -> None:
    headers = [
        b"\x81\x05hello",
        b"\x82\x7e\x01\x00",
        b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00",
        b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00",
        b"\x88\x82\x01\x02\x03\x04\x02\xea",
        b"\x09\x00",
        b"\xf1\x00",
        b"\x83\x00",
        b"\xe1\x7e\x00\x05",
    ]
    for i, h in enumerate(headers):
        write("frame", f"frame-{i:02}", h)


# ---- inflate: a config byte, a cut count byte, the cuts, the compressed payload ----------------


def inflate_seeds() -> None:
    payloads = {
        "hello": deflate(b"Hello"),
        "rfc7692-hello": b"\xf2\x48\xcd\xc9\xc9\x07\x00",
        "rfc7692-bfinal": b"\xf3\x48\xcd\xc9\xc9\x07\x00\x00",
        "stored": b"\x00\x05\x00\xfa\xffHello",
        "empty": b"\x00",
        "bomb": deflate(b"\x00" * 100_000),
        "text": deflate(b"The quick brown fox jumps over the lazy dog. " * 30),
        "garbage": b"\xff\xff\xff\x00\x01",
    }
    for config in (0x01, 0x02, 0x07, 0x1B):
        for name, p in payloads.items():
            cuts = bytes([0, 3, 1])
            write("inflate", f"{name}-{config:02x}", bytes([config, len(cuts)]) + cuts + p)


# ---- engine_deflate: two config bytes, cuts, then ops (see fuzz/fuzz_targets/engine_deflate.rs) --


def ed_config(
    max_size: int = 5,
    server_nct: bool = False,
    client_nct: bool = False,
    server_bits: int | None = None,
    client_bits: int | None = None,
    negotiated: bool = True,
    level9: bool = False,
) -> bytes:
    """The two config bytes: max_size index (0, 1, 125, 1000, 4096, 65536, 1 MiB, None), the
    parameters (server_bits 8..14, or None for 15), whether the server accepts the extension,
    its compression level (1 or 9)."""
    c0 = max_size | (8 if server_nct else 0) | (16 if client_nct else 0)
    c0 |= 0 if server_bits is None else (server_bits - 7) << 5
    c1 = 0 if client_bits is None else client_bits
    c1 |= 0 if negotiated else 0x70
    c1 |= 0x80 if level9 else 0
    return bytes([c0, c1])


def ed_flags(
    binary: bool = False,
    pieces: int = 1,
    pings: bool = False,
    bit4: bool = False,
    reset: bool = False,
    final: bool = False,
) -> int:
    f = int(binary) | (pieces - 1) << 1 | (8 if pings else 0) | (16 if bit4 else 0)
    return f | (32 if reset else 0) | (64 if final else 0)


def ed_message(data: bytes, repeat: int = 1, **flags: bool | int) -> bytes:
    """Op 0: a message of the server's compressor, ``data`` repeated."""
    return bytes([0, ed_flags(**flags)]) + chunk(data) + bytes([repeat - 1])


def ed_mutated(data: bytes, how: int, at: int, extra: bytes = b"", **flags: bool | int) -> bytes:
    """Op 2: a compressed message flipped (how 0, bit how>>5), cut (1), extended (2) or with
    BFINAL forced (3)."""
    out = bytes([2, ed_flags(**flags)]) + chunk(data) + bytes([how]) + struct.pack("!H", at)
    return out + (chunk(extra) if how % 4 == 2 else b"")


def engine_deflate_seeds() -> None:
    hello = ed_message(b"Hello")
    json_ = b'{"id": 12, "name": "sigil", "tags": ["a", "b"]}'
    seeds = {
        "hello": ed_config() + b"\x00" + hello,
        "takeover": ed_config() + b"\x00" + ed_message(json_) * 3,
        "no-takeover": ed_config(server_nct=True, client_nct=True)
        + b"\x00"
        + ed_message(json_) * 3,
        "windows-8": ed_config(server_bits=8, client_bits=8) + b"\x00" + ed_message(json_, 40) * 2,
        "windows-14": ed_config(server_bits=14, client_bits=15, level9=True)
        + b"\x00"
        + ed_message(json_, 20, final=True)
        + ed_message(json_, 20),
        "fragments-pings": ed_config() + b"\x00" + ed_message(json_, 10, pieces=4, pings=True),
        "split": ed_config() + chunk(bytes([0, 5, 1, 200, 3])) + ed_message(json_, 30, pieces=3),
        "bomb-4096": ed_config(max_size=4)
        + b"\x00"
        + bytes([4, 0, ord("a")])
        + struct.pack("!H", 8000),
        "bomb-none": ed_config(max_size=7)
        + b"\x00"
        + bytes([4, 2, ord("a")])
        + struct.pack("!H", 4000),
        "bomb-small": ed_config(max_size=2) + b"\x00" + bytes([4, 0, 0x20, 0, 1]),
        "distance-takeover": ed_config()
        + b"\x00"
        + ed_message(json_)
        + bytes([5, 0])
        + struct.pack("!H", 30)
        + b"\x02",
        "distance-no-takeover": ed_config(server_nct=True)
        + b"\x00"
        + ed_message(json_)
        + bytes([5, 0])
        + struct.pack("!H", 30)
        + b"\x02",
        "distance-far": ed_config() + b"\x00" + bytes([5, 1]) + struct.pack("!H", 32767) + b"\x00",
        "flip": ed_config() + b"\x00" + ed_mutated(json_, 0x40, 5) + hello,
        "truncated": ed_config() + b"\x00" + ed_mutated(json_, 1, 7) + ed_message(json_),
        "overlong": ed_config() + b"\x00" + ed_mutated(json_, 2, 0, b"\xff\x00garbage") + hello,
        "bfinal": ed_config() + b"\x00" + ed_mutated(json_, 3, 0) + ed_message(json_),
        "garbage": ed_config() + b"\x00" + bytes([3, 0]) + chunk(b"\xff\xff\xff\x00\x01"),
        "bad-utf8": ed_config() + b"\x00" + ed_message(b"\xc3(", bit4=True),
        "rsv1-ping": ed_config() + b"\x00" + bytes([7, 0x40, 4]) + b"ping" + hello,
        "rsv1-pong": ed_config() + b"\x00" + bytes([7, 0x50, 0]) + hello,
        "rsv2-data": ed_config() + b"\x00" + bytes([8, 16, 0xA1]) + chunk(b"x"),
        "rsv1-continuation": ed_config()
        + b"\x00"
        + bytes([0, ed_flags(pieces=2)])
        + chunk(json_)
        + b"\x00"
        + bytes([8, 0, 0x40])
        + chunk(b"\x00"),
        "rsv1-continuation-inside": ed_config()
        + b"\x00"
        + bytes([8, 0, 0x41])
        + chunk(b"x")
        + bytes([8, 16, 0x40])
        + chunk(b"\x00"),
        "bomb-65536": ed_config(max_size=5)
        + b"\x00"
        + bytes([4, 6, ord("a")])
        + struct.pack("!H", 8000),
        "not-negotiated": ed_config(negotiated=False) + b"\x00" + hello,
        "uncompressed-between": ed_config()
        + b"\x00"
        + ed_message(json_)
        + bytes([6, 0])
        + chunk(b"plain")
        + ed_message(json_),
        "close": ed_config() + b"\x00" + hello + bytes([9, 16]),
        "max-0": ed_config(max_size=0) + b"\x00" + ed_message(b""),
        "max-125": ed_config(max_size=2) + b"\x00" + ed_message(b"x" * 100, 2),
    }
    for name, data in seeds.items():
        write("engine_deflate", name, data)


def main() -> None:
    if ROOT.exists():
        shutil.rmtree(ROOT)
    engine_seeds()
    http_seeds()
    url_seeds()
    utf8_seeds()
    frame_seeds()
    inflate_seeds()
    engine_deflate_seeds()
    count = sum(1 for _ in ROOT.rglob("*") if _.is_file())
    size = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    print(f"{count} seed files, {size} bytes, in {ROOT}")


if __name__ == "__main__":
    main()

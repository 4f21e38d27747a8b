"""Length-prefixed frames, the one framing of bytes between the host and its helper processes.

A frame is a 4-byte unsigned big-endian length, then that many bytes: the WASM worker's pipes
(``wasm/_frames.py``, one-shot module checks) and the bytecode compiler's stdin and stdout
(``python/bytecode.py``, which passes :data:`HEADER`'s format into the compiler it runs as the guest).
Stdlib only.
"""

from __future__ import annotations

import struct

__all__ = ["HEADER", "frame", "split_frames"]

HEADER = struct.Struct(">I")


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


def split_frames(data: bytes, limit: int) -> tuple[list[bytes], bool]:
    """At most ``limit`` frames from the start of ``data``, and whether they covered it exactly."""
    items: list[bytes] = []
    at = 0
    while at + HEADER.size <= len(data) and len(items) < limit:
        (size,) = HEADER.unpack_from(data, at)
        items.append(data[at + HEADER.size : at + HEADER.size + size])
        at += HEADER.size + size
    return items, at == len(data)

"""A batch as a streamed request body: an iterable of result lines, a file, or bytes, sent as JSONL,
or, with metadata, as a multipart form (``metadata`` and ``results`` fields) around the same stream.

Lines are encoded one at a time and sent in chunks of about ``CHUNK_BYTES``: a batch of any size costs
the client one chunk of memory, not the batch (a generator of results is never materialised).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import anyio
import msgspec

from rh_sdk.protocol import ResultLine

__all__ = ["CHUNK_BYTES", "Results", "async_chunks", "async_form", "form_parts", "sync_chunks", "sync_form"]

CHUNK_BYTES = 1 << 16

Results: TypeAlias = Iterable[Mapping[str, Any] | ResultLine] | str | os.PathLike[str] | bytes | bytearray | memoryview
"""What ``submit`` takes: result lines (dicts as OpenAI/vLLM write them, or ResultLine), a path to a
batch output JSONL file (a ``str`` is a path), or the file's bytes."""

_encode = msgspec.json.Encoder().encode


def _encoded_lines(results: Iterable[Mapping[str, Any] | ResultLine]) -> Iterator[bytes]:
    chunk = bytearray()
    for index, result in enumerate(results):
        if not isinstance(result, Mapping | ResultLine):
            raise TypeError(f"results[{index}]: expected a dict or a ResultLine, got {type(result).__name__}")
        chunk += _encode(result)
        chunk += b"\n"
        if len(chunk) >= CHUNK_BYTES:
            yield bytes(chunk)
            chunk.clear()
    if chunk:
        yield bytes(chunk)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while block := file.read(CHUNK_BYTES):
            yield block


def sync_chunks(results: Results) -> bytes | Iterator[bytes]:
    """The body: bytes as they are, else an iterator of chunks (opened lazily: a missing file fails here)."""
    if isinstance(results, bytes | bytearray | memoryview):
        return bytes(results)
    if isinstance(results, str | os.PathLike):
        path = Path(results)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such batch output file")
        return _file_chunks(path)
    if isinstance(results, Mapping):
        raise TypeError("results: expected an iterable of result lines, got one dict")
    return _encoded_lines(results)


async def async_chunks(results: Results) -> bytes | AsyncIterator[bytes]:
    """As :func:`sync_chunks`; a file is read in a worker thread, never on the event loop."""
    body = sync_chunks(results)
    if isinstance(body, bytes):
        return body
    is_file = isinstance(results, str | os.PathLike)

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            block = await anyio.to_thread.run_sync(next, body, None) if is_file else next(body, None)
            if block is None:
                return
            yield block

    return chunks()


def form_parts(metadata: dict[str, Any]) -> tuple[str, bytes, bytes]:
    """(Content-Type, the bytes before the results, the bytes after them) of a multipart/form-data body
    with ``metadata`` (a JSON object) and the batch in ``results``: metadata of any size travels in the
    body, where a URL is cut at a few KiB."""
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
    boundary = f"rh-{secrets.token_hex(16)}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\nContent-Type: application/json\r\n\r\n'
    ).encode()
    head += _encode(metadata)
    head += (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="results"; filename="results.jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    return f"multipart/form-data; boundary={boundary}", head, f"\r\n--{boundary}--\r\n".encode()


def sync_form(results: Results, metadata: dict[str, Any]) -> tuple[str, Iterator[bytes]]:
    content_type, head, tail = form_parts(metadata)
    body = sync_chunks(results)

    def chunks() -> Iterator[bytes]:
        yield head
        if isinstance(body, bytes):
            yield body
        else:
            yield from body
        yield tail

    return content_type, chunks()


async def async_form(results: Results, metadata: dict[str, Any]) -> tuple[str, AsyncIterator[bytes]]:
    content_type, head, tail = form_parts(metadata)
    body = await async_chunks(results)

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        if isinstance(body, bytes):
            yield body
        else:
            async for block in body:
                yield block
        yield tail

    return content_type, chunks()

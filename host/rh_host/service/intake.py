"""Reading a posted batch without holding it whole: JSONL as OpenAI and vLLM batch runs write it, or a
msgpack array of output lines.

The body is spooled to an anonymous file as it arrives (``receive_body``, on the event loop, at most
``SPOOL_CHUNK_BYTES`` in memory). ``parse_spooled`` then runs in a thread: it decodes and validates one
line at a time and appends each, re-encoded, to a second file that becomes the stored msgpack array.
A request thus holds one chunk, then one decoded line, then the stored bytes for the insert; never the
body's objects, which cost ~10x its size.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import struct
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import msgspec
from anyio import to_thread
from litestar import Request

from rh_host.batchfile import MSGPACK, decode_line, iter_jsonl
from rh_host.errors import BatchInputError
from rh_host.service.errors import BadRequest, InvalidBatch, PayloadTooLarge, ServiceError
from rh_host.service.multipart_body import MultipartBatch, is_multipart
from rh_host.service.settings import Quotas

__all__ = [
    "BODIES_PER_TENANT",
    "INTAKE_THREADS",
    "MSGPACK_TYPES",
    "SPOOL_CHUNK_BYTES",
    "BodySlots",
    "ParsedBatch",
    "check_batch_id",
    "parse_metadata",
    "parse_spooled",
    "receive_body",
]

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
SPOOL_CHUNK_BYTES = 1 << 20
INTAKE_THREADS = 2  # bodies parsed at once in the process (routes_batches)
BODIES_PER_TENANT = 4  # batch bodies of one tenant arriving at once (more wait): its spool is at most 4x max_batch_mb
_HEADER_ROOM = 5  # the longest msgpack array header (array32)
_decode_raw_items = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode
_encoder = msgspec.msgpack.Encoder()


class ParsedBatch(msgspec.Struct, frozen=True):
    results: bytes  # msgpack list of ResultLine, as stored
    count: int
    digest: str  # of results and metadata: a re-post with the same content is the same batch
    metadata: dict[str, Any]  # the URL's, or a multipart body's


def check_batch_id(batch_id: str) -> str:
    if not BATCH_ID.match(batch_id):
        raise BadRequest(f"batch id {batch_id[:140]!r} must match {BATCH_ID.pattern}")
    return batch_id


def parse_metadata(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"metadata: invalid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("metadata: nested deeper than the JSON decoder allows") from None
    if not isinstance(value, dict):
        raise BadRequest(f"metadata: must be a JSON object, got {type(value).__name__}")
    return value


class BodySlots:
    """At most ``per_tenant`` batch bodies of one tenant arrive (spooled, parsed, stored) at once; more
    wait for a slot before their body is read. Without a bound, one tenant's slow uploads on many
    connections could fill the data dir's disk with spool files; waiting (not refusing) keeps a client
    that submits many small batches at once working. Used on the event loop only."""

    def __init__(self, per_tenant: int = BODIES_PER_TENANT) -> None:
        self.per_tenant = per_tenant
        self._limiters: dict[str, anyio.CapacityLimiter] = {}

    @asynccontextmanager
    async def hold(self, tenant_id: str) -> AsyncIterator[None]:
        limiter = self._limiters.setdefault(tenant_id, anyio.CapacityLimiter(self.per_tenant))
        try:
            async with limiter:
                yield
        finally:
            if limiter.borrowed_tokens == 0 and limiter.statistics().tasks_waiting == 0:
                self._limiters.pop(tenant_id, None)


def _open_spool(directory: Path) -> IO[bytes]:
    """An unnamed file (O_TMPFILE) in the data dir, not /tmp (often RAM): gone on close and on a crash."""
    directory.mkdir(mode=0o700, exist_ok=True)
    return tempfile.TemporaryFile(dir=directory)


async def receive_body(request: Request, limit_bytes: int, directory: Path) -> IO[bytes]:
    """The request body, spooled to a file as it streams in; 413 as soon as it passes ``limit_bytes``."""
    too_large = f"batch body is over the tenant's limit of {limit_bytes // (1024 * 1024)} MiB"
    announced = request.content_length
    if announced is not None and announced > limit_bytes:
        raise PayloadTooLarge(f"{too_large} (content-length {announced})")
    spool = await to_thread.run_sync(_open_spool, directory)
    try:
        pending: list[bytes] = []
        pending_bytes = total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit_bytes:
                raise PayloadTooLarge(too_large)
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= SPOOL_CHUNK_BYTES:
                await to_thread.run_sync(spool.writelines, pending)
                pending, pending_bytes = [], 0
        await to_thread.run_sync(spool.writelines, pending)
    except BaseException:
        spool.close()
        raise
    return spool


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 1 << 16:
        return b"\xdc" + struct.pack(">H", count)
    return b"\xdd" + struct.pack(">I", count)


def _too_many(count: int, quotas: Quotas) -> PayloadTooLarge:
    return PayloadTooLarge(f"batch has {count} results; the tenant's limit is {quotas.max_results}")


def _transcode_jsonl(body: Iterable[bytes], sink: IO[bytes], quotas: Quotas) -> int:
    count = 0
    buffer = bytearray()
    lines = iter(body)
    try:
        for result in iter_jsonl(lines, "body"):
            count += 1
            if count > quotas.max_results:  # count the rest without decoding them, for the message
                raise _too_many(count + sum(1 for line in lines if line.strip()), quotas)
            _encoder.encode_into(result, buffer)
            sink.write(buffer)
    except BatchInputError as exc:
        raise InvalidBatch(str(exc)) from None
    return count


def _transcode_msgpack(body: IO[bytes], sink: IO[bytes], quotas: Quotas) -> int:
    if os.fstat(body.fileno()).st_size == 0:
        return 0
    view = mmap.mmap(body.fileno(), 0, access=mmap.ACCESS_READ)  # page cache, not the heap
    try:
        count, problem = _transcode_msgpack_view(view, sink, quotas)
    finally:
        view.close()  # the items that pointed into it died with the call above
    if problem is not None:
        raise problem
    return count


def _announced_count(view: mmap.mmap) -> int | None:
    """The item count a msgpack array's header announces (None: not an array header). Decoding a
    body of one-byte items costs ~50 bytes of objects per byte: the count is checked first."""
    first = view[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    if first == 0xDC and len(view) >= 3:
        return struct.unpack(">H", view[1:3])[0]
    if first == 0xDD and len(view) >= 5:
        return struct.unpack(">I", view[1:5])[0]
    return None


def _transcode_msgpack_view(view: mmap.mmap, sink: IO[bytes], quotas: Quotas) -> tuple[int, ServiceError | None]:
    """Returns its error instead of raising it: a raised error's traceback would keep the items, which
    point into ``view``, alive past the call and ``view`` could not be closed."""
    announced = _announced_count(view)
    if announced is not None and announced > quotas.max_results:  # refused before one item is built
        return 0, _too_many(announced, quotas)
    try:
        items = _decode_raw_items(view)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return 0, InvalidBatch(f"body: not a msgpack array of batch output lines: {exc}")
    except RecursionError:
        return 0, InvalidBatch("body: nested deeper than the msgpack decoder allows")
    if len(items) > quotas.max_results:
        return 0, _too_many(len(items), quotas)
    buffer = bytearray()
    for index, item in enumerate(items):
        try:
            result = decode_line(item, f"body[{index}]", MSGPACK)
        except BatchInputError as exc:
            return 0, InvalidBatch(str(exc))
        _encoder.encode_into(result, buffer)
        sink.write(buffer)
    return len(items), None


def parse_spooled(
    body: IO[bytes], content_type: str, metadata: dict[str, Any], quotas: Quotas, directory: Path
) -> ParsedBatch:
    """Validate a spooled body line by line into the stored form (blocking: run it in a thread).
    ``metadata``: the URL's; a multipart body may carry it instead (not both)."""
    body.seek(0)
    media = content_type.split(";")[0].strip().lower()
    with _open_spool(directory) as sink:
        sink.write(bytes(_HEADER_ROOM))
        if is_multipart(media):
            form = MultipartBatch(body, content_type)
            count = _transcode_jsonl(form.lines(), sink, quotas)
            if form.metadata_text is not None:
                if metadata:
                    raise BadRequest("metadata: given both in the URL and in the body; send it once")
                metadata = parse_metadata(form.metadata_text) if form.metadata_text.strip() else {}
        elif media in MSGPACK_TYPES:
            count = _transcode_msgpack(body, sink, quotas)
        else:
            count = _transcode_jsonl(body, sink, quotas)
        if count == 0:
            raise InvalidBatch("body: no result lines: the batch is empty")
        header = _array_header(count)
        sink.seek(_HEADER_ROOM - len(header))
        sink.write(header)
        sink.seek(_HEADER_ROOM - len(header))
        results = sink.read()
    digest = hashlib.sha256(results)
    digest.update(b"\0" + msgspec.json.encode(metadata, order="sorted"))
    return ParsedBatch(results=results, count=count, digest=digest.hexdigest(), metadata=metadata)

"""Reading a posted batch: JSONL as OpenAI and vLLM batch runs write it, or a msgpack array."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from rh_host.batchfile import parse_jsonl
from rh_host.errors import BatchInputError
from rh_host.service.errors import BadRequest, InvalidBatch, PayloadTooLarge
from rh_host.service.settings import Quotas
from rh_sdk.protocol import ResultLine

__all__ = ["MSGPACK_TYPES", "ParsedBatch", "check_batch_id", "parse_batch", "parse_metadata"]

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_decode_msgpack = msgspec.msgpack.Decoder(list[ResultLine]).decode
_encode_msgpack = msgspec.msgpack.Encoder().encode


class ParsedBatch(msgspec.Struct, frozen=True):
    results: bytes  # msgpack list of ResultLine, as stored
    count: int
    digest: str  # of results and metadata: a re-post with the same content is the same batch


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
    if not isinstance(value, dict):
        raise BadRequest(f"metadata: must be a JSON object, got {type(value).__name__}")
    return value


def parse_batch(body: bytes, content_type: str, metadata: dict[str, Any], quotas: Quotas) -> ParsedBatch:
    if len(body) > quotas.max_batch_mb * 1024 * 1024:
        raise PayloadTooLarge(f"batch body is {len(body)} bytes; the tenant's limit is {quotas.max_batch_mb} MiB")
    if content_type.split(";")[0].strip().lower() in MSGPACK_TYPES:
        try:
            results = _decode_msgpack(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidBatch(f"body: not a msgpack array of batch output lines: {exc}") from None
    else:
        try:
            results = parse_jsonl(body.splitlines(), "body")
        except BatchInputError as exc:
            raise InvalidBatch(str(exc)) from None
    if len(results) > quotas.max_results:
        raise PayloadTooLarge(f"batch has {len(results)} results; the tenant's limit is {quotas.max_results}")
    encoded = _encode_msgpack(results)
    digest = hashlib.sha256(encoded + b"\0" + msgspec.json.encode(metadata, order="sorted")).hexdigest()
    return ParsedBatch(results=encoded, count=len(results), digest=digest)

"""The wire protocol: the one definition of the bytes that cross the sandbox wall.

The host encodes one :class:`Invocation` per batch (MessagePack by default, JSON for plugins that ask),
hands the same bytes to every handler on stdin, and reads exactly one :class:`Reply` from stdout. Log
records travel as JSON lines (:class:`LogRecord`) on stderr. Host, sandbox, guest runner and the WASM
SDKs all follow this module; ``docs/protocol.schema.json`` is generated from it.

Batch results follow the OpenAI / vLLM batch output line. Both error shapes are accepted:

* OpenAI: ``response`` is null and ``error`` is ``{"code": ..., "message": ...}``;
* vLLM ``run_batch``: ``response`` is ``{"status_code": 400, "request_id": ..., "body": null}`` and
  ``error`` is a string or ``{"error": {...}}``.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec

__all__ = [
    "PROTOCOL_VERSION",
    "Encoding",
    "GuestInvocation",
    "Invocation",
    "LogRecord",
    "Reply",
    "ResultLine",
    "ResultResponse",
    "RunStatus",
    "Usage",
    "decode_reply",
    "encode_invocation",
    "encode_reply",
    "invocation_decoder",
    "json_schema",
]

PROTOCOL_VERSION = 1

Encoding = Literal["msgpack", "json"]


class RunStatus(enum.StrEnum):
    """How one handler run ended: exactly one per run."""

    OK = "ok"
    FAILED = "failed"  # handle() returned False, raised, or the guest exited non-zero
    SKIPPED = "skipped"  # enabled() returned False, or config enabled = false
    TIMEOUT = "timeout"  # wall-clock limit
    CPU_LIMIT = "cpu_limit"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    CRASHED = "crashed"  # killed by a signal or a trap, no reply
    PROTOCOL_ERROR = "protocol_error"  # no reply, an undecodable one, or more than one
    HOST_ERROR = "host_error"  # the host could not run the handler (a sandbox or host fault): not the handler's doing


class ResultResponse(msgspec.Struct):
    """The ``response`` object of a batch output line."""

    status_code: int
    request_id: str | None = None
    body: dict[str, Any] | None = None


class ResultLine(msgspec.Struct):
    """One line of a batch output JSONL file (OpenAI Batch or vLLM ``run_batch``)."""

    custom_id: str | None = None
    id: str | None = None
    response: ResultResponse | None = None
    # OpenAI: {"code", "message"}; vLLM: a string or {"error": {...}}
    error: str | dict[str, Any] | None = None


class Invocation(msgspec.Struct, kw_only=True):
    """What a handler receives: one batch, its metadata, and the handler's config."""

    protocol: int = PROTOCOL_VERSION
    batch_id: str
    handler: str
    config: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    results: list[ResultLine] = []
    # a check, not a run: import the entry ("import"), and construct the handler with ``config``
    # ("construct"), then answer "skipped", never calling ``enabled`` or ``handle``: what an upload
    # asks before a version can go live
    check: Literal["import", "construct"] | None = None


class GuestInvocation(Invocation, kw_only=True):
    """The guest's view of an :class:`Invocation`: results as plain dicts, as the plugin guide's
    handlers expect (``result.get('custom_id')``). Same bytes, cheaper decode, no copy."""

    results: list[dict[str, Any]] = []


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The guest's one answer. ``ran`` false means the handler skipped itself (``enabled()``)."""

    protocol: int = PROTOCOL_VERSION
    ran: bool
    ok: bool
    output: dict[str, Any] = {}
    error: str | None = None
    error_type: str | None = None


class LogRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One structured log record, written by the guest as a JSON line on stderr.

    ``source`` is set by the host, never read from the guest's line: ``"guest"`` (the default, so
    omitted) for everything the guest wrote, whatever its ``logger`` says; ``"host"`` for the host's
    own notes (a truncation, dropped records)."""

    level: str
    message: str
    logger: str = ""
    ts: float = 0.0
    extra: dict[str, Any] = {}
    exc: str | None = None
    source: Literal["guest", "host"] = "guest"


class Usage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Resources one run used, as measured by the sandbox (never reported by the guest)."""

    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    peak_rss_kb: int = 0
    fuel: int | None = None  # WASM only: instructions-ish consumed


_msgpack_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()


def encode_invocation(invocation: Invocation, encoding: Encoding = "msgpack") -> bytes:
    """Encode once; the same bytes go to every handler that asked for this encoding."""
    if encoding == "json":
        return _json_encoder.encode(invocation)
    return _msgpack_encoder.encode(invocation)


def invocation_decoder(
    encoding: Encoding = "msgpack",
) -> msgspec.msgpack.Decoder[GuestInvocation] | msgspec.json.Decoder[GuestInvocation]:
    if encoding == "json":
        return msgspec.json.Decoder(GuestInvocation)
    return msgspec.msgpack.Decoder(GuestInvocation)


_reply_decoders = {"msgpack": msgspec.msgpack.Decoder(Reply), "json": msgspec.json.Decoder(Reply)}


def decode_reply(data: bytes, encoding: Encoding = "msgpack") -> Reply:
    """Decode exactly one reply; trailing bytes (a second reply, garbage) raise ``msgspec.DecodeError``."""
    return _reply_decoders[encoding].decode(data)


def encode_reply(reply: Reply, encoding: Encoding = "msgpack") -> bytes:
    if encoding == "json":
        return _json_encoder.encode(reply)
    return _msgpack_encoder.encode(reply)


def json_schema() -> dict[str, Any]:
    """The protocol as one JSON Schema document (written to docs/protocol.schema.json)."""
    _, components = msgspec.json.schema_components([Invocation, Reply, LogRecord, ResultLine])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "rh-host wire protocol",
        "description": __doc__.strip().splitlines()[0],
        "protocol_version": PROTOCOL_VERSION,
        "$defs": components,
    }

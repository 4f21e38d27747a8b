"""The wire protocol: round trips in both encodings, both error shapes, strict reply decoding, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from rh_sdk import protocol
from rh_sdk.protocol import (
    PROTOCOL_VERSION,
    GuestInvocation,
    Invocation,
    LogRecord,
    Reply,
    ResultLine,
    ResultResponse,
    RunStatus,
    Usage,
    decode_reply,
    encode_invocation,
    encode_reply,
    invocation_decoder,
    json_schema,
)
from rh_sdk.schema import schema_text

ENCODINGS = ["msgpack", "json"]

OPENAI_OK = {
    "id": "batch_req_1",
    "custom_id": "req-1",
    "response": {"status_code": 200, "request_id": "r1", "body": {"choices": [{"message": {"content": "hi"}}]}},
    "error": None,
}
OPENAI_ERROR = {
    "id": "batch_req_2",
    "custom_id": "req-2",
    "response": None,
    "error": {"code": "batch_expired", "message": "This request could not be executed before the window expired"},
}
VLLM_STRING_ERROR = {
    "id": "vllm-3",
    "custom_id": "req-3",
    "response": {"status_code": 400, "request_id": "vllm-batch-3", "body": None},
    "error": "maximum context length is 8192 tokens",
}
VLLM_NESTED_ERROR = {
    "id": "vllm-4",
    "custom_id": "req-4",
    "response": {"status_code": 400, "request_id": "vllm-batch-4", "body": None},
    "error": {"error": {"object": "error", "message": "model does not exist", "code": 404}},
}
ALL_SHAPES = [OPENAI_OK, OPENAI_ERROR, VLLM_STRING_ERROR, VLLM_NESTED_ERROR]


def _results() -> list[ResultLine]:
    return [msgspec.convert(line, ResultLine) for line in ALL_SHAPES]


def test_result_lines_accept_both_error_shapes() -> None:
    ok, openai_err, vllm_str, vllm_nested = _results()
    assert ok.response == ResultResponse(status_code=200, request_id="r1", body=OPENAI_OK["response"]["body"])
    assert openai_err.response is None
    assert openai_err.error == {"code": "batch_expired", "message": OPENAI_ERROR["error"]["message"]}
    assert vllm_str.response is not None and vllm_str.response.body is None
    assert vllm_str.error == "maximum context length is 8192 tokens"
    assert vllm_nested.error == VLLM_NESTED_ERROR["error"]


@pytest.mark.parametrize("bad", [{"response": {"request_id": "x"}}, {"error": 5}, {"custom_id": 3}])
def test_result_lines_refuse_wrong_types(bad: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(bad, ResultLine)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_invocation_round_trip(encoding: protocol.Encoding) -> None:
    invocation = Invocation(
        batch_id="b-1",
        handler="stats",
        config={"threshold": 0.5, "nested": {"a": [1, 2]}},
        metadata={"user_id": "u"},
        results=_results(),
    )
    data = encode_invocation(invocation, encoding)
    decoded = (msgspec.json if encoding == "json" else msgspec.msgpack).decode(data, type=Invocation)
    assert decoded == invocation
    assert decoded.protocol == PROTOCOL_VERSION


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_guest_sees_results_as_the_plain_dicts_of_the_batch_file(encoding: protocol.Encoding) -> None:
    data = encode_invocation(Invocation(batch_id="b", handler="h", results=_results()), encoding)
    guest = invocation_decoder(encoding).decode(data)
    assert isinstance(guest, GuestInvocation)
    assert guest.results == ALL_SHAPES
    assert guest.results[0].get("custom_id") == "req-1"  # the guide's result.get(...) works


def test_json_encoding_is_json_and_msgpack_is_not() -> None:
    invocation = Invocation(batch_id="b", handler="h")
    assert json.loads(encode_invocation(invocation, "json"))["batch_id"] == "b"
    with pytest.raises(ValueError):
        json.loads(encode_invocation(invocation, "msgpack"))


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "reply",
    [
        Reply(ran=True, ok=True, output={"total": 8, "rate": 0.25, "list": [1, "a", None]}),
        Reply(ran=True, ok=False, error="handle() returned False"),
        Reply(ran=False, ok=True),
        Reply(ran=True, ok=False, error="X.__init__ raised ValueError: api_key", error_type="ValueError"),
    ],
)
def test_reply_round_trip(encoding: protocol.Encoding, reply: Reply) -> None:
    assert decode_reply(encode_reply(reply, encoding), encoding) == reply


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decode_reply_refuses_two_replies(encoding: protocol.Encoding) -> None:
    one = encode_reply(Reply(ran=True, ok=True), encoding)
    with pytest.raises(msgspec.DecodeError):
        decode_reply(one + one, encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decode_reply_refuses_trailing_garbage(encoding: protocol.Encoding) -> None:
    one = encode_reply(Reply(ran=True, ok=True), encoding)
    with pytest.raises(msgspec.DecodeError):
        decode_reply(one + b"\x00garbage", encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("data", [b"", b"\xff\xfe\xfd not a reply", b"[1, 2, 3]", b"\x93\x01\x02\x03"])
def test_decode_reply_refuses_garbage(encoding: protocol.Encoding, data: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_reply(data, encoding)


def test_decode_reply_requires_ran_and_ok() -> None:
    with pytest.raises(msgspec.ValidationError, match="ran"):
        decode_reply(b'{"ok": true}', "json")


def test_reply_omits_defaults_on_the_wire() -> None:
    assert json.loads(encode_reply(Reply(ran=False, ok=True), "json")) == {"ran": False, "ok": True}


def test_log_record_and_usage_round_trip() -> None:
    record = LogRecord(level="INFO", message="m", logger="l", ts=1.5, extra={"batch_id": "b"}, exc="tb")
    assert msgspec.json.decode(msgspec.json.encode(record), type=LogRecord) == record
    usage = Usage(wall_ms=1.5, cpu_ms=1.0, peak_rss_kb=1024)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(usage), type=Usage) == usage
    assert msgspec.json.decode(b'{"level": "ERROR", "message": "x"}', type=LogRecord).extra == {}


def test_run_status_values() -> None:
    assert {s.value for s in RunStatus} == {
        "ok", "failed", "skipped", "timeout", "cpu_limit", "memory_limit", "output_limit", "crashed",
        "protocol_error", "host_error",
    }  # fmt: skip


def test_json_schema_structure() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["protocol_version"] == PROTOCOL_VERSION
    defs = schema["$defs"]
    assert {"Invocation", "Reply", "LogRecord", "ResultLine", "ResultResponse"} <= defs.keys()
    assert set(defs["Reply"]["required"]) == {"ran", "ok"}
    assert {"batch_id", "handler"} <= set(defs["Invocation"]["required"])
    json.dumps(schema)  # serialisable as is


def test_exported_schema_file_matches_the_protocol(repo_root: Path) -> None:
    path = repo_root / "docs" / "protocol.schema.json"
    # regenerate with: python -m rh_sdk.schema > docs/protocol.schema.json
    assert json.loads(path.read_text()) == json.loads(json.dumps(json_schema()))
    assert path.read_text() == schema_text()

"""Batch output JSONL: both shapes, blank lines skipped, the first bad line reported by number."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from rh_host.batchfile import parse_jsonl, read_results
from rh_host.errors import BatchInputError, HostError

OPENAI_ERR = {"id": "b2", "custom_id": "r2", "response": None, "error": {"code": "c", "message": "m"}}
VLLM_ERR = {
    "id": "v3",
    "custom_id": "r3",
    "response": {"status_code": 400, "request_id": "x", "body": None},
    "error": {"error": {"message": "no model", "code": 404}},
}
OK = {"id": "b1", "custom_id": "r1", "response": {"status_code": 200, "request_id": "q", "body": {"a": 1}}}


def lines(*objects: object) -> list[bytes]:
    return [json.dumps(o).encode() + b"\n" for o in objects]


def test_both_shapes_parse() -> None:
    results = parse_jsonl(lines(OK, OPENAI_ERR, VLLM_ERR), "f.jsonl")
    assert [r.custom_id for r in results] == ["r1", "r2", "r3"]
    assert results[0].response is not None and results[0].response.body == {"a": 1}
    assert results[1].response is None and results[1].error == {"code": "c", "message": "m"}
    assert results[2].response is not None and results[2].response.status_code == 400


def test_blank_lines_are_skipped_but_still_counted() -> None:
    data = [b"\n", *lines(OK), b"   \n", b"\r\n", b"{not json}\n"]
    with pytest.raises(BatchInputError, match=r"^f\.jsonl:5: not a JSON object"):
        parse_jsonl(data, "f.jsonl")
    assert len(parse_jsonl(data[:4], "f.jsonl")) == 1


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (b"{not json}\n", "not a JSON object"),
        (b"[1, 2]\n", "Expected `object`"),
        (b'{"custom_id": 5}\n', "custom_id"),
        (b'{"response": {"body": {}}}\n', "status_code"),
        (b'{"error": 7}\n', "error"),
    ],
)
def test_a_malformed_line_reports_its_number(bad: bytes, expected: str) -> None:
    with pytest.raises(BatchInputError) as info:
        parse_jsonl([*lines(OK, OK), bad, *lines(OK)], "batch.jsonl")
    message = str(info.value)
    assert message.startswith("batch.jsonl:3: "), message
    assert expected in message
    assert "\n" not in message


def test_read_results_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"".join(lines(OK, VLLM_ERR)))
    assert [r.custom_id for r in read_results(str(path))] == ["r1", "r3"]
    assert [r.custom_id for r in read_results("-", io.BytesIO(path.read_bytes()))] == ["r1", "r3"]
    with pytest.raises(BatchInputError, match=r"^<stdin>:1: "):
        read_results("-", io.BytesIO(b"nope\n"))


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(BatchInputError, match="^" + re.escape(f"{missing}: cannot read: No such file")):
        read_results(str(missing))
    with pytest.raises(BatchInputError, match="cannot read"):
        read_results(str(tmp_path))  # a directory
    assert issubclass(BatchInputError, HostError)


def test_the_sample_batches_parse(repo_root: Path) -> None:
    openai = read_results(str(repo_root / "sample_plugins/batches/openai_sample.jsonl"))
    vllm = read_results(str(repo_root / "sample_plugins/batches/vllm_sample.jsonl"))
    assert len(openai) == 8 and len(vllm) == 7
    assert any(r.response is None and isinstance(r.error, dict) for r in openai)  # OpenAI error shape
    assert any(r.response is not None and r.response.body is None and isinstance(r.error, str) for r in vllm)
    assert any(isinstance(r.error, dict) and "error" in r.error for r in vllm)  # vLLM {"error": {...}}

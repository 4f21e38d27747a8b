"""Intake without the HTTP layer: a spooled body decoded line by line into the stored msgpack array."""

from __future__ import annotations

import hashlib
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest
from rh_testserver import OPENAI

from rh_host.batchfile import parse_jsonl
from rh_host.service.errors import BadRequest, InvalidBatch, PayloadTooLarge
from rh_host.service.intake import ParsedBatch, check_batch_id, parse_metadata, parse_spooled
from rh_host.service.settings import Quotas
from rh_sdk.protocol import ResultLine

MSGPACK = "application/msgpack"
DEEP = b"[" * 50_000 + b"]" * 50_000


def parse(
    directory: Path, body: bytes, content_type: str = "", metadata: dict[str, Any] | None = None, **quotas: Any
) -> ParsedBatch:
    with tempfile.TemporaryFile(dir=directory) as spool:
        spool.write(body)
        return parse_spooled(spool, content_type, metadata or {}, Quotas(**quotas), directory / "spool")


def test_stored_form_and_digest_are_those_of_the_whole_list(tmp_path: Path) -> None:
    """Line-by-line encoding gives the bytes (and so the digests) that encoding the whole list gave."""
    body = OPENAI.read_bytes()
    whole = msgspec.msgpack.encode(parse_jsonl(body.splitlines(), "x"))
    parsed = parse(tmp_path, body, "application/jsonl", {"b": 2, "a": 1})
    assert parsed.results == whole and parsed.count == 8
    assert parsed.digest == hashlib.sha256(whole + b'\0{"a":1,"b":2}').hexdigest()
    assert parse(tmp_path, body, "", {"a": 1, "b": 2}).digest == parsed.digest
    assert parse(tmp_path, whole, MSGPACK, {"a": 1, "b": 2}).results == whole
    assert list(tmp_path.joinpath("spool").iterdir()) == []  # the sink file is gone


@pytest.mark.parametrize("count", [1, 15, 16, 65_535, 65_536])
def test_every_array_header_size(tmp_path: Path, count: int) -> None:
    body = b'{"id": "r"}\n' * count
    parsed = parse(tmp_path, body, max_results=100_000)
    assert msgspec.msgpack.decode(parsed.results, type=list[ResultLine]) == [ResultLine(id="r")] * count


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", "", "^body: no result lines: the batch is empty$"),
        (b"\n  \n\n", "", "the batch is empty"),
        (b"", MSGPACK, "the batch is empty"),
        (b"\x90", MSGPACK, "the batch is empty"),
        (b'{"id": "x"}\n[1]\n', "", "^body:2: "),
        (b'{"id": "x"}\n{"error": {"e": ' + DEEP + b"}}\n", "", "^body:2: nested deeper than the JSON decoder allows$"),
        (b'{"id": "x", "response": {"status_code": 200, "body": {"a": ' + DEEP + b"}}}", "", "^body:1: nested"),
        (b"\x91" * 50_000 + b"\xc0", MSGPACK, "^body: nested deeper than the msgpack decoder allows$"),
        (b"\x92\x81\xa2id\xa1x\x93", MSGPACK, "^body: not a msgpack array"),
        (b"\x91\x91\x01", MSGPACK, r"^body\[0\]: "),
        (
            b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}\n',
            "",
            "^body:1: a request .* this is a batch input file",
        ),
        (
            msgspec.msgpack.encode([{"id": "a"}, {"custom_id": "r", "method": "POST", "url": "/v1/embeddings"}]),
            MSGPACK,
            r"^body\[1\]: a request",
        ),
    ],
)
def test_bad_bodies_name_the_problem(tmp_path: Path, body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(InvalidBatch, match=message):
        parse(tmp_path, body, content_type)


def test_a_result_line_with_method_and_url_fields_is_still_a_result(tmp_path: Path) -> None:
    line = b'{"id": "x", "method": "POST", "url": "/v1/x", "response": {"status_code": 200}}\n'
    assert parse(tmp_path, line).count == 1


def test_too_many_results_counts_them_all(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge, match=r"^batch has 8 results; the tenant.s limit is 2$"):
        parse(tmp_path, OPENAI.read_bytes(), max_results=2)
    whole = msgspec.msgpack.encode(parse_jsonl(OPENAI.read_bytes().splitlines(), "x"))
    with pytest.raises(PayloadTooLarge, match=r"^batch has 8 results"):
        parse(tmp_path, whole, MSGPACK, max_results=2)


def test_a_msgpack_array_over_the_count_is_refused_before_its_items_are_built(tmp_path: Path) -> None:
    """4 MiB of one-byte items would be ~200 MiB of objects; the header's count refuses it first."""
    count = 4 << 20
    body = b"\xdd" + count.to_bytes(4, "big") + b"\xc0" * count
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge, match=f"^batch has {count} results"):
            parse(tmp_path, body, MSGPACK, max_results=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_metadata_and_batch_id() -> None:
    with pytest.raises(BadRequest, match="must be a JSON object"):
        parse_metadata('"just a string"')
    with pytest.raises(BadRequest, match="nested deeper"):
        parse_metadata(DEEP.decode())
    with pytest.raises(BadRequest):
        check_batch_id("../etc")

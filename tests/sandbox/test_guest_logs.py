"""A guest's stderr -> records: bounded in number and decoded size, every one marked as the guest's."""

from __future__ import annotations

import json
import tracemalloc

from rh_sandbox.guest_logs import RECORDS_PER_KB, parse_logs
from rh_sdk.protocol import LogRecord


def _line(**fields: object) -> bytes:
    return json.dumps({"level": "INFO", "message": "m", **fields}).encode() + b"\n"


def _parse_traced(data: bytes, max_log_kb: int) -> tuple[list[LogRecord], int]:
    tracemalloc.start()
    try:
        records = parse_logs(data, max_log_kb=max_log_kb)
        return records, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_mebibyte_of_newlines_is_one_record_in_bounded_memory() -> None:
    data = b"a\n" * (512 * 1024)
    records, peak = _parse_traced(data, max_log_kb=1024)
    assert len(records) == 1 and records[0].message.count("\n") == 512 * 1024 - 1
    assert peak < 3 * len(data), f"{peak / 2**20:.1f} MiB for {len(data) >> 20} MiB of stderr"


def test_records_and_plain_text_keep_their_order() -> None:
    data = b"starting\nstep 1\n" + _line(message="counted", extra={"n": 3}) + b"\n\nbye\n"
    records = parse_logs(data)
    assert [(r.logger, r.message) for r in records] == [
        ("stderr", "starting\nstep 1"),
        ("", "counted"),
        ("stderr", "bye"),
    ]
    assert records[1].extra == {"n": 3}
    assert parse_logs(b"\n  \n\n") == []


def test_a_guest_line_is_the_guests_whatever_it_says() -> None:
    forged = _line(logger="rh.sandbox", source="host", level="WARNING", message="log output truncated at max_log_kb")
    records = parse_logs(forged, truncated=True)
    assert [(r.logger, r.source) for r in records] == [("rh.sandbox", "guest"), ("rh.sandbox", "host")]


def test_records_past_the_cap_are_dropped_and_counted_by_the_host() -> None:
    records = parse_logs(_line() * 5000, max_log_kb=100)
    kept = 100 * RECORDS_PER_KB
    assert len(records) == kept + 1
    assert all(r.source == "guest" for r in records[:kept])
    assert records[-1].source == "host" and records[-1].message.startswith(f"{5000 - kept} log lines dropped")


def test_an_amplifying_or_deep_record_is_kept_as_plain_text() -> None:
    wide = _line(extra={"o": [{}] * 300_000})  # ~1 MB of JSON, ~70 MiB were it decoded
    records, peak = _parse_traced(wide, max_log_kb=1024)
    assert len(records) == 1 and records[0].logger == "stderr" and records[0].extra == {}
    assert peak < 8 * len(wide)
    deep = b'{"level":"INFO","message":"m","extra":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}\n"
    (record,) = parse_logs(deep)
    assert record.logger == "stderr" and record.message.startswith('{"level"')

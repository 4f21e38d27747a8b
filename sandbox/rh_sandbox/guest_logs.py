"""A guest's stderr -> log records, bounded in number and decoded size, each marked as the guest's.

A JSON line shaped like :class:`~rh_sdk.protocol.LogRecord` becomes one record; consecutive other
lines (prints, a C library) become one plain record, so 1 MiB of ``a\\n`` is one record, not 500,000.
Every record the guest wrote has ``source="guest"`` whatever the line says (the field is never read
from the guest); only :func:`host_note` makes ``source="host"`` records. At most
:data:`RECORDS_PER_KB` records per KiB of ``max_log_kb`` are kept and their decoded size is held to
:data:`~rh_sandbox.decoded.DECODED_PER_BYTE` times ``max_log_kb``; what is left over is dropped and
counted in a host note.
"""

from __future__ import annotations

import msgspec

from rh_sandbox.decoded import DECODED_PER_BYTE, DecodedTooLarge, json_cost
from rh_sdk.protocol import LogRecord

__all__ = ["RECORDS_PER_KB", "host_note", "parse_logs"]

RECORDS_PER_KB = 4  # records kept per KiB of max_log_kb (4096 at the default 1024)
_RECORD = 512  # one LogRecord's own objects (struct, level, logger, ts, extra), charged per record
_WIDE = 4  # a decoded line takes at most 4 bytes per byte (UCS-4)


class _GuestLine(msgspec.Struct, kw_only=True):
    """What the host reads of a guest's JSON line: the record without ``source``."""

    level: str
    message: str
    logger: str = ""
    ts: float = 0.0
    extra: dict[str, object] = {}
    exc: str | None = None


_line_decoder = msgspec.json.Decoder(_GuestLine)


def host_note(message: str, level: str = "WARNING") -> LogRecord:
    """A record the host itself adds to a run's logs."""
    return LogRecord(level=level, logger="rh.sandbox", message=message, source="host")


class _Collector:
    def __init__(self, max_log_kb: int) -> None:
        self.records: list[LogRecord] = []
        self.max_records = max(1, max_log_kb * RECORDS_PER_KB)
        self.budget = DECODED_PER_BYTE * max_log_kb * 1024
        self.dropped_lines = 0

    def full(self) -> bool:
        return len(self.records) >= self.max_records

    def json_record(self, line: bytes) -> LogRecord | None:
        """``line`` as a record when it is one and fits the budget (charged); None: plain text."""
        try:
            cost = _RECORD + json_cost(line, self.budget - _RECORD)
            parsed = _line_decoder.decode(line)
        except (DecodedTooLarge, msgspec.DecodeError, msgspec.ValidationError):
            return None
        self.budget -= cost
        return LogRecord(
            level=parsed.level,
            message=parsed.message,
            logger=parsed.logger,
            ts=parsed.ts,
            extra=parsed.extra,
            exc=parsed.exc,
            source="guest",
        )

    def add(self, record: LogRecord) -> None:
        if self.full():
            self.dropped_lines += 1
        else:
            self.records.append(record)

    def plain(self, block: bytes) -> None:
        """Consecutive non-record lines as one record (blank lines alone make none)."""
        if not block.strip():
            return
        cost = _RECORD + _WIDE * len(block)
        if self.full() or cost > self.budget:
            self.dropped_lines += block.count(b"\n") + (not block.endswith(b"\n"))
            return
        self.budget -= cost
        message = block.decode("utf-8", "replace").strip("\n")
        self.records.append(LogRecord(level="INFO", logger="stderr", message=message, source="guest"))


def parse_logs(data: bytes, truncated: bool = False, *, max_log_kb: int = 1024) -> list[LogRecord]:
    """Records from a guest's stderr (``truncated``: cut at ``max_log_kb``), host notes last."""
    logs = _Collector(max_log_kb)
    size = len(data)
    attempts = logs.max_records * 2  # JSON-looking lines tried at most; then the rest is plain text
    pos = plain_from = 0
    while pos < size and not logs.full():
        end = data.find(b"\n", pos)
        end = size if end < 0 else end
        if data[pos] == 0x7B and attempts > 0:  # "{": maybe a record
            attempts -= 1
            record = logs.json_record(data[pos:end])
            if record is not None:
                logs.plain(data[plain_from:pos])
                logs.add(record)
                plain_from = pos = end + 1
                continue
        following = data.find(b"\n{", end) if attempts > 0 else -1  # skip plain lines at C speed
        pos = size if following < 0 else following + 1
    logs.plain(data[plain_from:])
    if logs.dropped_lines:
        logs.records.append(
            host_note(
                f"{logs.dropped_lines} log lines dropped: a run keeps at most {logs.max_records} records "
                f"({RECORDS_PER_KB} per KiB of max_log_kb) and {DECODED_PER_BYTE} x max_log_kb decoded"
            )
        )
    if truncated:
        logs.records.append(host_note("log output truncated at max_log_kb"))
    return logs.records

"""Structured logs from inside the sandbox: one JSON line per record on stderr."""

from __future__ import annotations

import logging
import traceback
from typing import IO, Any

import msgspec

from rh_sdk.protocol import LogRecord

__all__ = ["JsonLineHandler", "record_extra"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def record_extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


def _to_builtin(value: Any) -> Any:
    # extra values may be anything a plugin had at hand; never let one break the log line
    return repr(value)


class JsonLineHandler(logging.Handler):
    """Writes each record as a :class:`~rh_sdk.protocol.LogRecord` JSON line."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._encoder = msgspec.json.Encoder(enc_hook=_to_builtin)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc = None
            if record.exc_info and record.exc_info[0] is not None:
                exc = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            line = LogRecord(
                level=record.levelname,
                message=record.getMessage(),
                logger=record.name,
                ts=record.created,
                extra=record_extra(record),
                exc=exc,
            )
            self._stream.write(self._encoder.encode(line) + b"\n")
            self._stream.flush()
        except Exception:
            self.handleError(record)

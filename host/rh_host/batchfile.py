"""Reading batch output files (JSONL as OpenAI Batch and vLLM ``run_batch`` write them), one line at a time.

Every refusal names the source and the line: a line that is not an object, a field of the wrong type,
nesting deeper than the decoder allows, or a line of a batch *input* file (a request, not a result).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import msgspec

from rh_host.errors import BatchInputError
from rh_sdk.protocol import ResultLine

__all__ = ["JSON", "MSGPACK", "LineFormat", "decode_line", "iter_jsonl", "parse_jsonl", "read_results"]


class _RequestProbe(msgspec.Struct):
    """The fields that mark a line of a batch input file: ``{"custom_id", "method", "url", "body"}``."""

    method: str | None = None
    url: str | None = None


class LineFormat(NamedTuple):
    name: str  # "JSON" or "msgpack", for messages
    result: msgspec.json.Decoder[ResultLine] | msgspec.msgpack.Decoder[ResultLine]
    probe: msgspec.json.Decoder[_RequestProbe] | msgspec.msgpack.Decoder[_RequestProbe]


JSON = LineFormat("JSON", msgspec.json.Decoder(ResultLine), msgspec.json.Decoder(_RequestProbe))
MSGPACK = LineFormat("msgpack", msgspec.msgpack.Decoder(ResultLine), msgspec.msgpack.Decoder(_RequestProbe))


def _is_request(line: bytes | memoryview, form: LineFormat) -> bool:
    try:
        probe = form.probe.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return False
    return probe.method is not None and probe.url is not None


def decode_line(line: bytes | memoryview, where: str, form: LineFormat = JSON) -> ResultLine:
    """One batch output line; ``where`` (``file:line``) starts every error message."""
    try:
        result = form.result.decode(line)
    except msgspec.ValidationError as exc:
        raise BatchInputError(f"{where}: {str(exc).replace('`$.', '`')}") from None
    except msgspec.DecodeError as exc:
        raise BatchInputError(f"{where}: not a {form.name} object: {exc}") from None
    except RecursionError:
        raise BatchInputError(f"{where}: nested deeper than the {form.name} decoder allows") from None
    if result.response is None and result.error is None and _is_request(line, form):
        raise BatchInputError(
            f"{where}: a request (method and url), not a result: this is a batch input file; send the batch's output"
        )
    return result


def iter_jsonl(lines: Iterable[bytes], source: str) -> Iterator[ResultLine]:
    """Decode every non-blank line as it comes; the first bad one raises with its line number."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield decode_line(line, f"{source}:{number}")


def parse_jsonl(lines: Iterable[bytes], source: str) -> list[ResultLine]:
    return list(iter_jsonl(lines, source))


def read_results(path: str, stdin: BinaryIO | None = None) -> list[ResultLine]:
    """Read a JSONL batch from a file, or from ``stdin`` when path is ``-``; an empty batch is refused."""
    if path == "-":
        if stdin is None:
            raise BatchInputError("<stdin>: no standard input")
        results = parse_jsonl(stdin, "<stdin>")
    else:
        try:
            with Path(path).open("rb") as handle:
                results = parse_jsonl(handle, path)
        except OSError as exc:
            raise BatchInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not results:
        raise BatchInputError(f"{'<stdin>' if path == '-' else path}: no result lines: the batch is empty")
    return results

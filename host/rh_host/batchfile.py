"""Reading batch output files (JSONL as OpenAI Batch and vLLM ``run_batch`` write them)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import msgspec

from rh_host.errors import BatchInputError
from rh_sdk.protocol import ResultLine

__all__ = ["parse_jsonl", "read_results"]

_decoder = msgspec.json.Decoder(ResultLine)


def parse_jsonl(lines: Iterable[bytes], source: str) -> list[ResultLine]:
    """Decode every non-blank line; the first bad one raises with its line number."""
    results: list[ResultLine] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            results.append(_decoder.decode(line))
        except msgspec.ValidationError as exc:
            raise BatchInputError(f"{source}:{number}: {str(exc).replace('`$.', '`')}") from None
        except msgspec.DecodeError as exc:
            raise BatchInputError(f"{source}:{number}: not a JSON object: {exc}") from None
    return results


def read_results(path: str, stdin: BinaryIO | None = None) -> list[ResultLine]:
    """Read a JSONL batch from a file, or from ``stdin`` when path is ``-``."""
    if path == "-":
        if stdin is None:
            raise BatchInputError("<stdin>: no standard input")
        return parse_jsonl(stdin, "<stdin>")
    try:
        with Path(path).open("rb") as handle:
            return parse_jsonl(handle, path)
    except OSError as exc:
        raise BatchInputError(f"{path}: cannot read: {exc.strerror or exc}") from None

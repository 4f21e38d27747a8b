"""Synthetic batches for benchmarks: copies of the bundled sample lines with fresh custom_ids."""

from __future__ import annotations

from pathlib import Path

from rh_host.batchfile import parse_jsonl
from rh_sdk.protocol import ResultLine

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_plugins" / "batches" / "openai_sample.jsonl"


def synthetic_batch(n: int) -> list[ResultLine]:
    base = parse_jsonl(SAMPLE.read_bytes().splitlines(), str(SAMPLE))
    out: list[ResultLine] = []
    for i in range(n):
        line = base[i % len(base)]
        out.append(ResultLine(custom_id=f"req-{i:06d}", id=line.id, response=line.response, error=line.error))
    return out

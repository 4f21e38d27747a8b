"""Synthetic batches for benchmarks, made one way: ``n`` batch output lines with fresh custom_ids,
copied from the bundled sample (answers of several lengths, two error lines) or from one given line."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec

from rh_sdk.protocol import ResultLine

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_plugins" / "batches" / "openai_sample.jsonl"


def chat_line(content: str) -> dict[str, Any]:
    """One successful chat completion line (OpenAI Batch output) whose answer is ``content``."""
    body = {
        "id": "chatcmpl-000000",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 60, "total_tokens": 180},
    }
    return {"id": "batch_req_0", "custom_id": "req-0", "response": {"status_code": 200, "body": body}}


def batch_lines(n: int, line: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``n`` lines as the JSONL file holds them: copies of ``line``, or of the sample's lines in turn."""
    base = [line] if line is not None else [json.loads(raw) for raw in SAMPLE.read_bytes().splitlines() if raw]
    out = []
    for i in range(n):
        item = copy.deepcopy(base[i % len(base)])
        item["custom_id"] = f"req-{i:06d}"
        out.append(item)
    return out


def synthetic_batch(n: int, line: dict[str, Any] | None = None) -> list[ResultLine]:
    """:func:`batch_lines` decoded as the host decodes a batch file."""
    return msgspec.convert(batch_lines(n, line), list[ResultLine])

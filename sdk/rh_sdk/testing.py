"""Helpers for plugin authors' unit tests: sample results and an in-process run that mirrors the sandbox.

    from rh_sdk.testing import openai_result, run_handler

    reply, logs = run_handler(MyHandler, {"api_key": "x"}, [openai_result("req-1", "hi")])
    assert reply.ok

``run_handler`` goes through the same code as the sandboxed runner (construct, ``enabled``, ``handle``,
``on_error``, return convention), without isolation or limits. ``rh-host plugin test`` runs the real thing.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from rh_sdk._handler import ResultHandler
from rh_sdk._logs import record_extra
from rh_sdk.protocol import GuestInvocation, LogRecord, Reply
from rh_sdk.runner import install_seed_alias, run_invocation

__all__ = ["openai_error", "openai_result", "run_handler", "vllm_error"]


def openai_result(custom_id: str, content: str, model: str = "gpt-4o-mini", status_code: int = 200) -> dict[str, Any]:
    """A successful OpenAI Batch output line."""
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {
            "status_code": status_code,
            "request_id": f"req_{custom_id}",
            "body": {"model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]},
        },
        "error": None,
    }


def openai_error(custom_id: str, code: str = "server_error", message: str = "failed") -> dict[str, Any]:
    """A failed OpenAI Batch output line: no response, an error object."""
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }


def vllm_error(custom_id: str, message: str = "bad request") -> dict[str, Any]:
    """A failed vLLM ``run_batch`` line: a 400 response without body, the error as a string."""
    return {
        "id": f"vllm-{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": 400, "request_id": f"vllm-{custom_id}", "body": None},
        "error": message,
    }


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(
            LogRecord(
                level=record.levelname,
                message=record.getMessage(),
                logger=record.name,
                ts=record.created,
                extra=record_extra(record),
            )
        )


def run_handler(
    handler_class: type[ResultHandler],
    config: dict[str, Any] | None = None,
    results: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    batch_id: str = "test_batch",
) -> tuple[Reply, list[LogRecord]]:
    """Run one handler class in-process as the sandboxed runner would; return its reply and logs."""
    install_seed_alias()
    module = handler_class.__module__
    invocation = GuestInvocation(
        batch_id=batch_id,
        handler=handler_class.__name__,
        config=config or {},
        metadata=metadata or {},
        results=results or [],
    )
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        directory = os.path.dirname(getattr(sys.modules[module], "__file__", None) or ".")
        reply = run_invocation(invocation, f"{module}:{handler_class.__name__}", directory)
    finally:
        root.removeHandler(capture)
    return reply, capture.records

"""Shared by the integration tests: the sample batch, and reading a run's logs."""

from __future__ import annotations

from collections.abc import Callable

from rh_host.outcome import HandlerRun
from rh_sdk.testing import openai_error, openai_result, vllm_error

RESULTS = [
    openai_result("req-1", "first answer"),
    openai_result("req-2", "second answer"),
    openai_error("req-3", "server_error", "the model overloaded"),
    vllm_error("req-4", "prompt too long"),
]

RunPlugin = Callable[..., HandlerRun]


def messages(run: HandlerRun) -> str:
    """Every log message of a run, for asserting on what the plugin said."""
    return "\n".join(f"{r.level} {r.message}" for r in run.logs)

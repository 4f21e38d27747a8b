"""Shared by the integration tests: the sample batch, and reading a run's logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

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


def grants_for(config: dict[str, Any]) -> list[str]:
    """The ``allowed_hosts`` a tenant writes for this config: the host:port of every URL or DSN in it,
    and ``smtp_host``/``smtp_port``. Tests that check refusals pass their grants explicitly instead."""
    grants = []
    for key in ("url", "webhook_url", "dsn", "endpoint_url"):
        if isinstance(config.get(key), str) and "://" in config[key]:
            parts = urlsplit(config[key])
            if parts.hostname and parts.port:
                grants.append(f"{parts.hostname}:{parts.port}")
    if "smtp_host" in config:
        grants.append(f"{config['smtp_host']}:{config.get('smtp_port', 587)}")
    return grants

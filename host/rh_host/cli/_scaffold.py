"""What ``rh-host plugin init`` writes: a small, working Python handler written as the guide shows."""

from __future__ import annotations

__all__ = ["python_plugin_files"]

_MANIFEST = """name = "{name}"
version = "0.1.0"
runtime = "python"
entry = "handler:{cls}"
priority = 100            # lower runs first
description = "Counts the batch's results and the failed ones."

[limits]                  # clamped to your tenant's ceilings by the service
cpu_seconds = 5
memory_mb = 128
wall_seconds = 10

[config]                  # defaults; override per plugin with the API (PUT /v1/plugins/{name}/config)
fail_above_error_rate = 1.0
"""

_HANDLER = '''"""{name}: counts the results of a batch and how many failed.

Handlers may run more than once for the same batch (the service delivers at least once): keep side
effects idempotent, keyed by batch_id.
"""

from typing import Any, Dict, List

from core.result_handlers.base import ResultHandler


class {cls}(ResultHandler):
    def __init__(self, config=None):
        super().__init__(config)
        self.threshold = float(self.config.get("fail_above_error_rate", 1.0))
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("fail_above_error_rate must be between 0 and 1")

    def name(self) -> str:
        return "{name}"

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        failed = sum(1 for r in results if r.get("error") or (r.get("response") or {{}}).get("status_code") != 200)
        rate = failed / len(results) if results else 0.0
        self.logger.info("counted", extra={{"batch_id": batch_id, "results": len(results), "failed": failed}})
        if rate > self.threshold:
            self.logger.error("error rate %.2f is above %.2f", rate, self.threshold)
            return False
        return {{"{name}.results": len(results), "{name}.failed": failed}}
'''

_SAMPLE = (
    '{{"id": "r1", "custom_id": "a", "response": {{"status_code": 200, "request_id": "q1", "body": {{}}}}, '
    '"error": null}}\n'
    '{{"id": "r2", "custom_id": "b", "response": null, "error": {{"code": "server_error", "message": "boom"}}}}\n'
)


def python_plugin_files(name: str) -> dict[str, str]:
    cls = "".join(part.capitalize() for part in name.replace(".", "_").replace("-", "_").split("_")) + "Handler"
    return {
        "plugin.toml": _MANIFEST.format(name=name, cls=cls),
        "handler.py": _HANDLER.format(name=name, cls=cls),
        "sample.jsonl": _SAMPLE.format(),
    }

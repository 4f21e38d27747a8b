"""What ``rh-host plugin init`` writes: a small, working Python handler written as the guide shows."""

from __future__ import annotations

from pathlib import Path

__all__ = ["C_BUILD", "c_plugin_files", "c_sdk_header", "python_plugin_files"]

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


_C_MANIFEST = """name = "{name}"
version = "0.1.0"
runtime = "wasm"
entry = "handler.wasm"    # built from handler.c by ./build.sh
encoding = "json"
priority = 100
description = "Counts the batch's results and the failed ones (C, WebAssembly)."

[limits]
cpu_seconds = 1           # becomes fuel (docs/wasm-abi.md)
memory_mb = 16
wall_seconds = 5
"""

_C_HANDLER = """/* {name}: counts the results of a batch and how many failed. See docs/wasm-abi.md. */
#include <stdio.h>

#include "rh_plugin.h"

int main(void) {{
    rh_invocation inv;
    if (rh_read_invocation(&inv) != 0) return rh_reply_decode_error();
    if (!rh_config_bool(&inv, "enabled", 1)) return rh_reply(0, 1, NULL, NULL);
    int failed = 0;
    for (int i = 0; i < inv.nresults; i++) {{
        const rh_result *r = &inv.results[i];
        if (!r->has_response || r->status_code != 200 || r->has_error) failed++;
    }}
    char output[128];
    snprintf(output, sizeof output, "{{\\"{name}.results\\":%d,\\"{name}.failed\\":%d}}", inv.nresults, failed);
    rh_log("INFO", "counted");
    return rh_reply(1, 1, output, NULL);
}}
"""

# the build command, run in the plugin directory (Debian: clang lld wasi-libc libclang-rt-dev-wasm32 libjsmn-dev)
C_BUILD = ["clang", "--target=wasm32-wasi", "-O2", "-Wall", "-Wl,--strip-all", "-I.", "handler.c", "-o", "handler.wasm"]

_BUILD_SH = """#!/bin/sh
# Build handler.wasm. Needs (Debian): clang lld wasi-libc libclang-rt-dev-wasm32 libjsmn-dev
cd "$(dirname "$0")" && exec {command}
"""


def c_sdk_header() -> Path | None:
    """sdk/c/rh_plugin.h beside the installed rh_sdk (a source or editable install), if present."""
    import rh_sdk

    header = Path(rh_sdk.__file__).resolve().parents[1] / "c" / "rh_plugin.h"
    return header if header.is_file() else None


def c_plugin_files(name: str, header: Path) -> dict[str, str]:
    return {
        "plugin.toml": _C_MANIFEST.format(name=name),
        "handler.c": _C_HANDLER.format(name=name),
        "rh_plugin.h": header.read_text(encoding="utf-8"),
        "build.sh": _BUILD_SH.format(command=" ".join(C_BUILD)),
        "sample.jsonl": _SAMPLE.format(),
    }

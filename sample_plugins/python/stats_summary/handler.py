"""Statistics summary: how many requests of the batch succeeded and failed.

A result succeeded when it has a response with status_code 200 and no error. Output keys:
``total``, ``succeeded``, ``failed``, ``error_rate`` (failed / total, 4 decimals; 0.0 when empty).
The WASM samples under sample_plugins/wasm/ compute exactly the same.
"""

from typing import Any, Dict, List

from core.result_handlers.base import ResultHandler


def succeeded(result: Dict[str, Any]) -> bool:
    response = result.get("response") or {}
    return response.get("status_code") == 200 and not result.get("error")


class StatsSummaryHandler(ResultHandler):
    def name(self) -> str:
        return "stats_summary"

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        total = len(results)
        ok = sum(1 for r in results if succeeded(r))
        failed = total - ok
        summary = {
            "total": total,
            "succeeded": ok,
            "failed": failed,
            "error_rate": round(failed / total, 4) if total else 0.0,
        }
        self.logger.info("batch summarised", extra={"batch_id": batch_id, **summary})
        return summary

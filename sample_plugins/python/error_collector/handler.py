"""Error collector: lists every failed request, in both OpenAI and vLLM error shapes.

Config: ``max_error_rate`` (0..1, required): the handler fails when the batch's error rate passes it;
``max_listed`` (default 100): how many failures to list and log one by one (the rest are counted).
Output: ``errors`` (custom_id, status_code, code, message of the first ``max_listed`` failures),
``error_count`` and ``error_rate``.
"""

from typing import Any, Dict, List, Optional

from core.result_handlers.base import ResultHandler


def describe_error(result: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """None for a success, else a normalised description of the failure."""
    response = result.get("response") or {}
    status = response.get("status_code")
    error = result.get("error")
    body = response.get("body") or {}
    if status == 200 and not error:
        return None
    code, message = None, None
    if isinstance(error, str):  # vLLM: a plain string
        message = error
    elif isinstance(error, dict):
        inner = error.get("error") if isinstance(error.get("error"), dict) else error  # vLLM {"error": {...}}
        code, message = inner.get("code"), inner.get("message")
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):  # OpenAI: non-200 with an error body
        code, message = body["error"].get("code"), body["error"].get("message")
    return {
        "custom_id": result.get("custom_id"),
        "status_code": status,
        "code": code,
        "message": message or f"status {status}",
    }


class ErrorCollectorHandler(ResultHandler):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__(config)
        threshold = self.config.get("max_error_rate")
        if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ValueError("max_error_rate is required in config and must be between 0 and 1")
        self.max_error_rate = float(threshold)
        self.max_listed = int(self.config.get("max_listed", 100))

    def name(self) -> str:
        return "error_collector"

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        errors = [e for e in (describe_error(r) for r in results) if e is not None]
        rate = round(len(errors) / len(results), 4) if results else 0.0
        for error in errors[: self.max_listed]:
            self.logger.warning(
                f"request {error['custom_id']} failed: {error['message']}",
                extra={"batch_id": batch_id, "custom_id": error["custom_id"], "code": error["code"]},
            )
        if rate > self.max_error_rate:
            self.logger.error(
                f"error rate {rate:.2%} is above the threshold {self.max_error_rate:.2%}",
                extra={"batch_id": batch_id, "error_rate": rate},
            )
            return False
        if len(errors) > self.max_listed:
            self.logger.warning(f"{len(errors) - self.max_listed} more failed requests not listed")
        return {"errors": errors[: self.max_listed], "error_count": len(errors), "error_rate": rate}

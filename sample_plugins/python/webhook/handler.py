"""Webhook: POST one JSON document per batch (not per result) to a configured URL, with retries.

Config:
  url               (required) http(s) endpoint; its host:port must be in plugin.toml allowed_hosts
  token             (secret) sent as ``Authorization: Bearer <token>``
  headers           extra request headers, a table of strings
  include_results   send every result line (default true) or only the summary
  timeout_seconds   per attempt (default 10)
  max_attempts      attempts in all (default 4); retried on timeouts, connection errors, 429 and 5xx
  backoff_seconds   first wait between attempts, doubled each time (default 0.5), capped by max_backoff_seconds

The batch id is sent as ``Idempotency-Key``: the handler may run more than once per batch (at least once
delivery), and a receiver that keys on it stores the batch once.
"""

from typing import Any, Dict, List, Optional

from core.result_handlers.base import ResultHandler
from retrying_post import check_retry_config, check_url, post_json


def summarize(results: List[Dict[str, Any]]) -> Dict[str, int]:
    succeeded = sum(1 for r in results if not r.get("error") and (r.get("response") or {}).get("status_code") == 200)
    return {"total": len(results), "succeeded": succeeded, "failed": len(results) - succeeded}


class WebhookHandler(ResultHandler):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__(config)
        self.url = check_url(self.config.get("url"), "url")
        self.retry = check_retry_config(self.config)
        headers = self.config.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError("headers must be a table of strings")
        self.headers: Dict[str, str] = {str(k): v for k, v in headers.items()}
        token = self.config.get("token")
        if token is not None:
            if not isinstance(token, str) or not token:
                raise ValueError("token must be a non-empty string")
            self.headers["Authorization"] = f"Bearer {token}"
        self.include_results = bool(self.config.get("include_results", True))

    def name(self) -> str:
        return "webhook"

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        summary = summarize(results)
        document: Dict[str, Any] = {"batch_id": batch_id, "metadata": metadata, "summary": summary}
        if self.include_results:
            document["results"] = results
        headers = {**self.headers, "Idempotency-Key": batch_id}
        outcome = post_json(self.url, document, headers, self.retry, self.logger)
        context = {"batch_id": batch_id, "attempts": outcome.attempts, "status": outcome.status}
        if not outcome.ok:
            self.logger.error(f"webhook delivery failed: {outcome.error}", extra={**context, "error": outcome.error})
            return False
        self.logger.info("webhook delivered", extra={**context, **summary})
        return {"webhook_status": outcome.status, "webhook_attempts": outcome.attempts}

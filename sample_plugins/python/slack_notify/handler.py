"""Slack: one message per batch to an incoming webhook (``{"text", "blocks"}``), with retries.

Config:
  webhook_url         (required, secret) https://hooks.slack.com/services/...
  only_on_failure     post only when some result failed (default false)
  mention_on_failure  text prepended when some result failed, e.g. "<!here>" (default none)
  max_listed_errors   failed custom_ids listed in the message (default 5)
  timeout_seconds, max_attempts, backoff_seconds, max_backoff_seconds  as for the webhook plugin
"""

from typing import Any, Dict, List, Optional

from core.result_handlers.base import ResultHandler
from retrying_post import check_retry_config, check_url, post_json


def failed_ids(results: List[Dict[str, Any]]) -> List[str]:
    return [
        str(r.get("custom_id"))
        for r in results
        if r.get("error") or (r.get("response") or {}).get("status_code") != 200
    ]


class SlackNotifyHandler(ResultHandler):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__(config)
        self.webhook_url = check_url(self.config.get("webhook_url"), "webhook_url")
        self.retry = check_retry_config(self.config)
        self.only_on_failure = bool(self.config.get("only_on_failure", False))
        self.mention = self.config.get("mention_on_failure") or ""
        if not isinstance(self.mention, str):
            raise ValueError("mention_on_failure must be a string")
        self.max_listed = self.config.get("max_listed_errors", 5)
        if isinstance(self.max_listed, bool) or not isinstance(self.max_listed, int) or self.max_listed < 0:
            raise ValueError("max_listed_errors must be a non-negative integer")

    def name(self) -> str:
        return "slack_notify"

    def message(self, batch_id: str, results: List[Dict[str, Any]]) -> Dict[str, Any]:
        failed = failed_ids(results)
        ok = len(results) - len(failed)
        icon = ":white_check_mark:" if not failed else ":warning:"
        headline = f"{icon} Batch `{batch_id}`: {ok}/{len(results)} succeeded, {len(failed)} failed"
        if failed and self.mention:
            headline = f"{self.mention} {headline}"
        blocks: List[Dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": headline}}]
        if failed and self.max_listed:
            listed = ", ".join(f"`{cid}`" for cid in failed[: self.max_listed])
            more = f" and {len(failed) - self.max_listed} more" if len(failed) > self.max_listed else ""
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Failed: {listed}{more}"}]})
        return {"text": headline, "blocks": blocks}

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        if self.only_on_failure and not failed_ids(results):
            self.logger.info("no failures; nothing posted", extra={"batch_id": batch_id})
            return {"slack_posted": False}
        outcome = post_json(self.webhook_url, self.message(batch_id, results), {}, self.retry, self.logger)
        context = {"batch_id": batch_id, "attempts": outcome.attempts, "status": outcome.status}
        if not outcome.ok:
            self.logger.error(f"slack post failed: {outcome.error}", extra={**context, "error": outcome.error})
            return False
        self.logger.info("slack message posted", extra=context)
        return {"slack_posted": True, "slack_attempts": outcome.attempts}

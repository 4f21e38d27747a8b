"""Discord: one message per batch to a channel webhook (``{"content", "embeds"}``), with retries.

Config:
  webhook_url        (required, secret) https://discord.com/api/webhooks/<id>/<token>
  username           overrides the webhook's name (optional)
  only_on_failure    post only when some result failed (default false)
  max_listed_errors  failed custom_ids listed in the embed (default 5)
  timeout_seconds, max_attempts, backoff_seconds, max_backoff_seconds  as for the webhook plugin

Mentions are disabled (``allowed_mentions``): a custom_id such as "@everyone" pings nobody.
Discord's 429 carries Retry-After, which the retry loop honours.
"""

from typing import Any, Dict, List, Optional

from core.result_handlers.base import ResultHandler
from retrying_post import check_retry_config, check_url, post_json

_GREEN, _ORANGE = 0x2ECC71, 0xE67E22


def failed_ids(results: List[Dict[str, Any]]) -> List[str]:
    return [
        str(r.get("custom_id"))
        for r in results
        if r.get("error") or (r.get("response") or {}).get("status_code") != 200
    ]


class DiscordNotifyHandler(ResultHandler):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__(config)
        self.webhook_url = check_url(self.config.get("webhook_url"), "webhook_url")
        self.retry = check_retry_config(self.config)
        self.username = self.config.get("username")
        if self.username is not None and (not isinstance(self.username, str) or not 1 <= len(self.username) <= 80):
            raise ValueError("username must be a string of 1 to 80 characters")
        self.only_on_failure = bool(self.config.get("only_on_failure", False))
        self.max_listed = self.config.get("max_listed_errors", 5)
        if isinstance(self.max_listed, bool) or not isinstance(self.max_listed, int) or self.max_listed < 0:
            raise ValueError("max_listed_errors must be a non-negative integer")

    def name(self) -> str:
        return "discord_notify"

    def message(self, batch_id: str, results: List[Dict[str, Any]]) -> Dict[str, Any]:
        failed = failed_ids(results)
        ok = len(results) - len(failed)
        embed: Dict[str, Any] = {
            "title": f"Batch {batch_id}"[:256],
            "description": f"{ok}/{len(results)} succeeded, {len(failed)} failed",
            "color": _ORANGE if failed else _GREEN,
            "fields": [
                {"name": "Succeeded", "value": str(ok), "inline": True},
                {"name": "Failed", "value": str(len(failed)), "inline": True},
            ],
        }
        if failed and self.max_listed:
            listed = ", ".join(failed[: self.max_listed])
            more = f" and {len(failed) - self.max_listed} more" if len(failed) > self.max_listed else ""
            embed["fields"].append({"name": "Failed requests", "value": (listed + more)[:1024], "inline": False})
        document: Dict[str, Any] = {
            "content": f"Batch {batch_id} finished",
            "embeds": [embed],
            "allowed_mentions": {"parse": []},
        }
        if self.username:
            document["username"] = self.username
        return document

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        if self.only_on_failure and not failed_ids(results):
            self.logger.info("no failures; nothing posted", extra={"batch_id": batch_id})
            return {"discord_posted": False}
        outcome = post_json(self.webhook_url, self.message(batch_id, results), {}, self.retry, self.logger)
        context = {"batch_id": batch_id, "attempts": outcome.attempts, "status": outcome.status}
        if not outcome.ok:
            self.logger.error(f"discord post failed: {outcome.error}", extra={**context, "error": outcome.error})
            return False
        self.logger.info("discord message posted", extra=context)
        return {"discord_posted": True, "discord_attempts": outcome.attempts}

"""Redis cache: each result stored under a key built from its custom_id, with a TTL.

Idempotent: SET overwrites, so a second run of a batch rewrites the same keys (and resets the TTL).

Config:
  url                      (required, secret) redis://[:password@]host:port/db
  ttl_seconds              expiry of every key (default 86400)
  key_template             default "rh:result:{custom_id}"; may use {batch_id}; must use {custom_id}
  value                    "result" (the whole line as JSON, default) or "content" (the answer text)
  index                    also keep a set of the batch's custom_ids under "rh:batch:{batch_id}" (default true)
  socket_timeout_seconds   default 5

Needs redis-py (``requirements.txt``), vendored into ``vendor/`` by ``rh-host plugin pack``.
"""

import json
import os
import sys
from typing import Any, Dict, List, Optional

from core.result_handlers.base import ResultHandler


def _use_vendor() -> None:
    """Make ./vendor importable when the runner has not already (in-process tests, older runners)."""
    vendor = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
    if os.path.isdir(vendor) and vendor not in sys.path:
        sys.path.insert(1, vendor)


def answer_of(result: Dict[str, Any]) -> Optional[str]:
    choices = (((result.get("response") or {}).get("body")) or {}).get("choices") or []
    return (choices[0].get("message") or {}).get("content") if choices else None


class RedisCacheHandler(ResultHandler):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__(config)
        self.url = self.config.get("url")
        if not isinstance(self.url, str) or not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url is required in config (redis://host:port/db)")
        self.ttl = self.config.get("ttl_seconds", 86400)
        if isinstance(self.ttl, bool) or not isinstance(self.ttl, int) or self.ttl <= 0:
            raise ValueError("ttl_seconds must be a positive integer")
        self.key_template = self.config.get("key_template", "rh:result:{custom_id}")
        if not isinstance(self.key_template, str) or "{custom_id}" not in self.key_template:
            raise ValueError("key_template must be a string containing {custom_id}")
        try:
            self.key_template.format(custom_id="x", batch_id="y")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"key_template may use only {{custom_id}} and {{batch_id}}: {exc}") from None
        self.value = self.config.get("value", "result")
        if self.value not in ("result", "content"):
            raise ValueError("value must be 'result' or 'content'")
        self.index = bool(self.config.get("index", True))
        self.timeout = self.config.get("socket_timeout_seconds", 5)
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise ValueError("socket_timeout_seconds must be a positive number")

    def name(self) -> str:
        return "redis_cache"

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        _use_vendor()
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout)
        stored, skipped, ids = 0, 0, []
        try:
            pipe = client.pipeline(transaction=False)
            for result in results:
                custom_id = result.get("custom_id")
                value = json.dumps(result) if self.value == "result" else answer_of(result)
                if not custom_id or value is None:
                    skipped += 1
                    continue
                pipe.set(self.key_template.format(custom_id=custom_id, batch_id=batch_id), value, ex=self.ttl)
                ids.append(str(custom_id))
                stored += 1
            if self.index and ids:
                index_key = f"rh:batch:{batch_id}"
                pipe.sadd(index_key, *ids)
                pipe.expire(index_key, self.ttl)
            pipe.execute()
        finally:
            client.close()
        self.logger.info(
            "results cached", extra={"batch_id": batch_id, "stored": stored, "skipped": skipped, "ttl": self.ttl}
        )
        return {"redis_keys": stored, "redis_skipped": skipped}

"""Webhook, Slack and Discord plugins through the real sandbox against an HTTP receiver on loopback."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rh_sdk.protocol import RunStatus
from tests.integrations.helpers import RESULTS, RunPlugin, messages
from tests.integrations.servers import Receiver, http_receiver

FAST_RETRY = {"timeout_seconds": 2, "max_attempts": 3, "backoff_seconds": 0.05}


@pytest.fixture(scope="module")
def server() -> Iterator[Receiver]:
    with http_receiver() as receiver:
        yield receiver


@pytest.fixture
def receiver(server: Receiver) -> Receiver:
    server.reset()
    return server


def test_webhook_posts_one_request_per_batch_and_a_rerun_is_deduplicated(run_plugin: RunPlugin, receiver: Receiver):
    config = {"url": f"{receiver.url}/hook", "token": "s3cret", "headers": {"X-Tenant": "acme"}, **FAST_RETRY}
    first = run_plugin("webhook", config, RESULTS)
    second = run_plugin("webhook", config, RESULTS)
    assert first.status is RunStatus.OK, first.error
    assert second.status is RunStatus.OK
    assert first.output == {"webhook_status": 200, "webhook_attempts": 1}
    assert len(receiver.requests) == 2  # one request per batch, per run
    headers = receiver.requests[0]["headers"]
    assert headers["Authorization"] == "Bearer s3cret" and headers["X-Tenant"] == "acme"
    assert headers["Idempotency-Key"] == "batch_1" == receiver.requests[1]["headers"]["Idempotency-Key"]
    assert list(receiver.stored) == ["batch_1"]  # the receiver keyed on it: stored once
    document = receiver.stored["batch_1"]
    assert document["summary"] == {"total": 4, "succeeded": 2, "failed": 2}
    assert [r["custom_id"] for r in document["results"]] == ["req-1", "req-2", "req-3", "req-4"]
    assert "s3cret" not in messages(first)


def test_webhook_through_a_named_grant_is_logged_in_the_outcome(run_plugin: RunPlugin, receiver: Receiver):
    url = f"http://localhost:{receiver.port}/hook"  # resolved by the host's resolver, never inside the sandbox
    run = run_plugin("webhook", {"url": url, **FAST_RETRY}, RESULTS, grants=[f"localhost:{receiver.port}"])
    assert run.status is RunStatus.OK, (run.error, messages(run))
    assert len(receiver.requests) == 1
    assert run.egress is not None and len(run.egress) == 1
    assert run.egress[0]["grant"] == f"localhost:{receiver.port}" and run.egress[0]["outcome"] == "ok"
    assert run.egress[0]["address"] == "127.0.0.1" and run.egress[0]["bytes_sent"] > 1000


def test_webhook_without_a_grant_reaches_nothing(run_plugin: RunPlugin, receiver: Receiver):
    run = run_plugin("webhook", {"url": f"{receiver.url}/hook", **FAST_RETRY}, RESULTS, grants=[])
    assert run.status is RunStatus.FAILED
    assert "Address family not supported" in messages(run)  # no IPv4 socket without a grant
    assert receiver.requests == [] and run.egress is None


def test_webhook_granted_another_host_port_reaches_nothing(run_plugin: RunPlugin, receiver: Receiver):
    config = {"url": f"http://localhost:{receiver.port}/hook", **FAST_RETRY}
    run = run_plugin("webhook", config, RESULTS, grants=[f"localhost:{receiver.port + 1}"])
    assert run.status is RunStatus.FAILED
    assert "webhook delivery failed" in messages(run)
    assert receiver.requests == [] and run.egress == []  # nothing reached the host's broker


def test_webhook_grant_beyond_the_operators_allow_list_is_refused(run_plugin: RunPlugin, receiver: Receiver):
    config = {"url": "https://hooks.example.com/hook", **FAST_RETRY}
    run = run_plugin("webhook", config, RESULTS, grants=["hooks.example.com:443"])
    assert run.status is RunStatus.FAILED
    assert run.error == "network grant refused: not permitted by the operator's allow-list: hooks.example.com:443"
    assert run.logs == []  # refused before any plugin code ran


def test_webhook_retries_5xx_then_succeeds(run_plugin: RunPlugin, receiver: Receiver):
    receiver.reset(500, 503)
    run = run_plugin("webhook", {"url": f"{receiver.url}/hook", **FAST_RETRY}, RESULTS)
    assert run.status is RunStatus.OK, run.error
    assert run.output["webhook_attempts"] == 3
    assert len(receiver.requests) == 3
    log = messages(run)
    assert "attempt 1 failed (HTTP 500)" in log and "attempt 2 failed (HTTP 503)" in log


def test_webhook_timeout_is_reported(run_plugin: RunPlugin, receiver: Receiver):
    receiver.reset(("slow", 3), ("slow", 3))
    config = {"url": f"{receiver.url}/hook", "timeout_seconds": 0.5, "max_attempts": 2, "backoff_seconds": 0.05}
    run = run_plugin("webhook", config, RESULTS)
    assert run.status is RunStatus.FAILED
    assert "webhook delivery failed: timed out after 0.5 s" in messages(run)
    assert len(receiver.requests) == 2
    assert not receiver.stored


def test_webhook_gives_up_after_max_attempts_and_does_not_retry_4xx(run_plugin: RunPlugin, receiver: Receiver):
    receiver.reset(500, 500, 500)
    run = run_plugin("webhook", {"url": f"{receiver.url}/hook", **FAST_RETRY}, RESULTS)
    assert run.status is RunStatus.FAILED and "HTTP 500" in messages(run)
    receiver.reset(404)
    run = run_plugin("webhook", {"url": f"{receiver.url}/hook", **FAST_RETRY}, RESULTS)
    assert run.status is RunStatus.FAILED and len(receiver.requests) == 1


def test_webhook_bad_config_names_the_key(run_plugin: RunPlugin):
    run = run_plugin("webhook", {"url": "ftp://example.com", "max_attempts": 2}, RESULTS)
    assert run.status is RunStatus.FAILED
    assert "url is required in config" in (run.error or "")
    run = run_plugin("webhook", {"url": "http://127.0.0.1:9/", "max_attempts": 0}, RESULTS)
    assert "max_attempts must be" in (run.error or "")


def test_slack_message_format(run_plugin: RunPlugin, receiver: Receiver):
    receiver.reset(500)
    config = {"webhook_url": f"{receiver.url}/services/T/B/X", "mention_on_failure": "<!here>", **FAST_RETRY}
    run = run_plugin("slack_notify", config, RESULTS)
    assert run.status is RunStatus.OK, run.error
    assert run.output == {"slack_posted": True, "slack_attempts": 2}
    message = receiver.stored["/services/T/B/X"]
    assert message["text"] == "<!here> :warning: Batch `batch_1`: 2/4 succeeded, 2 failed"
    assert message["blocks"][0] == {"type": "section", "text": {"type": "mrkdwn", "text": message["text"]}}
    assert message["blocks"][1]["elements"][0]["text"] == "Failed: `req-3`, `req-4`"


def test_slack_only_on_failure_skips_a_clean_batch(run_plugin: RunPlugin, receiver: Receiver):
    config = {"webhook_url": f"{receiver.url}/s", "only_on_failure": True, **FAST_RETRY}
    run = run_plugin("slack_notify", config, RESULTS[:2])
    assert run.status is RunStatus.OK and run.output == {"slack_posted": False}
    assert receiver.requests == []


def test_discord_embed_and_retry_after(run_plugin: RunPlugin, receiver: Receiver):
    receiver.reset(429)
    config = {"webhook_url": f"{receiver.url}/api/webhooks/1/tok", "username": "rh-host", **FAST_RETRY}
    run = run_plugin("discord_notify", config, RESULTS)
    assert run.status is RunStatus.OK, run.error
    assert run.output == {"discord_posted": True, "discord_attempts": 2}
    message = receiver.stored["/api/webhooks/1/tok"]
    assert message["username"] == "rh-host" and message["allowed_mentions"] == {"parse": []}
    embed = message["embeds"][0]
    assert embed["title"] == "Batch batch_1" and embed["description"] == "2/4 succeeded, 2 failed"
    assert {"name": "Failed requests", "value": "req-3, req-4", "inline": False} in embed["fields"]


def test_http_plugins_share_one_retry_module(repo_root: Path):
    copies = [(repo_root / "sample_plugins/python" / p / "retrying_post.py").read_bytes()
              for p in ("webhook", "slack_notify", "discord_notify")]  # fmt: skip
    assert copies[0] == copies[1] == copies[2]


def test_webhook_in_process_with_run_handler(receiver: Receiver, repo_root: Path, monkeypatch: pytest.MonkeyPatch):
    """The same plugin through rh_sdk.testing.run_handler (no sandbox), as an author's unit test would."""
    monkeypatch.syspath_prepend(str(repo_root / "sample_plugins/python/webhook"))
    from rh_sdk.runner import install_seed_alias
    from rh_sdk.testing import run_handler

    install_seed_alias()  # the guide's `core.result_handlers.base`, as run_handler itself installs it
    for name in ("handler", "retrying_post"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    handler = importlib.import_module("handler")
    receiver.reset(502)
    try:
        reply, logs = run_handler(handler.WebhookHandler, {"url": f"{receiver.url}/x", **FAST_RETRY}, RESULTS)
    finally:
        for name in ("handler", "retrying_post"):
            sys.modules.pop(name, None)
    assert reply.ok and reply.output == {"webhook_status": 200, "webhook_attempts": 2}
    assert any(r.extra.get("attempt") == 1 for r in logs)
    assert json.loads(receiver.requests[-1]["body"])["batch_id"] == "test_batch"

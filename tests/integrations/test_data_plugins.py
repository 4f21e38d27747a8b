"""PostgreSQL, Redis, S3 and SMTP plugins through the real sandbox, against real servers on loopback.

Their third-party packages (psycopg, redis-py, boto3) are vendored from the index into temp copies of the
plugins at session start, exactly as ``rh-host plugin pack`` should; nothing vendored is committed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from rh_sdk.protocol import RunStatus
from tests.integrations.helpers import RESULTS, RunPlugin, messages
from tests.integrations.servers import (
    MailSink,
    RedisServer,
    postgres_bin,
    postgres_server,
    redis_server,
    s3_server,
    smtp_server,
)

# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    if postgres_bin() is None or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) or runuser not installed")
    with postgres_server("pg-pass") as dsn:
        yield dsn


def _rows(dsn: str, query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def test_postgres_sync_upserts_and_a_rerun_adds_no_rows(run_plugin: RunPlugin, pg_dsn: str):
    config = {"dsn": pg_dsn, "table": "results_default"}
    first = run_plugin("postgres_sync", config, RESULTS)
    assert first.status is RunStatus.OK, (first.error, messages(first))
    assert first.output == {"postgres_rows": 4, "postgres_table": "results_default"}
    second = run_plugin("postgres_sync", config, RESULTS)
    assert second.status is RunStatus.OK, second.error
    rows = _rows(pg_dsn, "SELECT batch_id, custom_id, status_code, content, error FROM results_default ORDER BY 2")
    assert len(rows) == 4
    assert rows[0] == ("batch_1", "req-1", 200, "first answer", None)
    assert rows[2][2:] == (None, None, {"code": "server_error", "message": "the model overloaded"})
    assert rows[3][2:] == (400, None, "prompt too long")
    assert "pg-pass" not in messages(first)


def test_postgres_sync_custom_mapping_updates_in_place(run_plugin: RunPlugin, pg_dsn: str):
    config = {
        "dsn": pg_dsn,
        "table": "public.answers",
        "columns": {"request": "custom_id", "answer": "response.body.choices.0.message.content",
                    "project": "$metadata.project"},
        "key_columns": ["request"],
    }  # fmt: skip
    assert run_plugin("postgres_sync", config, RESULTS[:2]).status is RunStatus.OK
    changed = json.loads(json.dumps(RESULTS[:1]))
    changed[0]["response"]["body"]["choices"][0]["message"]["content"] = "revised answer"
    run = run_plugin("postgres_sync", config, changed, batch_id="batch_2")
    assert run.status is RunStatus.OK, run.error
    rows = _rows(pg_dsn, "SELECT request, answer, project FROM answers ORDER BY 1")
    assert rows == [("req-1", "revised answer", "integ"), ("req-2", "second answer", "integ")]


def test_postgres_sync_bad_config_and_unreachable_db(run_plugin: RunPlugin, pg_dsn: str):
    run = run_plugin("postgres_sync", {"dsn": pg_dsn, "table": "Robert'); DROP TABLE x;--"}, RESULTS)
    assert run.status is RunStatus.FAILED and "table must be a lowercase identifier" in (run.error or "")
    run = run_plugin("postgres_sync", {"dsn": pg_dsn, "column_types": {"status_code": "money"}}, RESULTS)
    assert "column_types.status_code" in (run.error or "")
    run = run_plugin(
        "postgres_sync", {"dsn": "postgresql://rh:x@127.0.0.1:9/db", "connect_timeout_seconds": 2}, RESULTS
    )
    assert run.status is RunStatus.FAILED and "OperationalError" in (run.error or "")


# --- Redis ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli not installed (Debian package redis-server)")
    with redis_server("redis-pass") as server:
        yield server


def test_redis_cache_stores_results_with_ttl_and_a_rerun_rewrites(run_plugin: RunPlugin, redis: RedisServer):
    config = {"url": redis.url, "ttl_seconds": 600}
    first = run_plugin("redis_cache", config, RESULTS)
    assert first.status is RunStatus.OK, (first.error, messages(first))
    assert first.output == {"redis_keys": 4, "redis_skipped": 0}
    assert run_plugin("redis_cache", config, RESULTS).status is RunStatus.OK
    keys = sorted(redis.cli("--raw", "KEYS", "rh:*").splitlines())
    assert keys == ["rh:batch:batch_1", *(f"rh:result:req-{i}" for i in range(1, 5))]
    assert json.loads(redis.cli("--raw", "GET", "rh:result:req-1")) == RESULTS[0]
    assert 590 <= int(redis.cli("TTL", "rh:result:req-2")) <= 600
    assert sorted(redis.cli("--raw", "SMEMBERS", "rh:batch:batch_1").splitlines()) == [f"req-{i}" for i in range(1, 5)]
    assert "redis-pass" not in messages(first)


def test_redis_cache_content_values_and_wrong_password(run_plugin: RunPlugin, redis: RedisServer):
    config = {"url": redis.url, "value": "content", "key_template": "answers:{batch_id}:{custom_id}", "index": False}
    run = run_plugin("redis_cache", config, RESULTS, batch_id="b7")
    assert run.status is RunStatus.OK and run.output == {"redis_keys": 2, "redis_skipped": 2}
    assert redis.cli("--raw", "GET", "answers:b7:req-2") == "second answer"
    bad = run_plugin("redis_cache", {"url": f"redis://:nope@127.0.0.1:{redis.port}/0"}, RESULTS)
    assert bad.status is RunStatus.FAILED and "AuthenticationError" in (bad.error or "")
    invalid = run_plugin("redis_cache", {"url": redis.url, "ttl_seconds": 0}, RESULTS)
    assert "ttl_seconds must be a positive integer" in (invalid.error or "")


# --- S3 (moto server) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("moto.server", reason="moto[server] not installed (test extra)")
    with s3_server() as endpoint:
        yield endpoint


def _s3(endpoint: str):
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="x"
    )


def test_s3_upload_puts_one_object_and_a_rerun_overwrites_it(run_plugin: RunPlugin, s3_endpoint: str):
    client = _s3(s3_endpoint)
    client.create_bucket(Bucket="results")
    config = {"bucket": "results", "endpoint_url": s3_endpoint, "access_key_id": "AKIDTEST",
              "secret_access_key": "s3-secret"}  # fmt: skip
    first = run_plugin("s3_upload", config, RESULTS)
    assert first.status is RunStatus.OK, (first.error, messages(first))
    assert first.output["s3_key"] == "batches/batch_1/results.jsonl"
    second = run_plugin("s3_upload", config, RESULTS)
    assert second.output == first.output
    listing = client.list_objects_v2(Bucket="results")
    assert [o["Key"] for o in listing["Contents"]] == ["batches/batch_1/results.jsonl"]
    obj = client.get_object(Bucket="results", Key="batches/batch_1/results.jsonl")
    lines = obj["Body"].read().decode().splitlines()
    assert [json.loads(line)["custom_id"] for line in lines] == ["req-1", "req-2", "req-3", "req-4"]
    assert obj["Metadata"]["batch-id"] == "batch_1" and obj["Metadata"]["sha256"] == first.output["s3_sha256"]
    assert "s3-secret" not in messages(first)


def test_s3_upload_missing_bucket_fails_clearly(run_plugin: RunPlugin, s3_endpoint: str):
    config = {"bucket": "no-such-bucket", "endpoint_url": s3_endpoint, "access_key_id": "a", "secret_access_key": "b"}
    run = run_plugin("s3_upload", config, RESULTS)
    assert run.status is RunStatus.FAILED and "NoSuchBucket" in (run.error or "")
    run = run_plugin("s3_upload", {"bucket": "x", "access_key_id": "a"}, RESULTS)
    assert "access_key_id and secret_access_key must be given together" in (run.error or "")


# --- SMTP (aiosmtpd) -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mail() -> Iterator[MailSink]:
    pytest.importorskip("aiosmtpd", reason="aiosmtpd not installed (test extra)")
    with smtp_server("mailer", "mail-pass") as sink:
        yield sink


def test_email_summary_is_delivered_with_a_stable_message_id(run_plugin: RunPlugin, mail: MailSink):
    mail.messages.clear()
    config = {"smtp_host": "127.0.0.1", "smtp_port": mail.port, "security": "none", "username": "mailer",
              "password": "mail-pass", "from_addr": "rh@example.com",
              "to_addrs": ["ops@example.com", "b@example.com"]}  # fmt: skip
    first = run_plugin("email_summary", config, RESULTS)
    assert first.status is RunStatus.OK, (first.error, messages(first))
    second = run_plugin("email_summary", config, RESULTS)
    assert second.status is RunStatus.OK
    assert len(mail.messages) == 2 and mail.logins == ["mailer", "mailer"]
    message = mail.messages[0]
    assert message["Subject"] == "Batch batch_1: 2/4 succeeded"
    assert message["X-Envelope-To"] == "ops@example.com, b@example.com"
    body = message.get_payload(decode=True).decode()
    assert "- req-3: the model overloaded" in body and "- req-4: prompt too long" in body
    # mail cannot be unsent: the rerun repeats the Message-ID, which receivers collapse
    assert message["Message-ID"] == mail.messages[1]["Message-ID"] == first.output["email_message_id"]
    assert "mail-pass" not in messages(first)


def test_email_summary_refused_login_and_config_errors(run_plugin: RunPlugin, mail: MailSink):
    config = {"smtp_host": "127.0.0.1", "smtp_port": mail.port, "security": "none", "username": "mailer",
              "password": "wrong", "from_addr": "rh@example.com", "to_addrs": ["ops@example.com"]}  # fmt: skip
    run = run_plugin("email_summary", config, RESULTS)
    assert run.status is RunStatus.FAILED and "sending the summary failed" in messages(run)
    run = run_plugin("email_summary", {**config, "to_addrs": []}, RESULTS)
    assert "to_addrs is required" in (run.error or "")

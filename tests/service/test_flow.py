"""The whole flow through a real server: tenant, upload, config, submit, outcome, runs, logs, usage."""

from __future__ import annotations

import msgspec
from rh_testserver import OPENAI, OPERATOR_TOKEN, SAMPLE_PLUGINS, TEST_PLUGINS, VLLM, Server, client, outcome, upload

SECRET = "sk-live-very-secret-value-123"


def test_whole_flow(server: Server) -> None:
    with server.tenant("flow") as api:
        for directory in SAMPLE_PLUGINS:
            assert upload(api, directory).status_code == 201
        assert upload(api, TEST_PLUGINS / "secret_echo").status_code == 201
        config = api.put("/v1/plugins/secret_echo/config", json={"config": {"api_key": SECRET, "endpoint": "e1"}})
        assert config.status_code == 200, config.text
        assert config.json()["secrets"] == {"api_key": "********"}
        assert config.json()["config"] == {"endpoint": "e1"}  # the declared secret was moved out of config
        assert SECRET not in api.get("/v1/plugins/secret_echo/config").text

        accepted = api.post(
            "/v1/batches/b-1", content=OPENAI.read_bytes(), params={"metadata": '{"model": "gpt-4o-mini"}'}
        )
        assert accepted.status_code == 202, accepted.text
        assert accepted.json() == {"batch_id": "b-1", "status": "queued", "result_count": 8, "duplicate": False}

        result = outcome(api, "b-1")
        assert result["success"] is True
        assert [h["name"] for h in result["handlers"]] == [
            "secret_echo", "stats_summary", "error_collector", "jsonl_exporter"
        ]  # fmt: skip
        assert result["output"]["total"] == 8 and result["output"]["failed"] == 2
        assert result["output"]["secret_echo.key_length"] == len(SECRET)  # the handler got the secret...
        assert result["output"]["secret_echo.metadata"] == {"model": "gpt-4o-mini"}
        assert SECRET not in msgspec.json.encode(result).decode()  # ...and nothing shows it

        status = api.get("/v1/batches/b-1").json()
        assert status["status"] == "done" and status["success"] is True and status["attempts"] == 1

        runs = api.get("/v1/batches/b-1/runs").json()
        assert sorted(r["plugin"] for r in runs) == sorted(h["name"] for h in result["handlers"])
        assert all(r["status"] == "ok" and r["usage"]["wall_ms"] > 0 for r in runs)
        detail = api.get("/v1/batches/b-1/runs/secret_echo").json()
        assert any("[redacted]" in record["message"] for record in detail["logs"])
        assert SECRET not in api.get("/v1/batches/b-1/runs/secret_echo").text
        assert api.get("/v1/batches", params={"status": "done"}).json()[0]["batch_id"] == "b-1"
    assert SECRET not in server.log()


def test_msgpack_intake_and_idempotent_repost(server: Server) -> None:
    from rh_host.batchfile import parse_jsonl

    with server.tenant("msgpack") as api:
        upload(api, SAMPLE_PLUGINS[0])
        lines = parse_jsonl(VLLM.read_bytes().splitlines(), "vllm")
        body = msgspec.msgpack.encode(lines)
        headers = {"Content-Type": "application/msgpack"}
        first = api.post("/v1/batches/v1", content=body, headers=headers)
        assert first.status_code == 202 and first.json()["duplicate"] is False
        again = api.post("/v1/batches/v1", content=body, headers=headers)
        assert again.status_code == 202 and again.json()["duplicate"] is True
        # the same results as JSONL are the same batch
        assert api.post("/v1/batches/v1", content=VLLM.read_bytes()).json()["duplicate"] is True
        assert outcome(api, "v1")["output"]["total"] == 7
        other = api.post("/v1/batches/v1", content=OPENAI.read_bytes())
        assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
        assert len(api.get("/v1/batches/v1/runs").json()) == 1  # the duplicates ran nothing


def test_versions_activate_disable_rollback_delete(server: Server) -> None:
    slow = TEST_PLUGINS / "slow_step"
    with server.tenant("versions") as api:
        assert upload(api, slow).json()["active_seq"] == 1
        again = upload(api, slow)
        assert again.status_code == 200 and again.json()["active_seq"] == 1  # same archive: same version
        from rh_testserver import pack

        v2 = pack(slow, replace={"plugin.toml": (slow / "plugin.toml").read_bytes().replace(b"1.0.0", b"2.0.0")})
        second = api.post("/v1/plugins", content=v2)
        assert second.status_code == 201 and second.json()["active_seq"] == 2
        assert second.json()["active"]["version"] == "2.0.0"
        assert [v["seq"] for v in second.json()["versions"]] == [1, 2]

        rolled = api.post("/v1/plugins/slow_step/rollback").json()
        assert rolled["active_seq"] == 1 and rolled["active"]["version"] == "1.0.0"
        no_older = api.post("/v1/plugins/slow_step/rollback")
        assert no_older.status_code == 409 and no_older.json()["error"]["code"] == "conflict"
        assert api.post("/v1/plugins/slow_step/activate", params={"version": 2}).json()["active_seq"] == 2
        assert api.post("/v1/plugins/slow_step/activate", params={"version": 9}).status_code == 404

        assert api.post("/v1/plugins/slow_step/disable").json()["enabled"] is False
        api.post("/v1/batches/while-disabled", content=OPENAI.read_bytes())
        assert outcome(api, "while-disabled")["handlers"] == []
        assert api.post("/v1/plugins/slow_step/activate").json()["enabled"] is True
        api.post("/v1/batches/enabled-again", content=OPENAI.read_bytes())
        handlers = outcome(api, "enabled-again")["handlers"]
        assert [(h["name"], h["version"]) for h in handlers] == [("slow_step", "2.0.0")]

        assert api.delete("/v1/plugins/slow_step").status_code == 204
        assert api.get("/v1/plugins/slow_step").status_code == 404
        assert api.get("/v1/plugins").json() == []


def test_limits_are_clamped_and_shown(server: Server) -> None:
    quotas = {"cpu_seconds": 2, "memory_mb": 128, "wall_seconds": 5, "max_plugins": 1}
    with server.tenant("small", quotas) as api:
        view = upload(api, TEST_PLUGINS / "greedy").json()
        limits = view["active"]["limits"]
        assert limits["requested"]["cpu_seconds"] == 120 and limits["effective"]["cpu_seconds"] == 2
        assert limits["effective"]["memory_mb"] == 128 and limits["effective"]["wall_seconds"] == 5
        assert limits["clamped"] == ["cpu_seconds", "memory_mb", "wall_seconds"]
        over = upload(api, TEST_PLUGINS / "slow_step")
        assert over.status_code == 429 and over.json()["error"]["code"] == "quota_exceeded"
        api.post("/v1/batches/clamped", content=OPENAI.read_bytes())
        assert outcome(api, "clamped")["success"] is True


def test_malformed_jsonl_names_the_line(server: Server) -> None:
    with server.tenant("malformed") as api:
        body = OPENAI.read_bytes().splitlines()
        body.insert(2, b'{"custom_id": "x", "response": {"status_code": "two hundred"}}')
        response = api.post("/v1/batches/bad", content=b"\n".join(body))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_batch"
        assert response.json()["error"]["message"].startswith("body:3:")
        not_json = api.post("/v1/batches/bad", content=b'{"id": "ok"}\n{nope\n')
        assert not_json.status_code == 400 and "body:2:" in not_json.json()["error"]["message"]
        assert api.get("/v1/batches/bad").status_code == 404  # nothing was stored
        meta = api.post("/v1/batches/bad", content=OPENAI.read_bytes(), params={"metadata": "[1]"})
        assert meta.status_code == 400 and "metadata" in meta.json()["error"]["message"]
        bad_id = api.post("/v1/batches/..%2Fx", content=OPENAI.read_bytes())
        assert bad_id.status_code in (400, 404) and "error" in bad_id.json()


def test_oversize_bodies_get_413(server: Server) -> None:
    with server.tenant("oversize", {"max_batch_mb": 1, "max_results": 5}) as api:
        line = OPENAI.read_bytes().splitlines()[0]
        big = b"\n".join([line] * (1024 * 1024 // len(line) + 10))
        response = api.post("/v1/batches/big", content=big)
        assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
        many = api.post("/v1/batches/many", content=OPENAI.read_bytes())  # 8 lines, quota 5
        assert many.status_code == 413 and "8 results" in many.json()["error"]["message"]
        huge = api.post("/v1/batches/huge", content=b"x" * (65 * 1024 * 1024))  # over the server's hard cap
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"


def test_health_metrics_and_openapi(server: Server) -> None:
    with client(server.url, None) as anonymous:
        health = anonymous.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok", "database": "ok"}  # no counts
        tenant_key = anonymous.get("/healthz", headers={"Authorization": "Bearer rhk_not-the-operator"})
        assert tenant_key.status_code == 200 and "batches" not in tenant_key.json()
        schema = anonymous.get("/schema/openapi.json")
        assert schema.status_code == 200 and "/v1/batches/{batch_id}" in schema.json()["paths"]
        assert anonymous.get("/metrics").status_code == 401
        missing = anonymous.get("/no/such/route")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    with client(server.url, OPERATOR_TOKEN) as op:
        text = op.get("/metrics").text
        assert set(op.get("/healthz").json()["batches"]) == {"queued", "running", "done"}
    for name in (
        "rh_batches_accepted_total",
        "rh_runs_total",
        "rh_run_duration_seconds",
        'rh_batches{status="queued"}',
    ):
        assert name in text


def test_concurrent_posts_of_one_batch_store_it_once(server: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _, key = server.create_tenant("racer")
    body = OPENAI.read_bytes()

    def post(_: int) -> tuple[int, bool]:
        with client(server.url, key) as api:
            response = api.post("/v1/batches/raced", content=body)
            return response.status_code, response.json()["duplicate"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert all(status == 202 for status, _ in answers)
    assert sorted(duplicate for _, duplicate in answers) == [False] + [True] * 7
    with client(server.url, key) as api:
        assert len(api.get("/v1/batches").json()) == 1

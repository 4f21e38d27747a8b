"""Crash and fairness: SIGKILL mid-batch loses nothing and leaves exactly one outcome per batch;
a tenant with 100 batches queued does not starve another tenant's single batch."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from rh_testserver import (
    OPENAI,
    SAMPLE_PLUGINS,
    TEST_PLUGINS,
    Server,
    cleanup,
    client,
    outcome,
    public_tempdir,
    upload,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def root() -> Iterator[Path]:
    path = public_tempdir("rh-durability-")
    yield path
    cleanup(path)


def _db_count(data_dir: Path, sql: str, *args: object) -> int:
    with sqlite3.connect(data_dir / "rh-host.db") as db:
        return db.execute(sql, args).fetchone()[0]


def test_sigkill_mid_batch_then_restart_resumes_with_one_outcome(root: Path) -> None:
    server = Server(root / "data").start()
    try:
        _tenant_id, key = server.create_tenant("crashy")  # two of its batches run at once
        api = client(server.url, key)
        assert upload(api, SAMPLE_PLUGINS[0]).status_code == 201  # stats_summary, priority 10
        assert upload(api, TEST_PLUGINS / "slow_step").status_code == 201  # priority 50
        api.put("/v1/plugins/slow_step/config", json={"config": {"sleep_seconds": 3}})
        ids = [f"crash-{i}" for i in range(4)]
        for batch_id in ids:
            assert api.post(f"/v1/batches/{batch_id}", content=OPENAI.read_bytes()).status_code == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until stats_summary ended and slow_step is sleeping
            runs = api.get("/v1/batches/crash-0/runs").json()
            if [r["plugin"] for r in runs] == ["stats_summary"]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"crash-0 never got half-way: {runs}\n{server.log()}")
        time.sleep(0.5)
        assert api.get("/v1/batches/crash-0").json()["status"] == "running"
        api.close()
        server.kill()

        assert _db_count(server.data_dir, "select count(*) from outcomes") == 0
        server.start()
        with client(server.url, key) as api:
            for batch_id in ids:
                result = outcome(api, batch_id, timeout=120)
                assert result["success"] is True, (msgspec.json.encode(result).decode()[:3000], server.log())
                assert [h["name"] for h in result["handlers"]] == ["stats_summary", "slow_step"]
                assert result["output"]["slow_step.done"] is True
            first = api.get("/v1/batches/crash-0").json()
            assert first["status"] == "done" and first["attempts"] == 2
            runs = api.get("/v1/batches/crash-0/runs").json()
            # stats_summary's run was stored before the crash and replayed, not run again
            assert sorted(r["plugin"] for r in runs) == ["slow_step", "stats_summary"]
            # posting again after the crash changes nothing
            assert api.post("/v1/batches/crash-0", content=OPENAI.read_bytes()).json()["duplicate"] is True
    finally:
        server.stop()
    batches = _db_count(server.data_dir, "select count(*) from batches")
    assert batches == len(ids)
    assert _db_count(server.data_dir, "select count(*) from outcomes") == len(ids)
    assert _db_count(server.data_dir, "select count(distinct batch_pk) from outcomes") == len(ids)
    assert _db_count(server.data_dir, "select count(*) from runs where plugin = ?", "stats_summary") == len(ids)


def test_single_batch_of_one_tenant_is_not_starved_by_another_tenants_hundred(root: Path) -> None:
    server = Server(root / "data", workers=2).start()
    try:
        busy = server.tenant("busy")
        quiet = server.tenant("quiet")
        for api in (busy, quiet):
            assert upload(api, TEST_PLUGINS / "slow_step").status_code == 201
        busy.put("/v1/plugins/slow_step/config", json={"config": {"sleep_seconds": 0.1}})
        body = OPENAI.read_bytes()
        for i in range(100):
            assert busy.post(f"/v1/batches/busy-{i:03d}", content=body).status_code == 202
        busy_done_before = len(busy.get("/v1/batches", params={"status": "done", "limit": 500}).json())
        assert busy_done_before < 80, "the busy tenant finished too fast for this test to mean anything"
        assert quiet.post("/v1/batches/lonely", content=body).status_code == 202
        lonely = outcome(quiet, "lonely", timeout=120)
        assert lonely["success"] is True
        finished = quiet.get("/v1/batches/lonely").json()["finished_at"]
        views = busy.get("/v1/batches", params={"limit": 500}).json()
        overtaken_by = sum(1 for v in views if v["finished_at"] is not None and v["finished_at"] < finished)
        # FIFO would make it wait for every queued busy batch; fair scheduling lets at most a few go first
        assert overtaken_by <= busy_done_before + 6, (busy_done_before, overtaken_by)
        assert overtaken_by < 100
        busy.close()
        quiet.close()
    finally:
        server.stop()


def test_sigterm_mid_run_leaves_the_batch_for_the_next_start(root: Path) -> None:
    server = Server(root / "data").start()
    try:
        _, key = server.create_tenant("graceful")
        with client(server.url, key) as api:
            assert upload(api, TEST_PLUGINS / "slow_step").status_code == 201
            api.put("/v1/plugins/slow_step/config", json={"config": {"sleep_seconds": 8}})
            assert api.post("/v1/batches/long", content=OPENAI.read_bytes()).status_code == 202
            deadline = time.monotonic() + 30
            while api.get("/v1/batches/long").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        time.sleep(0.5)
        server.stop()  # SIGTERM: the pool waits 5 s, then abandons the run unrecorded
        assert _db_count(server.data_dir, "select count(*) from runs") == 0
        assert _db_count(server.data_dir, "select count(*) from outcomes") == 0
        server.start()
        with client(server.url, key) as api:
            result = outcome(api, "long", timeout=120)
            assert result["success"] is True, result
            assert api.get("/v1/batches/long").json()["attempts"] == 2
    finally:
        server.stop()
    assert _db_count(server.data_dir, "select count(*) from runs") == 1

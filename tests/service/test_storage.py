"""Disk and per-run bounds through the real service: refused uploads leave nothing on disk, stored
batches and versions are capped per tenant, unreferenced artifacts are collected, finished batches
are purged after the retention period, and every limit a manifest asks for is clamped and shown so.
Each bound is asserted beside a tenant that must be unaffected."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from rh_testserver import OPENAI, SAMPLE_PLUGINS, TEST_PLUGINS, Server, cleanup, outcome, pack, public_tempdir

SLOW_STEP = TEST_PLUGINS / "slow_step"
MOON = TEST_PLUGINS / "asks_the_moon"


def artifacts(server: Server) -> set[str]:
    return {p.name for p in (server.data_dir / "artifacts").glob("??/*") if p.is_dir()}


def staging(server: Server) -> list[Path]:
    return list((server.data_dir / "artifacts" / ".staging").iterdir())


def unique(directory: Path, tag: str) -> bytes:
    """The plugin with one extra file: files (and so the artifact) no other test shares."""
    return pack(directory, extra={"tag.txt": tag.encode()})


def assert_quota(response: httpx.Response, status: int, quota: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded" and f"quota {quota}" in error["message"], error


def test_uploads_refused_by_a_quota_leave_nothing_on_disk(server: Server) -> None:
    small = server.tenant("one-plugin", {"max_plugins": 1})
    other = server.tenant("roomy")
    assert small.post("/v1/plugins", content=unique(SLOW_STEP, "kept")).status_code == 201
    before = artifacts(server)
    for index, directory in enumerate([*SAMPLE_PLUGINS, MOON] * 3):
        assert_quota(small.post("/v1/plugins", content=unique(directory, f"refused-{index}")), 429, "max_plugins")
    assert artifacts(server) == before and staging(server) == []
    assert [p["name"] for p in small.get("/v1/plugins").json()] == ["slow_step"]
    assert other.post("/v1/plugins", content=unique(MOON, "theirs")).status_code == 201


def test_versions_per_plugin_are_capped_and_the_refused_one_is_not_kept(server: Server) -> None:
    small = server.tenant("two-versions", {"max_versions": 2})
    other = server.tenant("many-versions")
    for tag in ("v1", "v2"):
        assert small.post("/v1/plugins", content=unique(SLOW_STEP, tag)).status_code == 201
    before = artifacts(server)
    assert_quota(small.post("/v1/plugins", content=unique(SLOW_STEP, "v3")), 429, "max_versions")
    assert artifacts(server) == before and staging(server) == []
    assert small.post("/v1/plugins", content=unique(SLOW_STEP, "v1")).status_code == 200  # stored files: fine
    for tag in ("v1", "v2", "v3"):
        assert other.post("/v1/plugins", content=unique(SLOW_STEP, tag)).status_code == 201


def test_artifact_bytes_are_capped_per_tenant(server: Server) -> None:
    small = server.tenant("tiny-disk", {"max_artifact_mb": 1})
    other = server.tenant("big-disk")
    big = pack(SLOW_STEP, extra={"weights.bin": bytes(700 * 1024)})
    assert small.post("/v1/plugins", content=big).status_code == 201
    before = artifacts(server)
    more = pack(SLOW_STEP, extra={"weights.bin": bytes(700 * 1024), "more.bin": b"x"})
    assert_quota(small.post("/v1/plugins", content=more), 429, "max_artifact_mb")
    assert artifacts(server) == before
    usage = small.get("/v1/me").json()["usage"]
    assert usage["plugins"] == 1 and 700 * 1024 < usage["artifact_bytes"] < 800 * 1024
    assert other.post("/v1/plugins", content=more).status_code == 201


def test_deleting_the_last_reference_removes_the_artifact(server: Server) -> None:
    first = server.tenant("sharer-a")
    second = server.tenant("sharer-b")
    archive = unique(SLOW_STEP, "shared")
    digest = first.post("/v1/plugins", content=archive).json()["active"]["digest"]
    assert second.post("/v1/plugins", content=archive).json()["active"]["digest"] == digest
    assert first.delete("/v1/plugins/slow_step").status_code == 204
    assert digest in artifacts(server)  # the other tenant still uses the same files
    with server.operator() as op:
        tenant_id = second.get("/v1/me").json()["id"]
        assert op.delete(f"/v1/tenants/{tenant_id}").status_code == 204
    assert digest not in artifacts(server)


def test_stored_batches_are_capped_per_tenant(server: Server) -> None:
    small = server.tenant("two-batches", {"max_stored_batches": 2})
    other = server.tenant("more-batches")
    body = OPENAI.read_bytes()
    assert [small.post(f"/v1/batches/b{i}", content=body).status_code for i in range(2)] == [202, 202]
    assert_quota(small.post("/v1/batches/b2", content=body), 429, "max_stored_batches")
    assert small.post("/v1/batches/b0", content=body).json()["duplicate"] is True
    assert small.get("/v1/batches/b2").status_code == 404
    usage = small.get("/v1/me").json()["usage"]
    assert usage["stored_batches"] == 2 and usage["stored_batch_bytes"] > len(body)
    assert [other.post(f"/v1/batches/b{i}", content=body).status_code for i in range(3)] == [202] * 3
    bytes_capped = server.tenant("small-store", {"max_stored_batch_mb": 1})
    big = b"".join(body for _ in range(1 + 2 * 1024 * 1024 // len(body)))  # over 1 MiB once stored
    assert_quota(bytes_capped.post("/v1/batches/big", content=big), 413, "max_stored_batch_mb")
    assert other.post("/v1/batches/big", content=big).status_code == 202


def test_every_limit_is_clamped_and_shown_requested_and_effective(server: Server) -> None:
    small = server.tenant("clamped", {"max_processes": 8, "scratch_mb": 16, "max_open_files": 64})
    other = server.tenant("unclamped-ish")
    for api in (small, other):
        assert api.post("/v1/plugins", content=pack(MOON)).status_code == 201
    limits = small.get("/v1/plugins/asks_the_moon").json()["active"]["limits"]
    assert limits["requested"]["max_processes"] == 6000 and limits["effective"]["max_processes"] == 8
    assert limits["effective"]["scratch_mb"] == 16 and limits["effective"]["max_open_files"] == 64
    assert set(limits["clamped"]) == {"max_processes", "scratch_mb", "max_open_files"}
    for api in (small, other):
        assert api.post("/v1/batches/moon", content=OPENAI.read_bytes()).status_code == 202
    run = outcome(small, "moon")["handlers"][0]
    assert run["clamped_limits"]["max_processes"] == {"requested": 6000, "effective": 8}
    # a thread storm meets the 8-task limit: stopped early inside the run, or the run killed for it
    assert run["status"] == "ok" or "process limit of 8 reached" in run["error"], run["error"]
    assert run["status"] != "ok" or run["output"]["moon.threads"] < 8
    theirs = outcome(other, "moon")["handlers"][0]  # the operator's default ceilings, not the small ones
    assert theirs["clamped_limits"]["max_processes"] == {"requested": 6000, "effective": 64}
    assert theirs["status"] == "ok", theirs["error"]
    assert theirs["output"]["moon.nofile"] == 1024 and theirs["output"]["moon.scratch_mb"] == 256
    assert small.put("/v1/plugins/asks_the_moon/config", json={"config": {"spawn": False}}).status_code == 200
    assert small.post("/v1/batches/moon-2", content=OPENAI.read_bytes()).status_code == 202
    calm = outcome(small, "moon-2")["handlers"][0]
    assert calm["status"] == "ok", calm["error"]
    assert calm["output"]["moon.nofile"] == 64 and calm["output"]["moon.scratch_mb"] <= 16


def test_retention_purges_finished_batches_and_housekeeping_clears_staging() -> None:
    root = public_tempdir("rh-retention-")
    leftover = root / "data" / "artifacts" / ".staging" / "upload-crashed"
    leftover.mkdir(parents=True)
    (leftover / "big.bin").write_bytes(bytes(1024 * 1024))
    env = {"RH_RETENTION_DAYS": str(3 / 86_400), "RH_HOUSEKEEPING_SECONDS": "0.5"}  # three seconds
    server = Server(root / "data", env=env).start()
    try:
        assert not leftover.exists()  # an upload a crash interrupted is removed at start
        with server.tenant("short-lived") as api:
            assert api.post("/v1/plugins", content=pack(SAMPLE_PLUGINS[0])).status_code == 201
            assert api.post("/v1/batches/old", content=OPENAI.read_bytes()).status_code == 202
            assert outcome(api, "old")["success"] is True
            deadline = time.monotonic() + 30
            while api.get("/v1/batches/old").status_code == 200:
                assert time.monotonic() < deadline, "the finished batch was not purged"
                time.sleep(0.25)
            assert api.get("/v1/batches/old").status_code == 404
            assert api.get("/v1/batches/old/runs").status_code == 404
            assert api.get("/v1/plugins/stats_summary").status_code == 200  # plugins are not batches
            assert api.post("/v1/batches/old", content=OPENAI.read_bytes()).json()["duplicate"] is False
    finally:
        server.stop()
        cleanup(root)

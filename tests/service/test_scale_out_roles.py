"""Processes sharing one database: the per-tenant concurrency quota holds across them, SIGTERM stops
claiming at once and answers open requests, and an api node never claims."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest
from rh_cluster import Cluster, slow_tenant, wait_status
from rh_testserver import OPENAI, OPERATOR_TOKEN, RH_HOST, Server, outcome

pytestmark = pytest.mark.slow

LEASE = ["--lease-seconds", "2"]


def test_the_concurrency_quota_holds_across_processes(cluster: Cluster) -> None:
    nodes = [cluster.node(), cluster.node()]
    api = slow_tenant(nodes[0], "single", 0.6, max_concurrent_batches=1)
    ids = [f"q{i}" for i in range(4)]
    for batch_id in ids:
        assert api.post(f"/v1/batches/{batch_id}", content=OPENAI.read_bytes()).status_code == 202
    for batch_id in ids:
        assert outcome(api, batch_id)["success"] is True
    spans = sorted((r.started_at, r.finished_at, r.batch_id) for r in map(cluster.batch, ids))
    overlaps = [(a[2], b[2]) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
    assert overlaps == [], (spans, cluster.logs())
    api.close()


@pytest.mark.parametrize("cluster", ["sqlite"], indirect=True)
def test_sigterm_stops_claiming_at_once_and_answers_open_requests(cluster: Cluster) -> None:
    node = cluster.node("--shutdown-seconds", "5")
    api = slow_tenant(node, "draining", 1.5, max_concurrent_batches=1)
    ids = ["t0", "t1", "t2"]
    for batch_id in ids:
        assert api.post(f"/v1/batches/{batch_id}", content=OPENAI.read_bytes()).status_code == 202
    wait_status(cluster, "t0", "running")
    answers: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answers.append(api.get("/v1/batches/t2/outcome", params={"wait": 30})), daemon=True
    )
    waiting.start()
    time.sleep(0.3)  # the long poll is open
    assert node.proc is not None
    node.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    waiting.join(15)
    node.proc.wait(timeout=20)
    exited = time.monotonic() - signalled
    assert answers and answers[0].status_code == 409 and answers[0].json()["error"]["code"] == "pending"
    assert exited < 9, exited  # the open request did not hold the shutdown for uvicorn's 10 s
    first = cluster.batch("t0")
    assert first.status == "done", cluster.logs()  # finished within the bound
    for batch_id in ("t1", "t2"):  # nothing was claimed after SIGTERM
        row = cluster.batch(batch_id)
        assert (row.status, row.attempts, row.claimed_by) == ("queued", 0, None), cluster.logs()
    api.close()


@pytest.mark.parametrize("cluster", ["postgresql"], indirect=True)
def test_an_api_node_never_claims_and_a_worker_runs_what_it_accepted(cluster: Cluster) -> None:
    api_node = cluster.node("--role", "api")
    api = slow_tenant(api_node, "split", 0)
    assert api.post("/v1/batches/r1", content=OPENAI.read_bytes()).status_code == 202
    time.sleep(1.5)
    assert cluster.batch("r1").status == "queued"
    view = _status(api_node)
    assert [(n["role"], n["alive"]) for n in view["nodes"]] == [("api", True)]
    assert [(t["name"], t["queued"], t["running"]) for t in view["tenants"]] == [("split", 1, 0)]
    worker = cluster.node("--role", "worker")
    assert outcome(api, "r1")["success"] is True, cluster.logs()
    fetched = list((worker.data_dir / "artifacts").glob("*/*/plugin.toml"))
    assert len(fetched) == 1, fetched  # the plugin's files came from the database, not a shared disk
    view = _status(api_node)
    assert sorted((n["role"], n["alive"]) for n in view["nodes"]) == [("api", True), ("worker", True)]
    assert view["tenants"] == []
    args = [RH_HOST, "status", "--url", api_node.url, "--token", OPERATOR_TOKEN]
    table = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    assert f":{worker.proc.pid}:" in table and "worker  alive" in table, table  # type: ignore[union-attr]
    assert "(no queued or running batches)" in table
    api.close()


def _status(node: Server) -> dict[str, Any]:
    """``rh-host status --json`` against a node, as an operator runs it."""
    args = [RH_HOST, "status", "--json", "--url", node.url, "--token", OPERATOR_TOKEN]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)

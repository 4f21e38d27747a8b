"""Two ``rh-host serve`` processes on one database (real processes, each with its own data dir; one
SQLite file, and a real PostgreSQL): a start never reruns a live peer's batches, and a SIGKILLed worker's batch is
taken over once its lease ends, never before."""

from __future__ import annotations

import time

import pytest
from rh_cluster import Cluster, runs_of, slow_tenant, wait_status
from rh_testserver import OPENAI, client, outcome

pytestmark = pytest.mark.slow

LEASE = ["--lease-seconds", "2"]


def test_a_start_never_reruns_a_live_peers_batches(cluster: Cluster) -> None:
    first = cluster.node()
    api = slow_tenant(first, "steady", 3)
    for batch_id in ("s1", "s2"):
        assert api.post(f"/v1/batches/{batch_id}", content=OPENAI.read_bytes()).status_code == 202
    held = [wait_status(cluster, b, "running") for b in ("s1", "s2")]
    assert all(f":{first.proc.pid}:" in row.claimed_by for row in held)  # type: ignore[union-attr]
    second = cluster.node()
    second.kill()  # a crash, then a restart beside the live first node
    second.start()
    for batch_id in ("s1", "s2"):
        assert outcome(api, batch_id)["success"] is True
        row = cluster.batch(batch_id)
        assert (row.attempts, runs_of(cluster, batch_id)) == (1, 1), cluster.logs()
    api.close()


def test_a_killed_workers_batch_is_taken_over_when_its_lease_ends(cluster: Cluster) -> None:
    nodes = [cluster.node(*LEASE), cluster.node(*LEASE)]
    api = slow_tenant(nodes[0], "fragile", 2)
    assert api.post("/v1/batches/k1", content=OPENAI.read_bytes()).status_code == 202
    claim = wait_status(cluster, "k1", "running")
    holder = next(n for n in nodes if f":{n.proc.pid}:" in claim.claimed_by)  # type: ignore[union-attr]
    survivor = next(n for n in nodes if n is not holder)
    time.sleep(0.5)
    killed_at = time.time()
    holder.kill()
    with client(survivor.url, api.headers["Authorization"].removeprefix("Bearer ")) as survivor_api:
        result = outcome(survivor_api, "k1")
    assert result["success"] is True and result["output"]["slow_step.done"] is True
    row = cluster.batch("k1")
    assert row.attempts == 2 and row.claimed_by is None
    # the survivor waited for the lease (2 s, renewed every 0.67 s) to end: it never took a live claim
    assert row.started_at - killed_at > 1.0, (row.started_at - killed_at, cluster.logs())
    assert cluster.rows("SELECT count(*) FROM outcomes")[0][0] == 1
    api.close()

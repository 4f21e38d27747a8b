"""Two ``rh-host serve`` processes on one database (real processes, each with its own data dir; one
SQLite file, and a real PostgreSQL): a start never reruns a live peer's batches, and a SIGKILLed worker's batch is
taken over once its lease ends, never before."""

from __future__ import annotations

import signal
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


@pytest.mark.parametrize("cluster", ["postgresql"], indirect=True)  # a frozen SQLite writer blocks the file
def test_a_worker_cut_off_past_its_lease_loses_the_batch_and_its_late_outcome_is_dropped(cluster: Cluster) -> None:
    """SIGSTOP stands in for a network cut: the node neither beats nor finishes, nor ends a transaction
    it may be in the middle of (PostgreSQL ends it after its idle timeout), then comes back."""
    nodes = [cluster.node(*LEASE), cluster.node(*LEASE)]
    api = slow_tenant(nodes[0], "cut-off", 1.5)
    key = api.headers["Authorization"].removeprefix("Bearer ")
    assert api.post("/v1/batches/c1", content=OPENAI.read_bytes()).status_code == 202
    claim = wait_status(cluster, "c1", "running")
    holder = next(n for n in nodes if f":{n.proc.pid}:" in claim.claimed_by)  # type: ignore[union-attr]
    survivor = next(n for n in nodes if n is not holder)
    assert holder.proc is not None
    holder.proc.send_signal(signal.SIGSTOP)
    try:
        with client(survivor.url, key) as survivor_api:
            first = survivor_api.get("/v1/batches/c1/outcome", params={"wait": 30})
            assert first.status_code == 200, (first.text, cluster.logs())
    finally:
        holder.proc.send_signal(signal.SIGCONT)
    time.sleep(3)  # back: its run ends and its finish is refused
    row = cluster.batch("c1")
    assert (row.status, row.attempts) == ("done", 2)
    stored = cluster.rows("SELECT o.outcome FROM outcomes o JOIN batches b ON b.pk = o.batch_pk")
    assert len(stored) == 1 and stored[0][0].encode() == first.content, cluster.logs()
    assert runs_of(cluster, "c1") == 1  # the same run, recorded once by whichever node ended it first
    assert holder.proc.poll() is None  # the node lives on
    api.close()

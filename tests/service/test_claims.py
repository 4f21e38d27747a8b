"""Claims with leases between nodes sharing one database, on SQLite and on a real PostgreSQL: a live
lease is never taken, an ended one is, only the holder stores the outcome (a repeat says "already
stored"), and the per-tenant concurrency quota holds while nodes claim at the same moment."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa

from rh_host.service.claims import Claims, Finish
from rh_host.service.db import migrate
from rh_host.service.node import Node
from rh_host.service.schema import batches, outcomes
from rh_host.service.store import Store
from rh_host.service.wakeup import QueueListener
from tests.service.test_quotas import fresh_engine, post, tenant


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    engine = fresh_engine(request, tmp_path)
    migrate(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


def _outcome(batch_id: str) -> str:
    return msgspec.json.encode({"batch_id": batch_id}).decode()


def _running(store: Store, tenant_id: str) -> int:
    with store.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(batches.c.tenant_id == tenant_id, batches.c.status == "running")
        return conn.execute(query.select_from(batches)).scalar_one()


def test_a_live_lease_is_kept_and_an_ended_one_is_taken_over(store: Store) -> None:
    owner = tenant(store, "owner")
    post(store, owner, "b1", 10)
    first = Claims(store.engine, "node-a", lease_seconds=0.6)
    second = Claims(store.engine, "node-b", lease_seconds=30)
    claimed = first.claim_next()
    assert claimed is not None and claimed.batch_id == "b1"
    assert second.claim_next() is None  # held by a live lease
    assert first.renew() == {claimed.pk}
    time.sleep(0.3)
    assert first.renew() == {claimed.pk}  # the heartbeat keeps it past the first lease's end
    time.sleep(0.4)
    assert second.claim_next() is None
    time.sleep(0.7)  # no heartbeat: the lease ends
    taken = second.claim_next()
    assert taken is not None and taken.pk == claimed.pk and taken.attempts == 2
    assert first.renew() == set()
    assert first.finish(claimed.pk, True, _outcome("late")) is Finish.LEASE_LOST
    assert second.finish(taken.pk, True, _outcome("b1")) is Finish.STORED
    assert second.finish(taken.pk, True, _outcome("again")) is Finish.ALREADY_STORED
    assert first.finish(claimed.pk, True, _outcome("late")) is Finish.ALREADY_STORED
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(outcomes.c.outcome)).scalars().all() == [_outcome("b1")]
    assert store.batch(owner, "b1").status == "done"


def test_release_gives_batches_back_and_only_the_holders(store: Store) -> None:
    owner = tenant(store, "owner", max_concurrent_batches=5)
    for i in range(3):
        post(store, owner, f"b{i}", 10)
    a, b = Claims(store.engine, "node-a", 30), Claims(store.engine, "node-b", 30)
    held_a = [a.claim_next(), a.claim_next()]
    held_b = b.claim_next()
    assert all(row is not None for row in [*held_a, held_b])
    assert a.release_all() == 2
    assert b.renew() == {held_b.pk}  # type: ignore[union-attr]
    assert b.release_nodes(["node-a", "node-c"]) == 0  # node-a holds nothing any more
    assert a.claim_next() is not None


def test_the_concurrency_quota_holds_while_nodes_claim_at_once(store: Store) -> None:
    busy = tenant(store, "busy", max_concurrent_batches=2)
    for i in range(12):
        post(store, busy, f"b{i}", 10)
    nodes = [Claims(store.engine, f"node-{i}", 30) for i in range(4)]
    start = threading.Barrier(len(nodes))
    claimed: list[int] = []
    peak: list[int] = []

    def work(claims: Claims) -> None:
        start.wait()
        for _ in range(6):  # claim, hold a moment, finish: over and over, all nodes at once
            row = claims.claim_next()
            peak.append(_running(store, busy))
            if row is not None:
                claimed.append(row.pk)
                time.sleep(0.01)
                assert claims.finish(row.pk, True, _outcome(row.batch_id)) is Finish.STORED

    threads = [threading.Thread(target=work, args=(claims,)) for claims in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert claimed, "no node claimed anything"
    assert len(claimed) == len(set(claimed))  # no batch was claimed twice
    assert max(peak) <= 2, peak


def test_a_dead_node_of_the_same_data_dir_is_found_and_a_live_one_is_not(tmp_path: Path) -> None:
    alive = Node(tmp_path, "worker")
    dead = Node(tmp_path, "worker")
    dead_id = dead.id
    assert dead._fd is not None
    os.close(dead._fd)  # what the kernel does when the process dies: the lock is gone, the file stays
    dead._fd = None
    me = Node(tmp_path, "all")
    try:
        assert me.dead_peers() == [dead_id]
        assert me.dead_peers() == []  # its file was removed
        assert alive.id != me.id
    finally:
        me.close()
        alive.close()


def test_the_cluster_view_counts_nodes_leases_and_queues(store: Store) -> None:
    busy, idle = tenant(store, "busy"), tenant(store, "idle")
    for i in range(3):
        post(store, busy, f"b{i}", 10)
    post(store, idle, "done-soon", 10)
    a, b = Claims(store.engine, "node-a", 30), Claims(store.engine, "node-b", 30)
    a.beat("worker")
    b.beat("api")
    claimed = {row.tenant_id: row for row in (a.claim_next(), a.claim_next()) if row is not None}
    assert set(claimed) == {busy, idle}  # one each: the second claim serves the tenant not served yet
    assert a.finish(claimed[idle].pk, True, _outcome("done-soon")) is Finish.STORED
    nodes, queues = a.cluster()
    assert [(n.id, n.role, n.leases_held) for n in nodes] == [("node-a", "worker", 1), ("node-b", "api", 0)]
    assert [(q.name, q.queued, q.running) for q in queues] == [("busy", 2, 1)]
    b.leave()
    assert [n.id for n in a.cluster()[0]] == ["node-a"]


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
def test_a_queued_batch_wakes_a_listening_worker_of_another_process(store: Store) -> None:
    owner = tenant(store, "owner")
    woken = threading.Event()
    listener = QueueListener(store.engine, woken.set)
    listener.start()
    try:
        time.sleep(0.5)  # the listener's LISTEN is in place
        assert not woken.is_set()
        post(store, owner, "b1", 10)  # from this engine, as an api node's intake would
        assert woken.wait(5), "no notification arrived"
        woken.clear()
        post(store, owner, "b1", 10)  # a repeat queues nothing: no notification
        assert not woken.wait(1)
    finally:
        listener.close()


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
def test_a_node_frozen_in_a_transaction_delays_claims_only_until_the_server_ends_it(store: Store) -> None:
    owner = tenant(store, "owner")
    post(store, owner, "b1", 10)
    frozen = store.engine.connect()  # a node stopped between two statements of its claim
    frozen.begin()
    frozen.execute(sa.text("SELECT pg_advisory_xact_lock(29288, hashtext(:t))"), {"t": owner})
    frozen.execute(batches.update().where(batches.c.batch_id == "b1").values(started_at=1.0))  # its row lock
    other = Claims(store.engine, "node-b", 30)
    started = time.monotonic()
    assert other.claim_next() is None  # gave up at its lock timeout, did not hang
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 20
    row = None
    while row is None and time.monotonic() < deadline:  # the server ends the idle transaction (10 s)
        time.sleep(0.5)
        row = other.claim_next()
    assert row is not None and row.batch_id == "b1"
    with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction timeout"):  # the frozen node, back
        frozen.execute(sa.text("SELECT 1"))
    frozen.invalidate()

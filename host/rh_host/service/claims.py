"""Claims with leases: how the nodes sharing one database take batches, keep them and give them back.

A node is one ``serve`` process (``rh_host.service.node``), with a row in ``nodes`` that its heartbeat
(``rh_host.service.heartbeat``) keeps current, for the operator's view of the cluster. A claim marks
a queued batch running with the node's id and a lease expiry; a worker node's heartbeat renews the
leases of everything it holds. A batch whose lease ended (its node died, or lost the database for longer than
a lease) goes back to the queue at the next claim by any node. A live node's batch is never touched.

Fairness and the per-tenant concurrency quota hold across nodes because both are decided in the
claim's transaction: the tenant served least recently goes first, and its running batches are counted
while the claim holds the tenant's lock (a PostgreSQL advisory lock, tried without waiting: a tenant
another node is claiming for is skipped; when every tenant with work was skipped, the claim starts
again waiting for the first one's lock, before anything else, so no two claims can wait on each
other; SQLite's IMMEDIATE transactions already serialise every writer). The batch row itself is
picked ``FOR UPDATE SKIP LOCKED``.

Finishing is guarded by the claim: the outcome is stored only by the node that holds the batch, in the
transaction that marks it done, so a batch has exactly one stored outcome whichever nodes ran it.
See docs/scaling.md for why this is not pgqueuer or procrastinate.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterable, Sequence

import msgspec
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from rh_host.service.db import DEFERRED
from rh_host.service.schema import batches, nodes, outcomes, tenants
from rh_host.service.settings import Quotas
from rh_host.service.store import BATCH_SUMMARY, DONE, QUEUED, RUNNING, Row, insert_ignore

__all__ = ["Claims", "Finish"]

_log = logging.getLogger("rh.service.claims")
_LOCK_SPACE = 0x7268  # the first key of the two-key advisory locks this service takes ("rh")
_LOCK_WAIT_SECONDS = 2  # a claim waits this long for a row or tenant lock, then gives up until the next poll
_CONTENDED_TRIES = 20  # claims again, waiting, when every tenant with work was being claimed by another node
_FORGET_NODES_SECONDS = 86_400.0  # a node silent this long, holding nothing, leaves the cluster view


class Finish(enum.Enum):
    """What finishing a batch did."""

    STORED = "stored"  # this node held the batch: its outcome is the batch's outcome
    ALREADY_STORED = "already_stored"  # the batch was done before: nothing changed
    LEASE_LOST = "lease_lost"  # another node took the batch over (or it was released): nothing stored


class Claims:
    """The queue's coordination queries for one node."""

    def __init__(self, engine: sa.Engine, node_id: str, lease_seconds: float) -> None:
        self.engine = engine
        self.node_id = node_id
        self.lease_seconds = lease_seconds

    def claim_next(self) -> Row | None:
        """Mark the next batch running for this node, fairly: the tenant served least recently goes first,
        within its concurrency quota; within a tenant, the oldest batch. Expired leases are reclaimed first.
        None also when a lock stayed held past ``_LOCK_WAIT_SECONDS`` (a node frozen mid-transaction):
        the worker claims again at its next poll."""
        try:
            row, skipped = self._claim_once(None)
            for _ in range(_CONTENDED_TRIES):
                if row is not None or not skipped:
                    return row
                row, skipped = self._claim_once(skipped)
            return row
        except sa.exc.OperationalError as exc:
            if isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                _log.warning("a claim waited %g s for a lock another node holds; claiming again", _LOCK_WAIT_SECONDS)
                return None
            raise

    def _claim_once(self, wait_for: str | None) -> tuple[Row | None, str | None]:
        """One claim transaction; also the first tenant skipped because another claim held its lock."""
        skipped: str | None = None
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{_LOCK_WAIT_SECONDS}s'")
            if wait_for is not None:  # first: this claim then holds no lock another claim could wait for
                _lock_tenant(conn, wait_for)
            now = time.time()
            self._reclaim_expired(conn, now)
            has_queued = sa.exists().where(batches.c.tenant_id == tenants.c.id, batches.c.status == QUEUED)
            waiting = conn.execute(
                sa.select(tenants.c.id, tenants.c.quotas).where(has_queued).order_by(tenants.c.last_claimed_at)
            ).all()
            for tenant in waiting:
                if tenant.id != wait_for and not _try_lock_tenant(conn, tenant.id):
                    skipped = skipped or tenant.id
                    continue
                quotas = msgspec.json.decode(tenant.quotas, type=Quotas)
                running = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(batches)
                    .where(batches.c.tenant_id == tenant.id, batches.c.status == RUNNING)
                ).scalar_one()
                if running >= quotas.max_concurrent_batches:
                    continue
                pk = conn.execute(
                    sa.select(batches.c.pk)
                    .where(batches.c.tenant_id == tenant.id, batches.c.status == QUEUED)
                    .order_by(batches.c.pk)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).scalar()
                if pk is None:
                    continue
                claimed = conn.execute(
                    batches.update()
                    .where(batches.c.pk == pk, batches.c.status == QUEUED)
                    .values(
                        status=RUNNING,
                        started_at=now,
                        attempts=batches.c.attempts + 1,
                        claimed_by=self.node_id,
                        lease_expires_at=now + self.lease_seconds,
                    )
                ).rowcount
                if claimed:
                    conn.execute(tenants.update().where(tenants.c.id == tenant.id).values(last_claimed_at=now))
                    row = conn.execute(
                        sa.select(*BATCH_SUMMARY, tenants.c.quotas)
                        .join(tenants, tenants.c.id == batches.c.tenant_id)
                        .where(batches.c.pk == pk)
                    ).one()
                    return row, skipped
        return None, skipped

    def _reclaim_expired(self, conn: sa.Connection, now: float) -> None:
        expired = sa.and_(_held, batches.c.lease_expires_at < now)
        owners = dict(conn.execute(sa.select(batches.c.pk, batches.c.claimed_by).where(expired)).all())
        if not owners:
            return
        # what this statement requeued: a concurrent claim may have requeued (and claimed) some first
        released = conn.execute(_release.where(expired).returning(batches.c.pk, batches.c.batch_id)).all()
        if released:
            _log.warning(
                "requeued %d batch(es) whose lease ended (node(s) %s stopped renewing): %s",
                len(released),
                ", ".join(sorted({str(owners.get(row.pk)) for row in released})),
                ", ".join(row.batch_id for row in released[:10]),
            )

    def beat(self, role: str) -> None:
        """This node is alive: its row in ``nodes`` (made at the first beat) gets the time."""
        now = time.time()
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        row = dialect.insert(nodes).values(id=self.node_id, role=role, started_at=now, heartbeat_at=now)
        with self.engine.begin() as conn:
            conn.execute(row.on_conflict_do_update(index_elements=["id"], set_={"heartbeat_at": now}))

    def leave(self) -> None:
        """At a clean shutdown: this node's row goes, with the rows of nodes silent for a day that hold nothing."""
        holding = sa.select(batches.c.pk).where(_held, batches.c.claimed_by == nodes.c.id)
        forgotten = sa.and_(nodes.c.heartbeat_at < time.time() - _FORGET_NODES_SECONDS, ~sa.exists(holding))
        with self.engine.begin() as conn:
            conn.execute(nodes.delete().where(sa.or_(nodes.c.id == self.node_id, forgotten)))

    def cluster(self) -> tuple[Sequence[Row], Sequence[Row]]:
        """The operator's view: every node with its role, times and leases held; every tenant with queued
        or running batches and how many of each (both counted through indexes)."""
        held = (
            sa.select(batches.c.claimed_by, sa.func.count().label("held"))
            .where(_held)
            .group_by(batches.c.claimed_by)
            .subquery()
        )
        node_rows = (
            sa.select(nodes, sa.func.coalesce(held.c.held, 0).label("leases_held"))
            .outerjoin(held, held.c.claimed_by == nodes.c.id)
            .order_by(nodes.c.started_at)
        )
        queued = sa.func.count().filter(batches.c.status == QUEUED).label("queued")
        running = sa.func.count().filter(batches.c.status == RUNNING).label("running")
        queue_rows = (
            sa.select(batches.c.tenant_id, tenants.c.name, queued, running)
            .join(tenants, tenants.c.id == batches.c.tenant_id)
            .where(batches.c.status.in_([QUEUED, RUNNING]))
            .group_by(batches.c.tenant_id, tenants.c.name)
            .order_by(tenants.c.name)
        )
        with self.engine.connect().execution_options(**{DEFERRED: True}) as conn:
            return conn.execute(node_rows).all(), conn.execute(queue_rows).all()

    def renew(self) -> set[int]:
        """The heartbeat: extend the lease of every batch this node holds; the batches it still holds."""
        with self.engine.begin() as conn:
            mine = sa.and_(_held, batches.c.claimed_by == self.node_id)
            conn.execute(batches.update().where(mine).values(lease_expires_at=time.time() + self.lease_seconds))
            return set(conn.execute(sa.select(batches.c.pk).where(mine)).scalars())

    def release(self, batch_pk: int) -> bool:
        """Put one of this node's batches back in the queue (a host fault: it runs again, here or elsewhere)."""
        with self.engine.begin() as conn:
            mine = sa.and_(_held, batches.c.pk == batch_pk, batches.c.claimed_by == self.node_id)
            return bool(conn.execute(_release.where(mine)).rowcount)

    def release_all(self) -> int:
        """At shutdown: every batch this node still holds goes back to the queue for the other nodes now,
        rather than when its lease ends."""
        return self.release_nodes([self.node_id])

    def release_nodes(self, node_ids: Iterable[str]) -> int:
        """Give back the batches of nodes known to be dead (their lock file was free at this node's start)."""
        ids = list(node_ids)
        if not ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(_release.where(_held, batches.c.claimed_by.in_(ids))).rowcount

    def finish(self, batch_pk: int, success: bool, outcome: str) -> Finish:
        """Store the outcome and mark the batch done, if this node still holds it."""
        now = time.time()
        with self.engine.begin() as conn:
            mine = sa.and_(_held, batches.c.pk == batch_pk, batches.c.claimed_by == self.node_id)
            done_values = {"status": DONE, "finished_at": now, "claimed_by": None, "lease_expires_at": None}
            done = conn.execute(batches.update().where(mine).values(**done_values)).rowcount
            if not done:
                stored = conn.execute(sa.select(outcomes.c.batch_pk).where(outcomes.c.batch_pk == batch_pk)).first()
                return Finish.ALREADY_STORED if stored is not None else Finish.LEASE_LOST
            values = {"batch_pk": batch_pk, "success": success, "outcome": outcome, "created_at": now}
            inserted = insert_ignore(conn, outcomes, values, ["batch_pk"])
            return Finish.STORED if inserted else Finish.ALREADY_STORED


_held = batches.c.status == RUNNING
_release = batches.update().values(status=QUEUED, claimed_by=None, lease_expires_at=None)


def _try_lock_tenant(conn: sa.Connection, tenant_id: str) -> bool:
    """Hold the tenant's claim lock until the transaction ends; False when another claim holds it."""
    if conn.dialect.name != "postgresql":
        return True  # SQLite: this IMMEDIATE transaction is the only writer
    key = sa.func.hashtext(sa.literal(tenant_id, sa.Text))
    return bool(conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(_LOCK_SPACE, key))).scalar())


def _lock_tenant(conn: sa.Connection, tenant_id: str) -> None:
    """Wait for the tenant's claim lock (a claim transaction lasts milliseconds)."""
    if conn.dialect.name == "postgresql":
        key = sa.func.hashtext(sa.literal(tenant_id, sa.Text))
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_SPACE, key)))

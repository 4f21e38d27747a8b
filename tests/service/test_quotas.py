"""Per-tenant totals in the store: stored batches (count and bytes), versions per plugin, artifact
bytes, and the retention purge. Each bound is asserted beside a tenant that must be unaffected, on
SQLite and on a real PostgreSQL."""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa

from rh_host.service.claims import Claims, Finish
from rh_host.service.db import make_engine, migrate
from rh_host.service.errors import QuotaExceeded, QuotaTooLarge
from rh_host.service.housekeeping import purge_expired
from rh_host.service.schema import batches, outcomes, runs
from rh_host.service.settings import Quotas
from rh_host.service.store import Store

KIB = 1024


def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> sa.Engine:
    """An empty database of the fixture's kind: a SQLite file, or a new database on the test server."""
    if request.param == "sqlite":
        return make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    admin_url: str = request.getfixturevalue("postgres_url")
    name = f"q_{uuid.uuid4().hex[:12]}"
    admin = make_engine(admin_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return make_engine(admin_url.rsplit("/", 1)[0] + f"/{name}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    engine = fresh_engine(request, tmp_path)
    migrate(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


def tenant(store: Store, name: str, **quotas: int) -> str:
    tenant_id = f"t_{uuid.uuid4().hex[:12]}"
    store.create_tenant(tenant_id, name, uuid.uuid4().hex, Quotas(**quotas))
    return tenant_id


def post(store: Store, tenant_id: str, batch_id: str, size: int) -> bool:
    _row, created = store.insert_batch(tenant_id, batch_id, f"d-{batch_id}-{size}", {}, bytes(size), 1)
    return created


def add(store: Store, tenant_id: str, plugin: str, digest: str, size: int = 1) -> bool:
    _row, created = store.add_version(tenant_id, plugin, "1", digest, "{}", size_bytes=size, activate=True)
    return created


def test_stored_batch_count_is_bounded_per_tenant(store: Store) -> None:
    small = tenant(store, "small", max_stored_batches=2)
    other = tenant(store, "other")
    assert post(store, small, "b1", 10) and post(store, small, "b2", 10)
    with pytest.raises(QuotaExceeded, match="quota max_stored_batches") as refused:
        post(store, small, "b3", 10)
    assert refused.value.status_code == 429 and refused.value.code == "quota_exceeded"
    assert post(store, small, "b1", 10) is False  # a repeat of a stored batch is still answered
    assert [post(store, other, f"o{i}", 10) for i in range(3)] == [True] * 3
    assert store.usage(small)["stored_batches"] == 2  # nothing of the refused batch was stored


def test_stored_batch_bytes_are_bounded_per_tenant(store: Store) -> None:
    small = tenant(store, "small", max_stored_batch_mb=1)
    other = tenant(store, "other", max_stored_batch_mb=1)
    assert post(store, small, "b1", 600 * KIB)
    with pytest.raises(QuotaExceeded, match="quota max_stored_batch_mb") as refused:
        post(store, small, "b2", 600 * KIB)
    assert refused.value.status_code == 429
    with pytest.raises(QuotaTooLarge, match="quota max_stored_batch_mb") as too_large:
        post(store, other, "huge", 1100 * KIB)
    assert too_large.value.status_code == 413 and too_large.value.code == "quota_exceeded"
    assert post(store, other, "o1", 600 * KIB)  # the other tenant's total is its own
    assert store.usage(small)["stored_batch_bytes"] == 600 * KIB + len(b"{}")


def test_versions_per_plugin_are_bounded(store: Store) -> None:
    small = tenant(store, "small", max_versions=2)
    other = tenant(store, "other")
    assert add(store, small, "p", "d1") and add(store, small, "p", "d2")
    with pytest.raises(QuotaExceeded, match="quota max_versions"):
        add(store, small, "p", "d3")
    assert add(store, small, "p", "d1") is False  # the same files again: the stored version
    assert add(store, small, "q", "d3")  # another plugin of the tenant has its own count
    assert all(add(store, other, "p", f"x{i}") for i in range(3))
    assert len(store.versions(small, "p")[1]) == 2


def test_artifact_bytes_are_bounded_per_tenant(store: Store) -> None:
    small = tenant(store, "small", max_artifact_mb=1)
    other = tenant(store, "other", max_artifact_mb=1)
    assert add(store, small, "p", "d1", 600 * KIB)
    with pytest.raises(QuotaExceeded, match="quota max_artifact_mb"):
        add(store, small, "q", "d2", 600 * KIB)
    assert [r.name for r in store.list_plugins(small)] == ["p"]  # the refused plugin was not created
    with pytest.raises(QuotaTooLarge, match="quota max_artifact_mb"):
        add(store, other, "big", "d3", 2 * 1024 * KIB)
    assert add(store, other, "p", "d4", 600 * KIB)
    assert store.usage(small)["artifact_bytes"] == 600 * KIB


def test_plugin_count_quota_names_itself(store: Store) -> None:
    small = tenant(store, "small", max_plugins=1)
    assert add(store, small, "p", "d1")
    with pytest.raises(QuotaExceeded, match="quota max_plugins: the tenant has 1 plugins; the quota is 1"):
        add(store, small, "q", "d2")


def _finish(store: Store, tenant_id: str, batch_id: str, finished_at: float) -> int:
    pk = store.batch(tenant_id, batch_id).pk
    store.save_run(pk, 1, "digest", "p", "ok", "{}")
    claims = Claims(store.engine, "test-node", 30.0)
    with store.engine.begin() as conn:  # claimed by this node, as a worker would hold it
        conn.execute(batches.update().where(batches.c.pk == pk).values(status="running", claimed_by="test-node"))
    assert claims.finish(pk, True, msgspec.json.encode({"batch_id": batch_id}).decode()) is Finish.STORED
    with store.engine.begin() as conn:
        conn.execute(batches.update().where(batches.c.pk == pk).values(finished_at=finished_at))
    return pk


def test_retention_purges_old_finished_batches_with_their_runs_and_outcomes(store: Store) -> None:
    now = time.time()
    owner = tenant(store, "owner", max_stored_batches=300)
    other = tenant(store, "other")
    old = [f"old{i}" for i in range(250)]  # more than one purge transaction's worth
    for batch_id in [*old, "recent", "queued"]:
        post(store, owner, batch_id, 10)
    post(store, other, "theirs", 10)
    old_pks = [_finish(store, owner, b, now - 3 * 86_400) for b in old]
    _finish(store, owner, "recent", now - 3_600)
    _finish(store, other, "theirs", now - 3_600)
    queued = store.batch(owner, "queued")
    with store.engine.begin() as conn:  # a batch that never finished is never purged, however old
        conn.execute(batches.update().where(batches.c.pk == queued.pk).values(submitted_at=now - 30 * 86_400))

    assert purge_expired(store, retention_days=1, now=now) == 250
    assert {r.batch_id for r in store.list_batches(owner, None, 500)} == {"recent", "queued"}
    assert store.batch(other, "theirs").status == "done"
    with store.engine.begin() as conn:
        for table in (runs, outcomes):
            assert (
                conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(table.c.batch_pk.in_(old_pks))
                ).scalar_one()
                == 0
            )
    assert purge_expired(store, retention_days=1, now=now) == 0
    assert post(store, owner, "old0", 10)  # the purged id and its quota are free again


def test_retry_wrappers_keep_their_signatures() -> None:
    for method in (Store.insert_batch, Store.add_version):
        parameters = inspect.signature(method).parameters
        assert "tenant_id" in parameters and not any(p.kind is p.VAR_POSITIONAL for p in parameters.values())


@pytest.fixture(params=["sqlite", "postgresql"])
def bare_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = fresh_engine(request, tmp_path)
    try:
        yield engine
    finally:
        engine.dispose()


def test_migration_counts_the_bytes_of_batches_stored_before_it(bare_engine: sa.Engine) -> None:
    migrate(bare_engine, "0001")
    with bare_engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO tenants (id, name, key_hash, quotas, created_at) VALUES ('t1', 'a', 'h', '{}', 0)"
        )
        conn.execute(
            sa.text(
                "INSERT INTO batches (tenant_id, batch_id, digest, status, metadata, results, result_count,"
                " version_ids, submitted_at) VALUES ('t1', 'b', 'd', 'queued', :meta, :results, 1, '[]', 0)"
            ),
            {"meta": '{"model": "é"}', "results": bytes(1000)},
        )
    migrate(bare_engine)
    assert Store(bare_engine).usage("t1")["stored_batch_bytes"] == 1000 + len('{"model": "é"}'.encode())


def test_concurrent_posts_cannot_both_pass_a_total(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    small = tenant(store, "racy", max_stored_batches=3)

    def attempt(index: int) -> str:
        try:
            return "stored" if post(store, small, f"r{index}", 10) else "repeat"
        except QuotaExceeded:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(16)))
    assert sorted(answers) == ["refused"] * 13 + ["stored"] * 3
    assert store.usage(small)["stored_batches"] == 3

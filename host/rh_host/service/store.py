"""Every query the service runs, by name, on one engine. Nothing else in the service writes SQL.

Each public method is one transaction. Rows come back as SQLAlchemy ``Row`` objects (attribute
access by column name); the routes turn them into API models.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from rh_host.service.db import DEFERRED
from rh_host.service.errors import Conflict, NotFound, QuotaExceeded, QuotaTooLarge
from rh_host.service.schema import artifact_archives, batches, outcomes, plugin_versions, plugins, runs, tenants
from rh_host.service.settings import Quotas
from rh_host.service.wakeup import announce

__all__ = ["BATCH_SUMMARY", "DONE", "QUEUED", "RUNNING", "Row", "Store", "insert_ignore"]

Row = sa.Row[Any]
QUEUED, RUNNING, DONE = "queued", "running", "done"
_DONE_COUNT_SECONDS = 30.0
_MIB = 1024 * 1024
_P = ParamSpec("_P")
_T = TypeVar("_T")


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode("utf-8")


def insert_ignore(conn: sa.Connection, table: sa.Table, values: dict[str, Any], keys: list[str]) -> int:
    """Insert unless a row with the same ``keys`` exists; the number of rows inserted (0 or 1)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
    return conn.execute(stmt).rowcount


def _retry_on_integrity_error(transaction: Callable[_P, _T]) -> Callable[_P, _T]:
    """Run the transaction once more when a concurrent writer took the same unique key first: the
    second attempt sees the other's row and answers as for a repeat."""

    @functools.wraps(transaction)
    def retried(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return transaction(*args, **kwargs)
        except sa.exc.IntegrityError:
            return transaction(*args, **kwargs)

    return retried


class Store:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._done_count = 0
        self._done_counted_at: float | None = None  # monotonic

    def _reader(self) -> sa.Connection:
        """A connection for reads only: on SQLite its transaction is deferred, so it takes no write lock
        (every other transaction here begins IMMEDIATE) and never waits for one (WAL)."""
        return self.engine.connect().execution_options(**{DEFERRED: True})

    # -- tenants -------------------------------------------------------------------------------

    def create_tenant(self, tenant_id: str, name: str, key_hash: str, quotas: Quotas) -> Row:
        try:
            return self._create_tenant(tenant_id, name, key_hash, quotas)
        except sa.exc.IntegrityError:
            raise Conflict(f"tenant {name!r} already exists") from None

    def _create_tenant(self, tenant_id: str, name: str, key_hash: str, quotas: Quotas) -> Row:
        with self.engine.begin() as conn:
            if conn.execute(sa.select(tenants.c.id).where(tenants.c.name == name)).first():
                raise Conflict(f"tenant {name!r} already exists")
            conn.execute(
                tenants.insert().values(
                    id=tenant_id, name=name, key_hash=key_hash, quotas=_json(quotas), created_at=time.time()
                )
            )
            return conn.execute(sa.select(tenants).where(tenants.c.id == tenant_id)).one()

    def list_tenants(self) -> Sequence[Row]:
        with self.engine.begin() as conn:
            return conn.execute(sa.select(tenants).order_by(tenants.c.created_at)).all()

    def tenant_by_key_hash(self, key_hash: str) -> Row | None:
        with self.engine.begin() as conn:
            return conn.execute(sa.select(tenants).where(tenants.c.key_hash == key_hash)).first()

    def tenant(self, tenant_id: str) -> Row:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(tenants).where(tenants.c.id == tenant_id)).first()
        if row is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        return row

    def set_quotas(self, tenant_id: str, quotas: Quotas) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(
                tenants.update().where(tenants.c.id == tenant_id).values(quotas=_json(quotas))
            ).rowcount:
                raise NotFound(f"no tenant {tenant_id!r}")

    def delete_tenant(self, tenant_id: str) -> None:
        """Delete a tenant and everything it owns (artifacts on disk go at the next garbage collection)."""
        with self.engine.begin() as conn:
            batch_pks = sa.select(batches.c.pk).where(batches.c.tenant_id == tenant_id)
            plugin_ids = sa.select(plugins.c.id).where(plugins.c.tenant_id == tenant_id)
            conn.execute(outcomes.delete().where(outcomes.c.batch_pk.in_(batch_pks)))
            conn.execute(runs.delete().where(runs.c.batch_pk.in_(batch_pks)))
            conn.execute(batches.delete().where(batches.c.tenant_id == tenant_id))
            conn.execute(plugin_versions.delete().where(plugin_versions.c.plugin_id.in_(plugin_ids)))
            conn.execute(plugins.delete().where(plugins.c.tenant_id == tenant_id))
            if not conn.execute(tenants.delete().where(tenants.c.id == tenant_id)).rowcount:
                raise NotFound(f"no tenant {tenant_id!r}")

    # -- plugins -------------------------------------------------------------------------------

    def _locked_quotas(self, conn: sa.Connection, tenant_id: str) -> Quotas:
        """The tenant's quotas, its row locked until the transaction ends: two writes of one tenant
        cannot both pass a total (SQLite's IMMEDIATE transactions serialise writers already)."""
        text = conn.execute(sa.select(tenants.c.quotas).where(tenants.c.id == tenant_id).with_for_update()).scalar()
        if text is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        return msgspec.json.decode(text, type=Quotas)

    @_retry_on_integrity_error  # a concurrent upload of the same plugin took the name or the seq
    def add_version(
        self,
        tenant_id: str,
        name: str,
        version: str,
        digest: str,
        manifest: str,
        *,
        size_bytes: int,
        activate: bool,
        archive: bytes | None = None,
    ) -> tuple[Row, bool]:
        """Store an uploaded version (a repeat of the same files, by digest, returns the existing one)
        within the tenant's max_plugins, max_versions and max_artifact_mb, and its ``archive``, which
        worker nodes fetch by digest."""
        now = time.time()
        with self.engine.begin() as conn:
            quotas = self._locked_quotas(conn, tenant_id)
            plugin = self._plugin(conn, tenant_id, name, missing_ok=True)
            if plugin is None:
                count = _plugin_count(conn, tenant_id)
                if count >= quotas.max_plugins:
                    raise QuotaExceeded(
                        f"quota max_plugins: the tenant has {count} plugins; the quota is {quotas.max_plugins}"
                    )
                conn.execute(
                    plugins.insert().values(
                        tenant_id=tenant_id, name=name, active_seq=None, enabled=True, config="{}", created_at=now
                    )
                )
                plugin = self._plugin(conn, tenant_id, name)
            existing = conn.execute(
                sa.select(plugin_versions).where(
                    plugin_versions.c.plugin_id == plugin.id, plugin_versions.c.digest == digest
                )
            ).first()
            created = existing is None
            if created:
                self._check_version_quotas(conn, tenant_id, plugin.id, size_bytes, quotas)
                seq = (
                    conn.execute(
                        sa.select(sa.func.max(plugin_versions.c.seq)).where(plugin_versions.c.plugin_id == plugin.id)
                    ).scalar_one()
                    or 0
                ) + 1
                conn.execute(
                    plugin_versions.insert().values(
                        plugin_id=plugin.id,
                        seq=seq,
                        version=version,
                        digest=digest,
                        manifest=manifest,
                        created_at=now,
                        size_bytes=size_bytes,
                    )
                )
            else:
                seq = existing.seq
            if activate:  # staged otherwise (a new plugin too); either way its enabled flag is the tenant's
                conn.execute(plugins.update().where(plugins.c.id == plugin.id).values(active_seq=seq))
            if archive is not None:
                _put_archive(conn, digest, archive, now)
            return self._version(conn, plugin.id, seq), created

    def _check_version_quotas(
        self, conn: sa.Connection, tenant_id: str, plugin_id: int, size_bytes: int, quotas: Quotas
    ) -> None:
        versions = conn.execute(
            sa.select(sa.func.count()).select_from(plugin_versions).where(plugin_versions.c.plugin_id == plugin_id)
        ).scalar_one()
        if versions >= quotas.max_versions:
            raise QuotaExceeded(
                f"quota max_versions: the plugin has {versions} versions; the quota is {quotas.max_versions}"
                " (delete the plugin, or ask the operator to raise it)"
            )
        cap = quotas.max_artifact_mb * _MIB
        if size_bytes > cap:
            raise QuotaTooLarge(f"quota max_artifact_mb: the plugin's files are {size_bytes} bytes; the quota is {cap}")
        stored = self._artifact_bytes(conn, tenant_id)
        if stored + size_bytes > cap:
            raise QuotaExceeded(
                f"quota max_artifact_mb: the tenant's plugin versions hold {stored} bytes, this one {size_bytes};"
                f" the quota is {cap}"
            )

    def _artifact_bytes(self, conn: sa.Connection, tenant_id: str) -> int:
        return conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(plugin_versions.c.size_bytes), 0))
            .join(plugins, plugins.c.id == plugin_versions.c.plugin_id)
            .where(plugins.c.tenant_id == tenant_id)
        ).scalar_one()

    def _plugin(self, conn: sa.Connection, tenant_id: str, name: str, missing_ok: bool = False) -> Row:
        row = conn.execute(sa.select(plugins).where(plugins.c.tenant_id == tenant_id, plugins.c.name == name)).first()
        if row is None and not missing_ok:
            raise NotFound(f"no plugin {name!r}")
        return row  # type: ignore[return-value]

    def _version(self, conn: sa.Connection, plugin_id: int, seq: int) -> Row:
        row = conn.execute(
            sa.select(plugin_versions).where(plugin_versions.c.plugin_id == plugin_id, plugin_versions.c.seq == seq)
        ).first()
        if row is None:
            raise NotFound(f"no version {seq}")
        return row

    def plugin(self, tenant_id: str, name: str) -> Row:
        with self.engine.begin() as conn:
            return self._plugin(conn, tenant_id, name)

    def list_plugins(self, tenant_id: str) -> Sequence[Row]:
        with self.engine.begin() as conn:
            return conn.execute(
                sa.select(plugins).where(plugins.c.tenant_id == tenant_id).order_by(plugins.c.name)
            ).all()

    def tenant_versions(self, tenant_id: str) -> Sequence[Row]:
        with self.engine.begin() as conn:
            return conn.execute(
                sa.select(plugin_versions)
                .join(plugins, plugins.c.id == plugin_versions.c.plugin_id)
                .where(plugins.c.tenant_id == tenant_id)
                .order_by(plugin_versions.c.seq)
            ).all()

    def versions(self, tenant_id: str, name: str) -> tuple[Row, Sequence[Row]]:
        with self.engine.begin() as conn:
            plugin = self._plugin(conn, tenant_id, name)
            rows = conn.execute(
                sa.select(plugin_versions)
                .where(plugin_versions.c.plugin_id == plugin.id)
                .order_by(plugin_versions.c.seq)
            ).all()
            return plugin, rows

    def version(self, tenant_id: str, name: str, seq: int) -> tuple[Row, Row]:
        with self.engine.begin() as conn:
            plugin = self._plugin(conn, tenant_id, name)
            return plugin, self._version(conn, plugin.id, seq)

    def activate(self, tenant_id: str, name: str, seq: int | None) -> Row:
        """Make ``seq`` the active version and enable the plugin (``None``: re-enable the active one, or
        activate the newest of a plugin whose versions are all staged)."""
        with self.engine.begin() as conn:
            plugin = self._plugin(conn, tenant_id, name)
            if seq is not None:
                target = self._version(conn, plugin.id, seq).seq
            elif plugin.active_seq is not None:
                target = plugin.active_seq
            else:
                newest = sa.select(sa.func.max(plugin_versions.c.seq)).where(plugin_versions.c.plugin_id == plugin.id)
                target = conn.execute(newest).scalar_one()
            conn.execute(plugins.update().where(plugins.c.id == plugin.id).values(active_seq=target, enabled=True))
            return self._plugin(conn, tenant_id, name)

    def rollback(self, tenant_id: str, name: str) -> Row:
        """Activate the newest version older than the active one."""
        with self.engine.begin() as conn:
            plugin = self._plugin(conn, tenant_id, name)
            previous = conn.execute(
                sa.select(sa.func.max(plugin_versions.c.seq)).where(
                    plugin_versions.c.plugin_id == plugin.id, plugin_versions.c.seq < (plugin.active_seq or 0)
                )
            ).scalar_one()
            if previous is None:
                raise Conflict(f"plugin {name!r} has no version older than the active one ({plugin.active_seq})")
            conn.execute(plugins.update().where(plugins.c.id == plugin.id).values(active_seq=previous, enabled=True))
            return self._plugin(conn, tenant_id, name)

    def disable(self, tenant_id: str, name: str) -> Row:
        with self.engine.begin() as conn:
            plugin = self._plugin(conn, tenant_id, name)
            conn.execute(plugins.update().where(plugins.c.id == plugin.id).values(enabled=False))
            return self._plugin(conn, tenant_id, name)

    def delete_plugin(self, tenant_id: str, name: str) -> None:
        with self.engine.begin() as conn:
            plugin = self._plugin(conn, tenant_id, name)
            conn.execute(plugin_versions.delete().where(plugin_versions.c.plugin_id == plugin.id))
            conn.execute(plugins.delete().where(plugins.c.id == plugin.id))

    def set_config(self, tenant_id: str, name: str, config: dict[str, Any], sealed: str | None) -> Row:
        with self.engine.begin() as conn:
            plugin = self._plugin(conn, tenant_id, name)
            conn.execute(
                plugins.update().where(plugins.c.id == plugin.id).values(config=_json(config), sealed_secrets=sealed)
            )
            return self._plugin(conn, tenant_id, name)

    def runnable_versions(self, version_ids: list[int]) -> Sequence[Row]:
        """The given versions with their plugin's current config and secrets (deleted ones are absent)."""
        if not version_ids:
            return []
        with self.engine.begin() as conn:
            query = (
                sa.select(
                    plugin_versions.c.id,
                    plugin_versions.c.digest,
                    plugin_versions.c.version,
                    plugin_versions.c.manifest,
                    plugins.c.name,
                    plugins.c.config,
                    plugins.c.sealed_secrets,
                )
                .join(plugins, plugins.c.id == plugin_versions.c.plugin_id)
                .where(plugin_versions.c.id.in_(version_ids))
            )
            return conn.execute(query).all()

    # -- batches -------------------------------------------------------------------------------

    @_retry_on_integrity_error  # the same id posted concurrently: the other insert won
    def insert_batch(
        self,
        tenant_id: str,
        batch_id: str,
        digest: str,
        metadata: dict[str, Any],
        results: bytes,
        result_count: int,
    ) -> tuple[Row, bool]:
        """Store a batch durably with the tenant's active plugin versions, within its max_stored_batches
        and max_stored_batch_mb; a repeat returns the stored one."""
        encoded_metadata = _json(metadata)
        stored_bytes = len(results) + len(encoded_metadata.encode("utf-8"))
        with self.engine.begin() as conn:
            quotas = self._locked_quotas(conn, tenant_id)
            existing = self._batch(conn, tenant_id, batch_id, missing_ok=True)
            if existing is not None:
                if existing.digest != digest:
                    raise Conflict(f"batch {batch_id!r} already exists with different results or metadata")
                return existing, False
            self._check_batch_quotas(conn, tenant_id, stored_bytes, quotas)
            version_ids = (
                conn.execute(
                    sa.select(plugin_versions.c.id)
                    .join(
                        plugins,
                        sa.and_(
                            plugins.c.id == plugin_versions.c.plugin_id, plugins.c.active_seq == plugin_versions.c.seq
                        ),
                    )
                    .where(plugins.c.tenant_id == tenant_id, plugins.c.enabled.is_(True))
                    .order_by(plugin_versions.c.id)
                )
                .scalars()
                .all()
            )
            conn.execute(
                batches.insert().values(
                    tenant_id=tenant_id,
                    batch_id=batch_id,
                    digest=digest,
                    status=QUEUED,
                    metadata=encoded_metadata,
                    results=results,
                    result_count=result_count,
                    version_ids=_json(list(version_ids)),
                    submitted_at=time.time(),
                    stored_bytes=stored_bytes,
                )
            )
            announce(conn)
            return self._batch(conn, tenant_id, batch_id), True

    def _check_batch_quotas(self, conn: sa.Connection, tenant_id: str, size: int, quotas: Quotas) -> None:
        cap = quotas.max_stored_batch_mb * _MIB
        if size > cap:
            raise QuotaTooLarge(f"quota max_stored_batch_mb: the batch stores {size} bytes; the quota is {cap}")
        count, stored = _batch_totals(conn, tenant_id)
        if count >= quotas.max_stored_batches:
            raise QuotaExceeded(
                f"quota max_stored_batches: the tenant stores {count} batches; the quota is"
                f" {quotas.max_stored_batches} (finished batches are purged after the retention period)"
            )
        if stored + size > cap:
            raise QuotaExceeded(
                f"quota max_stored_batch_mb: the tenant's batches hold {stored} bytes, this one {size};"
                f" the quota is {cap} (finished batches are purged after the retention period)"
            )

    def _batch(self, conn: sa.Connection, tenant_id: str, batch_id: str, missing_ok: bool = False) -> Row:
        row = conn.execute(
            sa.select(*BATCH_SUMMARY).where(batches.c.tenant_id == tenant_id, batches.c.batch_id == batch_id)
        ).first()
        if row is None and not missing_ok:
            raise NotFound(f"no batch {batch_id!r}")
        return row  # type: ignore[return-value]

    def batch(self, tenant_id: str, batch_id: str) -> Row:
        with self.engine.begin() as conn:
            return self._batch(conn, tenant_id, batch_id)

    def list_batches(self, tenant_id: str, status: str | None, limit: int) -> Sequence[Row]:
        with self.engine.begin() as conn:
            query = sa.select(*BATCH_SUMMARY).where(batches.c.tenant_id == tenant_id)
            if status:
                query = query.where(batches.c.status == status)
            return conn.execute(query.order_by(batches.c.pk.desc()).limit(limit)).all()

    def batch_payload(self, pk: int) -> Row:
        with self.engine.begin() as conn:
            return conn.execute(
                sa.select(batches.c.metadata, batches.c.results, batches.c.version_ids).where(batches.c.pk == pk)
            ).one()

    def ping(self) -> None:
        """Raises when the database cannot be reached; the cheapest query there is."""
        with self._reader() as conn:
            conn.execute(sa.select(1))

    def queue_depth(self) -> dict[str, int]:
        """Queued and running batches, counted through the status index (their number, not the table's);
        done batches, most of the table, are counted at most every ``_DONE_COUNT_SECONDS``."""
        with self._reader() as conn:
            waiting = (QUEUED, RUNNING)
            query = sa.select(batches.c.status, sa.func.count()).where(batches.c.status.in_(waiting))
            counts = dict(conn.execute(query.group_by(batches.c.status)).all())
            now = time.monotonic()
            if self._done_counted_at is None or now - self._done_counted_at >= _DONE_COUNT_SECONDS:
                done = sa.select(sa.func.count()).select_from(batches).where(batches.c.status == DONE)
                self._done_count = conn.execute(done).scalar_one()
                self._done_counted_at = now
        return {QUEUED: counts.get(QUEUED, 0), RUNNING: counts.get(RUNNING, 0), DONE: self._done_count}

    # -- retention and storage -----------------------------------------------------------------

    def purge_finished(self, before: float, limit: int = 200) -> int:
        """Delete up to ``limit`` batches finished before ``before`` with their runs and outcome, oldest
        first, in one short transaction; the caller repeats while it gets ``limit``."""
        with self.engine.begin() as conn:
            pks = (
                conn.execute(
                    sa.select(batches.c.pk)
                    .where(batches.c.finished_at < before, batches.c.status == DONE)
                    .order_by(batches.c.finished_at)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            if pks:
                conn.execute(outcomes.delete().where(outcomes.c.batch_pk.in_(pks)))
                conn.execute(runs.delete().where(runs.c.batch_pk.in_(pks)))
                conn.execute(batches.delete().where(batches.c.pk.in_(pks)))
            return len(pks)

    def referenced_digests(self) -> set[str]:
        """Artifacts some stored version still uses: every other artifact on disk is garbage."""
        with self.engine.begin() as conn:
            return set(conn.execute(sa.select(plugin_versions.c.digest).distinct()).scalars())

    def digest_referenced(self, digest: str) -> bool:
        with self.engine.begin() as conn:
            return (
                conn.execute(sa.select(plugin_versions.c.id).where(plugin_versions.c.digest == digest).limit(1)).first()
                is not None
            )

    def artifact_archive(self, digest: str) -> bytes | None:
        with self.engine.begin() as conn:
            return conn.execute(
                sa.select(artifact_archives.c.archive).where(artifact_archives.c.digest == digest)
            ).scalar()

    def purge_unreferenced_archives(self, before: float) -> int:
        """Delete the archives no stored version references, stored (or uploaded again) before ``before``."""
        referenced = sa.select(plugin_versions.c.id).where(plugin_versions.c.digest == artifact_archives.c.digest)
        with self.engine.begin() as conn:
            return conn.execute(
                artifact_archives.delete().where(artifact_archives.c.created_at < before, ~sa.exists(referenced))
            ).rowcount

    def usage(self, tenant_id: str) -> dict[str, int]:
        """What the tenant stores, in the units of its quotas' totals."""
        with self.engine.begin() as conn:
            count, stored = _batch_totals(conn, tenant_id)
            plugin_count = _plugin_count(conn, tenant_id)
            return {
                "plugins": plugin_count,
                "artifact_bytes": self._artifact_bytes(conn, tenant_id),
                "stored_batches": count,
                "stored_batch_bytes": stored,
            }

    # -- runs and outcomes ---------------------------------------------------------------------

    def stored_run(self, batch_pk: int, version_id: int, input_digest: str) -> str | None:
        with self.engine.begin() as conn:
            return conn.execute(
                sa.select(runs.c.result).where(
                    runs.c.batch_pk == batch_pk, runs.c.version_id == version_id, runs.c.input_digest == input_digest
                )
            ).scalar()

    def save_run(
        self, batch_pk: int, version_id: int, input_digest: str, plugin: str, status: str, result: str
    ) -> None:
        values = {
            "batch_pk": batch_pk,
            "version_id": version_id,
            "input_digest": input_digest,
            "plugin": plugin,
            "status": status,
            "result": result,
            "created_at": time.time(),
        }
        with self.engine.begin() as conn:
            insert_ignore(conn, runs, values, ["batch_pk", "version_id", "input_digest"])

    def runs_of(self, batch_pk: int) -> Sequence[Row]:
        with self.engine.begin() as conn:
            return conn.execute(sa.select(runs).where(runs.c.batch_pk == batch_pk).order_by(runs.c.id)).all()

    def last_run(self, batch_pk: int, plugin: str) -> Row | None:
        """The plugin's latest recorded run in the batch (a retried batch records it again): one row
        read, not every run's stored result."""
        with self.engine.begin() as conn:
            query = sa.select(runs).where(runs.c.batch_pk == batch_pk, runs.c.plugin == plugin)
            return conn.execute(query.order_by(runs.c.id.desc()).limit(1)).first()

    def outcome(self, batch_pk: int) -> bytes | None:
        """The outcome's JSON as the worker stored it, as bytes for the response: never decoded here (an
        outcome of many log records would cost many times its size as Python objects, per request)."""
        with self.engine.begin() as conn:
            column = outcomes.c.outcome
            if conn.dialect.name == "postgresql":
                as_bytes: sa.ColumnElement[bytes] = sa.func.convert_to(column, "UTF8", type_=sa.LargeBinary)
            else:
                as_bytes = sa.cast(column, sa.LargeBinary)
            return conn.execute(sa.select(as_bytes).where(outcomes.c.batch_pk == batch_pk)).scalar()

    def outcome_success(self, batch_pk: int) -> bool | None:
        """Whether the batch succeeded (None: no outcome yet), from its own column: no outcome is read."""
        with self.engine.begin() as conn:
            return conn.execute(sa.select(outcomes.c.success).where(outcomes.c.batch_pk == batch_pk)).scalar()

    def outcome_successes(self, batch_pks: Sequence[int]) -> dict[int, bool]:
        if not batch_pks:
            return {}
        with self.engine.begin() as conn:
            query = sa.select(outcomes.c.batch_pk, outcomes.c.success).where(outcomes.c.batch_pk.in_(batch_pks))
            return {pk: success for pk, success in conn.execute(query).all()}


BATCH_SUMMARY = (
    batches.c.pk,
    batches.c.tenant_id,
    batches.c.batch_id,
    batches.c.digest,
    batches.c.status,
    batches.c.result_count,
    batches.c.attempts,
    batches.c.submitted_at,
    batches.c.started_at,
    batches.c.finished_at,
)


def _batch_totals(conn: sa.Connection, tenant_id: str) -> tuple[int, int]:
    """How many batches the tenant stores and their bytes: what its quota checks and its usage show."""
    count, stored = conn.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(batches.c.stored_bytes), 0)).where(
            batches.c.tenant_id == tenant_id
        )
    ).one()
    return count, stored


def _put_archive(conn: sa.Connection, digest: str, archive: bytes, now: float) -> None:
    """Store the archive of ``digest`` once; a repeat renews its time, which holds off a garbage
    collection that is deciding about it (it waits for this row, then sees the new time)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(artifact_archives).values(digest=digest, archive=archive, created_at=now)
    conn.execute(stmt.on_conflict_do_update(index_elements=["digest"], set_={"created_at": now}))


def _plugin_count(conn: sa.Connection, tenant_id: str) -> int:
    return conn.execute(
        sa.select(sa.func.count()).select_from(plugins).where(plugins.c.tenant_id == tenant_id)
    ).scalar_one()

"""Every query the service runs, by name, on one engine. Nothing else in the service writes SQL.

Each public method is one transaction. Rows come back as SQLAlchemy ``Row`` objects (attribute
access by column name); the routes turn them into API models.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from rh_host.service.errors import Conflict, NotFound, QuotaExceeded
from rh_host.service.schema import batches, outcomes, plugin_versions, plugins, runs, tenants
from rh_host.service.settings import Quotas

__all__ = ["Store"]

Row = sa.Row[Any]
QUEUED, RUNNING, DONE = "queued", "running", "done"


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode("utf-8")


class Store:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _insert_ignore(self, conn: sa.Connection, table: sa.Table, values: dict[str, Any], keys: list[str]) -> int:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
        return conn.execute(stmt).rowcount

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
        """Delete a tenant and everything it owns (artifacts on disk are shared and stay)."""
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

    def add_version(self, *args: Any) -> tuple[Row, bool]:
        """Store an uploaded version (a repeat of the same files, by digest, returns the existing one)."""
        try:
            return self._add_version(*args)
        except sa.exc.IntegrityError:  # a concurrent upload of the same plugin took the name or the seq
            return self._add_version(*args)

    def _add_version(
        self, tenant_id: str, name: str, version: str, digest: str, manifest: str, activate: bool, max_plugins: int
    ) -> tuple[Row, bool]:
        now = time.time()
        with self.engine.begin() as conn:
            plugin = self._plugin(conn, tenant_id, name, missing_ok=True)
            if plugin is None:
                count = conn.execute(
                    sa.select(sa.func.count()).select_from(plugins).where(plugins.c.tenant_id == tenant_id)
                ).scalar_one()
                if count >= max_plugins:
                    raise QuotaExceeded(f"tenant has {count} plugins; the quota is {max_plugins}")
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
                seq = (
                    conn.execute(
                        sa.select(sa.func.max(plugin_versions.c.seq)).where(plugin_versions.c.plugin_id == plugin.id)
                    ).scalar_one()
                    or 0
                ) + 1
                conn.execute(
                    plugin_versions.insert().values(
                        plugin_id=plugin.id, seq=seq, version=version, digest=digest, manifest=manifest, created_at=now
                    )
                )
            else:
                seq = existing.seq
            if activate or plugin.active_seq is None:
                conn.execute(plugins.update().where(plugins.c.id == plugin.id).values(active_seq=seq, enabled=True))
            return self._version(conn, plugin.id, seq), created

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
        """Make ``seq`` the active version and enable the plugin (``None``: re-enable the active one)."""
        with self.engine.begin() as conn:
            plugin = self._plugin(conn, tenant_id, name)
            target = plugin.active_seq if seq is None else self._version(conn, plugin.id, seq).seq
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
                    plugins.c.name,
                    plugins.c.config,
                    plugins.c.sealed_secrets,
                )
                .join(plugins, plugins.c.id == plugin_versions.c.plugin_id)
                .where(plugin_versions.c.id.in_(version_ids))
            )
            return conn.execute(query).all()

    # -- batches -------------------------------------------------------------------------------

    def insert_batch(self, *args: Any) -> tuple[Row, bool]:
        """Store a batch durably with the tenant's active plugin versions; a repeat returns the stored one."""
        try:
            return self._insert_batch(*args)
        except sa.exc.IntegrityError:  # the same id posted concurrently: the other insert won
            return self._insert_batch(*args)

    def _insert_batch(
        self,
        tenant_id: str,
        batch_id: str,
        digest: str,
        metadata: dict[str, Any],
        results: bytes,
        result_count: int,
    ) -> tuple[Row, bool]:
        with self.engine.begin() as conn:
            existing = self._batch(conn, tenant_id, batch_id, missing_ok=True)
            if existing is not None:
                if existing.digest != digest:
                    raise Conflict(f"batch {batch_id!r} already exists with different results or metadata")
                return existing, False
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
                    metadata=_json(metadata),
                    results=results,
                    result_count=result_count,
                    version_ids=_json(list(version_ids)),
                    submitted_at=time.time(),
                )
            )
            return self._batch(conn, tenant_id, batch_id), True

    def _batch(self, conn: sa.Connection, tenant_id: str, batch_id: str, missing_ok: bool = False) -> Row:
        row = conn.execute(
            sa.select(*_BATCH_SUMMARY).where(batches.c.tenant_id == tenant_id, batches.c.batch_id == batch_id)
        ).first()
        if row is None and not missing_ok:
            raise NotFound(f"no batch {batch_id!r}")
        return row  # type: ignore[return-value]

    def batch(self, tenant_id: str, batch_id: str) -> Row:
        with self.engine.begin() as conn:
            return self._batch(conn, tenant_id, batch_id)

    def list_batches(self, tenant_id: str, status: str | None, limit: int) -> Sequence[Row]:
        with self.engine.begin() as conn:
            query = sa.select(*_BATCH_SUMMARY).where(batches.c.tenant_id == tenant_id)
            if status:
                query = query.where(batches.c.status == status)
            return conn.execute(query.order_by(batches.c.pk.desc()).limit(limit)).all()

    def batch_payload(self, pk: int) -> Row:
        with self.engine.begin() as conn:
            return conn.execute(
                sa.select(batches.c.metadata, batches.c.results, batches.c.version_ids).where(batches.c.pk == pk)
            ).one()

    def claim_next(self) -> Row | None:
        """Mark the next batch running, fairly: the tenant served least recently goes first, within its
        concurrency quota; within a tenant, the oldest batch."""
        now = time.time()
        with self.engine.begin() as conn:
            running = dict(
                conn.execute(
                    sa.select(batches.c.tenant_id, sa.func.count())
                    .where(batches.c.status == RUNNING)
                    .group_by(batches.c.tenant_id)
                ).all()
            )
            has_queued = sa.exists().where(batches.c.tenant_id == tenants.c.id, batches.c.status == QUEUED)
            waiting = conn.execute(
                sa.select(tenants.c.id, tenants.c.quotas).where(has_queued).order_by(tenants.c.last_claimed_at)
            ).all()
            for tenant in waiting:
                quotas = msgspec.json.decode(tenant.quotas, type=Quotas)
                if running.get(tenant.id, 0) >= quotas.max_concurrent_batches:
                    continue
                pk = conn.execute(
                    sa.select(batches.c.pk)
                    .where(batches.c.tenant_id == tenant.id, batches.c.status == QUEUED)
                    .order_by(batches.c.pk)
                    .limit(1)
                ).scalar()
                if pk is None:
                    continue
                claimed = conn.execute(
                    batches.update()
                    .where(batches.c.pk == pk, batches.c.status == QUEUED)
                    .values(status=RUNNING, started_at=now, attempts=batches.c.attempts + 1)
                ).rowcount
                if claimed:
                    conn.execute(tenants.update().where(tenants.c.id == tenant.id).values(last_claimed_at=now))
                    return conn.execute(
                        sa.select(*_BATCH_SUMMARY, tenants.c.quotas)
                        .join(tenants, tenants.c.id == batches.c.tenant_id)
                        .where(batches.c.pk == pk)
                    ).one()
            return None

    def requeue_running(self) -> int:
        """At start-up: batches a previous process was running go back to the queue (at-least-once)."""
        with self.engine.begin() as conn:
            return conn.execute(batches.update().where(batches.c.status == RUNNING).values(status=QUEUED)).rowcount

    def requeue(self, batch_pk: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                batches.update().where(batches.c.pk == batch_pk, batches.c.status == RUNNING).values(status=QUEUED)
            )

    def ping(self) -> None:
        """Raises when the database cannot be reached; the cheapest query there is."""
        with self.engine.connect() as conn:
            conn.execute(sa.select(1))

    def queue_depth(self) -> dict[str, int]:
        with self.engine.begin() as conn:
            counts = dict(conn.execute(sa.select(batches.c.status, sa.func.count()).group_by(batches.c.status)).all())
        return {status: counts.get(status, 0) for status in (QUEUED, RUNNING, DONE)}

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
            self._insert_ignore(conn, runs, values, ["batch_pk", "version_id", "input_digest"])

    def runs_of(self, batch_pk: int) -> Sequence[Row]:
        with self.engine.begin() as conn:
            return conn.execute(sa.select(runs).where(runs.c.batch_pk == batch_pk).order_by(runs.c.id)).all()

    def finish_batch(self, batch_pk: int, success: bool, outcome: str) -> bool:
        """Store the outcome (the first one wins) and mark the batch done; False if one was already there."""
        with self.engine.begin() as conn:
            stored = self._insert_ignore(
                conn,
                outcomes,
                {"batch_pk": batch_pk, "success": success, "outcome": outcome, "created_at": time.time()},
                ["batch_pk"],
            )
            conn.execute(batches.update().where(batches.c.pk == batch_pk).values(status=DONE, finished_at=time.time()))
            return bool(stored)

    def outcome(self, batch_pk: int) -> str | None:
        with self.engine.begin() as conn:
            return conn.execute(sa.select(outcomes.c.outcome).where(outcomes.c.batch_pk == batch_pk)).scalar()


_BATCH_SUMMARY = (
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

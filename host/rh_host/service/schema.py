"""The tables. Migrations (``migrations/versions``) create them; this is what the queries use.

JSON values are msgspec-encoded text, so that SQLite and PostgreSQL store the same bytes.
Times are seconds since the epoch (float).
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "artifact_archives",
    "batches",
    "metadata",
    "nodes",
    "outcomes",
    "plugin_versions",
    "plugins",
    "runs",
    "tenants",
]

metadata = sa.MetaData()

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("quotas", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_claimed_at", sa.Float, nullable=False, server_default="0"),
)

plugins = sa.Table(
    "plugins",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("active_seq", sa.Integer, nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("sealed_secrets", sa.Text, nullable=True),  # Fernet token of a JSON object
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("tenant_id", "name", name="uq_plugins_tenant_name"),
)

plugin_versions = sa.Table(
    "plugin_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plugin_id", sa.Integer, sa.ForeignKey("plugins.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False, server_default="0"),  # the artifact's unpacked files
    sa.UniqueConstraint("plugin_id", "seq", name="uq_plugin_versions_seq"),
    sa.Index("ix_plugin_versions_digest", "digest"),  # is an artifact still referenced
)

artifact_archives = sa.Table(
    "artifact_archives",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),  # of the unpacked files (artifacts.tree_digest)
    sa.Column("archive", sa.LargeBinary, nullable=False),  # the uploaded archive, as it came
    sa.Column("created_at", sa.Float, nullable=False),  # or last uploaded again: the garbage collection's grace
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("batch_id", sa.String(128), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),  # sha256 of results + metadata
    sa.Column("status", sa.String(16), nullable=False),  # queued, running, done
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("results", sa.LargeBinary, nullable=False),  # msgpack list of ResultLine
    sa.Column("result_count", sa.Integer, nullable=False),
    sa.Column("version_ids", sa.Text, nullable=False),  # plugin versions active at intake
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("submitted_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("stored_bytes", sa.BigInteger, nullable=False, server_default="0"),  # results + metadata
    sa.Column("claimed_by", sa.String(96), nullable=True),  # the node running it (None unless running)
    sa.Column("lease_expires_at", sa.Float, nullable=True),  # renewed by the node's heartbeat while it runs
    sa.UniqueConstraint("tenant_id", "batch_id", name="uq_batches_tenant_batch"),
    sa.Index("ix_batches_status_tenant", "status", "tenant_id", "pk"),
    sa.Index("ix_batches_finished_at", "finished_at"),  # retention finds the oldest finished batches
    sa.Index("ix_batches_tenant_bytes", "tenant_id", "stored_bytes"),  # the totals without reading the rows
    sa.Index("ix_batches_claims", "claimed_by"),  # a node's heartbeat and release find its claims
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(96), primary_key=True),  # host:pid:random, as batches.claimed_by names it
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_pk", sa.Integer, sa.ForeignKey("batches.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("version_id", sa.Integer, nullable=False),
    sa.Column("input_digest", sa.String(64), nullable=False),
    sa.Column("plugin", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("result", sa.Text, nullable=False),  # the RunResult, secrets redacted
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("batch_pk", "version_id", "input_digest", name="uq_runs_key"),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("batch_pk", sa.Integer, sa.ForeignKey("batches.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

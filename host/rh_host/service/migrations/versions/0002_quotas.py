"""Quotas and retention: stored bytes per batch and per version; indexes for the purge and the GC.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("stored_bytes", sa.BigInteger, nullable=False, server_default="0"))
    # batches stored before this revision count what they hold (the column is the quota's measure)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE batches SET stored_bytes = octet_length(results) + octet_length(metadata)")
    else:
        op.execute("UPDATE batches SET stored_bytes = length(results) + length(CAST(metadata AS BLOB))")
    op.create_index("ix_batches_finished_at", "batches", ["finished_at"])
    # a tenant's count and bytes from the index alone: the rows hold the results, megabytes each
    op.create_index("ix_batches_tenant_bytes", "batches", ["tenant_id", "stored_bytes"])
    with op.batch_alter_table("plugin_versions") as batch:
        # versions stored before this revision count 0 bytes towards max_artifact_mb until re-uploaded
        batch.add_column(sa.Column("size_bytes", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index("ix_plugin_versions_digest", "plugin_versions", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_plugin_versions_digest", "plugin_versions")
    with op.batch_alter_table("plugin_versions") as batch:
        batch.drop_column("size_bytes")
    op.drop_index("ix_batches_tenant_bytes", "batches")
    op.drop_index("ix_batches_finished_at", "batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("stored_bytes")

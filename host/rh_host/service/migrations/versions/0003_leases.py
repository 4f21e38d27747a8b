"""Leases: a running batch names the node that claimed it and when its lease ends; the nodes and
their heartbeats.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(96), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.Float, nullable=True))
    # batches left running by a process of an older version hold a lease that has ended: the first
    # claim after the upgrade puts them back in the queue, as a start used to
    op.execute("UPDATE batches SET lease_expires_at = 0 WHERE status = 'running'")
    op.create_index("ix_batches_claims", "batches", ["claimed_by"])
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(96), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("nodes")
    op.drop_index("ix_batches_claims", "batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("claimed_by")

"""Plugin archives in the database: every worker node fetches a plugin's files from here by digest.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # versions uploaded before this revision have no archive here: their files stay on the node that
    # took the upload until the same files are uploaded again (the same version, now with its archive)
    op.create_table(
        "artifact_archives",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("archive", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("artifact_archives")

"""batch isolation: evaluations remember their batch and isolation level

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 23:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column(
                "isolation", sa.String(length=16), nullable=False, server_default="evaluation"
            )
        )
        batch_op.create_index("ix_evaluations_batch_id", ["batch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_index("ix_evaluations_batch_id")
        batch_op.drop_column("isolation")
        batch_op.drop_column("batch_id")

"""languages: a request's compiler options, program arguments and compile limits; a
result's compiler output and compile time

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("program", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("compile_output", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("compile_output_truncated", sa.Boolean(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("compile_duration_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_column("compile_duration_seconds")
        batch_op.drop_column("compile_output_truncated")
        batch_op.drop_column("compile_output")
        batch_op.drop_column("program")

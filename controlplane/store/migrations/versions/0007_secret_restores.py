"""Applied Secrets restores: what `controlplane restore secrets` did, per Secret.

``secret_restores`` holds one row per applied restore (a dry-run writes none); see
controlplane/k8s/restore_log.py and docs/kubernetes.md. Nothing here imports the models.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_restores",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("backup_id", sa.String(length=160), nullable=False),
        sa.Column("component", sa.String(length=80), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("cluster", sa.String(length=300), nullable=False),
        sa.Column("operator", sa.String(length=300), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_secret_restores_backup_id", "secret_restores", ["backup_id"])
    op.create_index("ix_secret_restores_started_at", "secret_restores", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_secret_restores_started_at", table_name="secret_restores")
    op.drop_index("ix_secret_restores_backup_id", table_name="secret_restores")
    op.drop_table("secret_restores")

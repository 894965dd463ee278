"""backups.manifest_sha256 for stores created before it was recorded.

It replaces the hook that added the column whenever a store opened (backups/catalog.py's
``_add_missing_columns``). Nullable: backups made before it have no recorded sha256.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("backups")}
    if "manifest_sha256" not in have:
        op.add_column("backups", sa.Column("manifest_sha256", sa.String(length=64),
                                           nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backups") as batch:
        batch.drop_column("manifest_sha256")

"""Release manifests: what each environment ran, recorded by `release_drift` checks.

``release_manifests`` holds one row per change of an environment's images, digests and Helm
revisions (docs/kubernetes.md). Nothing here imports the models.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A store opened by an earlier build of the kubernetes branch made the table itself.
    if "release_manifests" in set(sa.inspect(op.get_bind()).get_table_names()):
        return
    op.create_table(
        "release_manifests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("env", sa.String(length=40), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=160), nullable=False),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_release_manifests_env", "release_manifests", ["env"])
    op.create_index("ix_release_manifests_recorded_at", "release_manifests", ["recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_release_manifests_recorded_at", table_name="release_manifests")
    op.drop_index("ix_release_manifests_env", table_name="release_manifests")
    op.drop_table("release_manifests")

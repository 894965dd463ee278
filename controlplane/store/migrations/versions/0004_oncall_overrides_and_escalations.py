"""On-call: stored schedule overrides and each incident's escalation position.

``oncall_overrides`` holds the overrides added through the CLI, the API and /oncall
(removed ones keep their row with ``removed_at``); ``incident_escalations`` holds, per
incident, the policy and the next step to fire (docs/oncall.md). Nothing here imports the
models.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "oncall_overrides" not in have:
        op.create_table(
            "oncall_overrides",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("schedule", sa.String(length=120), nullable=False),
            sa.Column("person", sa.String(length=120), nullable=False),
            sa.Column("covers", sa.String(length=120), nullable=True),
            sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column("author", sa.String(length=120), nullable=False),
            sa.Column("source", sa.String(length=10), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"))
        op.create_index("ix_oncall_overrides_schedule", "oncall_overrides", ["schedule"])
    if "incident_escalations" not in have:
        op.create_table(
            "incident_escalations",
            sa.Column("incident_id", sa.Integer(), nullable=False),
            sa.Column("policy", sa.String(length=120), nullable=False),
            sa.Column("round", sa.Integer(), nullable=False),
            sa.Column("step", sa.Integer(), nullable=False),
            sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("state", sa.String(length=10), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column("held_by", sa.Integer(), nullable=True),
            sa.PrimaryKeyConstraint("incident_id"))


def downgrade() -> None:
    op.drop_table("incident_escalations")
    op.drop_index("ix_oncall_overrides_schedule", table_name="oncall_overrides")
    op.drop_table("oncall_overrides")

"""incidents.refs: every channel's references in one JSON field.

Replaces the columns slack_channel, slack_ts and jira_key (one per channel, read by the
outbox through a whitelist) with ``refs`` ({"slack": {"channel", "ts"}, "jira": {"key"}}),
which the outbox passes through without reading. Existing references are carried over.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_OLD = {"slack_channel": ("slack", "channel"), "slack_ts": ("slack", "ts"),
        "jira_key": ("jira", "key")}


def upgrade() -> None:
    bind = op.get_bind()
    have = {c["name"] for c in sa.inspect(bind).get_columns("incidents")}
    if "refs" not in have:
        op.add_column("incidents", sa.Column("refs", sa.JSON(), nullable=True))
    incidents = sa.table("incidents", sa.column("id", sa.Integer), sa.column("refs", sa.JSON),
                         *(sa.column(name, sa.String) for name in _OLD if name in have))
    old = [name for name in _OLD if name in have]
    if old:
        rows = bind.execute(sa.select(incidents.c.id, *(incidents.c[n] for n in old))).all()
        for row in rows:
            refs: dict[str, dict[str, Any]] = {}
            for name, value in zip(old, row[1:], strict=True):
                if value:
                    channel, key = _OLD[name]
                    refs.setdefault(channel, {})[key] = str(value)
            bind.execute(sa.update(incidents).where(incidents.c.id == row[0])
                         .values(refs=refs))
    bind.execute(sa.update(incidents).where(incidents.c.refs.is_(None)).values(refs={}))
    with op.batch_alter_table("incidents") as batch:
        batch.alter_column("refs", existing_type=sa.JSON(), nullable=False)
        for name in old:
            batch.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("slack_channel", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("slack_ts", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("jira_key", sa.String(length=40), nullable=True))
        batch.drop_column("refs")

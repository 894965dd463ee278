"""The outbox carries subjects other than incidents: runbook runs' audit trails.

``notification_outbox`` gains ``subject`` (``KIND/ID``, e.g. ``runbook-run/7``) and its
``incident_id`` may be empty; ``notification_subjects`` keeps such a subject's channel
references (Slack thread, Jira issue). A runbook run's trail used to ride on an incidents
row of kind ``runbook`` (``runbook_runs.audit_incident_id``): each such row becomes the
subject ``runbook-run/RUN`` (its dedup key already, so Jira finds the same issue by its
label), its outbox entries and references move over, and the row and its timeline are
deleted, so they no longer show on /incidents or in incident counts.

Revision ID: 0008
Revises: 0006 (the lead chains it after 0007 at merge)
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_outbox = sa.table("notification_outbox", sa.column("id", sa.Integer),
                   sa.column("incident_id", sa.Integer), sa.column("subject", sa.String))
_incidents = sa.table("incidents", *(sa.column(c, t) for c, t in (
    ("id", sa.Integer), ("dedup_key", sa.String), ("kind", sa.String),
    ("refs", sa.JSON), ("check_id", sa.String), ("env", sa.String), ("name", sa.String),
    ("severity", sa.String), ("labels", sa.JSON), ("runbook", sa.Text), ("state", sa.String),
    ("status", sa.String), ("message", sa.Text), ("opened_at", sa.DateTime(timezone=True)),
    ("since", sa.DateTime(timezone=True)), ("notified", sa.Boolean),
    ("last_notified_message", sa.Text))))
_events = sa.table("incident_events", sa.column("incident_id", sa.Integer))
_subjects = sa.table("notification_subjects", sa.column("subject", sa.String),
                     sa.column("refs", sa.JSON))
_runs = sa.table("runbook_runs", sa.column("id", sa.Integer),
                 sa.column("runbook_id", sa.String),
                 sa.column("audit_incident_id", sa.Integer))


def upgrade() -> None:
    bind = op.get_bind()
    # Idempotent, as the earlier revisions: a store made by `create_all` of a newer build
    # (before migrations, or a branch build) may have any of this already.
    inspector = sa.inspect(bind)
    if "notification_subjects" not in set(inspector.get_table_names()):
        op.create_table(
            "notification_subjects",
            sa.Column("subject", sa.String(length=120), nullable=False),
            sa.Column("refs", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("subject"))
    columns = {c["name"] for c in inspector.get_columns("notification_outbox")}
    indexes = {i["name"] for i in inspector.get_indexes("notification_outbox")}
    with op.batch_alter_table("notification_outbox") as batch:
        if "subject" not in columns:
            batch.add_column(sa.Column("subject", sa.String(length=120), nullable=True))
        batch.alter_column("incident_id", existing_type=sa.Integer(), nullable=True)
        if "ix_notification_outbox_subject" not in indexes:
            batch.create_index("ix_notification_outbox_subject", ["subject"])
    records = bind.execute(sa.select(_incidents.c.id, _incidents.c.dedup_key,
                                     _incidents.c.refs)
                           .where(_incidents.c.kind == "runbook")).all()
    for inc_id, key, refs in records:
        bind.execute(sa.insert(_subjects).values(subject=key, refs=refs or {}))
        bind.execute(sa.update(_outbox).where(_outbox.c.incident_id == inc_id)
                     .values(incident_id=None, subject=key))
        bind.execute(sa.delete(_events).where(_events.c.incident_id == inc_id))
        bind.execute(sa.delete(_incidents).where(_incidents.c.id == inc_id))
    if "audit_incident_id" in {c["name"] for c in inspector.get_columns("runbook_runs")}:
        with op.batch_alter_table("runbook_runs") as batch:
            batch.drop_column("audit_incident_id")


def downgrade() -> None:
    """Back to audit records on incidents rows (resolved, kind ``runbook``)."""
    bind = op.get_bind()
    with op.batch_alter_table("runbook_runs") as batch:
        batch.add_column(sa.Column("audit_incident_id", sa.Integer(), nullable=True))
    now = datetime.now(UTC)
    for subject, refs in bind.execute(sa.select(_subjects.c.subject, _subjects.c.refs)).all():
        kind, _, ident = str(subject).partition("/")
        run = bind.execute(sa.select(_runs.c.id, _runs.c.runbook_id)
                           .where(_runs.c.id == int(ident))).first() \
            if kind == "runbook-run" and ident.isdigit() else None
        if run is None:
            continue
        values: dict[str, Any] = dict(
            dedup_key=subject, check_id=f"runbook {run[1]} #{run[0]}", env="", kind="runbook",
            name=f"Runbook {run[1]} run #{run[0]}", severity="major",
            labels={"runbook": run[1], "run": str(run[0])}, runbook=run[1], state="resolved",
            status="done", message="", opened_at=now, since=now, notified=True,
            last_notified_message="", refs=refs or {})
        inc_id = bind.execute(sa.insert(_incidents).values(**values)
                              .returning(_incidents.c.id)).scalar_one()
        bind.execute(sa.update(_outbox).where(_outbox.c.subject == subject)
                     .values(incident_id=inc_id, subject=None))
        bind.execute(sa.update(_runs).where(_runs.c.id == run[0])
                     .values(audit_incident_id=inc_id))
    # Entries about subjects that were no runbook run cannot go back.
    bind.execute(sa.delete(_outbox).where(_outbox.c.incident_id.is_(None)))
    with op.batch_alter_table("notification_outbox") as batch:
        batch.drop_index("ix_notification_outbox_subject")
        batch.alter_column("incident_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("subject")
    op.drop_table("notification_subjects")

"""Tables: incidents, their timeline, the notification outbox and silences."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.store.db import Base

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
ACTIVE_STATES = (OPEN, ACKNOWLEDGED)
PENDING, SENT, FAILED, SKIPPED = "pending", "sent", "failed", "skipped"


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware datetime (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class IncidentRow(Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_key_state", "dedup_key", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(200))
    check_id: Mapped[str] = mapped_column(String(120))
    env: Mapped[str] = mapped_column(String(40), default="")
    kind: Mapped[str] = mapped_column(String(40), default="")
    name: Mapped[str] = mapped_column(String(200), default="")
    severity: Mapped[str] = mapped_column(String(10))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    runbook: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(14), default=OPEN)
    status: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    notified: Mapped[bool] = mapped_column(Boolean, default=False)
    silenced_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_notified_message: Mapped[str] = mapped_column(Text, default="")
    # Each channel's references for this incident ({"slack": {"channel", "ts"}, "jira":
    # {"key"}}), as its notifier returned them; incidents never read inside.
    refs: Mapped[dict[str, Any]] = mapped_column(default=dict)


class IncidentEventRow(Base):
    """One line of an incident's timeline: transitions, acks, notifications, errors."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(30))
    message: Mapped[str] = mapped_column(Text, default="")


class OutboxRow(Base):
    """A notification to deliver; written in the same transaction as the change it reports.

    Its subject is an incident (``incident_id``) or something else worth a trail
    (``subject``: ``KIND/ID`` such as ``runbook-run/7``), exactly one of them."""

    __tablename__ = "notification_outbox"
    __table_args__ = (Index("ix_outbox_state_channel", "state", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True,
                                                    nullable=True)
    subject: Mapped[str | None] = mapped_column(String(120), index=True, nullable=True)
    channel: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    state: Mapped[str] = mapped_column(String(10), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SubjectRow(Base):
    """The channels' references (Slack thread, Jira issue) of an outbox subject that is not
    an incident; an incident keeps them in ``incidents.refs``."""

    __tablename__ = "notification_subjects"

    subject: Mapped[str] = mapped_column(String(120), primary_key=True)
    refs: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OutboxPauseRow(Base):
    """A channel the service asked us to leave alone (Slack 429 ``Retry-After``) until
    ``until``. Stored, not kept in memory, so a restart during the pause still honours it."""

    __tablename__ = "notification_pauses"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")


class SilenceRow(Base):
    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    check_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    env: Mapped[str | None] = mapped_column(String(40), nullable=True)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cron: Mapped[str | None] = mapped_column(String(120), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    comment: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    source: Mapped[str] = mapped_column(String(10), default="api")


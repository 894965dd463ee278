"""Tables of runbook runs: the run, each step attempt, each human decision.

Listed in the runbooks feature's ``tables`` (controlplane/features.py); the schema comes
from migration 0004.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.incidents.model import UTCDateTime
from controlplane.store import Base

# Run states. Active ones hold a concurrency slot.
QUEUED, RUNNING, WAITING, INTERRUPTED = "queued", "running", "waiting_approval", "interrupted"
SUCCEEDED, FAILED, CANCELLED, TIMED_OUT = "succeeded", "failed", "cancelled", "timed_out"
ACTIVE = (QUEUED, RUNNING, WAITING, INTERRUPTED)
EXECUTING = (RUNNING, WAITING)
"""A process is working on the run (its heartbeat must be fresh)."""
FINAL = (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT)
# Step states (besides running/waiting_approval/interrupted/failed/cancelled/timed_out).
SKIPPED, PLANNED = "skipped", "pending"
DONE_STEP = (SUCCEEDED, SKIPPED)


class RunRow(Base):
    __tablename__ = "runbook_runs"
    __table_args__ = (Index("ix_runbook_runs_rb_status", "runbook_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    runbook_id: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20), default=QUEUED)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_by: Mapped[str] = mapped_column(String(200), default="")
    trigger: Mapped[str] = mapped_column(String(40), default="cli")
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(200), default="")
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    cancelled_by: Mapped[str] = mapped_column(String(200), default="")

    def to_dict(self) -> dict[str, Any]:
        from controlplane.results import iso

        return {"id": self.id, "runbook": self.runbook_id, "status": self.status,
                "params": self.params, "started_by": self.started_by, "trigger": self.trigger,
                "incident_id": self.incident_id, "created_at": iso(self.created_at),
                "started_at": iso(self.started_at) if self.started_at else None,
                "finished_at": iso(self.finished_at) if self.finished_at else None,
                "duration_s": self.duration_s(), "message": self.message,
                "cancel_requested": self.cancel_requested}

    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)


class StepRow(Base):
    __tablename__ = "runbook_steps"
    __table_args__ = (Index("ix_runbook_steps_run", "run_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runbook_runs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(60))
    rollback_of: Mapped[str] = mapped_column(String(80), default="")
    status: Mapped[str] = mapped_column(String(20), default=RUNNING)
    idempotent: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def to_dict(self) -> dict[str, Any]:
        from controlplane.results import iso

        return {"step": self.step_id, "action": self.action, "rollback_of":
                self.rollback_of or None, "status": self.status, "attempt": self.attempt,
                "idempotent": self.idempotent, "args": self.args,
                "started_at": iso(self.started_at),
                "finished_at": iso(self.finished_at) if self.finished_at else None,
                "duration_s": self.duration_s, "message": self.message,
                "outputs": self.outputs, "progress": self.progress}


class DecisionRow(Base):
    """An approval given or refused (or a human's call on an interrupted step)."""

    __tablename__ = "runbook_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runbook_runs.id"))
    step_id: Mapped[str] = mapped_column(String(80))
    approved: Mapped[bool] = mapped_column(Boolean)
    by: Mapped[str] = mapped_column(String(200))
    via: Mapped[str] = mapped_column(String(20), default="api")
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    comment: Mapped[str] = mapped_column(Text, default="")
    used: Mapped[bool] = mapped_column(Boolean, default=False)

    def to_dict(self) -> dict[str, Any]:
        from controlplane.results import iso

        return {"step": self.step_id, "approved": self.approved, "by": self.by,
                "via": self.via, "at": iso(self.at), "comment": self.comment}


class SlotRow(Base):
    """One row per runbook, locked while deciding whether a run may start, so two
    triggers at the same moment cannot both take the last slot."""

    __tablename__ = "runbook_slots"

    runbook_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)

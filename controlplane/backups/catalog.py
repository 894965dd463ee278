"""The backup catalog: backups, drills and the per-component run lock, in the store."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from controlplane.results import StepFailed, StepRecorder, utcnow
from controlplane.store import Store
from controlplane.store.db import Base

log = logging.getLogger(__name__)

RUNNING, COMPLETE, FAILED, PRUNED = "running", "complete", "failed", "pruned"
CORRUPT = "corrupt"
"""A complete backup later found not to match its manifest; never offered for restore."""
PASSED = "passed"


class BackupRow(Base):
    __tablename__ = "backups"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    component: Mapped[str] = mapped_column(String(80), index=True)
    env: Mapped[str] = mapped_column(String(40), default="")
    status: Mapped[str] = mapped_column(String(12), default=RUNNING)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    blob_name: Mapped[str] = mapped_column(String(400), default="")
    manifest_name: Mapped[str] = mapped_column(String(400), default="")
    size_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """sha256 of the manifest blob's bytes; None for backups made before it was recorded."""
    manifest: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    failed_step: Mapped[str] = mapped_column(String(40), default="")
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    pruned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    host: Mapped[str] = mapped_column(String(200), default="")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "component": self.component, "env": self.env,
                "status": self.status, "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at), "duration_s": self.duration_s,
                "blob": self.blob_name, "manifest_blob": self.manifest_name,
                "size_bytes": self.size_bytes, "sha256": self.sha256,
                "manifest_sha256": self.manifest_sha256, "error": self.error,
                "failed_step": self.failed_step, "verified_at": _iso(self.verified_at),
                "pruned_at": _iso(self.pruned_at)}


class DrillRow(Base):
    __tablename__ = "drills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    component: Mapped[str] = mapped_column(String(80), index=True)
    backup_id: Mapped[str] = mapped_column(String(160), default="")
    status: Mapped[str] = mapped_column(String(12), default=RUNNING)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    restore_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    failed_step: Mapped[str] = mapped_column(String(40), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    steps: Mapped[list[Any]] = mapped_column(default=list)
    scratch_db: Mapped[str] = mapped_column(String(120), default="")
    on_demand: Mapped[bool] = mapped_column(Boolean, default=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "component": self.component, "backup_id": self.backup_id,
                "status": self.status, "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at), "duration_s": self.duration_s,
                "restore_s": self.restore_s, "failed_step": self.failed_step,
                "message": self.message, "steps": self.steps}


class BackupLockRow(Base):
    """At most one backup per component at a time, across processes (the primary key)."""

    __tablename__ = "backup_locks"

    component: Mapped[str] = mapped_column(String(80), primary_key=True)
    holder: Mapped[str] = mapped_column(String(300))
    backup_id: Mapped[str] = mapped_column(String(160))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    from controlplane.results import iso

    return iso(aware(ts))


def aware(ts: datetime) -> datetime:
    """SQLite drops the zone; we only ever store UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class LockHeld(Exception):
    pass


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class BackupLock:
    """Row lock in the store: INSERT wins, a second INSERT fails on the primary key.

    A holder that died (no heartbeat for ``stale_after``) is taken over and its running
    backup marked failed, so a crash never blocks backups forever.
    """

    def __init__(self, store: Store, component: str, backup_id: str,
                 stale_after: float) -> None:
        self.store = store
        self.component = component
        self.backup_id = backup_id
        self.stale_after = stale_after
        self.holder = f"{holder_id()}:{backup_id}"
        self.took_over: str | None = None
        """Id of the dead holder's backup when acquire() took its lock over."""

    def acquire_step(self, rec: StepRecorder) -> None:
        """The "lock" step of a backup run: StepFailed when another run holds the lock."""
        with rec.step("lock"):
            try:
                self.acquire()
            except LockHeld as exc:
                raise StepFailed(str(exc)) from None

    def acquire(self) -> None:
        now = utcnow()
        try:
            with self.store.session() as s:
                s.add(BackupLockRow(component=self.component, holder=self.holder,
                                    backup_id=self.backup_id, acquired_at=now,
                                    heartbeat_at=now))
            return
        except IntegrityError:
            pass
        with self.store.session() as s:
            row = s.get(BackupLockRow, self.component)
            if row is None:
                raise LockHeld("the lock was released while we looked; try again")
            age = (now - aware(row.heartbeat_at)).total_seconds()
            if age < self.stale_after:
                raise LockHeld(f"backup {row.backup_id} of {self.component} is already "
                               f"running (holder {row.holder.rsplit(':', 1)[0]}, started "
                               f"{_iso(row.acquired_at)}); this run was refused")
            old_holder, old_backup = row.holder, row.backup_id
            took = s.execute(update(BackupLockRow).where(
                BackupLockRow.component == self.component,
                BackupLockRow.holder == old_holder).values(
                holder=self.holder, backup_id=self.backup_id, acquired_at=now,
                heartbeat_at=now))
            if not getattr(took, "rowcount", 0):
                raise LockHeld(f"another run of {self.component} took the lock first")
            s.execute(update(BackupRow).where(
                BackupRow.id == old_backup, BackupRow.status == RUNNING).values(
                status=FAILED, failed_step="interrupted", finished_at=now,
                error=f"interrupted: no heartbeat from {old_holder} for {age:.0f}s"))
            self.took_over = old_backup

    def heartbeat(self) -> None:
        with self.store.session() as s:
            s.execute(update(BackupLockRow).where(
                BackupLockRow.component == self.component,
                BackupLockRow.holder == self.holder).values(heartbeat_at=utcnow()))

    def release(self) -> None:
        with self.store.session() as s:
            row = s.get(BackupLockRow, self.component)
            if row is not None and row.holder == self.holder:
                s.delete(row)


# -- queries --------------------------------------------------------------------------------


def backups(s: Session, component: str | None = None, status: str | None = None,
            limit: int = 500, since: datetime | None = None) -> list[BackupRow]:
    """Newest first."""
    q = select(BackupRow)
    if component:
        q = q.where(BackupRow.component == component)
    if status:
        q = q.where(BackupRow.status == status)
    if since is not None:
        q = q.where(BackupRow.started_at >= since)
    return list(s.scalars(q.order_by(BackupRow.started_at.desc()).limit(limit)))


def latest_complete(s: Session, component: str, verified: bool = False) -> BackupRow | None:
    """Newest complete backup (with ``verified``: newest one a drill has restored)."""
    q = select(BackupRow).where(BackupRow.component == component,
                                BackupRow.status == COMPLETE)
    if verified:
        q = q.where(BackupRow.verified_at.is_not(None))
    return s.scalars(q.order_by(BackupRow.started_at.desc()).limit(1)).first()


def drills(s: Session, component: str | None = None, limit: int = 200,
           since: datetime | None = None) -> list[DrillRow]:
    q = select(DrillRow)
    if component:
        q = q.where(DrillRow.component == component)
    if since is not None:
        q = q.where(DrillRow.started_at >= since)
    return list(s.scalars(q.order_by(DrillRow.started_at.desc()).limit(limit)))


def mark_failed_if_running(s: Session, backup_id: str, step: str, error: str) -> None:
    s.execute(update(BackupRow).where(BackupRow.id == backup_id,
                                      BackupRow.status == RUNNING).values(
        status=FAILED, failed_step=step, error=error, finished_at=utcnow()))


def mark_corrupt(s: Session, backup_id: str, error: str) -> None:
    s.execute(update(BackupRow).where(BackupRow.id == backup_id,
                                      BackupRow.status == COMPLETE).values(
        status=CORRUPT, failed_step="verify", error=error))


def days_ago(days: float) -> datetime:
    return utcnow() - timedelta(days=days)

"""Check results, hourly aggregates and the evaluated state of each check."""

from __future__ import annotations

import functools
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.expression import Executable

from controlplane.results import Result, Status, Step
from controlplane.store.db import Base


class ResultRow(Base):
    __tablename__ = "results"
    __table_args__ = (Index("ix_results_check_started", "check_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    check_id: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(40))
    env: Mapped[str] = mapped_column(String(40), default="")
    status: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    duration_s: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    steps: Mapped[list[Any]] = mapped_column(default=list)

    @classmethod
    def from_result(cls, r: Result) -> ResultRow:
        return cls(**_row_values(r))

    def to_result(self) -> Result:
        started = self.started_at
        if started.tzinfo is None:  # SQLite drops the zone; we only ever store UTC
            started = started.replace(tzinfo=UTC)
        return Result(check=self.check_id, kind=self.kind, env=self.env,
                      status=Status(self.status), started_at=started,
                      duration_s=self.duration_s, message=self.message,
                      metrics=self.metrics, details=self.details,
                      steps=[Step.model_validate(s) for s in self.steps])


class HourlyAggregate(Base):
    """Per check and hour: run counts by status and latency sums, kept longer than raw rows."""

    __tablename__ = "results_hourly"

    check_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    ok: Mapped[int] = mapped_column(Integer, default=0)
    degraded: Mapped[int] = mapped_column(Integer, default=0)
    failing: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[int] = mapped_column(Integer, default=0)
    duration_sum: Mapped[float] = mapped_column(Float, default=0.0)
    duration_max: Mapped[float] = mapped_column(Float, default=0.0)


class CheckStateRow(Base):
    """The evaluated (damped) state of a check, surviving restarts."""

    __tablename__ = "check_state"

    check_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    state: Mapped[str] = mapped_column(String(10), default="unknown")
    ok_streak: Mapped[int] = mapped_column(Integer, default=0)
    degraded_streak: Mapped[int] = mapped_column(Integer, default=0)
    bad_streak: Mapped[int] = mapped_column(Integer, default=0)
    fail_streak: Mapped[int] = mapped_column(Integer, default=0)
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_status: Mapped[str] = mapped_column(String(10), default="")
    last_message: Mapped[str] = mapped_column(Text, default="")
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def _hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def add_results(session: Session, results: list[Result]) -> None:
    """Insert raw rows and fold them into the hourly aggregates.

    Plain SQL statements rather than the ORM's unit of work: this runs for every probe run,
    and loading, diffing and flushing ORM objects cost more CPU than a TLS handshake. The
    hourly row is one upsert, so no read precedes the write."""
    if not results:
        return
    conn = session.connection()
    conn.execute(insert(RESULTS), [_row_values(r) for r in results])
    buckets: dict[tuple[str, datetime], list[Result]] = {}
    for r in results:
        buckets.setdefault((r.check, _hour(r.started_at)), []).append(r)
    for (check_id, hour), group in buckets.items():
        counts = Counter(r.status.value for r in group)
        _upsert_hourly(conn, {
            "check_id": check_id, "hour": hour, "runs": len(group),
            **{s.value: counts[s.value] for s in Status},
            "duration_sum": sum(r.duration_s for r in group),
            "duration_max": max(r.duration_s for r in group)})


RESULTS = cast(Table, ResultRow.__table__)
HOURLY = cast(Table, HourlyAggregate.__table__)
STATE = cast(Table, CheckStateRow.__table__)


def _row_values(r: Result) -> dict[str, Any]:
    data = r.to_json_dict()
    return {"check_id": r.check, "kind": r.kind, "env": r.env, "status": r.status.value,
            "started_at": r.started_at, "duration_s": r.duration_s, "message": r.message,
            "metrics": data["metrics"], "details": data["details"], "steps": data["steps"]}


def _upsert_hourly(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(_hourly_upsert(conn.dialect.name), values)


# Statements built once and executed with parameters: building one per run (with its values
# inline) made SQLAlchemy compute a cache key over every value, as costly as the write.

@functools.cache
def _hourly_upsert(dialect: str) -> Executable:
    from sqlalchemy.dialects import postgresql, sqlite

    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"store dialect {dialect} has no upsert here")
    # the two dialects' Insert share on_conflict_do_update's signature
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(HOURLY)
    new, col = stmt.excluded, HOURLY.c
    return stmt.on_conflict_do_update(
        index_elements=[col.check_id, col.hour],
        set_={**{name: col[name] + new[name] for name in ("runs", *(s.value for s in Status),
                                                           "duration_sum")},
              "duration_max": case((new.duration_max > col.duration_max, new.duration_max),
                                   else_=col.duration_max)})


_LOAD_STATE = select(STATE).where(STATE.c.check_id == bindparam("key"))
_UPDATE_STATE = update(STATE).where(STATE.c.check_id == bindparam("key"))
_INSERT_STATE = insert(STATE)


def load_state(conn: Connection, check_id: str) -> Row[Any] | None:
    """The stored state row of a check (state, streaks, since), None before its first run."""
    return conn.execute(_LOAD_STATE, {"key": check_id}).first()


def save_state(conn: Connection, check_id: str, values: dict[str, Any], exists: bool) -> None:
    if exists:
        conn.execute(_UPDATE_STATE, {"key": check_id, **values})
    else:
        conn.execute(_INSERT_STATE, {"check_id": check_id, **values})


def history(session: Session, check_id: str, since: datetime | None = None,
            limit: int = 500) -> list[Result]:
    """Newest first."""
    q = select(ResultRow).where(ResultRow.check_id == check_id)
    if since is not None:
        q = q.where(ResultRow.started_at >= since)
    rows = session.scalars(q.order_by(ResultRow.started_at.desc()).limit(limit))
    return [r.to_result() for r in rows]


def latest(session: Session, check_id: str) -> Result | None:
    found = history(session, check_id, limit=1)
    return found[0] if found else None


def uptime(session: Session, check_id: str, window: timedelta,
           now: datetime | None = None) -> float | None:
    """Share of runs in exactly the last ``window`` that were ok or degraded: whole hours
    from the hourly aggregates, the part-hour at the window's start from the raw rows (kept
    14 days by default, longer than any window shown)."""
    now = now or datetime.now(UTC)
    start = now - window
    first_full = _hour(start) if _hour(start) == start else _hour(start) + timedelta(hours=1)
    q = select(func.sum(HourlyAggregate.runs), func.sum(HourlyAggregate.ok),
               func.sum(HourlyAggregate.degraded)).where(
        HourlyAggregate.check_id == check_id, HourlyAggregate.hour >= first_full)
    runs, ok, degraded = session.execute(q).one()
    part = session.execute(select(ResultRow.status, func.count()).where(
        ResultRow.check_id == check_id, ResultRow.started_at >= start,
        ResultRow.started_at < first_full).group_by(ResultRow.status)).all()
    counts = {status: int(n) for status, n in part}
    runs = (runs or 0) + sum(counts.values())
    up = (ok or 0) + (degraded or 0) + counts.get(Status.OK.value, 0) \
        + counts.get(Status.DEGRADED.value, 0)
    if not runs:
        return None
    return float(up) / float(runs)


def prune(session: Session, raw_retention_s: float, aggregate_retention_s: float,
          now: datetime | None = None) -> tuple[int, int]:
    """Delete raw rows and aggregates past retention; returns (raw, aggregates) deleted."""
    now = now or datetime.now(UTC)
    raw = session.execute(delete(ResultRow).where(
        ResultRow.started_at < now - timedelta(seconds=raw_retention_s)))
    agg = session.execute(delete(HourlyAggregate).where(
        HourlyAggregate.hour < now - timedelta(seconds=aggregate_retention_s)))
    return int(getattr(raw, "rowcount", 0) or 0), int(getattr(agg, "rowcount", 0) or 0)

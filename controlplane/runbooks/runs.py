"""Runs in the store: start (with the concurrency rule), cancel, decide, read.

Everything here is a short transaction usable from any process sharing the store (the
web UI of a standby, the CLI); the engine of the active instance does the work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from controlplane.results import utcnow
from controlplane.runbooks.config import RunbookConfig
from controlplane.runbooks.model import (
    ACTIVE,
    CANCELLED,
    EXECUTING,
    INTERRUPTED,
    QUEUED,
    WAITING,
    DecisionRow,
    RunRow,
    SlotRow,
    StepRow,
)
from controlplane.store import Store

log = logging.getLogger(__name__)


class RunRefused(Exception):
    """The run cannot start (busy runbook, bad parameters); the message says why."""


class NotFound(LookupError):
    pass


@dataclass
class Started:
    run_id: int
    status: str


def lock_slot(s: Session, runbook_id: str) -> None:
    """Serialize start/claim decisions for one runbook (row lock on PostgreSQL, the write
    lock on SQLite, taken by the UPDATE)."""
    hit = s.execute(update(SlotRow).where(SlotRow.runbook_id == runbook_id)
                    .values(version=SlotRow.version + 1)).rowcount  # type: ignore[attr-defined]
    if not hit:
        s.add(SlotRow(runbook_id=runbook_id, version=1))
        s.flush()


def count(s: Session, runbook_id: str, states: tuple[str, ...]) -> int:
    return int(s.scalar(select(func.count()).select_from(RunRow).where(
        RunRow.runbook_id == runbook_id, RunRow.status.in_(states))) or 0)


def start(store: Store, rb: RunbookConfig, params: dict[str, Any], by: str, trigger: str,
          incident_id: int | None = None) -> Started:
    """Store a new run as queued (the engine picks it up); RunRefused when the runbook is
    busy and refuses, or the parameters are wrong."""
    try:
        values = rb.resolve_params(params)
    except ValueError as exc:
        raise RunRefused(str(exc)) from None
    with store.session() as s:
        lock_slot(s, rb.id)
        busy = s.scalars(select(RunRow).where(RunRow.runbook_id == rb.id,
                                              RunRow.status.in_(ACTIVE))
                         .order_by(RunRow.id)).all()
        if len(busy) >= rb.concurrency.limit and rb.concurrency.when_busy == "refuse":
            names = ", ".join(f"run {r.id} ({r.status})" for r in busy)
            raise RunRefused(f"runbook {rb.id} is already running ({names}); it allows "
                             f"{rb.concurrency.limit} at a time: wait, or cancel that run")
        row = RunRow(runbook_id=rb.id, status=QUEUED, params=values, started_by=by or "unknown",
                     trigger=trigger, incident_id=incident_id, created_at=utcnow())
        s.add(row)
        s.flush()
        run_id = row.id
    log.info("runbook run queued run=%s runbook=%s by=%s trigger=%s", run_id, rb.id, by,
             trigger)
    return Started(run_id, QUEUED)


def cancel(store: Store, run_id: int, by: str,
           finish_hooks: list[Callable[[Session, RunRow], None]] | None = None) -> str:
    """Ask a run to stop. A run nobody is executing (queued, interrupted) ends at once
    (``finish_hooks`` run in that transaction, like the engine's); a running step is told
    to stop and the run ends when it does."""
    with store.session() as s:
        row = s.get(RunRow, run_id)
        if row is None:
            raise NotFound(f"no runbook run {run_id}")
        if row.status not in ACTIVE:
            raise RunRefused(f"run {run_id} is already {row.status}")
        row.cancel_requested, row.cancelled_by = True, by
        if row.status in (QUEUED, INTERRUPTED):
            for st in s.scalars(select(StepRow).where(StepRow.run_id == run_id,
                                                      StepRow.status == INTERRUPTED)):
                st.status, st.finished_at = CANCELLED, utcnow()
            finish(s, row, CANCELLED, f"cancelled by {by}")
            for hook in finish_hooks or []:
                hook(s, row)
        return row.status


def decide(store: Store, run_id: int, approved: bool, by: str, via: str,
           comment: str = "") -> str:
    """Record a human's decision on the step the run waits on; returns that step's id."""
    with store.session() as s:
        row = s.get(RunRow, run_id)
        if row is None:
            raise NotFound(f"no runbook run {run_id}")
        if row.status not in (WAITING, INTERRUPTED):
            raise RunRefused(f"run {run_id} is {row.status}: it is not waiting for a "
                             "decision")
        step = s.scalars(select(StepRow).where(StepRow.run_id == run_id,
                                               StepRow.status.in_((WAITING, INTERRUPTED)))
                         .order_by(StepRow.seq.desc())).first()
        if step is None:
            raise RunRefused(f"run {run_id} has no step waiting for a decision")
        s.add(DecisionRow(run_id=run_id, step_id=step.step_id, approved=approved,
                          by=by or "unknown", via=via, at=utcnow(), comment=comment))
        if row.status == INTERRUPTED:
            # The engine picks the run up again and applies the decision.
            row.status = QUEUED
        log.info("runbook decision run=%s step=%s approved=%s by=%s via=%s", run_id,
                 step.step_id, approved, by, via)
        return step.step_id


def finish(s: Session, row: RunRow, status: str, message: str) -> None:
    row.status, row.message, row.finished_at = status, message, utcnow()
    if row.started_at is None:
        row.started_at = row.finished_at


def get(store: Store, run_id: int) -> dict[str, Any]:
    """A run with its steps and decisions, as the API shows it."""
    with store.session() as s:
        row = s.get(RunRow, run_id)
        if row is None:
            raise NotFound(f"no runbook run {run_id}")
        out = row.to_dict()
        out["jira_key"] = _jira_key(s, row)
        out["audit"] = _deliveries(s, row)
        out["steps"] = [st.to_dict() for st in s.scalars(
            select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.seq))]
        out["decisions"] = [d.to_dict() for d in s.scalars(
            select(DecisionRow).where(DecisionRow.run_id == run_id).order_by(DecisionRow.id))]
        return out


def history(store: Store, runbook_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    with store.session() as s:
        q = select(RunRow).order_by(RunRow.id.desc()).limit(limit)
        if runbook_id is not None:
            q = q.where(RunRow.runbook_id == runbook_id)
        return [r.to_dict() for r in s.scalars(q)]


def last_runs(store: Store) -> dict[str, dict[str, Any]]:
    """The newest run of each runbook."""
    with store.session() as s:
        newest = select(func.max(RunRow.id)).group_by(RunRow.runbook_id)
        return {r.runbook_id: r.to_dict() for r in s.scalars(
            select(RunRow).where(RunRow.id.in_(newest)))}


def stale_runs(store: Store, older_than: datetime) -> list[int]:
    """Runs a process was executing whose heartbeat stopped (the process died)."""
    with store.session() as s:
        return list(s.scalars(select(RunRow.id).where(
            RunRow.status.in_(EXECUTING),
            (RunRow.heartbeat_at.is_(None)) | (RunRow.heartbeat_at < older_than))))


def _jira_key(s: Session, row: RunRow) -> str | None:
    """The Jira issue holding the run's trail (its own, or its incident's)."""
    from controlplane.incidents import api as incidents
    from controlplane.runbooks.audit import subject

    refs = (incidents.refs(s, incident_id=row.incident_id) if row.incident_id is not None
            else incidents.refs(s, subject=subject(row.id)))
    key = (refs.get("jira") or {}).get("key")
    return str(key) if key else None


def _deliveries(s: Session, row: RunRow) -> list[dict[str, Any]]:
    """How the run's own trail went out (a run from an incident: see the incident)."""
    from controlplane.incidents import api as incidents
    from controlplane.runbooks.audit import subject

    return [] if row.incident_id is not None else incidents.deliveries(s, subject(row.id))

"""One run, step by step, with every start, end, output and decision in the store.

The executor is restartable: it rebuilds what earlier steps produced from their stored
rows, skips steps already done, re-runs an idempotent step a dead process left running,
and applies a human's decision to a step left ``interrupted`` (a non-idempotent step never
runs twice). Steps run in a worker thread so a hung action cannot hold the run past its
timeout; a step past its deadline is told to stop (``ctx.cancelled``) and recorded as
timed out.

A graceful stop (SIGTERM, see :class:`Shutdown`) is not a crash: no new step starts, the
step in flight may finish within the shutdown grace period (the run is then queued again
and the next active instance continues with the next step), and a step that cannot
finish in time (or waits for an approval) is recorded ``interrupted`` with the reason
"shutdown": an idempotent one runs again on the next start, a non-idempotent one waits
for a human, exactly as after a kill -9.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.logs import redact
from controlplane.probes.base import _redacted
from controlplane.results import iso, utcnow
from controlplane.runbooks import action_class
from controlplane.runbooks import expr as ex
from controlplane.runbooks.base import ActionFailed, ActionResult, Decision, Services, StepContext
from controlplane.runbooks.config import RunbookConfig, StepConfig
from controlplane.runbooks.model import (
    CANCELLED,
    DONE_STEP,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    WAITING,
    DecisionRow,
    RunRow,
    StepRow,
)
from controlplane.runbooks.runs import finish
from controlplane.store import Store

log = logging.getLogger(__name__)

POLL_S = 0.2
PROGRESS_EVERY_S = 0.5
GRACE_S = 1.0
"""Past its deadline an action gets this long to stop by itself (and say why)."""


SHUTDOWN_JOIN_S = 2.0
"""After the grace period, how long a stopped step's thread gets to return."""


@dataclass
class Shutdown:
    """A graceful stop of the process: set once, with the end of its grace period."""

    requested: threading.Event = field(default_factory=threading.Event)
    deadline: float = math.inf
    """time.monotonic() at which steps still running are interrupted."""

    def begin(self, deadline: float) -> None:
        self.deadline = deadline
        self.requested.set()

    def over(self) -> bool:
        return self.requested.is_set() and time.monotonic() >= self.deadline


class Stop(Exception):
    """End the run now with this status (cancelled, timed out, interrupted)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RunExecutor:
    def __init__(self, store: Store, rb: RunbookConfig, run_id: int, services: Services,
                 cancelled: threading.Event,
                 finish_hooks: list[Callable[[Session, RunRow], None]] | None = None,
                 shutdown: Shutdown | None = None) -> None:
        self.store, self.rb, self.run_id, self.services = store, rb, run_id, services
        self.cancelled = cancelled
        self.shutdown = shutdown or Shutdown()
        self._waiting = False  # the step in flight waits for a human decision
        self.finish_hooks = finish_hooks or []
        with store.session() as s:
            row = s.get(RunRow, run_id)
            assert row is not None and row.started_at is not None
            self.params = dict(row.params)
            started = row.started_at
            self.scope: dict[str, Any] = {
                "params": self.params, "steps": {},
                "run": {"id": run_id, "runbook": rb.id, "started_by": row.started_by,
                        "trigger": row.trigger, "incident_id": row.incident_id},
                "incident": {"id": row.incident_id} if row.incident_id else {}}
            self.rows = {(r.step_id, r.rollback_of): r for r in s.scalars(
                select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.seq))}
        elapsed = (utcnow() - started).total_seconds()
        self.run_deadline = time.monotonic() + rb.timeout - elapsed
        self.seq = max((r.seq for r in self.rows.values()), default=0)

    # -- the run ----------------------------------------------------------------------------

    def execute(self) -> str:
        try:
            status, message = self._steps()
        except Stop as stop:
            status, message = stop.status, stop.message
        except Exception as exc:  # a bug here must still end the run visibly
            log.exception("runbook run crashed run=%s runbook=%s", self.run_id, self.rb.id)
            status, message = FAILED, f"engine error: {type(exc).__name__}: {exc}"
        with self.store.session() as s:
            row = s.get(RunRow, self.run_id)
            assert row is not None
            if status in (INTERRUPTED, QUEUED):  # not over: a human, or the next start
                row.status, row.message, row.owner = status, message, ""
            else:
                finish(s, row, status, message)
                for hook in self.finish_hooks:
                    hook(s, row)
        log.info("runbook run ended run=%s runbook=%s status=%s message=%s", self.run_id,
                 self.rb.id, status, message)
        return status

    def _steps(self) -> tuple[str, str]:
        for step in self.rb.steps:
            status, message = self._one(step, "")
            if status in DONE_STEP or step.on_failure == "continue":
                continue
            if step.rollback:
                done = self._rollback(step)
                return FAILED, f"step {step.id} failed: {message}; rolled back ({done})"
            return FAILED, f"step {step.id} failed: {message}"
        return SUCCEEDED, f"all {len(self.rb.steps)} steps done"

    def _rollback(self, failed: StepConfig) -> str:
        results = []
        for step in failed.rollback:
            status, _ = self._one(step, failed.id)
            results.append(f"{step.id} {status}")
            if status not in DONE_STEP and step.on_failure != "continue":
                break
        return ", ".join(results)

    def _one(self, step: StepConfig, rollback_of: str) -> tuple[str, str]:
        prev = self.rows.get((step.id, rollback_of))
        if prev is not None and prev.status in (*DONE_STEP, FAILED, TIMED_OUT):
            self._remember(step.id, prev.status, prev.message, prev.outputs)
            return prev.status, prev.message
        if prev is not None and prev.status == INTERRUPTED and not prev.idempotent:
            return self._decided(step, prev)
        self._check_stop()  # an idempotent step a shutdown interrupted runs again
        return self._execute_step(step, rollback_of, prev)

    def _check_stop(self) -> None:
        if self.cancelled.is_set():
            raise Stop(CANCELLED, f"cancelled by {self._cancelled_by()}")
        if time.monotonic() >= self.run_deadline:
            raise Stop(TIMED_OUT, f"the run took longer than its timeout "
                                  f"({self.rb.timeout:g}s)")
        if self.shutdown.requested.is_set():
            raise Stop(QUEUED, "paused: the control plane shut down; the next active "
                               "instance continues with the next step")

    def _cancelled_by(self) -> str:
        with self.store.session() as s:
            row = s.get(RunRow, self.run_id)
            return row.cancelled_by if row is not None and row.cancelled_by else "unknown"

    def _remember(self, step_id: str, status: str, message: str,
                  outputs: dict[str, Any]) -> None:
        self.scope["steps"][step_id] = {"status": status, "message": message,
                                        "outputs": dict(outputs)}

    # -- a step left interrupted by a dead process -----------------------------------------

    def _decided(self, step: StepConfig, row: StepRow) -> tuple[str, str]:
        decision = self._take_decision(step.id)
        if decision is None:
            raise Stop(INTERRUPTED, _waiting_for_human(step.id))
        if decision.approved:
            status, message = SUCCEEDED, f"confirmed done by {decision.by} after the " \
                                         "interruption; not run again"
        else:
            status, message = FAILED, f"declared failed by {decision.by} after the " \
                                      "interruption"
        self._end_step(row.id, status, message, {})
        self._remember(step.id, status, message, {})
        return status, message

    def _take_decision(self, step_id: str) -> Decision | None:
        with self.store.session() as s:
            d = s.scalars(select(DecisionRow).where(
                DecisionRow.run_id == self.run_id, DecisionRow.step_id == step_id,
                DecisionRow.used.is_(False)).order_by(DecisionRow.id)).first()
            if d is None:
                return None
            d.used = True
            return Decision(d.approved, d.by, iso(d.at), d.comment)

    # -- running a step --------------------------------------------------------------------

    def _execute_step(self, step: StepConfig, rollback_of: str,
                      prev: StepRow | None) -> tuple[str, str]:
        if step.when and not ex.evaluate(_unwrap(step.when), self.scope, strict=False):
            row_id = self._begin(step, rollback_of, {}, prev)
            message = f"skipped: condition {step.when.strip()!r} is false"
            self._end_step(row_id, SKIPPED, message, {})
            self._remember(step.id, SKIPPED, message, {})
            return SKIPPED, message
        cls = action_class(step.action)
        try:
            args = cls.args_model.model_validate(ex.render(step.args, self.scope))
        except (ex.ExprError, ValidationError) as exc:
            row_id = self._begin(step, rollback_of, {}, prev)
            message = f"bad arguments: {_one_line(exc)}"
            self._end_step(row_id, FAILED, message, {})
            self._remember(step.id, FAILED, message, {})
            return FAILED, message
        row_id = self._begin(step, rollback_of, args.model_dump(mode="json"), prev)
        status, message, outputs = self._call(cls(args, self.services), step, row_id)
        self._end_step(row_id, status, message, outputs)
        self._remember(step.id, status, message, outputs)
        if status == CANCELLED:
            raise Stop(CANCELLED, f"cancelled by {self._cancelled_by()} during step {step.id}")
        if status == INTERRUPTED:  # by a shutdown
            if self._idempotent(step):
                raise Stop(QUEUED, f"paused: the control plane shut down during step "
                                   f"{step.id}, which runs again on the next start")
            raise Stop(INTERRUPTED, _waiting_for_human(step.id))
        if status == TIMED_OUT and time.monotonic() >= self.run_deadline:
            raise Stop(TIMED_OUT, f"the run took longer than its timeout "
                                  f"({self.rb.timeout:g}s), in step {step.id}")
        return status, message

    def _begin(self, step: StepConfig, rollback_of: str, args: dict[str, Any],
               prev: StepRow | None) -> int:
        """The step's row says running, committed before the action starts: after a
        kill -9 the store shows which step was in flight."""
        with self.store.session() as s:
            if prev is not None:
                row = s.get(StepRow, prev.id)
                assert row is not None
                row.attempt += 1
                row.status, row.started_at, row.message, row.progress = RUNNING, utcnow(), \
                    f"resumed (attempt {row.attempt}) after the control plane stopped", {}
            else:
                self.seq += 1
                row = StepRow(run_id=self.run_id, seq=self.seq, step_id=step.id,
                              action=step.action, rollback_of=rollback_of,
                              idempotent=step.idempotent or _resumable(step.action),
                              args=_redacted(args), started_at=utcnow(), status=RUNNING)
                s.add(row)
            s.flush()
            return row.id

    def _end_step(self, row_id: int, status: str, message: str,
                  outputs: dict[str, Any]) -> None:
        with self.store.session() as s:
            row = s.get(StepRow, row_id)
            assert row is not None
            row.status, row.message = status, redact(message)
            row.outputs = _redacted(_jsonable(outputs))
            row.finished_at = utcnow()
            row.duration_s = round((row.finished_at - row.started_at).total_seconds(), 3)
        log.info("runbook step ended run=%s step=%s status=%s", self.run_id, row.step_id,
                 status)

    def _call(self, action: Any, step: StepConfig,
              row_id: int) -> tuple[str, str, dict[str, Any]]:
        timeout = min(step.timeout_s(), max(0.0, self.run_deadline - time.monotonic()))
        stop = threading.Event()
        ctx = StepContext(self.run_id, step.id, time.monotonic() + timeout, stop,
                          _Progress(self.store, row_id).report,
                          lambda t: self._await_decision(step.id, row_id, t, stop))
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = action.run(ctx)
            except ActionFailed as exc:
                box["failed"] = exc
            except Exception as exc:
                log.exception("runbook action crashed run=%s step=%s", self.run_id, step.id)
                box["failed"] = ActionFailed(f"action crashed: {type(exc).__name__}: {exc}")

        worker = threading.Thread(target=work, name=f"runbook-{self.run_id}-{step.id}",
                                  daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(POLL_S)
            if self.cancelled.is_set() and not stop.is_set():
                stop.set()  # tell the action; give it a moment to stop cleanly
                worker.join(5.0)
                return CANCELLED, "cancelled while running", {}
            if time.monotonic() >= ctx.deadline + GRACE_S and worker.is_alive():
                stop.set()  # the action ignored its deadline: stop waiting for it
                worker.join(2.0)
                return TIMED_OUT, f"timed out after {timeout:g}s", {}
            if worker.is_alive() and (self.shutdown.over() or (
                    self._waiting and self.shutdown.requested.is_set())):
                # Past the grace period, or waiting for a human (nothing to finish): what
                # the action returns now is not its outcome.
                stop.set()
                worker.join(SHUTDOWN_JOIN_S)
                return INTERRUPTED, self._shutdown_message(step), {}
        if "failed" in box:
            exc = box["failed"]
            if time.monotonic() >= ctx.deadline:
                return TIMED_OUT, f"timed out after {timeout:g}s: {exc.message}", exc.outputs
            return FAILED, exc.message, exc.outputs
        result: ActionResult = box["result"]
        return SUCCEEDED, result.message, result.outputs

    def _idempotent(self, step: StepConfig) -> bool:
        return step.idempotent or _resumable(step.action)

    def _shutdown_message(self, step: StepConfig) -> str:
        why = ("interrupted (shutdown): the control plane shut down while this step was "
               + ("waiting for approval" if self._waiting else
                  "running and it did not finish within the shutdown grace period"))
        if self._idempotent(step):
            return f"{why}; it is idempotent and runs again on the next start"
        return (f"{why}; it is not idempotent, so it will not run again. Check what it did, "
                "then approve (it completed) or reject (it failed), or cancel the run")

    def _await_decision(self, step_id: str, row_id: int, timeout: float,
                        stop: threading.Event) -> Decision | None:
        self._set_waiting(row_id, True)
        self._waiting = True
        try:
            end = time.monotonic() + timeout
            while not stop.is_set():
                decision = self._take_decision(step_id)
                if decision is not None:
                    return decision
                if time.monotonic() >= end:
                    return None
                stop.wait(min(POLL_S, max(0.0, end - time.monotonic())))
            return None
        finally:
            self._waiting = False
            self._set_waiting(row_id, False)

    def _set_waiting(self, row_id: int, waiting: bool) -> None:
        status = WAITING if waiting else RUNNING
        with self.store.session() as s:
            step = s.get(StepRow, row_id)
            run = s.get(RunRow, self.run_id)
            assert step is not None and run is not None
            step.status = status
            if run.status in (RUNNING, WAITING):
                run.status = status


class _Progress:
    """Writes a step's live progress at most every PROGRESS_EVERY_S."""

    def __init__(self, store: Store, row_id: int) -> None:
        self.store, self.row_id = store, row_id
        self.last = 0.0

    def report(self, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        with self.store.session() as s:
            row = s.get(StepRow, self.row_id)
            if row is not None:
                row.progress = {**_jsonable(fields), "at": iso(utcnow())}


def _waiting_for_human(step_id: str) -> str:
    return f"step {step_id} interrupted; waiting for a human decision"


def _resumable(action: str) -> bool:
    return bool(getattr(action_class(action), "resumable", False))


def _unwrap(text: str) -> str:
    t = text.strip()
    return t[2:-2] if t.startswith("{{") and t.endswith("}}") else t


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return out


def stale_before(seconds: float) -> Any:
    return utcnow() - timedelta(seconds=seconds)

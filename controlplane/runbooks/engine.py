"""The runbook engine: picks up queued runs and executes them, one thread per run.

Only the active instance runs an engine loop (the runtime starts it as a component, see
controlplane/leader.py); any process may *queue* a run (the web UI of a standby, the
CLI). A run being executed carries a heartbeat; when a process dies (kill -9, power cut)
its heartbeat stops, and the engine recovers the run: a step that was running resumes if
it is idempotent, otherwise it is marked ``interrupted`` and the run waits for a human
(approve: the step is done, reject: it failed, or cancel).

A graceful stop (SIGTERM) is different: :meth:`Engine.drain` at the start of the shutdown
grace period stops new steps and lets the steps in flight finish within it (see
controlplane/runbooks/executor.py); :meth:`Engine.stop` then waits for them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.results import utcnow
from controlplane.runbooks.base import Services
from controlplane.runbooks.config import RunbookConfig
from controlplane.runbooks.executor import SHUTDOWN_JOIN_S, RunExecutor, Shutdown, stale_before
from controlplane.runbooks.model import (
    EXECUTING,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    WAITING,
    RunRow,
    StepRow,
)
from controlplane.runbooks.runs import count, finish, lock_slot, stale_runs
from controlplane.store import Store

log = logging.getLogger(__name__)

Listener = Callable[[str, int], None]
"""Called with ("started" | "finished", run id) from the run's thread."""
Hook = Callable[[Session, RunRow], None]
"""Called inside the transaction that starts (claims) or ends a run: what it writes is
committed with that change or not at all (the audit trail)."""


class Engine:
    def __init__(self, store: Store, runbooks: list[RunbookConfig], services: Services,
                 poll_s: float = 1.0, heartbeat_s: float = 2.0,
                 stale_after_s: float = 15.0) -> None:
        self.store, self.services = store, services
        self.runbooks = {r.id: r for r in runbooks}
        self.poll_s, self.heartbeat_s, self.stale_after_s = poll_s, heartbeat_s, stale_after_s
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.listeners: list[Listener] = []
        self.start_hooks: list[Hook] = []
        self.finish_hooks: list[Hook] = []
        self._cancels: dict[int, threading.Event] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self.shutdown = Shutdown()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._loop_thread = threading.Thread(target=self._loop, name="runbook-engine",
                                             daemon=True)
        self._loop_thread.start()
        log.info("runbook engine started runbooks=%d instance=%s", len(self.runbooks),
                 self.instance)

    def drain(self, deadline: float) -> None:
        """A graceful stop begins: pick up no more runs, start no new step, let the steps
        in flight finish until ``deadline`` (time.monotonic()), then interrupt them."""
        log.info("runbook engine draining running=%s grace_s=%.1f", self.running(),
                 max(0.0, deadline - time.monotonic()))
        self.shutdown.begin(deadline)
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop picking up runs. After :meth:`drain`, wait for the runs in flight to pause
        or be interrupted; without it (tests), they keep their state in the store and are
        recovered by the next active instance once their heartbeat stops."""
        self._stop.set()
        self._wake.set()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout)
        if self.shutdown.requested.is_set():
            until = self.shutdown.deadline + SHUTDOWN_JOIN_S + 1.0
            for run_id in self.running():
                self.join(run_id, max(0.0, until - time.monotonic()))
            left = self.running()
            if left:
                log.warning("runbook runs still in flight after the grace period runs=%s",
                            left)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
            except Exception:
                log.exception("runbook engine pass failed; retrying after the poll interval")
            self._wake.wait(self.poll_s)

    def tick(self) -> None:
        """One pass: recover runs of dead processes, start queued runs that may start."""
        for run_id in stale_runs(self.store, stale_before(self.stale_after_s)):
            if run_id not in self._threads:
                self.recover(run_id)
        for run_id in self._queued():
            if self.claim(run_id):
                self._spawn(run_id)

    def _queued(self) -> list[int]:
        with self.store.session() as s:
            return list(s.scalars(select(RunRow.id).where(RunRow.status == QUEUED)
                                  .order_by(RunRow.id)))

    # -- claiming and recovery ----------------------------------------------------------

    def claim(self, run_id: int) -> bool:
        """Take a queued run for this process if its runbook has a free slot."""
        with self.store.session() as s:
            row = s.get(RunRow, run_id)
            if row is None or row.status != QUEUED:
                return False
            lock_slot(s, row.runbook_id)
            s.refresh(row)
            if row.status != QUEUED:
                return False
            rb = self.runbooks.get(row.runbook_id)
            if rb is None:
                finish(s, row, FAILED, f"runbook {row.runbook_id!r} is not defined in this "
                                       "control plane's runbook files")
                return False
            if count(s, rb.id, (*EXECUTING, INTERRUPTED)) >= rb.concurrency.limit:
                return False  # queued behind the running one
            row.status, row.owner, row.heartbeat_at = RUNNING, self.instance, utcnow()
            if row.started_at is None:
                row.started_at = utcnow()
            for hook in self.start_hooks:
                hook(s, row)
        return True

    def recover(self, run_id: int) -> None:
        """A run whose process died: resume it, or wait for a human."""
        with self.store.session() as s:
            row = s.get(RunRow, run_id)
            if row is None or row.status not in EXECUTING:
                return
            lock_slot(s, row.runbook_id)
            s.refresh(row)
            hb = row.heartbeat_at
            if row.status not in EXECUTING or (hb is not None and
                                               hb >= stale_before(self.stale_after_s)):
                return  # someone else recovered it, or it is alive after all
            step = s.scalars(select(StepRow).where(StepRow.run_id == run_id,
                                                   StepRow.status.in_((RUNNING, WAITING)))
                             .order_by(StepRow.seq.desc())).first()
            if step is not None and not step.idempotent:
                step.status = INTERRUPTED
                step.message = (f"interrupted: the control plane stopped while this step "
                                f"was running (attempt {step.attempt}); it is not idempotent,"
                                " so it will not run again. Check what it did, then approve "
                                "(it completed) or reject (it failed), or cancel the run")
                row.status, row.message = INTERRUPTED, f"step {step.step_id} interrupted; " \
                                                       "waiting for a human decision"
                log.warning("runbook run interrupted run=%s step=%s", run_id, step.step_id)
                return
            row.status = QUEUED
            row.message = "resumed after the control plane stopped" + (
                f" (idempotent step {step.step_id} runs again)" if step else "")
            log.warning("runbook run resumed after a crash run=%s step=%s", run_id,
                        step.step_id if step else None)

    # -- execution ----------------------------------------------------------------------

    def _spawn(self, run_id: int) -> None:
        t = threading.Thread(target=self.execute, args=(run_id,), name=f"runbook-run-{run_id}",
                             daemon=True)
        with self._lock:
            self._threads[run_id] = t
        t.start()

    def execute(self, run_id: int) -> str:
        """Run a claimed run to its end (in this thread), with its heartbeat."""
        with self.store.session() as s:
            row = s.get(RunRow, run_id)
            assert row is not None
            rb = self.runbooks[row.runbook_id]
        cancel = threading.Event()
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(run_id, cancel, beat_stop),
                                name=f"runbook-beat-{run_id}", daemon=True)
        beat.start()
        self._notify("started", run_id)
        try:
            status = RunExecutor(self.store, rb, run_id, self.services, cancel,
                                 self.finish_hooks, self.shutdown).execute()
        finally:
            beat_stop.set()
            beat.join()
            with self._lock:
                self._threads.pop(run_id, None)
        if status not in (INTERRUPTED, QUEUED):
            self._notify("finished", run_id)
        self._wake.set()  # a queued run of the same runbook may start now
        return status

    def _heartbeat(self, run_id: int, cancel: threading.Event, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                with self.store.session() as s:
                    row = s.get(RunRow, run_id)
                    if row is None:
                        return
                    row.heartbeat_at = utcnow()
                    if row.cancel_requested:
                        cancel.set()
            except Exception:
                log.warning("runbook heartbeat failed run=%s", run_id, exc_info=True)

    def _notify(self, event: str, run_id: int) -> None:
        for listener in self.listeners:
            try:
                listener(event, run_id)
            except Exception:
                log.exception("runbook listener failed event=%s run=%s", event, run_id)

    def running(self) -> list[int]:
        with self._lock:
            return sorted(self._threads)

    def join(self, run_id: int, timeout: float | None = None) -> None:
        with self._lock:
            t = self._threads.get(run_id)
        if t is not None:
            t.join(timeout)


"""APScheduler wiring: each check on its own interval with jitter, one run at a time.

Features add jobs of their own (cron backups and drills) with :meth:`CheckScheduler.add_job`:
they share the pool and, at shutdown, the grace period of check runs.

Guarantees: never two runs of one check at once (a hung run blocks the next run of that
check only, recorded as ``error``); bounded concurrency (the executor's pool); a hard
timeout per run (the probe runs in its own thread, which we stop waiting for); a probe that
raises or hangs becomes an ``error`` Result and the scheduler goes on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from controlplane.probes import probe_class
from controlplane.probes.base import CheckConfig, Probe, ProbeContext
from controlplane.results import Result, Status, utcnow

if TYPE_CHECKING:  # APScheduler loads with CheckScheduler: one-shot runs (smoke) skip it
    from apscheduler.events import JobSubmissionEvent
    from apscheduler.triggers.base import BaseTrigger

log = logging.getLogger(__name__)

HARD_TIMEOUT_MARGIN_S = 1.0
"""How long past its own timeout a probe may run before we record it as hung."""

ABANDON_WAIT_S = 10.0
"""After the grace period, how long the released pool threads get to return."""

ResultSink = Callable[[Result, CheckConfig], Any]


class CheckRunner:
    """Runs one check's probe with a hard timeout and refuses to overlap runs."""

    def __init__(self, check: CheckConfig, context: ProbeContext) -> None:
        self.check = check
        self.probe: Probe[Any] = probe_class(check.kind)(check, context)
        self._busy: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()  # set when the current run returns, or on abandon()
        self._box: list[Result] = []  # the current run's result, once it returns
        self._busy_since = 0.0
        self.abandoned = False

    def run(self) -> Result:
        return self.run_or_join()[0]

    def wait_idle(self) -> None:
        """Wait for the run in flight, if any, to return (at most until it counts as hung):
        a run asked for by hand must see the world as it is now, not when that run began."""
        with self._lock:
            if self._busy is None or not self._busy.is_alive():
                return
            done, since = self._done, self._busy_since
        done.wait(max(0.0, since + self.check.timeout + HARD_TIMEOUT_MARGIN_S
                      - time.monotonic()))

    def run_or_join(self) -> tuple[Result, bool]:
        """(result, fresh). A run asked for while one is in flight within its time (a manual
        run during a scheduled one, or the reverse) waits for that run and returns its result
        with ``fresh`` False: the caller must not record it a second time. Only a run still
        going past its timeout plus the margin is hung, and then this run is skipped."""
        started = utcnow()
        limit = self.check.timeout + HARD_TIMEOUT_MARGIN_S
        with self._lock:
            fresh = not (self._busy is not None and self._busy.is_alive())
            if not fresh and time.monotonic() - self._busy_since > limit:
                return self._error(started, 0.0, "previous run still running (hung probe); "
                                   "this run was skipped"), True
            if fresh:
                self._start()
            done, box, since = self._done, self._box, self._busy_since
        done.wait(max(0.0, since + limit - time.monotonic()))
        if box:
            return box[0], fresh
        duration = time.monotonic() - since
        if self.abandoned:
            return self._error(started, duration, "abandoned at shutdown: still running when "
                               "the grace period ended"), fresh
        if fresh:
            log.warning("probe hung check=%s timeout_s=%s", self.check.id, self.check.timeout)
        return self._error(started, duration, f"timed out after {self.check.timeout:g}s "
                           "(probe did not return)"), fresh

    def _start(self) -> None:
        """A new run on its own thread (called with the lock held)."""
        box: list[Result] = []
        done = threading.Event()

        def execute() -> None:
            try:
                box.append(self.probe.execute())
            finally:
                done.set()

        worker = threading.Thread(target=execute, name=f"probe-{self.check.id}", daemon=True)
        self._busy, self._done, self._box = worker, done, box
        self._busy_since = time.monotonic()
        worker.start()

    def _error(self, started: datetime, duration: float, message: str) -> Result:
        return Result(check=self.check.id, kind=self.check.kind, env=self.check.env,
                      status=Status.ERROR, started_at=started, duration_s=round(duration, 6),
                      message=message)

    def abandon(self) -> None:
        """Stop waiting for the current run (shutdown after the grace period): the pool
        thread returns at once, so the process can exit; the probe's own thread is a daemon."""
        self.abandoned = True
        self._done.set()

    def close(self) -> None:
        try:
            self.probe.close()
        except Exception:
            log.warning("probe close failed check=%s", self.check.id, exc_info=True)


class CheckScheduler:
    def __init__(self, checks: list[CheckConfig], sink: ResultSink, context: ProbeContext,
                 max_concurrency: int = 64, jitter: float = 0.1, spread_s: float = 60.0) -> None:
        self.sink = sink
        self.jitter = jitter
        self.spread_s = spread_s
        self.runners = {c.id: CheckRunner(c, context) for c in checks if c.enabled}
        from apscheduler.events import EVENT_JOB_SUBMITTED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_concurrency)}, timezone=UTC)
        self._scheduler.add_listener(self._on_submit, EVENT_JOB_SUBMITTED)
        self._scheduled: dict[str, datetime] = {}
        self._in_flight = 0
        self._idle = threading.Condition()
        self._abandon = threading.Event()  # set when the grace period ends with runs left
        self.on_start_delay: Callable[[float], None] | None = None
        """Called with each scheduled run's start delay in seconds (metrics, benchmark)."""

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        now = datetime.now(UTC)
        for check_id, runner in self.runners.items():
            interval = runner.check.interval
            # Spread first runs evenly over one whole interval (at most spread_s) so N checks
            # on one interval keep an even rate instead of firing in bursts forever after.
            first = now + timedelta(seconds=random.uniform(0, min(interval, self.spread_s)))
            self._scheduler.add_job(
                self._run_job, IntervalTrigger(seconds=interval, start_date=first,
                                               jitter=self.jitter * interval or None),
                args=[check_id], id=check_id, max_instances=1, coalesce=True,
                misfire_grace_time=max(1, int(interval)), next_run_time=first)
        self._scheduler.start()
        log.info("scheduler started checks=%d", len(self.runners))

    def add_maintenance(self, job_id: str, fn: Callable[[], Any], interval_s: float) -> None:
        """A housekeeping job (retention, aggregation) on the same scheduler."""
        from apscheduler.triggers.interval import IntervalTrigger

        self._scheduler.add_job(fn, IntervalTrigger(seconds=interval_s), id=job_id,
                                max_instances=1, coalesce=True, replace_existing=True)

    def add_job(self, job_id: str, fn: Callable[[], Any], trigger: BaseTrigger,
                misfire_grace_s: int = 3600) -> None:
        """A job beside the checks (a cron backup, a drill): never two runs at once, and a
        run in flight at shutdown gets the grace period a check run gets. A run missed by
        less than ``misfire_grace_s`` (a restart at the scheduled minute) still runs."""
        self._scheduler.add_job(self._run_tracked, trigger, args=[job_id, fn], id=job_id,
                                max_instances=1, coalesce=True,
                                misfire_grace_time=misfire_grace_s, replace_existing=True)

    def jobs(self) -> list[tuple[str, str]]:
        """(job id, trigger) of every scheduled job, checks included, sorted by id."""
        return sorted((j.id, str(j.trigger)) for j in self._scheduler.get_jobs())

    def _run_tracked(self, job_id: str, fn: Callable[[], Any]) -> None:
        """Run ``fn`` counted as in flight. It runs on a daemon thread of its own, so a job
        still going when the grace period ends cannot hold the process at exit."""
        done = threading.Event()

        def work() -> None:
            try:
                fn()
            except Exception:
                log.exception("job crashed job=%s", job_id)
            finally:
                done.set()

        with self._idle:
            self._in_flight += 1
        try:
            threading.Thread(target=work, name=f"job-{job_id}", daemon=True).start()
            while not done.wait(0.5):
                if self._abandon.is_set():
                    log.warning("job abandoned at shutdown job=%s: still running when the "
                                "grace period ended", job_id)
                    return
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _on_submit(self, event: JobSubmissionEvent) -> None:
        self._scheduled[event.job_id] = event.scheduled_run_times[-1]

    def _run_job(self, check_id: str) -> None:
        scheduled = self._scheduled.pop(check_id, None)
        if scheduled is not None:
            delay = (datetime.now(UTC) - scheduled).total_seconds()
            if self.on_start_delay:
                self.on_start_delay(delay)
        with self._idle:
            self._in_flight += 1
        try:
            self.run_now(check_id, by_hand=False)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def run_now(self, check_id: str, by_hand: bool = True) -> Result:
        """Run one check now and feed the sink. By hand (CLI, API) a run in flight is
        waited for and a new one started after it; on schedule, a run that finds one in
        flight shares its result instead (it is recorded once)."""
        runner = self.runners[check_id]
        if by_hand:
            runner.wait_idle()
        result, fresh = runner.run_or_join()
        if not fresh:
            return result  # the run in flight was recorded by whoever started it
        if runner.abandoned:
            # Cut off by our own shutdown, not judged: storing it as an error could flip the
            # check's state and page someone for a deploy.
            log.warning("run abandoned at shutdown check=%s message=%r", check_id,
                        result.message)
            return result
        try:
            self.sink(result, runner.check)
        except Exception:
            log.exception("result sink failed check=%s", check_id)
        return result

    def shutdown(self, grace_period: float) -> bool:
        """Stop scheduling; wait up to ``grace_period`` for in-flight runs. True if all done."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        deadline = time.monotonic() + grace_period
        with self._idle:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(timeout=max(0.0, deadline - time.monotonic()))
            finished = self._in_flight == 0
            if not finished:
                # Pool threads are joined at interpreter exit: release them so we can exit.
                self._abandon.set()
                for runner in self.runners.values():
                    runner.abandon()
                self._idle.wait_for(lambda: self._in_flight == 0, ABANDON_WAIT_S)
        for runner in self.runners.values():
            runner.close()
        log.info("scheduler stopped in_flight_left=%d", self._in_flight)
        return finished

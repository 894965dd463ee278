"""The scheduler: each check on its own interval with jitter, one run at a time.

Check runs go through :mod:`controlplane.checkloop`. Features add jobs of their own (cron
backups and drills) with :meth:`CheckScheduler.add_job`: they run on APScheduler and, at
shutdown, get the grace period of check runs.

Guarantees: never two runs of one check at once (a hung run blocks the next run of that
check only, recorded as ``error``); bounded concurrency (the loop's workers); a hard
timeout per run (the watchdog records a run past its timeout as an error and replaces its
worker; a run by hand has its own thread, which we stop waiting for); a probe that raises or
hangs becomes an ``error`` Result and the scheduler goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from controlplane.checkloop import WATCH_S, CheckLoop, Schedule
from controlplane.probes import probe_class
from controlplane.probes.base import CheckConfig, Probe, ProbeContext
from controlplane.results import Result, Status, utcnow

if TYPE_CHECKING:  # APScheduler loads with CheckScheduler: one-shot runs (smoke) skip it
    from apscheduler.triggers.base import BaseTrigger

log = logging.getLogger(__name__)

HARD_TIMEOUT_MARGIN_S = 1.0
"""How long past its own timeout a probe may run before we record it as hung."""

ABANDON_WAIT_S = 10.0
"""After the grace period, how long the released pool threads get to return."""

ResultSink = Callable[[Result, CheckConfig], Any]

ABANDONED = "abandoned at shutdown: still running when the grace period ended"


class CheckRunner:
    """Runs one check's probe with a hard timeout and refuses to overlap runs.

    A scheduled run executes on the loop worker that asked for it (:meth:`run_here`), watched
    by the loop's watchdog; a run asked for by hand gets a thread of its own and a waiter
    (:meth:`run_or_join`). Either way at most one probe of the check runs at a time."""

    def __init__(self, check: CheckConfig, context: ProbeContext) -> None:
        self.check = check
        self.probe: Probe[Any] = probe_class(check.kind)(check, context)
        self._busy: threading.Thread | None = None  # the thread running the current probe
        self._lock = threading.Lock()
        self._done = threading.Event()  # set when the current run returns, or on abandon()
        self._box: list[Result] = []  # the current run's result, once it returns
        self._busy_since = 0.0
        self._started_at = utcnow()
        self._watched = False  # the current run is a loop worker's: the watchdog times it
        self._reported = False  # the watchdog has recorded the current run as hung
        self.abandoned = False

    def run(self) -> Result:
        return self.run_or_join()[0]

    def wait_idle(self) -> None:
        """Wait for the run in flight, if any, to return (at most until it counts as hung):
        a run asked for by hand must see the world as it is now, not when that run began."""
        with self._lock:
            if self._busy is None:
                return
            done, since = self._done, self._busy_since
        done.wait(max(0.0, since + self._limit() - time.monotonic()))

    def in_time(self) -> bool:
        """A run is in flight and not yet past its timeout plus the margin."""
        with self._lock:
            return self._busy is not None and not self._overdue()

    def run_or_join(self) -> tuple[Result, bool]:
        """(result, fresh). A run asked for while one is in flight within its time (a manual
        run during a scheduled one, or the reverse) waits for that run and returns its result
        with ``fresh`` False: the caller must not record it a second time. Only a run still
        going past its timeout plus the margin is hung, and then this run is skipped."""
        started = utcnow()
        with self._lock:
            fresh = self._busy is None
            if not fresh and self._overdue():
                return self._skipped(started), True
            if fresh:
                self._start()
            done, box, since = self._done, self._box, self._busy_since
        return self._await(done, box, since, started, fresh)

    def run_here(self) -> tuple[Result, bool]:
        """(result, fresh) of a run on the calling thread (a loop worker), as
        :meth:`run_or_join`. A run the watchdog recorded as hung, or one cut off by our own
        shutdown, comes back with ``fresh`` False: it is not recorded."""
        started = utcnow()
        with self._lock:
            joined = self._busy is not None
            if joined and self._overdue():
                return self._skipped(started), True
            if not joined:
                self._claim(threading.current_thread(), watched=True)
            done, box, since = self._done, self._box, self._busy_since
        if joined:
            return self._await(done, box, since, started, False)
        result: Result | None = None
        try:
            result = self.probe.execute()
        finally:
            reported = self._finish(done, box, result)
        return result, not (reported or self.abandoned)

    def overdue_result(self) -> Result | None:
        """The error of a watched run past its time, once (the watchdog records it)."""
        with self._lock:
            if self._busy is None or not self._watched or self._reported or (
                    not self._overdue()):
                return None
            self._reported = True
            started, since = self._started_at, self._busy_since
        log.warning("probe hung check=%s timeout_s=%s", self.check.id, self.check.timeout)
        return self._error(started, time.monotonic() - since, self._timed_out_message())

    def _limit(self) -> float:
        return self.check.timeout + HARD_TIMEOUT_MARGIN_S

    def _overdue(self) -> bool:
        return time.monotonic() - self._busy_since > self._limit()

    def _claim(self, thread: threading.Thread, watched: bool) -> None:
        """The run on ``thread`` is the check's current run (called with the lock held)."""
        self._busy, self._done, self._box = thread, threading.Event(), []
        self._busy_since, self._started_at = time.monotonic(), utcnow()
        self._watched, self._reported = watched, False

    def _finish(self, done: threading.Event, box: list[Result], result: Result | None) -> bool:
        """Hand the result to whoever waits and free the check; True if the watchdog had
        recorded this run as hung meanwhile."""
        with self._lock:
            if result is not None:
                box.append(result)
            reported = self._reported and self._box is box
            if self._box is box:
                self._busy = None
            done.set()
        return reported

    def _await(self, done: threading.Event, box: list[Result], since: float,
               started: datetime, fresh: bool) -> tuple[Result, bool]:
        done.wait(max(0.0, since + self._limit() - time.monotonic()))
        if box:
            return box[0], fresh
        duration = time.monotonic() - since
        if self.abandoned:
            return self._error(started, duration, ABANDONED), fresh
        if fresh:
            log.warning("probe hung check=%s timeout_s=%s", self.check.id, self.check.timeout)
        return self._error(started, duration, self._timed_out_message()), fresh

    def _start(self) -> None:
        """A new run on its own thread (called with the lock held)."""
        worker = threading.Thread(target=lambda: self._execute(done, box),
                                  name=f"probe-{self.check.id}", daemon=True)
        self._claim(worker, watched=False)
        done, box = self._done, self._box
        worker.start()

    def _execute(self, done: threading.Event, box: list[Result]) -> None:
        result: Result | None = None
        try:
            result = self.probe.execute()
        finally:
            self._finish(done, box, result)

    def _timed_out_message(self) -> str:
        return f"timed out after {self.check.timeout:g}s (probe did not return)"

    def _skipped(self, started: datetime) -> Result:
        return self._error(started, 0.0, "previous run still running (hung probe); this run "
                           "was skipped")

    def _error(self, started: datetime, duration: float, message: str) -> Result:
        return Result(check=self.check.id, kind=self.check.kind, env=self.check.env,
                      status=Status.ERROR, started_at=started, duration_s=round(duration, 6),
                      message=message)

    def abandon(self) -> None:
        """Stop waiting for the current run (shutdown after the grace period): whoever
        waits for it returns at once, so the process can exit; probe threads are daemons."""
        self.abandoned = True
        self._done.set()

    def close(self) -> None:
        try:
            self.probe.close()
        except Exception:
            log.warning("probe close failed check=%s", self.check.id, exc_info=True)


class CheckScheduler:
    """Check runs on the :class:`~controlplane.checkloop.CheckLoop`; the features' jobs
    (cron backups and drills, housekeeping) on APScheduler, which has the cron triggers."""

    def __init__(self, checks: list[CheckConfig], sink: ResultSink, context: ProbeContext,
                 max_concurrency: int = 64, jitter: float = 0.1, spread_s: float = 60.0,
                 tick_s: float = 0.5) -> None:
        self.sink = sink
        self.jitter = jitter
        self.spread_s = spread_s
        self.tick_s = tick_s
        self.max_concurrency = max_concurrency
        self.runners = {c.id: CheckRunner(c, context) for c in checks if c.enabled}
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_concurrency)}, timezone=UTC)
        self._loop: CheckLoop | None = None
        self._flights: dict[object, tuple[str, str]] = {}  # token -> (check|job, its id)
        self._idle = threading.Condition()
        self._abandon = threading.Event()  # set when the grace period ends with runs left
        self.on_start_delay: Callable[[float], None] | None = None
        """Called with each scheduled run's start delay in seconds (metrics, benchmark)."""

    @property
    def running(self) -> bool:
        return bool(self._loop is not None and self._loop.running and self._scheduler.running)

    def schedules(self) -> list[Schedule]:
        """When each enabled check runs, sorted by check id."""
        return [Schedule(cid, r.check.interval, self.jitter * r.check.interval)
                for cid, r in sorted(self.runners.items())]

    def start(self) -> None:
        self._loop = CheckLoop(self.schedules(), self._run_job, self._in_time, self._watch,
                               self.max_concurrency, self.tick_s, self.spread_s)
        self._loop.start()
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
        checks = [(s.check_id, f"interval[{timedelta(seconds=s.interval_s)}]")
                  for s in self.schedules()]
        return sorted([*checks, *((j.id, str(j.trigger)) for j in self._scheduler.get_jobs())])

    def _take_off(self, what: str, name: str) -> object:
        token = object()
        with self._idle:
            self._flights[token] = (what, name)
        return token

    def _land(self, token: object) -> None:
        with self._idle:
            self._flights.pop(token, None)
            self._idle.notify_all()

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

        token = self._take_off("job", job_id)
        try:
            threading.Thread(target=work, name=f"job-{job_id}", daemon=True).start()
            while not done.wait(0.5):
                if self._abandon.is_set():
                    log.warning("job abandoned at shutdown job=%s: still running when the "
                                "grace period ended", job_id)
                    return
        finally:
            self._land(token)

    def _in_time(self, check_id: str) -> bool:
        return self.runners[check_id].in_time()

    def _watch(self) -> list[str]:
        """Record each check run newly past its time (the loop replaces their workers).
        A run recorded as hung no longer counts as in flight: shutdown does not wait for it,
        as it did not when a pool thread stopped waiting for the probe's own thread."""
        with self._idle:
            flying = {name for what, name in self._flights.values() if what == "check"}
        hung = []
        for check_id in flying:
            runner = self.runners[check_id]
            result = runner.overdue_result()
            if result is not None:
                hung.append(check_id)
                self._record(result, runner)
        if hung:
            with self._idle:
                for token, (what, name) in list(self._flights.items()):
                    if what == "check" and name in hung:
                        del self._flights[token]
                self._idle.notify_all()
        return hung

    def _run_job(self, check_id: str, due_at: float) -> None:
        if self.on_start_delay:
            self.on_start_delay(max(0.0, time.monotonic() - due_at))
        token = self._take_off("check", check_id)
        try:
            self.run_now(check_id, by_hand=False)
        finally:
            self._land(token)

    def run_now(self, check_id: str, by_hand: bool = True) -> Result:
        """Run one check now and feed the sink. By hand (CLI, API) a run in flight is
        waited for and a new one started after it; on schedule, a run that finds one in
        flight shares its result instead (it is recorded once)."""
        runner = self.runners[check_id]
        if by_hand:
            runner.wait_idle()
            result, fresh = runner.run_or_join()
        else:
            result, fresh = runner.run_here()
        if fresh:
            self._record(result, runner)
        return result

    def _record(self, result: Result, runner: CheckRunner) -> None:
        if runner.abandoned:
            # Cut off by our own shutdown, not judged: storing it as an error could flip the
            # check's state and page someone for a deploy.
            log.warning("run abandoned at shutdown check=%s message=%r", runner.check.id,
                        result.message)
            return
        try:
            self.sink(result, runner.check)
        except Exception:
            log.exception("result sink failed check=%s", runner.check.id)

    def shutdown(self, grace_period: float) -> bool:
        """Stop scheduling; wait up to ``grace_period`` for in-flight runs. True if all done."""
        if self._loop is not None:
            self._loop.stop()
        self._stop_jobs()
        deadline = time.monotonic() + grace_period
        while True:
            # The loop's watchdog has stopped: a run that hangs in the grace period is
            # still recorded as timed out, and then not waited for.
            self._watch()
            with self._idle:
                left = deadline - time.monotonic()
                if not self._flights or left <= 0:
                    break
                self._idle.wait(timeout=min(WATCH_S, left))
        with self._idle:
            finished = not self._flights
            if not finished:
                self._abandon_flights()
                self._idle.wait_for(lambda: not self._flights, ABANDON_WAIT_S)
        for runner in self.runners.values():
            runner.close()
        log.info("scheduler stopped in_flight_left=%d", len(self._flights))
        return finished

    def _abandon_flights(self) -> None:
        """Release what is still running when the grace period ends (lock held): check runs
        at once (their workers are daemons), jobs as their waiters notice."""
        self._abandon.set()
        for runner in self.runners.values():
            runner.abandon()
        for token, (what, name) in list(self._flights.items()):
            if what == "check":
                log.warning("run abandoned at shutdown check=%s message=%r", name, ABANDONED)
                del self._flights[token]

    def _stop_jobs(self) -> None:
        """Stop APScheduler without racing its loop: a one-shot job it is removing while
        ``shutdown`` marks it stopped raised JobLookupError in its thread. Pausing first and
        waiting for its job-store lock lets a pass in progress finish."""
        if not self._scheduler.running:
            return
        self._scheduler.pause()
        with self._scheduler._jobstores_lock:
            pass
        self._scheduler.shutdown(wait=False)

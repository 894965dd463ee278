"""The scheduler: overrun, exception, hang, bounded concurrency and SIGTERM."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from controlplane.checkloop import Schedule
from controlplane.probes.base import CheckConfig, Outcome, ProbeContext
from controlplane.results import Result, Status
from controlplane.scheduler import CheckRunner, CheckScheduler
from tests import fakeprobes
from tests.fakeprobes import ScriptedConfig
from tests.services.common import ROOT, free_port

pytestmark = pytest.mark.usefixtures("scripted_kind")


class Sink:
    def __init__(self) -> None:
        self.results: list[Result] = []
        self.cond = threading.Condition()

    def __call__(self, result: Result, check: CheckConfig) -> None:
        with self.cond:
            self.results.append(result)
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 30) -> list[Result]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.results) >= n, timeout), self.results
            return list(self.results)


def sched(sink: Sink, *checks: ScriptedConfig, max_concurrency: int = 8) -> CheckScheduler:
    return CheckScheduler(list(checks), sink, ProbeContext(), max_concurrency, jitter=0,
                          spread_s=0)


def test_probe_that_raises_is_recorded_as_error_and_scheduler_goes_on() -> None:
    sink = Sink()
    s = sched(sink, ScriptedConfig(id="crash", kind="scripted", interval=0.2, crash=True),
              ScriptedConfig(id="fine", kind="scripted", interval=0.2))
    s.start()
    try:
        results = sink.wait_for(6)
    finally:
        s.shutdown(5)
    crashes = [r for r in results if r.check == "crash"]
    assert crashes and all(r.status == Status.ERROR for r in crashes)
    assert crashes[0].message == "probe crashed: RuntimeError: boom"
    assert any(r.check == "fine" and r.status == Status.OK for r in results)


def test_hung_probe_times_out_as_error_and_blocks_only_its_own_next_run() -> None:
    runner = CheckRunner(ScriptedConfig(id="hang", kind="scripted", timeout=0.2, hang=True),
                         ProbeContext())
    first = runner.run()
    assert first.status == Status.ERROR
    assert first.message == "timed out after 0.2s (probe did not return)"
    second = runner.run()
    assert second.status == Status.ERROR
    assert second.message == ("previous run still running (hung probe); this run was skipped")
    fakeprobes.RELEASE.set()
    deadline = time.monotonic() + 10
    while runner._busy is not None and runner._busy.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.check = runner.probe.config = ScriptedConfig(id="hang", kind="scripted", timeout=1)
    assert runner.run().status == Status.OK


class Peak:
    """Wraps probes to record how many run at the same moment."""

    def __init__(self) -> None:
        self.active = self.peak = 0
        self.lock = threading.Lock()

    def wrap(self, s: CheckScheduler) -> None:
        for runner in s.runners.values():
            real = runner.probe.check

            def counting(real: Callable[[], Outcome] = real) -> Outcome:
                with self.lock:
                    self.active += 1
                    self.peak = max(self.peak, self.active)
                try:
                    return real()
                finally:
                    with self.lock:
                        self.active -= 1

            runner.probe.check = counting  # type: ignore[method-assign]


def test_overrunning_check_never_runs_twice_at_once() -> None:
    sink, peak = Sink(), Peak()
    s = sched(sink, ScriptedConfig(id="slow", kind="scripted", interval=0.1, sleep_s=0.35,
                                   timeout=5))
    peak.wrap(s)
    s.start()
    try:
        sink.wait_for(4)
    finally:
        s.shutdown(5)
    assert peak.peak == 1


def test_concurrency_is_bounded_by_the_pool() -> None:
    sink, peak = Sink(), Peak()
    checks = [ScriptedConfig(id=f"c{i}", kind="scripted", interval=30, sleep_s=0.3, timeout=5)
              for i in range(6)]
    s = sched(sink, *checks, max_concurrency=2)
    peak.wrap(s)
    s.start()
    try:
        sink.wait_for(6)
    finally:
        s.shutdown(5)
    assert peak.peak == 2


LAUNCHER = """
import sys
from controlplane.probes import KINDS
KINDS["scripted"] = "tests.fakeprobes:ScriptedProbe"
from controlplane.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_lets_in_flight_run_finish_then_exits_0(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    db = tmp_path / "cp.db"
    (tmp_path / "controlplane.yaml").write_text(f"""
environments: {{production: {{}}}}
store: {{dsn: "sqlite:///{db}"}}
web: {{port: {free_port()}}}
scheduler: {{grace_period: 20s}}
check_files: []
checks:
  - id: slow
    kind: scripted
    env: production
    interval: 4s
    timeout: 30s
    sleep_s: 2
    marker: "{marker}"
""")
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "run", "--config",
                             str(tmp_path / "controlplane.yaml")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "no start"
        proc.send_signal(signal.SIGTERM)
        out, errs = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, errs
    assert "controlplane: stopped" in out
    rows = sqlite3.connect(db).execute("SELECT check_id, status FROM results").fetchall()
    assert rows == [("slow", "ok")]


def test_sigterm_exits_0_when_the_grace_period_runs_out(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    db = tmp_path / "cp.db"
    (tmp_path / "controlplane.yaml").write_text(f"""
environments: {{production: {{}}}}
store: {{dsn: "sqlite:///{db}"}}
web: {{port: {free_port()}}}
scheduler: {{grace_period: 1s}}
check_files: []
checks:
  - id: stuck
    kind: scripted
    env: production
    interval: 4s
    timeout: 20m
    sleep_s: 600
    marker: "{marker}"
""")
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "run", "--config",
                             str(tmp_path / "controlplane.yaml")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "no start"
        proc.send_signal(signal.SIGTERM)
        # The run would take 10 minutes: exiting at all within this wait proves we did not.
        out, errs = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, errs
    assert "controlplane: stopped" in out
    assert "grace period over with runs still in flight; exiting anyway" in errs
    # Logged, not stored: an error made by our own shutdown must not flip the check's state.
    assert ("run abandoned at shutdown check=stuck message='abandoned at shutdown: still "
            "running when the grace period ended'") in errs
    rows = sqlite3.connect(db).execute("SELECT check_id FROM results").fetchall()
    assert rows == []


def test_each_check_runs_on_its_own_interval_with_jitter_in_proportion() -> None:
    sink = Sink()
    s = CheckScheduler([ScriptedConfig(id="fast", kind="scripted", interval=10),
                        ScriptedConfig(id="slow", kind="scripted", interval=300),
                        ScriptedConfig(id="off", kind="scripted", enabled=False)],
                       sink, ProbeContext(), max_concurrency=4, jitter=0.1, spread_s=0)
    s.start()
    try:
        schedules = s.schedules()
        jobs = s.jobs()
    finally:
        s.shutdown(5)
    # a disabled check is not scheduled
    assert schedules == [Schedule("fast", 10, 1.0), Schedule("slow", 300, 30.0)]
    assert jobs == [("fast", "interval[0:00:10]"), ("slow", "interval[0:05:00]")]


def test_hung_probe_is_recorded_as_error_and_other_checks_go_on() -> None:
    sink = Sink()
    s = sched(sink, ScriptedConfig(id="hang", kind="scripted", interval=0.2, timeout=0.2,
                                   hang=True),
              ScriptedConfig(id="fine", kind="scripted", interval=0.2))
    s.start()
    try:
        with sink.cond:
            assert sink.cond.wait_for(lambda: sum(r.check == "fine" for r in sink.results) >= 5
                                      and any(r.check == "hang" for r in sink.results), 60)
            results = list(sink.results)
    finally:
        fakeprobes.RELEASE.set()
        s.shutdown(5)
    hung = [r for r in results if r.check == "hang"]
    assert {r.status for r in hung} == {Status.ERROR}
    assert hung[0].message == "timed out after 0.2s (probe did not return)"
    assert {r.message for r in hung[1:]} <= {
        "timed out after 0.2s (probe did not return)",
        "previous run still running (hung probe); this run was skipped"}
    assert {r.status for r in results if r.check == "fine"} == {Status.OK}


def _in_flight(s: CheckScheduler, check_id: str) -> tuple[threading.Thread, list[Result]]:
    """A run of ``check_id`` started on another thread, once it is under way."""
    first: list[Result] = []
    thread = threading.Thread(target=lambda: first.append(s.run_now(check_id)))
    thread.start()
    runner = s.runners[check_id]
    deadline = time.monotonic() + 10
    while not (runner._busy and runner._busy.is_alive()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return thread, first


def test_a_scheduled_run_finding_one_in_flight_shares_its_result_and_records_it_once() -> None:
    sink = Sink()
    s = sched(sink, ScriptedConfig(id="slow", kind="scripted", interval=3600, timeout=10,
                                   sleep_s=1.5))
    thread, first = _in_flight(s, "slow")
    try:
        second = s.run_now("slow", by_hand=False)  # what the scheduler's job does
        thread.join(10)
    finally:
        s.shutdown(5)
    assert second is first[0]
    assert (second.status, second.message) == (Status.OK, "scripted ok")
    assert sink.results == [second]


def test_a_run_by_hand_during_another_waits_for_it_then_runs_afresh() -> None:
    sink = Sink()
    s = sched(sink, ScriptedConfig(id="slow", kind="scripted", interval=3600, timeout=10,
                                   sleep_s=1.5))
    thread, first = _in_flight(s, "slow")
    try:
        second = s.run_now("slow")  # e.g. POST /api/v1/checks/slow/run after a fix
        thread.join(10)
    finally:
        s.shutdown(5)
    assert second is not first[0]
    assert second.status is Status.OK
    assert second.started_at >= first[0].started_at + timedelta(seconds=1.5)
    assert sink.results == [first[0], second]


def test_scheduled_runs_report_how_late_they_start() -> None:
    from controlplane.app import build_runtime
    from controlplane.config import ControlPlaneConfig, EnvironmentConfig, StoreConfig

    cfg = ControlPlaneConfig(environments={"dev": EnvironmentConfig()},
                             store=StoreConfig(dsn="sqlite://"),
                             checks=[ScriptedConfig(id="tick", kind="scripted", interval=0.2)])
    rt = build_runtime(cfg)
    rt.scheduler.spread_s = 0
    rt.start()
    try:
        get = rt.metrics.registry.get_sample_value
        deadline = time.monotonic() + 30
        while not get("controlplane_scheduler_start_delay_seconds_count") and (
                time.monotonic() < deadline):
            time.sleep(0.05)
    finally:
        rt.stop(5)
    assert get("controlplane_scheduler_start_delay_seconds_count") >= 1


def _job_scheduler() -> CheckScheduler:
    return CheckScheduler([], lambda r, c: None, ProbeContext())


def test_a_feature_job_in_flight_at_shutdown_finishes_within_the_grace_period() -> None:
    from datetime import UTC, datetime

    from apscheduler.triggers.date import DateTrigger

    sched = _job_scheduler()
    started, finished = threading.Event(), threading.Event()

    def backup() -> None:
        started.set()
        time.sleep(1.0)
        finished.set()

    sched.add_job("run-backup-app", backup, DateTrigger(datetime.now(UTC)))
    sched.start()
    assert started.wait(10)
    t0 = time.monotonic()
    assert sched.shutdown(grace_period=10) is True
    assert finished.is_set() and time.monotonic() - t0 < 5


def test_a_feature_job_past_the_grace_period_is_abandoned_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    from datetime import UTC, datetime

    from apscheduler.triggers.date import DateTrigger

    sched = _job_scheduler()
    started, release = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(30)

    sched.add_job("run-drill-app", stuck, DateTrigger(datetime.now(UTC)))
    sched.start()
    assert started.wait(10)
    t0 = time.monotonic()
    try:
        assert sched.shutdown(grace_period=0.5) is False
        assert time.monotonic() - t0 < 3  # the stuck job does not hold the shutdown
    finally:
        release.set()
    assert "job abandoned at shutdown job=run-drill-app: still running when the grace " \
           "period ended" in caplog.text


def test_shutting_down_as_a_one_shot_job_fires_raises_nothing_in_its_thread() -> None:
    # APScheduler marked itself stopped before taking its job-store lock, so a one-shot job
    # it was removing at that moment raised JobLookupError in its own thread.
    from datetime import UTC, datetime

    from apscheduler.triggers.date import DateTrigger

    errors: list[BaseException | None] = []
    before = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        for i in range(60):
            sched = _job_scheduler()
            sched.add_job(f"once-{i}", lambda: None, DateTrigger(datetime.now(UTC)))
            sched.start()
            time.sleep(0.001 * (i % 5))
            sched.shutdown(grace_period=1)
    finally:
        threading.excepthook = before
    assert errors == []

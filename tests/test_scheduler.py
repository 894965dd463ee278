"""The scheduler: overrun, exception, hang, bounded concurrency and SIGTERM."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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
    interval: 60s
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

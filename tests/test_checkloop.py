"""The check loop: runs start on a tick grid, a hung run gives its worker up, nothing twice."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from controlplane.checkloop import CheckLoop, Schedule
from controlplane.probes.base import ProbeContext
from controlplane.results import Status
from controlplane.scheduler import CheckScheduler
from tests import fakeprobes
from tests.fakeprobes import ScriptedConfig
from tests.test_scheduler import Sink

pytestmark = pytest.mark.usefixtures("scripted_kind")


class Starts:
    """A run function that records (check id, due time, start time) and returns at once."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, float, float]] = []
        self.cond = threading.Condition()

    def __call__(self, check_id: str, due: float) -> None:
        with self.cond:
            self.runs.append((check_id, due, time.monotonic()))
            self.cond.notify_all()

    def wait_for(self, n: int) -> list[tuple[str, float, float]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.runs) >= n, 30), self.runs
            return list(self.runs)


def _loop(starts: Starts, schedules: list[Schedule], tick_s: float) -> CheckLoop:
    return CheckLoop(schedules, starts, in_time=lambda _: False, watchdog=list,
                     workers=4, tick_s=tick_s, spread_s=2.0)


def test_runs_due_within_one_tick_start_together_on_its_grid() -> None:
    starts = Starts()
    loop = _loop(starts, [Schedule(f"c{i}", 2.0, 0.2) for i in range(20)], tick_s=0.2)
    loop.start()
    try:
        runs = starts.wait_for(40)  # two rounds of 20
    finally:
        loop.stop()
    dues = [due for _, due, _ in runs]
    assert all(abs(due / 0.2 - round(due / 0.2)) < 1e-6 for due in dues)
    # 20 first runs spread over 2 s share at most 11 grid points (2 s / 0.2 s, both ends)
    assert len({round(due, 6) for due in dues[:20]}) <= 11
    assert all(start >= due for _, due, start in runs)


def test_the_grid_is_at_most_a_tenth_of_a_checks_interval() -> None:
    loop = _loop(Starts(), [Schedule("fast", 1.0, 0.0), Schedule("slow", 60.0, 0.0)], 0.5)
    assert (loop.grid_s("fast"), loop.grid_s("slow")) == (0.1, 0.5)


def test_the_grid_narrows_so_that_about_eight_runs_fall_due_in_one_tick() -> None:
    # 500 checks every 10 s: 50 runs a second, so 8 of them every 0.16 s
    loop = _loop(Starts(), [Schedule(f"c{i}", 10.0, 1.0) for i in range(500)], 0.5)
    assert loop.grid_s("c0") == pytest.approx(0.16)


def test_each_check_keeps_its_rate_with_jitter() -> None:
    starts = Starts()
    loop = _loop(starts, [Schedule("c", 0.5, 0.05)], tick_s=0.05)
    loop.start()
    try:
        runs = starts.wait_for(7)
    finally:
        loop.stop()
    dues = [due for _, due, _ in runs]
    gaps = [b - a for a, b in itertools.pairwise(dues)]
    # jitter moves each run, not the ones after it: 6 gaps of 0.5 s +- jitter and grid
    assert all(0.4 <= gap <= 0.61 for gap in gaps), gaps
    assert abs((dues[6] - dues[0]) - 3.0) <= 0.11


def test_a_run_still_in_flight_takes_the_place_of_the_next() -> None:
    starts = Starts()
    busy = {"c"}
    loop = CheckLoop([Schedule("c", 0.1, 0.0)], starts, in_time=lambda cid: cid in busy,
                     watchdog=list, workers=4, tick_s=0.01, spread_s=0.0)
    loop.start()
    try:
        time.sleep(0.5)  # five runs fall due while the check is busy
        assert starts.runs == []
        busy.clear()
        starts.wait_for(1)
    finally:
        loop.stop()


def test_a_hung_run_is_recorded_once_and_its_worker_replaced() -> None:
    # One worker only: without a replacement the other check would never run again.
    sink = Sink()
    s = CheckScheduler([ScriptedConfig(id="hang", kind="scripted", interval=0.2, timeout=0.2,
                                       hang=True),
                        ScriptedConfig(id="fine", kind="scripted", interval=0.2)],
                       sink, ProbeContext(), max_concurrency=1, jitter=0, spread_s=0,
                       tick_s=0.02)
    s.start()
    try:
        with sink.cond:
            assert sink.cond.wait_for(lambda: sum(r.check == "hang" for r in sink.results) >= 3
                                      and sum(r.check == "fine" for r in sink.results) >= 10,
                                      60), sink.results
        released = time.monotonic()
        fakeprobes.RELEASE.set()
        with sink.cond:
            assert sink.cond.wait_for(lambda: any(
                r.check == "hang" and r.status is Status.OK for r in sink.results), 30)
            results = list(sink.results)
    finally:
        fakeprobes.RELEASE.set()
        s.shutdown(5)
    hang = [r for r in results if r.check == "hang"]
    assert hang[0].message == "timed out after 0.2s (probe did not return)"
    assert hang[0].status is Status.ERROR
    skipped = [r for r in hang[1:] if r.status is Status.ERROR]
    assert skipped and {r.message for r in skipped} == {
        "previous run still running (hung probe); this run was skipped"}
    # the hung run's own late answer is not recorded: the first ok run started after it
    first_ok = next(r for r in hang if r.status is Status.OK)
    assert first_ok.started_at > hang[0].started_at
    assert first_ok.duration_s < time.monotonic() - released
    assert {r.status for r in results if r.check == "fine"} == {Status.OK}


class Active:
    """A run function that sleeps ``run_s`` and records how many runs were active at once."""

    def __init__(self, run_s: float) -> None:
        self.run_s, self.active, self.peak, self.done = run_s, 0, 0, 0
        self.delays: list[float] = []
        self.cond = threading.Condition()

    def __call__(self, check_id: str, due: float) -> None:
        with self.cond:
            self.delays.append(time.monotonic() - due)
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.run_s)
        with self.cond:
            self.active -= 1
            self.done += 1
            self.cond.notify_all()


def _burst(run_s: float, checks: int = 12) -> Active:
    """``checks`` runs falling due in the same tick, on a pool of 16 (floor 2 per CPU)."""
    active = Active(run_s)
    loop = CheckLoop([Schedule(f"c{i}", 60.0, 0.0) for i in range(checks)], active,
                     in_time=lambda _: False, watchdog=list, workers=16, tick_s=0.5,
                     spread_s=0.0)
    loop.start()
    try:
        with active.cond:
            assert active.cond.wait_for(lambda: active.done >= checks, 30)
    finally:
        loop.stop()
    return active


def test_quick_runs_due_together_share_a_few_workers() -> None:
    import os

    active = _burst(run_s=0.005)
    assert active.peak <= 2 * (os.cpu_count() or 1)


def test_slow_runs_due_together_widen_the_pool_within_a_fraction_of_a_second() -> None:
    active = _burst(run_s=1.0)
    assert active.peak == 12  # all of them at once, not in rounds of the floor
    assert max(active.delays) < 0.5


def _hung_scheduler(sink: Sink, *more: ScriptedConfig, workers: int = 1) -> CheckScheduler:
    hang = ScriptedConfig(id="hang", kind="scripted", interval=0.2, timeout=0.2, hang=True)
    return CheckScheduler([hang, *more], sink, ProbeContext(), max_concurrency=workers,
                          jitter=0, spread_s=0, tick_s=0.02)


def _wait_for_hang_report(sink: Sink) -> None:
    with sink.cond:
        assert sink.cond.wait_for(lambda: any(r.check == "hang" for r in sink.results), 30)


def test_other_checks_start_on_time_while_a_hung_run_holds_a_slot() -> None:
    sink, delays = Sink(), list[float]()
    s = _hung_scheduler(sink, ScriptedConfig(id="fine", kind="scripted", interval=0.2))
    s.on_start_delay = delays.append
    s.start()
    try:
        _wait_for_hang_report(sink)
        delays.clear()
        fine = sum(r.check == "fine" for r in sink.results)
        with sink.cond:
            assert sink.cond.wait_for(
                lambda: sum(r.check == "fine" for r in sink.results) >= fine + 10, 30)
    finally:
        fakeprobes.RELEASE.set()
        s.shutdown(5)
    # the hung run's slot is given back: no run waits for the limit to widen (50 ms+)
    assert sorted(delays)[len(delays) // 2] < 0.04, delays


def test_a_run_hanging_at_shutdown_is_recorded_as_timed_out_and_not_waited_for() -> None:
    sink = Sink()
    s = _hung_scheduler(sink, workers=2)
    s.start()
    runner = s.runners["hang"]
    deadline = time.monotonic() + 10
    while not runner.in_time() and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    try:
        finished = s.shutdown(grace_period=10)
    finally:
        fakeprobes.RELEASE.set()
    assert finished is True
    assert time.monotonic() - t0 < 5  # at its timeout plus the 1 s margin, not after 10 s
    assert [(r.check, r.message) for r in sink.results] == [
        ("hang", "timed out after 0.2s (probe did not return)")]


def test_a_run_recorded_as_hung_does_not_hold_the_shutdown(
        caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    s = _hung_scheduler(sink)
    s.start()
    try:
        _wait_for_hang_report(sink)
        t0 = time.monotonic()
        assert s.shutdown(grace_period=10) is True
        assert time.monotonic() - t0 < 2
    finally:
        fakeprobes.RELEASE.set()
    assert "abandoned" not in caplog.text

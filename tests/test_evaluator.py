"""Flap damping: thresholds decide when a check's state changes."""

from __future__ import annotations

from controlplane.evaluator import Counters, State, evaluate
from controlplane.probes.base import CheckConfig
from controlplane.results import Result, Status

CHECK = CheckConfig(id="c", kind="x", failure_threshold=3, success_threshold=2)


def feed(statuses: str, counters: Counters | None = None) -> list[State]:
    """Feed statuses written as letters (o/d/f/e); return the state after each run."""
    counters = counters or Counters()
    letters = {"o": Status.OK, "d": Status.DEGRADED, "f": Status.FAILING, "e": Status.ERROR}
    states = []
    for ch in statuses:
        evaluate(counters, CHECK, Result(check="c", kind="x", status=letters[ch]))
        states.append(counters.state)
    return states


def test_new_check_is_ok_after_success_threshold() -> None:
    assert feed("oo") == [State.UNKNOWN, State.OK]


def test_failing_needs_failure_threshold_consecutive_runs() -> None:
    assert feed("ooffoffff")[-1] == State.FAILING
    assert feed("ooffoff") == [State.UNKNOWN, State.OK, State.OK, State.OK, State.OK,
                               State.OK, State.OK]


def test_errors_count_as_failures() -> None:
    assert feed("ooefe")[-1] == State.FAILING


def test_degraded_is_distinct_from_failing() -> None:
    assert feed("ooddd")[-1] == State.DEGRADED
    assert feed("oodfd")[-1] == State.DEGRADED  # degraded-or-worse streak of 3


def test_recovery_needs_success_threshold() -> None:
    assert feed("ooffffo")[-1] == State.FAILING
    assert feed("ooffffoo")[-1] == State.OK


def test_failing_improves_to_degraded_after_success_threshold() -> None:
    assert feed("oofffd")[-1] == State.FAILING
    assert feed("oofffdd")[-1] == State.DEGRADED


def test_transition_reports_old_and_new_state() -> None:
    counters = Counters(state=State.OK)
    t = None
    for _ in range(3):
        t = evaluate(counters, CHECK, Result(check="c", kind="x", status=Status.FAILING))
    assert t is not None and (t.old, t.new) == (State.OK, State.FAILING)

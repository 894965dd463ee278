"""State evaluation with flap damping: raw run statuses -> the check's state.

A check moves to ``failing`` after ``failure_threshold`` consecutive failing/error runs,
to ``degraded`` after ``failure_threshold`` consecutive runs that are degraded or worse,
and back to ``ok`` (or from failing down to degraded) after ``success_threshold``
consecutive runs at that level. A new check starts ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from controlplane.probes.base import CheckConfig
from controlplane.results import Result, Status


class State(StrEnum):
    UNKNOWN = "unknown"
    OK = "ok"
    DEGRADED = "degraded"
    FAILING = "failing"


_LEVEL = {Status.OK: 0, Status.DEGRADED: 1, Status.FAILING: 2, Status.ERROR: 2}
_STATE_LEVEL = {State.UNKNOWN: -1, State.OK: 0, State.DEGRADED: 1, State.FAILING: 2}


@dataclass
class Counters:
    state: State = State.UNKNOWN
    ok_streak: int = 0        # consecutive ok runs
    degraded_streak: int = 0  # consecutive runs exactly degraded
    bad_streak: int = 0       # consecutive runs degraded or worse
    fail_streak: int = 0      # consecutive failing/error runs
    since: datetime | None = None


@dataclass(frozen=True)
class Transition:
    check: CheckConfig
    old: State
    new: State
    result: Result
    since: datetime


def evaluate(counters: Counters, check: CheckConfig, result: Result) -> Transition | None:
    """Fold one result into ``counters`` (mutated); return the transition it causes, if any."""
    level = _LEVEL[result.status]
    counters.ok_streak = counters.ok_streak + 1 if level == 0 else 0
    counters.degraded_streak = counters.degraded_streak + 1 if level == 1 else 0
    counters.bad_streak = counters.bad_streak + 1 if level >= 1 else 0
    counters.fail_streak = counters.fail_streak + 1 if level == 2 else 0
    new = _target(counters, check)
    if new is None or new == counters.state:
        return None
    old = counters.state
    counters.state = new
    counters.since = result.started_at
    return Transition(check=check, old=old, new=new, result=result, since=result.started_at)


def _target(c: Counters, check: CheckConfig) -> State | None:
    current = _STATE_LEVEL[c.state]
    if c.fail_streak >= check.failure_threshold:
        return State.FAILING
    if c.bad_streak >= check.failure_threshold and current < 1:
        return State.DEGRADED
    if c.degraded_streak >= check.success_threshold and current > 1:
        return State.DEGRADED  # improving from failing to degraded
    if c.ok_streak >= check.success_threshold:
        return State.OK
    return None

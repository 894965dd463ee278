"""The Result model: what every probe, backup job and DR evaluation produces.

Its JSON shape is a public contract (DESIGN.md §4); extend it, never break it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_serializer


class Status(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILING = "failing"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """Severity order used to combine statuses (worst wins)."""
        return _RANK[self]

    @property
    def exit_code(self) -> int:
        """CLI exit code: 0 ok or degraded, 1 failing, 2 error."""
        return {Status.OK: 0, Status.DEGRADED: 0, Status.FAILING: 1, Status.ERROR: 2}[self]


_RANK = {Status.OK: 0, Status.DEGRADED: 1, Status.FAILING: 2, Status.ERROR: 3}


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: s.rank, default=Status.OK)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


class Step(BaseModel):
    name: str
    status: Status
    duration_s: float = 0.0
    message: str = ""


class Result(BaseModel):
    check: str
    kind: str
    env: str = ""
    status: Status
    started_at: datetime = Field(default_factory=utcnow)
    duration_s: float = 0.0
    message: str = ""
    metrics: dict[str, float | None] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    steps: list[Step] = Field(default_factory=list)

    @field_serializer("started_at")
    def _ser_started(self, value: datetime) -> str:
        return iso(value)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class StepRecorder:
    """Times named steps of a multi-step probe and stops at the first failure.

    Usage::

        rec = StepRecorder()
        with rec.step("send") as s:
            ...             # raise StepFailed("why") to fail the step
            s.message = "sent"
    """

    def __init__(self) -> None:
        self.steps: list[Step] = []

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        step = Step(name=name, status=Status.OK)
        start = time.monotonic()
        try:
            yield step
        except StepFailed as exc:
            step.status = exc.status
            step.message = str(exc)
            raise
        finally:
            step.duration_s = round(time.monotonic() - start, 6)
            self.steps.append(step)


class StepFailed(Exception):
    """A step of a probe failed; the message says which and why."""

    def __init__(self, message: str, status: Status = Status.FAILING) -> None:
        super().__init__(message)
        self.status = status

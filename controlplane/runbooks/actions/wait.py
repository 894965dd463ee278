"""``wait``: a fixed duration, or until a check is ok (with a deadline)."""

from __future__ import annotations

import time
from typing import ClassVar

from pydantic import Field, model_validator

from controlplane.durations import Duration
from controlplane.runbooks.actions.checks import run_checks
from controlplane.runbooks.base import Action, ActionArgs, ActionFailed, ActionResult, StepContext


class WaitArgs(ActionArgs):
    duration: Duration | None = Field(default=None, description="wait this long")
    until_check: str | None = Field(default=None, description="a configured check's id: wait "
                                                              "until it is ok")
    deadline: Duration = Field(default=600.0, gt=0, description="give up after this long")
    interval: Duration = Field(default=10.0, gt=0, description="between check runs")

    @model_validator(mode="after")
    def _one(self) -> WaitArgs:
        if (self.duration is None) == (self.until_check is None):
            raise ValueError("you must specify either duration or until_check")
        return self


class Wait(Action[WaitArgs]):
    name = "wait"
    args_model = WaitArgs
    summary = "wait a duration, or until a check is ok (with a deadline)"
    resumable: ClassVar[bool] = True
    example_args: ClassVar[dict[str, object]] = {"duration": "1s"}

    def plan(self) -> list[str]:
        a = self.args
        if a.duration is not None:
            return [f"wait {a.duration:g}s"]
        return [f"run check {a.until_check} every {a.interval:g}s until it is ok; fail after "
                f"{a.deadline:g}s"]

    def run(self, ctx: StepContext) -> ActionResult:
        a = self.args
        if a.duration is not None:
            if not ctx.sleep(a.duration):
                raise ActionFailed("stopped before the wait ended")
            return ActionResult(f"waited {a.duration:g}s", {"waited_s": a.duration})
        assert a.until_check is not None
        t0 = time.monotonic()
        attempts = 0
        last = ""
        while time.monotonic() - t0 < a.deadline:
            attempts += 1
            (result,) = run_checks(self.services, [a.until_check])
            last = f"{result.status.value}: {result.message}"
            ctx.progress(attempts=attempts, last=last)
            if result.status.value == "ok":
                waited = round(time.monotonic() - t0, 3)
                return ActionResult(f"{a.until_check} ok after {waited:g}s ({attempts} runs)",
                                    {"waited_s": waited, "attempts": attempts})
            if not ctx.sleep(min(a.interval, a.deadline - (time.monotonic() - t0))):
                break
        raise ActionFailed(f"{a.until_check} not ok after {a.deadline:g}s ({attempts} runs); "
                           f"last: {last}", {"attempts": attempts})

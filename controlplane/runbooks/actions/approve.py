"""``approve``: pause until someone with the admin token approves or rejects.

Decisions come from the dashboard, the API, the CLI or a signed Slack button; who and
when is recorded with the run. No decision before the timeout fails the step.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from controlplane.durations import Duration
from controlplane.runbooks.base import Action, ActionArgs, ActionFailed, ActionResult, StepContext


class ApproveArgs(ActionArgs):
    message: str = Field(min_length=1, description="what the approver is asked")
    timeout: Duration = Field(default=3600.0, gt=0, description="fail without a decision "
                                                                "after this long")


class Approve(Action[ApproveArgs]):
    name = "approve"
    args_model = ApproveArgs
    summary = "pause until an admin approves or rejects (dashboard, API, CLI, Slack)"
    resumable: ClassVar[bool] = True
    default_timeout = 24 * 3600.0
    example_args: ClassVar[dict[str, object]] = {"message": "Go ahead?"}

    def plan(self) -> list[str]:
        return [f"ask for approval: {self.args.message!r}; fail without a decision after "
                f"{self.args.timeout:g}s"]

    def run(self, ctx: StepContext) -> ActionResult:
        ctx.progress(waiting_for="approval", question=self.args.message)
        decision = ctx.await_decision(min(self.args.timeout, ctx.remaining()))
        if decision is None:
            if ctx.cancelled.is_set():
                raise ActionFailed("stopped while waiting for approval")
            raise ActionFailed(f"approval timed out after {self.args.timeout:g}s: nobody "
                               "approved or rejected")
        outputs = {"approved": decision.approved, "by": decision.by, "at": decision.at,
                   "comment": decision.comment}
        if not decision.approved:
            raise ActionFailed(f"rejected by {decision.by}"
                               + (f": {decision.comment}" if decision.comment else ""), outputs)
        return ActionResult(f"approved by {decision.by}"
                            + (f": {decision.comment}" if decision.comment else ""), outputs)

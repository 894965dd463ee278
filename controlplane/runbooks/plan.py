"""Dry-run: every step's plan with its resolved arguments, changing nothing.

Arguments that depend on an earlier step's outputs cannot be known before that step runs;
the plan shows them as ``<steps.ID.outputs.KEY>`` and says so.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from controlplane.logs import redact
from controlplane.runbooks import action_class
from controlplane.runbooks import expr as ex
from controlplane.runbooks.base import Services
from controlplane.runbooks.config import RunbookConfig, StepConfig

if TYPE_CHECKING:
    from controlplane.app import Runtime

_STEP_REF = re.compile(r"\{\{[^}]*\bsteps\.")


def plan(runtime: Runtime, rb: RunbookConfig, given: dict[str, Any]) -> list[str]:
    """The plan as lines; ValueError for bad parameters."""
    params = rb.resolve_params(given)
    scope = {"params": params, "steps": {}, "incident": {},
             "run": {"id": 0, "runbook": rb.id, "started_by": "dry-run", "trigger": "dry-run"}}
    services = Services(runtime)
    lines = [f"dry-run of {rb.id}: {rb.title} (owner {rb.owner}); nothing is changed",
             f"parameters: {json.dumps(params, default=str)}"]
    for i, step in enumerate(rb.steps, 1):
        lines += _step_lines(f"{i}.", step, scope, services)
        for rbk in step.rollback:
            lines += ["   on failure, roll back with:"]
            lines += ["   " + x for x in _step_lines("-", rbk, scope, services)]
    return lines


def _step_lines(prefix: str, step: StepConfig, scope: dict[str, Any],
                services: Services) -> list[str]:
    resumable = step.idempotent or getattr(action_class(step.action), "resumable", False)
    flags = [f"timeout {step.timeout_s():g}s", "idempotent" if resumable else
             "not idempotent"]
    if isinstance(step.on_failure, str):
        flags.append(f"on failure {step.on_failure}")
    head = f"{prefix} {step.id} [{step.action}] ({', '.join(flags)})"
    if step.when:
        head += f"\n     only when {step.when.strip()}"
    cls = action_class(step.action)
    try:
        args = cls.args_model.model_validate(ex.render(step.args, scope))
    except ex.ExprError as exc:
        if any(_STEP_REF.search("{{" + e) for e in ex.expressions(step.args)):
            return [head, redact("     arguments depend on earlier steps' outputs "
                                 f"({exc}): {json.dumps(step.args)}"),
                    "     (its plan is known once they ran)"]
        return [head, f"     would fail: bad arguments: {exc}"]
    except ValidationError as exc:
        return [head, f"     would fail: bad arguments: {exc}"]
    action = cls(args, services)
    scope["steps"][step.id] = {"outputs": action.planned_outputs(), "status": "planned",
                               "message": ""}
    resolved = json.dumps(args.model_dump(mode="json", exclude_defaults=True), default=str)
    body = [f"     {line}" for line in action.plan()]
    return [head, redact(f"     args {resolved}"), *(redact(b) for b in body)]

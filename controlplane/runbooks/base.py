"""The action contract: every runbook action is one module with one Action subclass.

An action gets its arguments validated against ``args_model`` (templates already resolved)
and the control plane's services. ``plan()`` says exactly what ``run()`` would do, without
doing it (the dry-run); ``run()`` does it, reports progress through the step context, and
returns outputs later steps can use, or raises :class:`ActionFailed`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from controlplane.app import Runtime
    from controlplane.config import ControlPlaneConfig
    from controlplane.dr.component import BackupOps
    from controlplane.store import Store


class ActionArgs(BaseModel):
    """Arguments of one action; each action subclasses it with its own fields."""

    # A template such as "{{ params.port }}" keeps its value's type; a text field takes it.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


ArgsT = TypeVar("ArgsT", bound=ActionArgs)


class ActionFailed(Exception):
    """The action ran and failed (the step fails; ``outputs`` are still recorded)."""

    def __init__(self, message: str, outputs: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.outputs = outputs or {}


@dataclass
class ActionResult:
    message: str
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decision:
    """A human's answer to an approval or an interrupted step."""

    approved: bool
    by: str
    at: str
    comment: str = ""


class Services:
    """What actions may use of the running control plane (built lazily: a dry-run of a
    check action must not open blob storage)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def config(self) -> ControlPlaneConfig:
        return self.runtime.config

    @property
    def store(self) -> Store:
        return self.runtime.store

    def backup_ops(self) -> BackupOps:
        from controlplane.dr.component import ops_for

        return ops_for(self.runtime)


@dataclass
class StepContext:
    """What a running step may do besides its work: report progress, see cancellation and
    its deadline, wait for a human decision."""

    run_id: int
    step_id: str
    deadline: float
    """time.monotonic() at which the step times out."""
    cancelled: threading.Event
    report: Callable[[dict[str, Any]], None]
    await_decision: Callable[[float], Decision | None]
    """Block until a human decides on this step or ``timeout`` seconds pass (None)."""

    def progress(self, **fields: Any) -> None:
        """Live progress of the step (bytes restored, attempts): shown on its page."""
        self.report(fields)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def sleep(self, seconds: float) -> bool:
        """Wait; False when the step was cancelled or reached its deadline meanwhile."""
        left = self.remaining()
        if self.cancelled.wait(max(0.0, min(seconds, left))):
            return False
        return seconds <= left


class Action(ABC, Generic[ArgsT]):
    name: ClassVar[str]
    args_model: ClassVar[type[ActionArgs]]
    summary: ClassVar[str]
    """One line for `runbook show`, the docs and the unknown-action error."""
    default_timeout: ClassVar[float] = 600.0
    example_args: ClassVar[dict[str, Any]] = {}
    """Valid arguments, used by the contract test and the docs."""

    def __init__(self, args: ArgsT, services: Services) -> None:
        self.args = args
        self.services = services

    @abstractmethod
    def plan(self) -> list[str]:
        """What run() would do with these arguments, one line each; changes nothing."""

    def planned_outputs(self) -> dict[str, Any]:
        """Outputs run() is known to produce before it runs (the backup a verify would
        pick), so the dry-run can resolve later steps' arguments; {} when unknown."""
        return {}

    @abstractmethod
    def run(self, ctx: StepContext) -> ActionResult:
        """Do it; raise ActionFailed when it did not work."""


class TargetedAction(Action[ArgsT]):
    """The plan/run scaffolding of actions on a configured thing (a backup component, a
    Kafka check): :meth:`validate` resolves it and raises :class:`ActionFailed` when it is
    unusable; the dry-run then says ``would fail: <why>`` instead of :meth:`describe`'s
    lines (which may raise too), and :meth:`run` validates before :meth:`execute`."""

    def validate(self) -> None:
        """Raise ActionFailed when the target cannot be used (default: nothing to check)."""

    @abstractmethod
    def describe(self) -> list[str]:
        """The dry-run's lines once the target is valid; may raise ActionFailed."""

    @abstractmethod
    def execute(self, ctx: StepContext) -> ActionResult:
        """The work, after validate() passed."""

    def plan(self) -> list[str]:
        try:
            self.validate()
            return self.describe()
        except ActionFailed as exc:
            return [f"would fail: {exc.message}"]

    def run(self, ctx: StepContext) -> ActionResult:
        self.validate()
        return self.execute(ctx)


def job_result(result: Any, failed: str, **extra: Any) -> ActionResult:
    """A job's check-style result (a backup, a drill) as the step's outcome: its status,
    message, metrics and details (plus ``extra``) as outputs; anything but ok fails the
    step with ``<failed>: <message>``."""
    outputs = {"status": result.status.value, "message": result.message,
               "metrics": dict(result.metrics), "details": dict(result.details), **extra}
    if result.status.value != "ok":
        raise ActionFailed(f"{failed}: {result.message}", outputs)
    return ActionResult(result.message, outputs)

"""``check.run``: run configured checks now (one, a list, or an environment's), in
parallel, through the pipeline like scheduled runs; fails on any failing check."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

from pydantic import Field, model_validator

from controlplane.probes import probe_class
from controlplane.results import Result, Status
from controlplane.runbooks.base import (
    Action,
    ActionArgs,
    ActionFailed,
    ActionResult,
    Services,
    StepContext,
)


class CheckRunArgs(ActionArgs):
    check: str | None = Field(default=None, description="one configured check's id")
    checks: list[str] = Field(default_factory=list, description="several check ids")
    env: str | None = Field(default=None, description="every enabled check of this "
                                                      "environment")
    fail_on_degraded: bool = False

    @model_validator(mode="after")
    def _some(self) -> CheckRunArgs:
        if not (self.check or self.checks or self.env):
            raise ValueError("you must specify check, checks or env")
        return self


def select_checks(services: Services, args: CheckRunArgs) -> list[str]:
    cfg = services.config
    ids = ([args.check] if args.check else []) + list(args.checks)
    if args.env:
        ids += [c.id for c in cfg.checks if c.env == args.env and c.enabled]
    known = {c.id for c in cfg.checks}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ActionFailed(f"unknown check {', '.join(unknown)}; `controlplane check list` "
                           "shows the ids")
    if not ids:
        raise ActionFailed(f"no enabled check in environment {args.env!r}")
    return list(dict.fromkeys(ids))


class CheckRunner:
    """Probes of configured checks, kept across runs (a lag check's Burrow window needs
    its earlier samples); each result goes through the pipeline (state, incidents,
    metrics) as a scheduled run's would."""

    def __init__(self, services: Services, ids: list[str]) -> None:
        rt = services.runtime
        self.pipeline = rt.pipeline
        self.checks = [rt.config.check(i) for i in ids]
        self.probes = [probe_class(c.kind)(c, rt.context) for c in self.checks]

    def run(self) -> list[Result]:
        """Every check once, in parallel."""
        def one(i: int) -> Result:
            result = self.probes[i].execute()
            self.pipeline.process(result, self.checks[i])
            return result

        with ThreadPoolExecutor(max(1, min(16, len(self.probes)))) as pool:
            return list(pool.map(one, range(len(self.probes))))

    def close(self) -> None:
        for p in self.probes:
            p.close()


def run_checks(services: Services, ids: list[str]) -> list[Result]:
    """Run checks once, at once, in parallel."""
    runner = CheckRunner(services, ids)
    try:
        return runner.run()
    finally:
        runner.close()


class CheckRun(Action[CheckRunArgs]):
    name = "check.run"
    args_model = CheckRunArgs
    summary = "run configured checks now, in parallel; fail on any failing check"
    resumable: ClassVar[bool] = True
    default_timeout = 300.0
    example_args: ClassVar[dict[str, object]] = {"check": "example-check"}

    def plan(self) -> list[str]:
        try:
            ids = select_checks(self.services, self.args)
        except ActionFailed as exc:
            return [f"would fail: {exc.message}"]
        worst = "degraded or failing" if self.args.fail_on_degraded else "failing"
        return [f"run {len(ids)} check(s) once, in parallel: {', '.join(ids)}",
                f"fail if any is {worst} or error"]

    def run(self, ctx: StepContext) -> ActionResult:
        ids = select_checks(self.services, self.args)
        ctx.progress(checks=len(ids))
        results = run_checks(self.services, ids)
        bad_levels = {Status.FAILING, Status.ERROR} | (
            {Status.DEGRADED} if self.args.fail_on_degraded else set())
        rows = [{"check": r.check, "status": r.status.value, "message": r.message}
                for r in results]
        bad = [r for r in results if r.status in bad_levels]
        outputs = {"results": rows, "failing": [r.check for r in bad],
                   "status": "failing" if bad else "ok"}
        if bad:
            raise ActionFailed(f"{len(bad)} of {len(results)} checks not ok: " + "; ".join(
                f"{r.check} {r.status.value}: {r.message}" for r in bad), outputs)
        return ActionResult(f"{len(results)} checks ok", outputs)

"""``kafka.describe`` and ``kafka.wait_healthy``, through the configured Kafka checks
(their connection settings, TLS and SASL, are the ones the scheduler uses)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import Field, field_validator

from controlplane.durations import Duration
from controlplane.results import Result
from controlplane.runbooks.actions.checks import CheckRunner, run_checks
from controlplane.runbooks.base import (
    ActionArgs,
    ActionFailed,
    ActionResult,
    Services,
    StepContext,
    TargetedAction,
)


class DescribeArgs(ActionArgs):
    cluster_check: str = Field(description="a configured kafka_cluster check's id")


class HealthyArgs(DescribeArgs):
    lag_checks: list[str] = Field(default_factory=list, description="kafka_lag checks that "
                                                                    "must be ok")

    @field_validator("lag_checks", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        # A runbook parameter is a string: "a,b" (or "") names the checks.
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        if isinstance(v, list):
            return [x for x in v if not (isinstance(x, str) and not x.strip())]
        return v
    deadline: Duration = Field(default=900.0, gt=0)
    interval: Duration = Field(default=10.0, gt=0)


def _kind(services: Services, check_id: str, kind: str) -> None:
    try:
        check = services.config.check(check_id)
    except KeyError:
        raise ActionFailed(f"unknown check {check_id!r}; use a configured {kind} check: "
                           + (", ".join(c.id for c in services.config.checks
                                        if c.kind == kind) or "none configured")) from None
    if check.kind != kind:
        raise ActionFailed(f"check {check_id} is a {check.kind} check; give a {kind} check")


def _cluster_outputs(result: Result) -> dict[str, Any]:
    m, d = result.metrics, result.details
    return {"status": result.status.value, "message": result.message,
            "brokers": d.get("brokers", []), "topics": m.get("topics"),
            "partitions": m.get("partitions"),
            "under_replicated_partitions": m.get("under_replicated_partitions"),
            "offline_partitions": m.get("offline_partitions")}


class KafkaDescribe(TargetedAction[DescribeArgs]):
    name = "kafka.describe"
    args_model = DescribeArgs
    summary = "read a Kafka cluster's brokers, topics and partition health"
    resumable: ClassVar[bool] = True
    default_timeout = 120.0
    example_args: ClassVar[dict[str, object]] = {"cluster_check": "kafka-example"}

    def validate(self) -> None:
        _kind(self.services, self.args.cluster_check, "kafka_cluster")

    def describe(self) -> list[str]:
        bootstrap = getattr(self.services.config.check(self.args.cluster_check), "bootstrap", "")
        return [f"read metadata of the cluster at {bootstrap} (check "
                f"{self.args.cluster_check}): brokers, topics, under-replicated and offline "
                "partitions; changes nothing"]

    def execute(self, ctx: StepContext) -> ActionResult:
        (result,) = run_checks(self.services, [self.args.cluster_check])
        if result.metrics.get("topics") is None:
            raise ActionFailed(f"cannot read the cluster: {result.message}",
                               _cluster_outputs(result))
        return ActionResult(result.message, _cluster_outputs(result))


class KafkaWaitHealthy(TargetedAction[HealthyArgs]):
    name = "kafka.wait_healthy"
    args_model = HealthyArgs
    summary = "wait until under-replicated partitions are 0 and every lag check is ok"
    resumable: ClassVar[bool] = True
    default_timeout = 1800.0
    example_args: ClassVar[dict[str, object]] = {"cluster_check": "kafka-example"}

    def describe(self) -> list[str]:
        # The checks are validated when it runs only: its dry-run is the plan as written.
        a = self.args
        lags = ", ".join(a.lag_checks) or "none"
        return [f"every {a.interval:g}s run {a.cluster_check} and the lag checks ({lags}) "
                f"until under-replicated partitions are 0 and every lag check is ok; fail "
                f"after {a.deadline:g}s"]

    def execute(self, ctx: StepContext) -> ActionResult:
        a = self.args
        _kind(self.services, a.cluster_check, "kafka_cluster")
        for lag in a.lag_checks:
            _kind(self.services, lag, "kafka_lag")
        runner = CheckRunner(self.services, [a.cluster_check, *a.lag_checks])
        try:
            return self._wait(ctx, runner)
        finally:
            runner.close()

    def _wait(self, ctx: StepContext, runner: CheckRunner) -> ActionResult:
        a = self.args
        t0 = time.monotonic()
        attempts, why = 0, ""
        while True:
            attempts += 1
            cluster, *lags = runner.run()
            urp = cluster.metrics.get("under_replicated_partitions")
            bad = [f"{r.check} {r.status.value}: {r.message}" for r in lags
                   if r.status.value != "ok"]
            if urp is None:
                why = f"cluster unreadable: {cluster.message}"
            elif urp:
                why = f"{urp:g} under-replicated partitions"
            else:
                why = "; ".join(bad)
            waited = round(time.monotonic() - t0, 3)
            ctx.progress(attempts=attempts, waiting_for=why or "nothing")
            if not why:
                return ActionResult(f"healthy after {waited:g}s ({attempts} checks)",
                                    {"waited_s": waited, "attempts": attempts,
                                     **_cluster_outputs(cluster)})
            left = a.deadline - waited
            if left <= 0 or not ctx.sleep(min(a.interval, left)):
                raise ActionFailed(f"not healthy after {waited:g}s: {why}",
                                   {"waited_s": waited, "attempts": attempts})

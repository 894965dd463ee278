"""An in-process control plane for incident tests: real store, pipeline, fakes, fake time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from controlplane.config import ControlPlaneConfig
from controlplane.incidents.component import IncidentsComponent
from controlplane.incidents.model import IncidentEventRow, IncidentRow, OutboxRow
from controlplane.metrics import Metrics
from controlplane.pipeline import Pipeline
from controlplane.probes.base import CheckConfig
from controlplane.results import Result, Status
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake
from controlplane.store import Store

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_config(slack: SlackFake | None, jira: JiraFake | None, db: Path,
                **extra: Any) -> ControlPlaneConfig:
    notifiers: dict[str, Any] = {}
    if slack is not None:
        notifiers["slack"] = {"token": slack.token, "base_url": slack.api_url,
                              "channel": "C0ONCALL", "repeat_interval": "1h",
                              "signing_secret": "slack-signing-secret",
                              "routes": [{"match": {"labels": {"team": "kafka"}},
                                          "channel": "C0KAFKA"}]}
    if jira is not None:
        notifiers["jira"] = {"server": jira.url, "user": jira.user, "token": jira.token,
                             "project": "OPS", "reopen_window": "1h"}
    data = {"environments": {"production": {}}, "store": {"dsn": f"sqlite:///{db}"},
            "notifiers": notifiers,
            "incidents": {"dashboard_url": "https://cp.example.com",
                          "outbox": {"backoff_initial": "2s", "backoff_max": "60s"}},
            **extra}
    return ControlPlaneConfig.model_validate(data)


def tls_check(**over: Any) -> CheckConfig:
    """A TLS check's common fields (the incident path never looks at kind-specific ones)."""
    fields: dict[str, Any] = {"id": "tls-bic-sky-prod", "kind": "tls-test", "env": "production",
                              "severity": "critical", "failure_threshold": 2,
                              "labels": {"team": "frontend"},
                              "runbook": "https://runbooks.example.com/tls"}
    return CheckConfig.model_validate({**fields, **over})


@dataclass
class Harness:
    cfg: ControlPlaneConfig
    store: Store
    metrics: Metrics
    pipeline: Pipeline
    component: IncidentsComponent
    clock: FakeClock

    @property
    def service(self) -> Any:
        return self.component.service

    @property
    def worker(self) -> Any:
        return self.component.worker

    def feed(self, check: CheckConfig, status: Status, message: str, runs: int = 1) -> None:
        for _ in range(runs):
            self.pipeline.process(Result(check=check.id, kind=check.kind, env=check.env,
                                         status=status, started_at=self.clock(),
                                         message=message), check)
            self.clock.advance(1)

    def deliver(self, passes: int = 5) -> None:
        for _ in range(passes):
            self.worker.run_once()

    def incidents(self) -> list[IncidentRow]:
        with self.store.session() as s:
            return list(s.scalars(select(IncidentRow).order_by(IncidentRow.id)))

    def timeline(self, incident_id: int) -> list[tuple[str, str]]:
        with self.store.session() as s:
            rows = s.scalars(select(IncidentEventRow).where(
                IncidentEventRow.incident_id == incident_id).order_by(IncidentEventRow.id))
            return [(r.kind, r.message) for r in rows]

    def outbox(self) -> list[OutboxRow]:
        with self.store.session() as s:
            return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))

    def close(self) -> None:
        self.component.stop()
        self.store.close()


def build(cfg: ControlPlaneConfig, clock: FakeClock | None = None) -> Harness:
    clock = clock or FakeClock()
    store = Store(cfg.store.dsn)
    metrics = Metrics()
    pipeline = Pipeline(store, metrics)
    component = IncidentsComponent(cfg, store, metrics, clock)
    pipeline.on_transition(component.service.on_transition)
    pipeline.on_result(component.service.on_result)
    return Harness(cfg, store, metrics, pipeline, component, clock)

"""The incidents component: wires the service into the pipeline and runs the outbox worker.

Listed in ``controlplane.app.COMPONENTS``; the web blueprints find it with
``runtime.component("incidents")``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from controlplane.incidents import silences
from controlplane.incidents.outbox import OutboxWorker
from controlplane.incidents.service import Clock, Escalation, IncidentService, system_clock
from controlplane.notifiers import build_notifiers
from controlplane.notifiers.base import Notifier

if TYPE_CHECKING:
    from controlplane.app import Runtime
    from controlplane.config import ControlPlaneConfig
    from controlplane.metrics import Metrics
    from controlplane.store import Store

log = logging.getLogger(__name__)


def escalation(cfg: ControlPlaneConfig) -> Escalation | None:
    """On-call escalation when policies apply (docs/oncall.md), else None."""
    if not cfg.oncall.effective_policies():
        return None
    from controlplane.oncall.escalation import Escalator

    return Escalator(cfg.oncall)


def button_runbooks(cfg: ControlPlaneConfig) -> list[str]:
    """Runbooks whose incidents offer a "Run runbook" button: not the ``auto: true`` ones,
    which start by themselves when the incident opens."""
    return [rb.id for rb in cfg.runbooks if not rb.auto]


class IncidentsComponent:
    name = "incidents"

    def __init__(self, cfg: ControlPlaneConfig, store: Store, metrics: Metrics | None,
                 clock: Clock = system_clock,
                 notifiers: dict[str, Notifier[Any]] | None = None) -> None:
        self.config = cfg
        self.store = store
        self.worker: OutboxWorker | None = None
        channels = build_notifiers(cfg.notifiers, clock) if notifiers is None else notifiers
        self.service = IncidentService(store, cfg.incidents, channels, metrics, clock,
                                       dashboard_url=cfg.web.public_url,
                                       wake=lambda: self.worker.wake() if self.worker else None,
                                       escalation=escalation(cfg),
                                       button_runbooks=button_runbooks(cfg))
        self.worker = OutboxWorker(store, channels, cfg.incidents.outbox, metrics, clock,
                                   on_idle=self.service.tick,
                                   idle_every=cfg.incidents.tick_interval)
        with store.session() as s:
            silences.sync_static(s, cfg.silences, clock())

    def start(self) -> None:
        assert self.worker is not None
        self.service.refresh_metrics()
        self.worker.start()
        log.info("incidents started channels=%s", ",".join(self.worker.notifiers) or "none")

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker.close()


def create(runtime: Runtime) -> IncidentsComponent | None:
    cfg = runtime.config
    if not cfg.incidents.enabled:
        return None
    component = IncidentsComponent(cfg, runtime.store, runtime.metrics)
    runtime.pipeline.on_transition(component.service.on_transition)
    runtime.pipeline.on_result(component.service.on_result)
    return component

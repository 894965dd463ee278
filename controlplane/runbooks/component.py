"""The runbooks component: the engine, scheduled drills and the incident trigger.

Listed in ``controlplane.app.COMPONENTS`` after the incidents component (so an incident
row exists when its transition reaches the trigger). Started only on the active instance;
standbys still serve the pages and queue runs, which the active engine picks up.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from controlplane.runbooks.base import Services
from controlplane.runbooks.config import RunbookConfig
from controlplane.runbooks.engine import Engine
from controlplane.runbooks.runs import RunRefused, start

if TYPE_CHECKING:
    from controlplane.app import Runtime
    from controlplane.evaluator import Transition

log = logging.getLogger(__name__)


def engine_for(runtime: Runtime) -> Engine:
    """The runtime's engine (created once; the CLI and the web views share it)."""
    engine = runtime.runbook_engine
    if engine is None:
        engine = Engine(runtime.store, runtime.config.runbooks, Services(runtime))
        from controlplane.runbooks import audit

        audit.attach(runtime, engine)
        runtime.runbook_engine = engine
    return engine


class RunbooksComponent:
    name = "runbooks"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.engine = engine_for(runtime)

    def start(self) -> None:
        """Scheduled drills join the main scheduler's jobs (started after components)."""
        from controlplane.backups.config import cron_trigger

        for rb in self.runtime.config.runbooks:
            if rb.schedule:
                self.runtime.scheduler.add_job(f"runbook-{rb.id}", partial(self.scheduled, rb),
                                               cron_trigger(rb.schedule))
        self.engine.start()

    def scheduled(self, rb: RunbookConfig) -> None:
        """A scheduled drill: refused like any other start while a run is in progress."""
        try:
            run = start(self.runtime.store, rb, {}, "schedule", "schedule")
        except RunRefused as exc:
            log.warning("scheduled runbook not started runbook=%s reason=%s", rb.id, exc)
            return
        self.engine.wake()
        log.info("scheduled runbook queued runbook=%s run=%s", rb.id, run.run_id)

    def on_transition(self, t: Transition) -> None:
        """A check naming an ``auto: true`` runbook starts it when its incident opens."""
        if t.new.value not in ("failing", "degraded") or t.old.value in ("failing",):
            return
        link = t.check.runbook
        rb = next((r for r in self.runtime.config.runbooks if r.id == link), None)
        if rb is None or not rb.auto:
            return
        incident_id = active_incident(self.runtime, t.check.id, t.check.env)
        if incident_id is None:
            return  # no incident opened (degraded without notify_on_degraded, disabled)
        try:
            run = start(self.runtime.store, rb, {}, f"incident #{incident_id}", "incident",
                        incident_id)
        except RunRefused as exc:
            log.warning("incident runbook not started runbook=%s incident=%s reason=%s",
                        rb.id, incident_id, exc)
            return
        self.engine.wake()
        log.info("incident started runbook runbook=%s incident=%s run=%s", rb.id, incident_id,
                 run.run_id)

    def drain(self, deadline: float) -> None:
        """The shutdown grace period began (controlplane/app.py): steps in flight may
        finish within it, no new step starts."""
        self.engine.drain(deadline)

    def stop(self) -> None:
        self.engine.stop()


def active_incident(runtime: Runtime, check_id: str, env: str) -> int | None:
    from sqlalchemy import select

    from controlplane.incidents.model import ACTIVE_STATES, IncidentRow
    from controlplane.incidents.service import dedup_key

    with runtime.store.session() as s:
        found = s.scalars(select(IncidentRow.id).where(
            IncidentRow.dedup_key == dedup_key(check_id, env),
            IncidentRow.state.in_(ACTIVE_STATES)).order_by(IncidentRow.id.desc())).first()
        return int(found) if found is not None else None


def create(runtime: Runtime) -> RunbooksComponent | None:
    if not runtime.config.runbooks:
        return None
    component = RunbooksComponent(runtime)
    runtime.pipeline.on_transition(component.on_transition)
    return component

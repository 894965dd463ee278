"""Assembles a running control plane from a config: store, pipeline, scheduler, web.

Capabilities beyond checks (incidents, backups, DR, …) are *features*
(controlplane/features.py); a feature's component is a module exposing
``create(runtime) -> Component | None``. The runtime starts them after the pipeline exists
(before the scheduler, so they can add jobs to it) and stops them in reverse order, after
the scheduler has given runs in flight their grace period.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from controlplane.config import ControlPlaneConfig
from controlplane.features import component_modules
from controlplane.leader import Leadership
from controlplane.metrics import Metrics
from controlplane.pipeline import Pipeline
from controlplane.probes.base import ProbeContext, Services
from controlplane.readiness import sqlite_identity
from controlplane.scheduler import CheckScheduler
from controlplane.store import Store
from controlplane.store.results import prune

if TYPE_CHECKING:
    from controlplane.dr.component import BackupOps
    from controlplane.runbooks.engine import Engine

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 3600.0

class Component(Protocol):
    """A feature's running part. It may also have ``drain(deadline)``: called when a
    graceful stop begins, so its own work in flight shares the grace period (ending at
    ``deadline``, a time.monotonic()) with the scheduler's runs."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Runtime:
    config: ControlPlaneConfig
    store: Store
    metrics: Metrics
    pipeline: Pipeline
    context: ProbeContext
    scheduler: CheckScheduler
    components: list[Component] = field(default_factory=list)
    backup_ops: BackupOps | None = None
    """Backups, drills and DR evaluation, shared by the backups component, the web views
    and the CLI (controlplane/dr/component.py ``ops_for``)."""
    sqlite_file: tuple[str, int, int] | None = None
    """(path, device, inode) of a SQLite store's file when opened: /readyz notices a file
    deleted or replaced under the process (controlplane/readiness.py)."""
    runbook_engine: Engine | None = None
    """The runbook engine, shared by the runbooks component, the web views and the CLI
    (controlplane/runbooks/component.py ``engine_for``)."""
    leadership: Leadership | None = None
    leadership_lost: bool = False
    on_leadership_lost: Callable[[], None] | None = None
    """Called (from the leadership thread) when the lock is lost: stop the process."""
    _started: list[Component] = field(default_factory=list)
    _stopped: bool = False

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def start(self) -> None:
        """Start the checks, notifications and backups now, or stand by while another
        instance is active on the same PostgreSQL store (controlplane/leader.py)."""
        self.leadership = Leadership(self.store, self.config.store.standby_retry,
                                     self._start_active, self._lost)
        self.leadership.start()

    @property
    def role(self) -> str:
        """``active``, ``standby``, or ``stopped`` (never started, or stopped)."""
        if self._stopped:
            return "stopped"
        if self.leadership is None:  # scheduler started by hand (tests, benchmarks)
            return "active" if self.scheduler.running else "stopped"
        return "active" if self.leadership.active else "standby"

    def _start_active(self) -> None:
        self.scheduler.add_maintenance("retention", self.prune, RETENTION_EVERY_S)
        for c in self.components:
            log.info("component starting name=%s", c.name)
            c.start()
            self._started.append(c)
        self.scheduler.start()

    def _lost(self) -> None:
        self.leadership_lost = True
        if self.on_leadership_lost is not None:
            self.on_leadership_lost()

    def prune(self) -> None:
        """Drop raw results and aggregates past their retention."""
        st = self.config.store
        with self.store.session() as s:
            raw, agg = prune(s, st.raw_retention, st.aggregate_retention)
        log.info("retention pruned raw=%d aggregates=%d", raw, agg)

    def stop(self, grace_period: float | None = None) -> bool:
        grace = self.config.scheduler.grace_period if grace_period is None else grace_period
        self._stopped = True
        if self.leadership is not None:
            self.leadership.stop_trying()  # a standby must not take over while we stop
        deadline = time.monotonic() + grace
        for c in self._started:
            drain = getattr(c, "drain", None)
            if drain is not None:
                drain(deadline)
        finished = self.scheduler.shutdown(grace)
        for c in reversed(self._started):
            try:
                c.stop()
            except Exception:
                log.exception("component stop failed name=%s", c.name)
        if self.leadership is not None:
            self.leadership.release()  # only now may another instance start
        self.store.close()
        return finished


def build_runtime(config: ControlPlaneConfig, metrics: Metrics | None = None) -> Runtime:
    from controlplane.telemetry import setup_telemetry

    tracer = setup_telemetry(config.telemetry)
    store = Store(config.store.dsn)  # opening it runs `controlplane db upgrade`
    metrics = metrics or Metrics()
    pipeline = Pipeline(store, metrics, tracer)
    context = ProbeContext(environments=dict(config.environments),
                           services=Services(store=store, dr=config.dr))
    scheduler = CheckScheduler(config.checks, pipeline.process, context,
                               config.scheduler.max_concurrency, config.scheduler.jitter,
                               tick_s=config.scheduler.tick)
    scheduler.on_start_delay = metrics.scheduler_start_delay.observe
    runtime = Runtime(config, store, metrics, pipeline, context, scheduler)
    runtime.sqlite_file = sqlite_identity(store)
    for name in component_modules():
        component = importlib.import_module(name).create(runtime)
        if component is not None:
            runtime.components.append(component)
    return runtime

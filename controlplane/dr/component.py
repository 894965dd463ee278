"""The backups/DR component: backups and drills on cron, on the control plane's scheduler.

They run on the main scheduler (controlplane/scheduler.py), so ``SIGTERM`` gives a backup in
flight the same grace period as a check run. Every Result (backup, drill, DR status) is fed
to the runtime's pipeline with its check from the one catalog (``config.checks``; the
``backup-*``, ``drill-*`` and ``dr-*`` checks are built in, controlplane/dr/probes.py), so
failures and breaches open incidents like any failing check, judged by one threshold. The
``dr-*`` checks are scheduled like any other check (every ``dr.evaluate_interval``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from controlplane.backups import catalog
from controlplane.backups.base import kind_of
from controlplane.backups.blob import BlobStore, open_blob_store
from controlplane.backups.config import (
    BackupComponentConfig,
    BackupsConfig,
    DrConfig,
    cron_trigger,
)
from controlplane.backups.service import backup_check_id
from controlplane.dr import cleanup
from controlplane.dr.drill import drill_check_id
from controlplane.dr.probes import DrCheckConfig, DrProbe, backup_checks
from controlplane.pipeline import Pipeline
from controlplane.probes.base import CheckConfig, ProbeContext
from controlplane.results import Result, Status
from controlplane.scheduler import CheckScheduler
from controlplane.sentry import capture
from controlplane.store import Store

if TYPE_CHECKING:
    from controlplane.app import Runtime

log = logging.getLogger(__name__)


class BackupOps:
    """Backups, drills and DR evaluation wired to a store, a blob store and a pipeline."""

    def __init__(self, backups: BackupsConfig, dr: DrConfig, store: Store, blob: BlobStore,
                 pipeline: Pipeline, context: ProbeContext | None = None,
                 checks: list[CheckConfig] | None = None) -> None:
        self.backups, self.dr = backups, dr
        self.store, self.blob, self.pipeline = store, blob, pipeline
        self.context = context or ProbeContext()
        services = self.context.services
        services.store = services.store or store
        services.dr = services.dr or dr
        # The catalog's own check objects (config.checks), so a result from a job here and
        # one from the scheduled check are judged alike; built alike when run on their own.
        self.checks = {c.id: c for c in (backup_checks(backups, dr) if checks is None
                                         else checks)}

    def check(self, check_id: str) -> CheckConfig:
        try:
            return self.checks[check_id]
        except KeyError:
            raise KeyError(f"no built-in check {check_id!r}: it exists once backups or dr "
                           "components are configured") from None

    def run_backup(self, name: str, progress: object = None) -> Result:
        kind = kind_of(self.backups.components[name].kind)
        result = kind.job(name, self.backups, self.store, self.blob,
                          progress).run().result  # type: ignore[arg-type]
        comp = self.backups.components[name]
        self.pipeline.process(result, self.check(backup_check_id(name)))
        if result.status == Status.OK and comp.retention.prune_after_backup:
            self._prune(name)
        self.evaluate_dr()
        return result

    def _prune(self, name: str) -> None:
        """Retention after a complete backup; a failure is logged, the backup stands."""
        from controlplane.backups import orphans, retention

        comp = self.backups.components[name]
        try:
            decisions = retention.decide(self.store, {name: comp.retention})
            errors = retention.prune(self.store, self.blob, decisions)
            found, list_errors = orphans.find(self.store, self.blob, {name: comp})
            errors += list_errors + orphans.delete(self.store, self.blob, found)
        except Exception as exc:
            capture(exc, backup_check_id(name), component=name, job="retention")
            log.exception("retention failed check=%s component=%s; run `controlplane backup "
                          "prune`", backup_check_id(name), name)
            return
        for e in errors:
            log.warning("retention could not delete component=%s error=%s", name, e)

    def run_drill(self, name: str, progress: object = None, on_demand: bool = False) -> Result:
        kind = kind_of(self.backups.components[name].kind)
        drill = kind.drill(name, self.backups, self.store, self.blob,
                           progress, on_demand=on_demand)  # type: ignore[arg-type]
        result = drill.run().result
        self.pipeline.process(result, self.check(drill_check_id(name)))
        self.evaluate_dr()
        return result

    def run_broker_drill(self, name: str, stop: Callable[[], None], start: Callable[[], None],
                         down_s: float = 10.0) -> Result:
        """Stop one broker of the kafka-metadata component's cluster, start it, time the
        way back to health (controlplane/dr/kafka_drill.py); the result feeds /dr's RTO."""
        from controlplane.dr.kafka_drill import BrokerDrill

        drill = BrokerDrill(name, self.backups, self.store, self.blob, stop, start, down_s)
        result = drill.run().result
        self.pipeline.process(result, self.check(drill_check_id(name)))
        self.evaluate_dr()
        return result

    def scheduled_backup(self, name: str) -> None:
        """A cron-triggered backup: a crash is reported with its check id, never lost."""
        self._scheduled("backup", backup_check_id(name), name, self.run_backup)

    def scheduled_drill(self, name: str) -> None:
        self._scheduled("drill", drill_check_id(name), name, self.run_drill)

    @staticmethod
    def _scheduled(job: str, check_id: str, name: str, run: Callable[[str], object]) -> None:
        try:
            run(name)
        except Exception as exc:
            capture(exc, check_id, component=name, job=job)
            log.exception("scheduled %s crashed check=%s component=%s", job, check_id, name)

    def export_backup_metrics(self) -> None:
        """backup_* gauges from the catalog, so they survive restarts and count backups
        run elsewhere (the CLI, another replica), not only this process's own."""
        metrics = self.pipeline.metrics
        with self.store.session() as s:
            for name in self.backups.components:
                row = catalog.latest_complete(s, name)
                if row is None or row.finished_at is None:
                    continue
                ts = catalog.aware(row.finished_at).timestamp()
                metrics.backup_last_success.labels(name).set(ts)
                metrics.backup_duration.labels(name).set(float(row.duration_s or 0))
                metrics.backup_size.labels(name).set(float(row.size_bytes or 0))

    def evaluate_dr(self) -> list[Result]:
        self.export_backup_metrics()
        out = []
        for name in self.dr.targets():
            check = self.checks.get(f"dr-{name}")
            if not isinstance(check, DrCheckConfig):
                continue  # nothing configured: no DR checks (see dr/probes.py backup_checks)
            result = DrProbe(check, self.context).execute()
            self.pipeline.process(result, check)
            out.append(result)
        return out


class BackupsComponent:
    name = "backups"

    def __init__(self, ops: BackupOps, scheduler: CheckScheduler) -> None:
        self.ops = ops
        self.scheduler = scheduler

    def start(self) -> None:
        """Called before the scheduler starts: the jobs join it, beside the checks."""
        for name, target in self.ops.dr.targets().items():
            source = target.backup_component
            if source and source not in self.ops.backups.components:
                log.warning("DR component %s is measured from backups component %r, which is "
                            "not configured; set dr.components.%s.backup_component to one of: "
                            "%s", name, source, name,
                            ", ".join(sorted(self.ops.backups.components)) or "(none)")
        self._warn_source_restores()
        for name, comp in self.ops.backups.components.items():
            if comp.schedule:
                self.scheduler.add_job(f"run-backup-{name}", partial(self.ops.scheduled_backup,
                                                                     name),
                                       cron_trigger(comp.schedule))
            if comp.drill.schedule:
                self.scheduler.add_job(f"run-drill-{name}", partial(self.ops.scheduled_drill,
                                                                    name),
                                       cron_trigger(comp.drill.schedule))
        try:
            self.ops.export_backup_metrics()
        except Exception:
            log.exception("could not read the backup catalog for the backup_* metrics")
        threading.Thread(target=self._first_run, name="dr-first", daemon=True).start()
        log.info("backups component started jobs=%d", len(self.jobs()))

    def _warn_source_restores(self) -> None:
        for name, comp in self.ops.backups.components.items():
            warn_if_drills_restore_on_source(name, comp)

    def _first_run(self) -> None:
        """Clean up after drills a dead process left, then a first DR evaluation."""
        for name, comp in self.ops.backups.components.items():
            if comp.kind == "postgres":  # scratch databases are a postgres drill's
                cleanup.clean_up(self.ops.store, name, comp)
        self._safe_evaluate()

    def _safe_evaluate(self) -> None:
        try:
            self.ops.evaluate_dr()
        except Exception:
            log.exception("DR evaluation failed")

    def jobs(self) -> list[tuple[str, str]]:
        """(job id, trigger) of this component's jobs on the main scheduler."""
        return [(job_id, trigger) for job_id, trigger in self.scheduler.jobs()
                if job_id.startswith(("run-backup-", "run-drill-"))]

    def stop(self) -> None:
        """Nothing of its own: the scheduler stops the jobs (with the grace period)."""


def warn_if_drills_restore_on_source(name: str, comp: BackupComponentConfig) -> None:
    """Drills default to the source server: a full restore load on production."""
    if comp.kind == "postgres" and comp.drill.server_dsn is None:
        log.warning("drills of %s restore into scratch databases ON THE SOURCE SERVER (the "
                    "production database's server): set backups.components.%s.drill."
                    "server_dsn to an admin DSN of a separate Postgres server (see docs/dr.md)",
                    name, name)


def ops_for(runtime: Runtime) -> BackupOps:
    """The runtime's BackupOps (created once and shared with the web views)."""
    if runtime.backup_ops is None:
        cfg = runtime.config
        runtime.backup_ops = BackupOps(cfg.backups, cfg.dr, runtime.store,
                                       open_blob_store(cfg.blob), runtime.pipeline,
                                       runtime.context, cfg.checks)
    return runtime.backup_ops


def create(runtime: Runtime) -> BackupsComponent | None:
    """None until backups or DR components are configured: an install without them should
    not raise "never measured" results every few minutes (the /dr page still shows them)."""
    cfg = runtime.config
    if not cfg.backups.components and not cfg.dr.components:
        return None
    return BackupsComponent(ops_for(runtime), runtime.scheduler)

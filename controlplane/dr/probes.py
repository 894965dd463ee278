"""Check kinds ``backup``, ``drill`` and ``dr``.

Backup jobs, drills and the DR tracker produce Results of these kinds. :func:`builtin_checks`
gives every backups component its ``backup-NAME`` and ``drill-NAME`` check and every DR target
its ``dr-NAME`` check: built in (never written in YAML), they are in the one catalog the
scheduler, the evaluator, the status page and the API read, so a backup job's result and the
scheduled re-reading of the catalog are judged by the same check and threshold.
They read the store the running control plane lends in ``context.services.store``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import Field

from controlplane.durations import Duration
from controlplane.probes.base import (
    CheckConfig,
    CheckDefaults,
    Outcome,
    Probe,
    ProbeError,
    Severity,
    with_defaults,
)
from controlplane.results import Result, Status

if TYPE_CHECKING:
    from controlplane.backups.config import BackupsConfig, DrConfig
    from controlplane.config import ControlPlaneConfig
    from controlplane.metrics import Metrics
    from controlplane.store import Store


class BackupCheckConfig(CheckConfig):
    kind: Literal["backup"] = "backup"
    component: str
    interval: Duration = 300.0
    """How often the catalog is re-read (each backup reports at once besides)."""
    failure_threshold: int = Field(default=1, ge=1)
    severity: Severity = "critical"


class DrillCheckConfig(CheckConfig):
    kind: Literal["drill"] = "drill"
    component: str
    interval: Duration = 300.0
    failure_threshold: int = Field(default=1, ge=1)
    severity: Severity = "critical"


class DrCheckConfig(CheckConfig):
    kind: Literal["dr"] = "dr"
    component: str
    failure_threshold: int = Field(default=1, ge=1)
    severity: Severity = "major"


def _store(probe: Probe[Any]) -> Store:
    store = probe.context.services.store
    if store is None:
        raise ProbeError("this check reads the backup catalog; run it inside the control "
                         "plane (`controlplane run`), or use `controlplane backup list`")
    return store


class BackupProbe(Probe[BackupCheckConfig]):
    """Latest backup of a component: ok when complete, failing when it failed."""

    kind: ClassVar[str] = "backup"
    config_model: ClassVar[type[CheckConfig]] = BackupCheckConfig

    def check(self) -> Outcome:
        from controlplane.backups import catalog  # SQLAlchemy: not needed to validate a config

        with _store(self).session() as s:
            rows = catalog.backups(s, self.config.component, limit=1)
            row = rows[0].to_dict() if rows else None
            complete = catalog.latest_complete(s, self.config.component)
            # The backup_* gauges follow the catalog, also for backups run elsewhere.
            metrics: dict[str, float | None] = {} if complete is None or \
                complete.finished_at is None else {
                    "finished_ts": catalog.aware(complete.finished_at).timestamp(),
                    "duration_s": complete.duration_s,
                    "size_bytes": float(complete.size_bytes or 0)}
        if row is None:
            return Outcome(Status.DEGRADED, f"no backup of {self.config.component} yet")
        if row["status"] == catalog.FAILED:
            return Outcome(Status.FAILING, f"latest backup {row['id']} failed at "
                           f"{row['failed_step']}: {row['error']}", metrics,
                           details={"backup": row})
        return Outcome(Status.OK, f"latest backup {row['id']} is {row['status']}", metrics,
                       details={"backup": row})

    @classmethod
    def export_metrics(cls, result: Result, metrics: Metrics) -> None:
        component = result.check.removeprefix("backup-")
        m = result.metrics
        if m.get("finished_ts") is not None:
            metrics.backup_last_success.labels(component).set(float(m["finished_ts"] or 0))
            metrics.backup_duration.labels(component).set(float(m.get("duration_s") or 0))
            metrics.backup_size.labels(component).set(float(m.get("size_bytes") or 0))


class DrillProbe(Probe[DrillCheckConfig]):
    """Latest drill of a component: ok when it passed, failing when it failed."""

    kind: ClassVar[str] = "drill"
    config_model: ClassVar[type[CheckConfig]] = DrillCheckConfig

    def check(self) -> Outcome:
        from controlplane.backups import catalog

        with _store(self).session() as s:
            rows = catalog.drills(s, self.config.component, limit=1)
            row = rows[0].to_dict() if rows else None
        if row is None:
            return Outcome(Status.DEGRADED, f"no drill of {self.config.component} yet")
        if row["status"] == catalog.FAILED:
            return Outcome(Status.FAILING, f"latest drill failed at {row['failed_step']}: "
                           f"{row['message']}", details={"drill": row})
        return Outcome(Status.OK, f"latest drill is {row['status']}", details={"drill": row})


class DrProbe(Probe[DrCheckConfig]):
    """One DR component's RTO/RPO against its targets (met / at risk / breached / unknown)."""

    kind: ClassVar[str] = "dr"
    config_model: ClassVar[type[CheckConfig]] = DrCheckConfig

    def check(self) -> Outcome:
        from controlplane.dr.tracker import evaluate_one, human_duration

        dr = self.context.services.dr
        if dr is None:
            raise ProbeError("the dr check needs the control plane's dr config")
        targets = dr.targets()
        if self.config.component not in targets:
            raise ProbeError(f"no DR component {self.config.component!r}; configured: "
                             + ", ".join(sorted(targets)))
        from controlplane.results import utcnow

        cs = evaluate_one(_store(self), self.config.component,
                          targets[self.config.component], dr.at_risk_ratio, utcnow())
        message = (f"{cs.component}: {cs.status_words} — RPO {human_duration(cs.rpo_s)} "
                   f"(target {human_duration(cs.rpo_target_s)}), RTO "
                   f"{human_duration(cs.rto_s)} (target {human_duration(cs.rto_target_s)})")
        if cs.reasons:
            message += "; " + "; ".join(cs.reasons)
        return Outcome(cs.result_status, message,
                       metrics={"rpo_s": cs.rpo_s, "rpo_target_s": cs.rpo_target_s,
                                "rto_s": cs.rto_s, "rto_target_s": cs.rto_target_s,
                                "rpo_complete_s": cs.rpo_complete_s},
                       details={"component": cs.component, "status": cs.status,
                                "rto_status": cs.rto_status, "rpo_status": cs.rpo_status})

    @classmethod
    def export_metrics(cls, result: Result, metrics: Metrics) -> None:
        component = str(result.details.get("component") or result.check.removeprefix("dr-"))
        m = result.metrics
        for key, gauge in (("rpo_s", metrics.dr_rpo), ("rpo_target_s", metrics.dr_rpo_target),
                           ("rto_s", metrics.dr_rto), ("rto_target_s", metrics.dr_rto_target)):
            value = m.get(key)
            if value is not None:
                gauge.labels(component).set(float(value))


def backup_check(component: str, env: str, severity: Severity = "critical",
                 defaults: CheckDefaults | None = None) -> BackupCheckConfig:
    return _build(BackupCheckConfig, defaults, id=f"backup-{component}", component=component,
                  env=env, name=f"Backup of {component}", severity=severity)


def drill_check(component: str, env: str, severity: Severity = "critical",
                defaults: CheckDefaults | None = None) -> DrillCheckConfig:
    return _build(DrillCheckConfig, defaults, id=f"drill-{component}", component=component,
                  env=env, name=f"Restore drill of {component}", severity=severity)


def dr_check(component: str, interval: float = 300.0,
             defaults: CheckDefaults | None = None) -> DrCheckConfig:
    return _build(DrCheckConfig, defaults, id=f"dr-{component}", component=component,
                  name=f"DR targets of {component}", interval=interval)


def builtin_checks(config: ControlPlaneConfig) -> list[CheckConfig]:
    """The backups feature's built-in checks (controlplane/features.py)."""
    return backup_checks(config.backups, config.dr, config.defaults)


def backup_checks(backups: BackupsConfig, dr: DrConfig,
                  defaults: CheckDefaults | None = None) -> list[CheckConfig]:
    """``backup-NAME`` and ``drill-NAME`` per backups component, ``dr-NAME`` per DR target;
    none until backups or DR components are configured (an install without them should not
    show four "never measured" DR checks)."""
    if not backups.components and not dr.components:
        return []
    out: list[CheckConfig] = []
    for name, comp in backups.components.items():
        out.append(backup_check(name, comp.env, comp.severity, defaults))
        out.append(drill_check(name, comp.env, comp.severity, defaults))
    out += [dr_check(name, dr.evaluate_interval, defaults) for name in dr.targets()]
    return out


C = TypeVar("C", bound=CheckConfig)


def _build(model: type[C], defaults: CheckDefaults | None, **fields: Any) -> C:
    """A built-in check, completed from the defaults as a YAML check would be."""
    return model.model_validate(with_defaults(model, fields, defaults or CheckDefaults()))

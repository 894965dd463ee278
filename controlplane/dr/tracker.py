"""The DR tracker: RTO/RPO targets against measured reality, per component.

Current RPO = now - snapshot time of the newest backup a drill has verified (the stricter
figure beside it uses the newest complete backup). Measured RTO = duration of the latest
passed drill; a latest drill that failed means the RTO is breached (we could not restore).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controlplane.backups import catalog
from controlplane.backups.catalog import BackupRow, DrillRow, aware
from controlplane.backups.config import DrConfig, DrTarget
from controlplane.results import Status, iso, utcnow
from controlplane.store import Store

MET, AT_RISK, BREACHED, UNKNOWN = "met", "at_risk", "breached", "unknown"
UNPROTECTED = "unprotected"
"""Some data has no copy at all (Kafka messages on replication factor 1): never "met"."""
WORDS = {MET: "Met", AT_RISK: "At risk", BREACHED: "Breached", UNKNOWN: "Unknown",
         UNPROTECTED: "Unprotected"}
_ORDER = {MET: 0, UNKNOWN: 1, AT_RISK: 2, UNPROTECTED: 3, BREACHED: 4}
RESULT_STATUS = {MET: Status.OK, UNKNOWN: Status.DEGRADED, AT_RISK: Status.DEGRADED,
                 UNPROTECTED: Status.DEGRADED, BREACHED: Status.FAILING}


def judge(value: float | None, target: float, at_risk_ratio: float) -> str:
    if value is None:
        return UNKNOWN
    if value > target:
        return BREACHED
    if value > target * at_risk_ratio:
        return AT_RISK
    return MET


@dataclass
class ComponentStatus:
    component: str
    description: str
    rto_target_s: float
    rpo_target_s: float
    rto_s: float | None = None
    rpo_s: float | None = None
    rpo_complete_s: float | None = None
    rto_status: str = UNKNOWN
    rpo_status: str = UNKNOWN
    status: str = UNKNOWN
    status_words: str = ""
    reasons: list[str] = field(default_factory=list)
    last_backup: dict[str, Any] | None = None
    last_drill: dict[str, Any] | None = None
    unprotected: list[str] = field(default_factory=list)
    """Topics whose messages have no second copy (replication factor 1)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def result_status(self) -> Status:
        return RESULT_STATUS[self.status]


def evaluate(store: Store, dr: DrConfig, now: datetime | None = None) -> list[ComponentStatus]:
    now = now or utcnow()
    return [evaluate_one(store, name, target, dr.at_risk_ratio, now)
            for name, target in dr.targets().items()]


def evaluate_one(store: Store, name: str, target: DrTarget, ratio: float,
                 now: datetime) -> ComponentStatus:
    cs = ComponentStatus(name, target.description, target.rto, target.rpo)
    # Without a backups component, drills recorded under the DR component's own name (a
    # runbook with `measures:`, e.g. cluster-rebuild) measure its RTO.
    source = target.backup_component or name
    if source:
        with store.session() as s:
            _measure(s, cs, source, now)
    cs.rpo_status = judge(cs.rpo_s, cs.rpo_target_s, ratio)
    if cs.rto_status != BREACHED:
        cs.rto_status = judge(cs.rto_s, cs.rto_target_s, ratio)
    cs.status = max(cs.rto_status, cs.rpo_status, key=_ORDER.__getitem__)
    if cs.unprotected:
        cs.status = max(cs.status, UNPROTECTED, key=_ORDER.__getitem__)
        shown = ", ".join(cs.unprotected[:5]) + (" ..." if len(cs.unprotected) > 5 else "")
        cs.reasons.append(f"message data unprotected: {len(cs.unprotected)} topics with "
                          f"replication factor 1 ({shown}); losing their broker loses their "
                          "messages, the metadata backup restores topics and offsets only")
    cs.status_words = WORDS[cs.status]
    cs.reasons += _reasons(cs)
    return cs


def _measure(s: Any, cs: ComponentStatus, source: str, now: datetime) -> None:
    rows = catalog.backups(s, source, limit=1)
    if rows:
        cs.last_backup = rows[0].to_dict()
    # Each its own query: however many unverified backups came since, the newest verified
    # one still sets the RPO (a long run of failed drills must read breached, not unknown).
    complete = catalog.latest_complete(s, source)
    if complete is not None:
        cs.unprotected = list(complete.manifest.get("unprotected_topics") or [])
    verified = catalog.latest_complete(s, source, verified=True)
    if complete is not None:
        cs.rpo_complete_s = round((now - aware(complete.started_at)).total_seconds(), 1)
    if verified is not None:
        cs.rpo_s = round((now - aware(verified.started_at)).total_seconds(), 1)
    drills = catalog.drills(s, source, limit=50)
    if drills:
        cs.last_drill = drills[0].to_dict()
    finished = [d for d in drills if d.status != catalog.RUNNING]
    passed = [d for d in finished if d.status == catalog.PASSED]
    if passed:
        cs.rto_s = passed[0].duration_s
    if finished and finished[0].status == catalog.FAILED:
        cs.rto_status = BREACHED
        cs.reasons.append(f"latest drill failed at {finished[0].failed_step}: "
                          f"{finished[0].message}")


def _reasons(cs: ComponentStatus) -> list[str]:
    out: list[str] = []
    if cs.rpo_status == UNKNOWN:
        out.append("RPO never measured: no backup verified by a drill")
    elif cs.rpo_status != MET:
        out.append(f"RPO {_h(cs.rpo_s)} vs target {_h(cs.rpo_target_s)}")
    if cs.rto_status == UNKNOWN:
        out.append("RTO never measured: no drill passed")
    elif cs.rto_status != MET and cs.rto_s is not None:
        out.append(f"RTO {_h(cs.rto_s)} vs target {_h(cs.rto_target_s)}")
    return out


def _h(seconds: float | None) -> str:
    return human_duration(seconds)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def rpo_series(store: Store, source: str | None, days: int = 30, points: int = 180,
               now: datetime | None = None) -> list[tuple[datetime, float | None]]:
    """RPO over time: at each sample t, t - start of the newest backup verified by t."""
    now = now or utcnow()
    start = now - timedelta(days=days)
    if not source:
        return [(start + (now - start) * i / (points - 1), None) for i in range(points)]
    with store.session() as s:
        rows: list[BackupRow] = [r for r in catalog.backups(s, source, limit=5000)
                                 if r.verified_at is not None]
        events = sorted((aware(r.verified_at), aware(r.started_at))  # type: ignore[arg-type]
                        for r in rows)
    out: list[tuple[datetime, float | None]] = []
    for i in range(points):
        t = start + (now - start) * i / (points - 1)
        snaps = [snap for verified, snap in events if verified <= t and snap <= t]
        out.append((t, (t - max(snaps)).total_seconds() if snaps else None))
    return out


def history(store: Store, source: str | None, days: int = 30) -> dict[str, list[Any]]:
    if not source:
        return {"backups": [], "drills": []}
    since = utcnow() - timedelta(days=days)
    with store.session() as s:
        b = [r.to_dict() for r in catalog.backups(s, source, since=since, limit=200)]
        d: list[DrillRow] = catalog.drills(s, source, since=since, limit=200)
        return {"backups": b, "drills": [r.to_dict() for r in d]}


def to_api(statuses: list[ComponentStatus], store: Store, dr: DrConfig) -> dict[str, Any]:
    targets = dr.targets()
    comps = []
    for cs in statuses:
        src = targets[cs.component].backup_component or cs.component  # as evaluate_one
        item = cs.to_dict()
        item["rpo_series"] = [{"t": iso(t), "rpo_s": v} for t, v in
                              rpo_series(store, src, points=60)]
        item.update(history(store, src))
        comps.append(item)
    return {"generated_at": iso(utcnow()), "at_risk_ratio": dr.at_risk_ratio,
            "components": comps}

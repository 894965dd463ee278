"""The backups feature's public interface for other features: recording a drill measured
elsewhere (a runbook that measures a DR component's RTO), without touching the catalog's
tables. Takes the caller's session, so the drill commits with what it measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from controlplane.backups.catalog import FAILED, PASSED, DrillRow

__all__ = ["FAILED", "PASSED", "DrillRecord", "record_drill"]


@dataclass(frozen=True)
class DrillRecord:
    component: str
    passed: bool
    started_at: datetime
    finished_at: datetime
    duration_s: float | None
    message: str
    failed_step: str = ""
    backup_id: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    on_demand: bool = True


def record_drill(s: Session, d: DrillRecord) -> None:
    """A finished drill of ``d.component``: on /dr its duration is the measured RTO when it
    passed; a failed one breaches it."""
    s.add(DrillRow(component=d.component, backup_id=d.backup_id,
                   status=PASSED if d.passed else FAILED, started_at=d.started_at,
                   finished_at=d.finished_at, duration_s=d.duration_s,
                   failed_step=d.failed_step[:40], message=d.message, steps=list(d.steps),
                   on_demand=d.on_demand))

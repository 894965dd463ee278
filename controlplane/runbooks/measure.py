"""Runbooks that measure a DR component's RTO (``measures: COMPONENT``).

A run that ends is recorded as a drill of that component, in the transaction that ends
it: a succeeded run's duration is the measured RTO on ``/dr`` (start to end, what the DR
team would live through); a failed or timed-out run breaches it, as a failed drill does.
A cancelled run measures nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.backups import api as backups
from controlplane.runbooks.model import FAILED, SUCCEEDED, TIMED_OUT, RunRow, StepRow

if TYPE_CHECKING:
    from controlplane.config import ControlPlaneConfig

log = logging.getLogger(__name__)


def drill_component(config: ControlPlaneConfig, dr_component: str) -> str:
    """The name drills of ``dr_component`` are recorded under (its backups component, when
    it has one, so backup drills and runbook drills measure it together)."""
    target = config.dr.targets().get(dr_component)
    return (target.backup_component if target is not None else None) or dr_component


class Measure:
    def __init__(self, config: ControlPlaneConfig) -> None:
        self.config = config
        self.runbooks = {r.id: r for r in config.runbooks}

    def on_finish(self, s: Session, run: RunRow) -> None:
        rb = self.runbooks.get(run.runbook_id)
        if rb is None or not rb.measures or run.status not in (SUCCEEDED, FAILED, TIMED_OUT):
            return
        steps = s.scalars(select(StepRow).where(StepRow.run_id == run.id)
                          .order_by(StepRow.seq)).all()
        failed = next((st.step_id for st in steps if st.status not in ("succeeded",
                                                                        "skipped")), "")
        backup_id = next((str(st.outputs["backup_id"]) for st in steps
                          if isinstance(st.outputs, dict) and st.outputs.get("backup_id")), "")
        duration = run.duration_s()
        assert run.started_at is not None and run.finished_at is not None  # a finished run
        backups.record_drill(s, backups.DrillRecord(
            component=drill_component(self.config, rb.measures), backup_id=backup_id,
            passed=run.status == SUCCEEDED, started_at=run.started_at,
            finished_at=run.finished_at, duration_s=duration, failed_step=failed,
            message=f"runbook {rb.id} run #{run.id}: {run.message}",
            steps=[{"name": st.step_id, "status": st.status, "duration_s": st.duration_s,
                    "message": st.message} for st in steps],
            on_demand=run.trigger != "schedule"))
        log.info("runbook measured dr component=%s run=%s status=%s duration_s=%s",
                 rb.measures, run.id, run.status, duration)

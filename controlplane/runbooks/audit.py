"""The auditors' trail of every run, delivered through the incidents' durable outbox.

The outbox delivers notifications of *incidents* (ordered per incident, retried, made
idempotent by each notifier). A run therefore writes its notifications in the same
transaction as the change it reports (the claim that starts it, the row that ends it):

- a run started **from an incident** adds ``update`` entries to that incident: a comment
  on its Jira issue and a reply in its Slack thread, at the start and at the end (with the
  whole trail);
- any other run gets an **audit record**: an incidents row of kind ``runbook`` (state
  ``resolved`` from the start, so it never pages, reminds or counts as open) whose
  ``open`` creates the Jira issue and posts the Slack start message, whose ``update``
  comments the trail on the issue, and whose ``resolve`` posts the end and closes the
  issue.

The trail says who started the run, its parameters, every step with its outcome and
duration, the approvals, and the result.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.incidents.model import PENDING, RESOLVED, IncidentRow, OutboxRow
from controlplane.notifiers.base import Incident, duration_text
from controlplane.notifiers.jira import dedup_label
from controlplane.results import iso, utcnow
from controlplane.runbooks.model import DecisionRow, RunRow, StepRow

if TYPE_CHECKING:
    from controlplane.app import Runtime
    from controlplane.config import ControlPlaneConfig
    from controlplane.runbooks.engine import Engine

log = logging.getLogger(__name__)

AUDIT_KIND = "runbook"
AUDIT_CHANNELS = ("slack", "jira")


class Audit:
    def __init__(self, config: ControlPlaneConfig) -> None:
        from controlplane.notifiers import build_notifiers

        self.config = config
        # Auditors read Jira; Slack gets the start and the end. Other channels page people
        # about incidents: a runbook run is not one.
        self.notifiers = {name: n for name, n in build_notifiers(config.notifiers).items()
                          if name in AUDIT_CHANNELS}
        if not config.incidents.enabled:
            self.notifiers = {}  # no outbox worker would ever deliver them
        self.channels = list(self.notifiers)
        self.public_url = config.web.public_url.rstrip("/")

    def on_start(self, s: Session, run: RunRow) -> None:
        """In the claim's transaction: the run starts (or resumes after a crash)."""
        if not self.channels:
            return
        resumed = run.audit_incident_id is not None or bool(run.message)
        text = (f":arrow_forward: Runbook {run.runbook_id} run #{run.id} "
                f"{'resumed' if resumed else 'started'} by {run.started_by} "
                f"({run.trigger}); parameters {_params(run.params)}; {self.link(run.id)}")
        if run.incident_id is not None:
            self._entries(s, run.incident_id, "update", text, self._incident_payload(s, run))
            return
        if run.audit_incident_id is None:
            inc = self._record(s, run, text)
            run.audit_incident_id = inc.id
            self._entries(s, inc.id, "open", text, self._payload(inc, run, text))
        else:
            rec = s.get(IncidentRow, run.audit_incident_id)
            assert rec is not None
            self._entries(s, rec.id, "update", text, self._payload(rec, run, text))

    def on_finish(self, s: Session, run: RunRow) -> None:
        """In the transaction that records the run's end."""
        if not self.channels:
            return
        trail = self.trail(s, run)
        if run.incident_id is not None:
            self._entries(s, run.incident_id, "update", trail, self._incident_payload(s, run))
            return
        inc = s.get(IncidentRow, run.audit_incident_id) if run.audit_incident_id else None
        if inc is None:  # started before any channel was configured
            return
        inc.status = run.status[:10]
        inc.message = _result(run)
        inc.resolved_at = run.finished_at
        self._entries(s, inc.id, "update", trail, self._payload(inc, run, trail),
                      only="jira")
        self._entries(s, inc.id, "resolve", inc.message, self._payload(inc, run, None))

    # -- rows --------------------------------------------------------------------------

    def _record(self, s: Session, run: RunRow, text: str) -> IncidentRow:
        now = utcnow()
        inc = IncidentRow(
            dedup_key=f"runbook-run/{run.id}", check_id=f"runbook {run.runbook_id} #{run.id}",
            env="", kind=AUDIT_KIND, name=f"Runbook {run.runbook_id} run #{run.id}",
            severity="major", labels={"runbook": run.runbook_id, "run": str(run.id)},
            runbook=run.runbook_id, state=RESOLVED, status="running", message=text,
            opened_at=now, since=now, notified=True, last_notified_message="",
            acknowledged_by=None)
        s.add(inc)
        s.flush()
        return inc

    def _entries(self, s: Session, incident_id: int, action: str, text: str,
                 payload: dict[str, Any], only: str | None = None) -> None:
        now = utcnow()
        view = _view(s, incident_id)
        for channel in self.channels:
            if only and channel != only:
                continue
            if view.kind != AUDIT_KIND and not self._reached(s, incident_id, channel, view):
                continue
            body = {**payload, "text": text}
            if action == "open":
                body["to"] = self.notifiers[channel].route(_view(s, incident_id))
            s.add(OutboxRow(incident_id=incident_id, channel=channel, action=action,
                            payload=body, idempotency_key=uuid.uuid4().hex, state=PENDING,
                            attempts=0, created_at=now, next_attempt_at=now, last_error="",
                            response={}))

    def _reached(self, s: Session, incident_id: int, channel: str, view: Incident) -> bool:
        """Whether an incident's own notifications go to ``channel`` (its Jira issue or Slack
        thread exists to comment on): the channel wants its updates and it was announced."""
        inc = s.get(IncidentRow, incident_id)
        return bool(inc is not None and inc.notified and
                    self.notifiers[channel].wants(view, "update"))

    def _payload(self, inc: IncidentRow, run: RunRow, text: str | None) -> dict[str, Any]:
        end = run.finished_at or utcnow()
        start = run.started_at or run.created_at
        return {
            "incident": inc.id, "check": inc.check_id, "env": "", "kind": AUDIT_KIND,
            "name": inc.name, "severity": inc.severity, "status": inc.status,
            "state": inc.state, "message": inc.message, "since": iso(start),
            "labels": dict(inc.labels or {}), "runbook": self.runbook_link(run.runbook_id),
            "dashboard": self.link(run.id), "dedup_key": inc.dedup_key,
            "dedup_label": dedup_label(inc.dedup_key), "text": text,
            # Nothing to acknowledge: the Slack message gets no Acknowledge button.
            "acknowledged_by": run.started_by,
            "duration_s": round((end - start).total_seconds(), 3)}

    def _incident_payload(self, s: Session, run: RunRow) -> dict[str, Any]:
        inc = s.get(IncidentRow, run.incident_id)
        assert inc is not None
        return {"incident": inc.id, "check": inc.check_id, "env": inc.env, "kind": inc.kind,
                "severity": inc.severity, "status": inc.status, "state": inc.state,
                "message": inc.message, "dedup_key": inc.dedup_key,
                "dedup_label": dedup_label(inc.dedup_key), "text": None}

    def link(self, run_id: int) -> str:
        return f"{self.public_url}/runbooks/runs/{run_id}"

    def runbook_link(self, rb_id: str) -> str:
        return f"{self.public_url}/runbooks/{rb_id}"

    # -- the trail ---------------------------------------------------------------------

    def trail(self, s: Session, run: RunRow) -> str:
        steps = s.scalars(select(StepRow).where(StepRow.run_id == run.id)
                          .order_by(StepRow.seq)).all()
        decisions = s.scalars(select(DecisionRow).where(DecisionRow.run_id == run.id)
                              .order_by(DecisionRow.id)).all()
        lines = [f"Runbook {run.runbook_id} run #{run.id}: {_result(run)}",
                 f"Started by {run.started_by} ({run.trigger}) at "
                 f"{iso(run.started_at or run.created_at)}; parameters {_params(run.params)}",
                 "Steps:"]
        for st in steps:
            took = f" in {duration_text(st.duration_s)}" if st.duration_s is not None else ""
            rb = f" (rollback of {st.rollback_of})" if st.rollback_of else ""
            again = f", attempt {st.attempt}" if st.attempt > 1 else ""
            lines.append(f"- {st.step_id}{rb} [{st.action}]: {st.status}{took}{again}: "
                         f"{st.message}")
        for d in decisions:
            lines.append(f"{'Approved' if d.approved else 'Rejected'} ({d.step_id}) by "
                         f"{d.by} via {d.via} at {iso(d.at)}"
                         + (f": {d.comment}" if d.comment else ""))
        lines.append(f"Run page: {self.link(run.id)}")
        return "\n".join(lines)


def _view(s: Session, incident_id: int) -> Incident:
    inc = s.get(IncidentRow, incident_id)
    assert inc is not None
    return Incident(id=inc.id, check=inc.check_id, env=inc.env, kind=inc.kind,
                    severity=inc.severity, state=inc.state, status=inc.status,
                    labels=dict(inc.labels or {}))


def _params(params: dict[str, Any]) -> str:
    from controlplane.logs import redact

    return redact(", ".join(f"{k}={v}" for k, v in params.items()) or "none")


def _result(run: RunRow) -> str:
    took = ""
    if run.started_at and run.finished_at:
        took = f" after {duration_text((run.finished_at - run.started_at).total_seconds())}"
    return f"{run.status}{took}: {run.message}"


def attach(runtime: Runtime, engine: Engine) -> None:
    """Write the trail (and a measuring runbook's drill row) with the engine's start and
    end transactions; wake the outbox."""
    audit = Audit(runtime.config)
    engine.start_hooks.append(audit.on_start)
    engine.finish_hooks.append(audit.on_finish)
    from controlplane.runbooks.measure import Measure

    engine.finish_hooks.append(Measure(runtime.config).on_finish)

    def wake(_event: str, _run_id: int) -> None:
        component = runtime.component("incidents")
        worker = getattr(component, "worker", None)
        if worker is not None:
            worker.wake()

    engine.listeners.append(wake)

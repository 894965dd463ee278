"""The auditors' trail of every run, delivered through the incidents' durable outbox.

A run writes its notifications in the same transaction as the change it reports (the
claim that starts it, the row that ends it), through the incidents feature's public
interface (controlplane/incidents/api.py), so they are ordered, retried and sent at most
once more after a crash exactly like an incident's:

- a run started **from an incident** adds ``update`` entries to that incident: a comment
  on its Jira issue and a reply in its Slack thread, at the start and at the end (with the
  whole trail);
- any other run is its own outbox subject ``runbook-run/ID`` (no incident row: it never
  shows on /incidents nor counts as one): ``open`` creates its Jira issue and posts the
  Slack start message, ``update`` comments the trail on the issue, and ``resolve`` posts
  the end and closes the issue.

The trail says who started the run, its parameters, every step with its outcome and
duration, the approvals, and the result.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.incidents import api as incidents
from controlplane.logs import redact
from controlplane.notifiers.base import Incident, duration_text
from controlplane.results import iso, utcnow
from controlplane.runbooks.model import DecisionRow, RunRow, StepRow

if TYPE_CHECKING:
    from controlplane.app import Runtime
    from controlplane.config import ControlPlaneConfig
    from controlplane.runbooks.engine import Engine

log = logging.getLogger(__name__)

AUDIT_KIND = "runbook"
SUBJECT_KIND = "runbook-run"
AUDIT_CHANNELS = ("slack", "jira")


def subject(run_id: int) -> str:
    """The outbox subject of a run's own trail (also its Jira issue's dedup key)."""
    return incidents.subject_key(SUBJECT_KIND, run_id)


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
        key = subject(run.id)
        opened = run.incident_id is None and incidents.queued(s, key)
        text = (f":arrow_forward: Runbook {run.runbook_id} run #{run.id} "
                f"{'resumed' if opened or run.message else 'started'} by {run.started_by} "
                f"({run.trigger}); parameters {_params(run.params)}; {self.link(run.id)}")
        if run.incident_id is not None:
            self._to_incident(s, run, text)
            return
        action = "update" if opened else "open"
        for channel in self.channels:
            body = {**self._payload(run, "running", text), "text": text}
            if action == "open":
                body["to"] = self.notifiers[channel].route(_view(run))
            incidents.queue(s, channel, action, body, subject=key)

    def on_finish(self, s: Session, run: RunRow) -> None:
        """In the transaction that records the run's end."""
        if not self.channels:
            return
        trail = self.trail(s, run)
        if run.incident_id is not None:
            self._to_incident(s, run, trail)
            return
        key = subject(run.id)
        if not incidents.queued(s, key):  # started before any channel was configured
            return
        result = _result(run)
        if "jira" in self.channels:
            incidents.queue(s, "jira", "update",
                            {**self._payload(run, run.status, result), "text": trail},
                            subject=key)
        for channel in self.channels:
            incidents.queue(s, channel, "resolve", self._payload(run, run.status, result),
                            subject=key)

    # -- entries -----------------------------------------------------------------------

    def _to_incident(self, s: Session, run: RunRow, text: str) -> None:
        """Comment in the incident's own thread and issue, where it was announced."""
        assert run.incident_id is not None
        inc = incidents.incident(s, run.incident_id)
        if inc is None or not inc.notified:
            return
        payload = {"incident": inc.id, "check": inc.check, "env": inc.env, "kind": inc.kind,
                   "severity": inc.severity, "status": inc.status, "state": inc.state,
                   "message": inc.message, "dedup_key": inc.dedup_key, "text": text}
        for channel in self.channels:
            if self.notifiers[channel].wants(inc.view(), "update"):
                incidents.queue(s, channel, "update", dict(payload), incident_id=inc.id)

    def _payload(self, run: RunRow, status: str, message: str) -> dict[str, Any]:
        end = run.finished_at or utcnow()
        start = run.started_at or run.created_at
        final = run.finished_at is not None
        return {
            "incident": None, "subject": subject(run.id), "check": _name(run), "env": "",
            "kind": AUDIT_KIND, "name": f"Runbook {run.runbook_id} run #{run.id}",
            "severity": "major", "status": status[:10],
            "state": "resolved" if final else "running", "message": message,
            "since": iso(start), "labels": _labels(run),
            "runbook": self.runbook_link(run.runbook_id), "dashboard": self.link(run.id),
            "dedup_key": subject(run.id), "text": None,
            # Nothing to acknowledge: the Slack message gets no Acknowledge button.
            "acknowledged_by": run.started_by,
            "duration_s": round((end - start).total_seconds(), 3)}

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


def _name(run: RunRow) -> str:
    return f"runbook {run.runbook_id} #{run.id}"


def _labels(run: RunRow) -> dict[str, str]:
    return {"runbook": run.runbook_id, "run": str(run.id)}


def _view(run: RunRow) -> Incident:
    """What the channels' routing rules see of a run (Slack routes by labels)."""
    return Incident(id=run.id, check=_name(run), env="", kind=AUDIT_KIND, severity="major",
                    state="open", status="running", labels=_labels(run))


def _params(params: dict[str, Any]) -> str:
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

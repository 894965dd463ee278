"""The incidents feature's public interface for other features (runbooks' audit trail).

Other features never touch the incident tables: they read an incident through
:func:`incident`, queue notifications through the durable outbox with :func:`queue` (for an
incident, or for a *subject* of their own such as ``runbook-run/7``, which gets its own
ordered queue, retries and resend-once guarantees without an incident row), and read what
the channels handed back (:func:`refs`) and how delivery went (:func:`deliveries`).
Every call takes the caller's session, so a notification commits with the change it reports.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.incidents.model import PENDING, IncidentRow, OutboxRow, SubjectRow
from controlplane.notifiers.base import Incident
from controlplane.results import iso, utcnow

__all__ = ["IncidentInfo", "deliveries", "incident", "queue", "queued", "refs",
           "subject_key"]


def subject_key(kind: str, ident: int | str) -> str:
    """The outbox key of a subject that is not an incident: ``KIND/ID``."""
    return f"{kind}/{ident}"


@dataclass(frozen=True)
class IncidentInfo:
    """What another feature may know of an incident."""

    id: int
    check: str
    env: str
    kind: str
    severity: str
    state: str
    status: str
    message: str
    dedup_key: str
    notified: bool
    """Its open notification was queued: it has a Slack thread / Jira issue to follow up."""
    labels: dict[str, str] = field(default_factory=dict)

    def view(self) -> Incident:
        """The view channels' rules (``wants``, ``route``) look at."""
        return Incident(id=self.id, check=self.check, env=self.env, kind=self.kind,
                        severity=self.severity, state=self.state, status=self.status,
                        labels=dict(self.labels))


def incident(s: Session, incident_id: int) -> IncidentInfo | None:
    inc = s.get(IncidentRow, incident_id)
    if inc is None:
        return None
    return IncidentInfo(id=inc.id, check=inc.check_id, env=inc.env, kind=inc.kind,
                        severity=inc.severity, state=inc.state, status=inc.status,
                        message=inc.message, dedup_key=inc.dedup_key,
                        notified=bool(inc.notified), labels=dict(inc.labels or {}))


def queue(s: Session, channel: str, action: str, payload: dict[str, Any], *,
          incident_id: int | None = None, subject: str | None = None) -> None:
    """One outbox entry about an incident or a subject (exactly one of them)."""
    if (incident_id is None) == (subject is None):
        raise ValueError("an outbox entry is about an incident or a subject, not both")
    now = utcnow()
    s.add(OutboxRow(incident_id=incident_id, subject=subject, channel=channel, action=action,
                    payload=payload, idempotency_key=uuid.uuid4().hex, state=PENDING,
                    attempts=0, created_at=now, next_attempt_at=now, last_error="",
                    response={}))


def queued(s: Session, subject: str) -> bool:
    """Whether anything was ever queued for ``subject``."""
    return s.scalar(select(OutboxRow.id).where(OutboxRow.subject == subject).limit(1)) \
        is not None


def refs(s: Session, *, incident_id: int | None = None,
         subject: str | None = None) -> dict[str, dict[str, str]]:
    """Each channel's references (``{"jira": {"key": ...}, "slack": {...}}``)."""
    if incident_id is not None:
        inc = s.get(IncidentRow, incident_id)
        return dict(inc.refs or {}) if inc is not None else {}
    row = s.get(SubjectRow, subject) if subject is not None else None
    return dict(row.refs or {}) if row is not None else {}


def deliveries(s: Session, subject: str) -> list[dict[str, Any]]:
    """The subject's outbox entries: what went out, what waits, what failed and why."""
    rows = s.scalars(select(OutboxRow).where(OutboxRow.subject == subject)
                     .order_by(OutboxRow.id))
    return [{"channel": r.channel, "action": r.action, "state": r.state,
             "attempts": r.attempts, "created_at": iso(r.created_at),
             "sent_at": iso(r.sent_at) if r.sent_at else None, "last_error": r.last_error}
            for r in rows]

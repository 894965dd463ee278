"""Read side: incidents, timelines and notifications as JSON for the API and pages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.incidents.model import (
    ACTIVE_STATES,
    FAILED,
    IncidentEventRow,
    IncidentRow,
    OutboxRow,
)
from controlplane.results import iso
from controlplane.runbooks.links import runbook_url

STATE_FILTERS = ("open", "acknowledged", "resolved", "active", "all")


def list_incidents(s: Session, state: str = "all", limit: int = 100) -> list[IncidentRow]:
    if state not in STATE_FILTERS:
        raise ValueError(f"unknown state {state!r}; use one of: {', '.join(STATE_FILTERS)}")
    q = select(IncidentRow)
    if state == "active":
        q = q.where(IncidentRow.state.in_(ACTIVE_STATES))
    elif state != "all":
        q = q.where(IncidentRow.state == state)
    return list(s.scalars(q.order_by(IncidentRow.id.desc()).limit(limit)))


def _t(value: Any) -> str | None:
    return iso(value) if value is not None else None


def incident_json(inc: IncidentRow, link: str | None = None) -> dict[str, Any]:
    return {
        "id": inc.id, "dedup_key": inc.dedup_key, "check": inc.check_id, "env": inc.env,
        "kind": inc.kind, "severity": inc.severity, "labels": inc.labels or {},
        "runbook": inc.runbook, "runbook_url": runbook_url(inc.runbook), "dashboard": link,
        "state": inc.state, "status": inc.status,
        "message": inc.message, "opened_at": _t(inc.opened_at), "since": _t(inc.since),
        "acknowledged_at": _t(inc.acknowledged_at), "acknowledged_by": inc.acknowledged_by,
        "resolved_at": _t(inc.resolved_at), "notified": inc.notified,
        "silenced_by": inc.silenced_by,
        # The API's shape from before channels kept their own references.
        "slack": {"channel": _ref(inc, "slack", "channel"), "ts": _ref(inc, "slack", "ts")},
        "jira": {"key": _ref(inc, "jira", "key")},
    }


def _ref(inc: IncidentRow, channel: str, key: str) -> str | None:
    value = ((inc.refs or {}).get(channel) or {}).get(key)
    return str(value) if value is not None else None


def timeline(s: Session, incident_id: int) -> list[dict[str, Any]]:
    rows = s.scalars(select(IncidentEventRow).where(IncidentEventRow.incident_id == incident_id)
                     .order_by(IncidentEventRow.id))
    return [{"at": iso(r.at), "kind": r.kind, "message": r.message} for r in rows]


def notifications(s: Session, incident_id: int | None = None,
                  state: str | None = None) -> list[dict[str, Any]]:
    q = select(OutboxRow)
    if incident_id is not None:
        q = q.where(OutboxRow.incident_id == incident_id)
    if state is not None:
        q = q.where(OutboxRow.state == state)
    return [{"id": r.id, "incident": r.incident_id, "subject": r.subject,
             "channel": r.channel, "action": r.action,
             "state": r.state, "attempts": r.attempts, "created_at": iso(r.created_at),
             "next_attempt_at": iso(r.next_attempt_at), "sent_at": _t(r.sent_at),
             "last_error": r.last_error} for r in s.scalars(q.order_by(OutboxRow.id))]


def failed_notifications(s: Session, limit: int = 50) -> list[dict[str, Any]]:
    return notifications(s, state=FAILED)[-limit:]

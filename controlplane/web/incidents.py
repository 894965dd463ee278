"""Incidents: the /incidents pages, the incidents JSON API and acknowledge."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, jsonify, render_template, request

from controlplane.incidents import queries
from controlplane.incidents.component import button_runbooks, escalation
from controlplane.incidents.model import IncidentRow
from controlplane.incidents.service import IncidentService
from controlplane.notifiers import build_notifiers
from controlplane.web import runtime
from controlplane.web.auth import require_admin

bp = Blueprint("incidents", __name__)


def incident_service() -> IncidentService:
    """The running component's service, or one on the store (no delivery) without it."""
    rt = runtime()
    component: Any = rt.component("incidents")
    if component is not None:
        service: IncidentService = component.service
        return service
    # The channels' rules decide which notifications an acknowledge queues; building them
    # touches no network.
    return IncidentService(rt.store, rt.config.incidents, build_notifiers(rt.config.notifiers),
                           rt.metrics, dashboard_url=rt.config.web.public_url,
                           escalation=escalation(rt.config),
                           button_runbooks=button_runbooks(rt.config))


@bp.get("/api/v1/incidents")
def api_list() -> tuple[Response, int]:
    svc = incident_service()
    state = request.args.get("state", "all")
    try:
        limit = _limit(request.args.get("limit", "100"))
        with svc.store.session() as s:
            rows = queries.list_incidents(s, state, limit)
            data = [queries.incident_json(r, svc.link(r.id)) for r in rows]
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(incidents=data), 200


def _limit(text: str) -> int:
    """1..1000; a bigger number is read as 1000 (it would overflow the database's integer)."""
    if not text.isdigit() or int(text[:10]) < 1:
        raise ValueError(f"limit must be a whole number from 1 to 1000, not {text[:40]!r}")
    return min(int(text[:10]), 1000)


@bp.get("/api/v1/incidents/<int:incident_id>")
def api_get(incident_id: int) -> tuple[Response, int]:
    svc = incident_service()
    with svc.store.session() as s:
        inc = s.get(IncidentRow, incident_id)
        if inc is None:
            return jsonify(error=f"no incident {incident_id}"), 404
        data = queries.incident_json(inc, svc.link(inc.id))
        data["timeline"] = queries.timeline(s, incident_id)
        data["notifications"] = queries.notifications(s, incident_id)
        data["escalation"] = svc.escalation.state(s, incident_id) if svc.escalation else None
    return jsonify(data), 200


@bp.post("/api/v1/incidents/<int:incident_id>/acknowledge")
@require_admin
def api_acknowledge(incident_id: int) -> tuple[Response, int]:
    body = request.get_json(silent=True) or {}
    by = str(body.get("by") or "api").strip()[:120] or "api"
    via = "dashboard" if body.get("via") == "dashboard" else "api"
    svc = incident_service()
    try:
        inc = svc.acknowledge(incident_id, by, via)
    except LookupError as exc:
        return jsonify(error=str(exc)), 404
    except ValueError as exc:
        return jsonify(error=str(exc)), 409
    return jsonify(queries.incident_json(inc, svc.link(inc.id))), 200


@bp.get("/incidents")
def page_list() -> str:
    svc = incident_service()
    with svc.store.session() as s:
        active = [queries.incident_json(r, svc.link(r.id))
                  for r in queries.list_incidents(s, "active", 200)]
        resolved = [queries.incident_json(r, svc.link(r.id))
                    for r in queries.list_incidents(s, "resolved", 50)]
        failed = queries.failed_notifications(s)
    return render_template("incidents.html", active=active, resolved=resolved, failed=failed)


@bp.get("/incidents/<int:incident_id>")
def page_detail(incident_id: int) -> str:
    svc = incident_service()
    with svc.store.session() as s:
        inc = s.get(IncidentRow, incident_id)
        if inc is None:
            abort(404)
        data = queries.incident_json(inc, svc.link(inc.id))
        events = queries.timeline(s, incident_id)
        sent = queries.notifications(s, incident_id)
        escalation = svc.escalation.state(s, incident_id) if svc.escalation else None
    return render_template("incident.html", inc=data, timeline=events, notifications=sent,
                           escalation=escalation)

"""Silences: the /silences page and ``GET/POST/DELETE /api/v1/silences``.

POST takes the same shape as a ``silences:`` entry in the config::

    {"matchers": {"check": "tls-bic-sky-prod", "env": "production", "labels": {}},
     "comment": "cert rotation", "author": "alice",
     "starts_at": "2026-11-26T22:00:00Z", "ends_at": "2026-11-26T23:00:00Z"}

or ``"duration": "2h"`` instead of ``ends_at``, or ``"cron": "0 2 * * sun"`` with
``"duration"`` for a recurring maintenance window.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, jsonify, render_template, request
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.incidents import silences
from controlplane.incidents.config import SilenceConfig
from controlplane.incidents.model import SilenceRow
from controlplane.store.results import CheckStateRow
from controlplane.web import runtime
from controlplane.web.auth import require_admin
from controlplane.web.incidents import incident_service

bp = Blueprint("silences", __name__)


@bp.get("/api/v1/silences")
@require_admin
def api_list() -> tuple[Response, int]:
    """Active silences; ``?all=1`` adds upcoming, ended and expired ones. Admin token, as
    for changes (who silenced what, and until when, is for operators); the /silences page
    shows the active ones to everyone."""
    svc = incident_service()
    now = svc.clock()
    with svc.store.session() as s:
        if request.args.get("all") in ("1", "true", "yes"):
            rows = list(s.scalars(select(SilenceRow).order_by(SilenceRow.id)))
        else:
            rows = silences.active(s, now)
        data = [silences.to_json(r, now) for r in rows]
    return jsonify(silences=data), 200


@bp.post("/api/v1/silences")
@require_admin
def api_add() -> tuple[Response, int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="send a JSON object: matchers, comment, author and "
                             "ends_at, duration or cron+duration"), 400
    body.setdefault("author", "api")
    try:
        spec = SilenceConfig.model_validate(body)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: "
                  f"{str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors()]
        return jsonify(error="invalid silence", problems=errors), 400
    svc = incident_service()
    now = svc.clock()
    try:
        with svc.store.session() as s:
            row = silences.add(s, check=spec.matchers.check, env=spec.matchers.env,
                               labels=spec.matchers.labels, comment=spec.comment,
                               author=spec.author, now=now, starts_at=spec.starts_at,
                               ends_at=spec.ends_at, cron=spec.cron, duration=spec.duration,
                               known_checks=_known_checks(s))
            data = silences.to_json(row, now)
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(data), 201


@bp.delete("/api/v1/silences/<int:silence_id>")
@require_admin
def api_expire(silence_id: int) -> tuple[Response, int]:
    svc = incident_service()
    now = svc.clock()
    with svc.store.session() as s:
        row = silences.expire(s, silence_id, now)
        if row is None:
            return jsonify(error=f"no silence {silence_id}"), 404
        data = silences.to_json(row, now)
    # Incidents held back by this silence are notified on the next tick; do it now.
    svc.tick()
    return jsonify(data), 200


@bp.get("/silences")
def page() -> str:
    svc = incident_service()
    now = svc.clock()
    with svc.store.session() as s:
        active = [silences.to_json(r, now) for r in silences.active(s, now)]
        upcoming = [silences.to_json(r, now) for r in s.scalars(
            select(SilenceRow).where(SilenceRow.expired_at.is_(None)).order_by(SilenceRow.id))
            if silences.window_at(r, now) is None and _future(r, now)]
    return render_template("silences.html", active=active, upcoming=upcoming,
                           admin=runtime().config.web.admin_token is not None)


def _known_checks(session: Session) -> set[str]:
    # Any check that has reported counts too (a check removed from the config recently).
    return silences.known_check_ids(runtime().config) | set(
        session.scalars(select(CheckStateRow.check_id)))


def _future(row: SilenceRow, now: datetime) -> bool:
    # Recurring windows always come back; one-offs only if they have not ended yet.
    return bool(row.cron) or (row.ends_at is not None and row.ends_at > now)

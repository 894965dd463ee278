"""On-call: the /oncall page, ``GET /api/v1/oncall``, overrides, and an iCal feed per
schedule (``/oncall/<schedule>.ics``).

Who is on call is for everyone who can see the dashboard; phone numbers and email
addresses are shown only to a request that carries the admin token. Adding or removing an
override needs the admin token::

    POST /api/v1/oncall/overrides
    {"schedule": "primary", "person": "bob", "covers": "alice",
     "from": "2026-12-24T09:00:00+01:00", "to": "2026-12-27T09:00:00+01:00",
     "reason": "holidays", "author": "alice"}

(``"duration": "8h"`` instead of ``to``; ``from`` defaults to now.)
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, jsonify, render_template, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controlplane.durations import Duration
from controlplane.oncall import ical
from controlplane.oncall.service import DEFAULT_DAYS, OncallService
from controlplane.web import runtime
from controlplane.web.auth import require_admin

bp = Blueprint("oncall", __name__)

MAX_DAYS = 92


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schedule: str
    person: str
    covers: str | None = None
    starts_at: datetime | None = Field(default=None, alias="from")
    ends_at: datetime | None = Field(default=None, alias="to")
    duration: Duration | None = None
    reason: str = ""
    author: str = "api"


def oncall_service() -> OncallService:
    rt = runtime()
    return OncallService(rt.config.oncall, rt.store)


def _is_admin() -> bool:
    token = runtime().config.web.admin_token
    if token is None or not token.get_secret_value():
        return False
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def _at() -> datetime | None:
    text = request.args.get("at")
    if not text:
        return None
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        abort(400, description=f"at: {text!r} is not an ISO time; write "
                               "2026-12-24T09:00:00Z")
    if ts.tzinfo is None:
        abort(400, description="at: give a zone, e.g. 2026-12-24T09:00:00Z")
    return ts


def _days() -> int:
    text = request.args.get("days", str(DEFAULT_DAYS))
    if not text.isdigit() or not 0 <= int(text) <= MAX_DAYS:
        abort(400, description=f"days: a whole number from 0 to {MAX_DAYS}")
    return int(text)


@bp.get("/api/v1/oncall")
def api_oncall() -> tuple[Response, int]:
    """Every schedule (or ``?schedule=``): who is on call now (or ``?at=``) and the shifts of
    the next ``?days=`` days (28), plus the overrides that have not ended."""
    svc = oncall_service()
    at, days, contacts = _at(), _days(), _is_admin()
    wanted = request.args.get("schedule")
    if wanted is not None and wanted not in svc.config.schedules:
        return jsonify(error=f"no schedule {wanted!r}"), 404
    ids = [wanted] if wanted else sorted(svc.config.schedules)
    return jsonify(schedules=[svc.schedule_json(s, at, days, contacts) for s in ids],
                   overrides=svc.list_overrides(wanted)), 200


@bp.get("/api/v1/oncall/overrides")
@require_admin
def api_overrides() -> tuple[Response, int]:
    include_old = request.args.get("all") in ("1", "true", "yes")
    return jsonify(overrides=oncall_service().list_overrides(include_old=include_old)), 200


@bp.post("/api/v1/oncall/overrides")
@require_admin
def api_add_override() -> tuple[Response, int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="send a JSON object: schedule, person, from, to or duration, "
                             "and optionally covers, reason and author"), 400
    try:
        spec = OverrideRequest.model_validate(body)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: "
                    f"{str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors()]
        return jsonify(error="invalid override", problems=problems), 400
    svc = oncall_service()
    start = spec.starts_at or svc.clock()
    if (spec.ends_at is None) == (spec.duration is None):
        return jsonify(error="give the end as to or duration (one of them)"), 400
    end = spec.ends_at or start + timedelta(seconds=spec.duration or 0)
    try:
        data = svc.add_override(schedule=spec.schedule, person=spec.person,
                                covers=spec.covers, starts_at=start, ends_at=end,
                                reason=spec.reason, author=spec.author[:120], source="api")
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(data), 201


@bp.delete("/api/v1/oncall/overrides/<int:override_id>")
@require_admin
def api_remove_override(override_id: int) -> tuple[Response, int]:
    data = oncall_service().remove_override(override_id)
    if data is None:
        return jsonify(error=f"no override {override_id}"), 404
    return jsonify(data), 200


@bp.get("/oncall/<schedule>.ics")
def feed(schedule: str) -> Response:
    svc = oncall_service()
    if schedule not in svc.config.schedules:
        abort(404)
    person = request.args.get("person")
    timeline = [s for s in svc.feed_shifts(schedule) if person in (None, s.person)]
    host = request.host.split(":")[0] or "controlplane"
    body = ical.calendar(svc.config, schedule, timeline, svc.clock(), host)
    return Response(body, mimetype="text/calendar",
                    headers={"Content-Disposition": f'inline; filename="{schedule}.ics"'})


@bp.get("/oncall")
def page() -> str:
    svc = oncall_service()
    schedules = [_localized(svc.schedule_json(s)) for s in sorted(svc.config.schedules)]
    people = [{"id": pid, "name": p.name} for pid, p in sorted(svc.config.people.items())]
    return render_template("oncall.html", schedules=schedules, people=people,
                           overrides=svc.list_overrides(),
                           admin=runtime().config.web.admin_token is not None)


def _localized(data: dict[str, Any]) -> dict[str, Any]:
    """Adds ``from_local``/``to_local`` in the schedule's zone and the on-call person's."""
    tz = ZoneInfo(data["timezone"])
    for shift in [*data["shifts"], *([data["now"]] if data["now"] else [])]:
        own = ZoneInfo(shift["person"]["timezone"])
        for key in ("from", "to"):
            ts = datetime.fromisoformat(shift[key].replace("Z", "+00:00"))
            shift[f"{key}_local"] = ts.astimezone(tz).strftime("%a %d %b %H:%M %Z")
            shift[f"{key}_own"] = ts.astimezone(own).strftime("%a %H:%M %Z")
    return data

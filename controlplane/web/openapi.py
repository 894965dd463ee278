"""``/api/v1/openapi.json``: the OpenAPI 3.1 contract of the JSON API.

Schemas are derived from pydantic models by pydantic itself: the Result and silence models
the code uses, and response models below that mirror what the handlers return (the
schemathesis test in tests/web/test_openapi.py fails when a handler and its model part).
Only the list of operations is written here, one :class:`Op` per route.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from controlplane.incidents.config import SilenceConfig
from controlplane.results import Result

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"


class Error(BaseModel):
    error: str
    problems: list[str] | None = None


class Check(BaseModel):
    id: str
    kind: str
    env: str
    name: str
    severity: str
    labels: dict[str, str]
    interval_s: float
    timeout_s: float
    enabled: bool
    state: str
    since: str | None
    uptime_24h: float | None
    uptime_7d: float | None
    last_result: Result | None


class CheckList(BaseModel):
    checks: list[Check]


class ResultList(BaseModel):
    check: str
    results: list[Result]


class Incident(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    check: str | None = None
    state: str | None = None


class IncidentList(BaseModel):
    incidents: list[Incident]


class Acknowledge(BaseModel):
    by: str | None = None
    via: str | None = None


class SilenceMatchersOut(BaseModel):
    check: str | None
    env: str | None
    labels: dict[str, Any]


class Silence(BaseModel):
    id: int
    matchers: SilenceMatchersOut
    starts_at: str | None
    ends_at: str | None
    cron: str | None
    duration_s: float | None
    comment: str
    author: str
    created_at: str
    expired_at: str | None
    source: str
    active: bool
    active_until: str | None


class SilenceList(BaseModel):
    silences: list[Silence]


class DrReport(BaseModel):
    model_config = ConfigDict(extra="allow")


class Loose(BaseModel):
    """A JSON object whose fields the handler validates itself (runbooks, on-call)."""

    model_config = ConfigDict(extra="allow")


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    ok: type[BaseModel] | None
    ok_code: str = "200"
    admin: bool = False
    body: type[BaseModel] | None = None
    params: list[dict[str, Any]] = field(default_factory=list)
    errors: tuple[str, ...] = ()


def _path_param(name: str, kind: str = "string") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if kind == "integer":
        schema.update(minimum=0, maximum=2**63 - 1)
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


OPS = [
    Op("get", "/api/v1/checks", "Every check with state, uptime and last result", CheckList),
    Op("get", "/api/v1/checks/{check_id}", "One check", Check,
       params=[_path_param("check_id")], errors=("404",)),
    Op("get", "/api/v1/checks/{check_id}/results", "Results, newest first", ResultList,
       params=[_path_param("check_id"),
               _query("since", "ISO 8601 time or a look-back such as 1h or 7d",
                      {"type": "string"}),
               _query("limit", "1..5000 (default 500)", {"type": "string"})],
       errors=("400", "404")),
    Op("post", "/api/v1/checks/{check_id}/run", "Run a check now", Result, admin=True,
       params=[_path_param("check_id")], errors=("404",)),
    Op("get", "/api/v1/incidents", "Incidents, newest first", IncidentList,
       params=[_query("state", "active, resolved or all", {"type": "string"}),
               _query("limit", "1..1000 (default 100)", {"type": "string"})],
       errors=("400",)),
    Op("get", "/api/v1/incidents/{incident_id}", "One incident with its timeline",
       Incident, params=[_path_param("incident_id", "integer")], errors=("404",)),
    Op("post", "/api/v1/incidents/{incident_id}/acknowledge", "Acknowledge an incident",
       Incident, admin=True, body=Acknowledge,
       params=[_path_param("incident_id", "integer")], errors=("404", "409")),
    Op("get", "/api/v1/silences", "Active silences (all=1: every silence)", SilenceList,
       admin=True, params=[_query("all", "1 to list every silence", {"type": "string"})]),
    Op("post", "/api/v1/silences", "Add a silence or maintenance window", Silence,
       ok_code="201", admin=True, body=SilenceConfig, errors=("400",)),
    Op("delete", "/api/v1/silences/{silence_id}", "Expire a silence now", Silence,
       admin=True, params=[_path_param("silence_id", "integer")], errors=("404",)),
    Op("get", "/api/v1/dr", "RTO/RPO per component", DrReport),
    Op("get", "/api/v1/oncall", "Who is on call, per schedule", None,
       params=[_query("schedule", "one schedule id", {"type": "string"}),
               _query("at", "ISO 8601 time (default now)", {"type": "string"}),
               _query("days", "how many days of shifts", {"type": "string"})],
       errors=("400", "404")),
    Op("get", "/api/v1/oncall/overrides", "On-call overrides (all=1: ended ones too)", None,
       admin=True, params=[_query("all", "1 to list every override", {"type": "string"})]),
    Op("post", "/api/v1/oncall/overrides", "Add an on-call override", None, ok_code="201",
       admin=True, body=Loose, errors=("400", "404")),
    Op("delete", "/api/v1/oncall/overrides/{override_id}", "Remove an override", None,
       admin=True, params=[_path_param("override_id", "integer")], errors=("404",)),
    Op("get", "/api/v1/runbooks", "Every runbook with its last run", None),
    Op("get", "/api/v1/runbooks/{rb_id}", "One runbook and its recent runs", None,
       params=[_path_param("rb_id")], errors=("404",)),
    Op("post", "/api/v1/runbooks/{rb_id}/plan", "Dry-run: what a run would do", None,
       body=Loose, params=[_path_param("rb_id")], errors=("400", "404")),
    Op("post", "/api/v1/runbooks/{rb_id}/runs", "Start a runbook run", None, ok_code="201",
       admin=True, body=Loose, params=[_path_param("rb_id")], errors=("400", "404", "409")),
    Op("get", "/api/v1/runbooks/runs/{run_id}", "One run with its steps", None,
       params=[_path_param("run_id", "integer")], errors=("404",)),
    Op("post", "/api/v1/runbooks/runs/{run_id}/approve", "Approve the waiting step", None,
       admin=True, body=Loose, params=[_path_param("run_id", "integer")],
       errors=("400", "404", "409")),
    Op("post", "/api/v1/runbooks/runs/{run_id}/reject", "Reject the waiting step", None,
       admin=True, body=Loose, params=[_path_param("run_id", "integer")],
       errors=("400", "404", "409")),
    Op("post", "/api/v1/runbooks/runs/{run_id}/cancel", "Cancel a run", None,
       admin=True, body=Loose, params=[_path_param("run_id", "integer")],
       errors=("400", "404", "409")),
]


def _response(model: type[BaseModel] | None, description: str) -> dict[str, Any]:
    if model is None:  # JSON whose shape the handler's own module documents
        return {"description": description, "content": {"application/json": {"schema": {}}}}
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": REF.format(model=model.__name__)}}}}


def _operation(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_')}"
                       .replace("{", "").replace("}", ""),
        "summary": op.summary,
        "responses": {op.ok_code: _response(op.ok, "success")},
    }
    for code in op.errors:
        out["responses"][code] = _response(Error, "the error says what to fix")
    if op.params:
        out["parameters"] = op.params
    if op.body is not None:
        out["requestBody"] = {"required": op.method == "post" and op.ok_code == "201",
                              "content": {"application/json": {
                                  "schema": {"$ref": REF.format(model=op.body.__name__)}}}}
    if op.admin:
        out["security"] = [{"adminToken": []}]
        out["responses"]["401"] = _response(Error, "missing or wrong admin token")
        out["responses"]["403"] = _response(Error, "admin API disabled (no web.admin_token)")
    return out


def spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once per call; it is small)."""
    models: list[tuple[type[BaseModel], Any]] = [(Error, "serialization")]
    for op in OPS:
        if op.ok is not None:
            models.append((op.ok, "serialization"))
        if op.body is not None:
            models.append((op.body, "validation"))
    _, schemas = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "360Voice control plane API", "version": "1",
                 "description": "State-changing operations need the admin token "
                                "(Authorization: Bearer <web.admin_token>)."},
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {}),
                       "securitySchemes": {"adminToken": {"type": "http",
                                                          "scheme": "bearer"}}},
    }


@bp.get("/api/v1/openapi.json")
def openapi_json() -> Response:
    return jsonify(spec())

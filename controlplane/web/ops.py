"""Operational endpoints: /metrics, /healthz, /readyz."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from controlplane import readiness
from controlplane.web import runtime

bp = Blueprint("ops", __name__, static_folder="static", static_url_path="/static")


@bp.get("/metrics")
def metrics() -> Response:
    return Response(runtime().metrics.render(), mimetype="text/plain; version=0.0.4")


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when this instance can do its job (a standby serving the dashboard and API from
    the shared store counts); 503 with the reasons otherwise (controlplane/readiness.py)."""
    ok, body = readiness.report(runtime())
    return jsonify(body), 200 if ok else 503

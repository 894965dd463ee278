"""Operational endpoints: /metrics, /healthz, /readyz."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

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
    rt = runtime()
    store_ok = rt.store.ping()
    sched_ok = rt.scheduler.running
    # A standby serves the dashboard and API from the shared store: ready too.
    ok = store_ok and (sched_ok or rt.role == "standby")
    return jsonify(status="ok" if ok else "unavailable", store=store_ok,
                   scheduler=sched_ok, role=rt.role), 200 if ok else 503

"""The sandbox's own HTTP API (plain HTTP, loopback): inject, list and clear faults.

``GET /faults`` · ``POST /faults`` ``{"name", "env", "params"}`` ·
``DELETE /faults/<name>?env=E`` · ``DELETE /faults`` (all) · ``GET /info``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request

from controlplane.sandbox.faults import FAULTS, FaultError

if TYPE_CHECKING:
    from controlplane.sandbox.runner import Sandbox


def create_app(sb: Sandbox) -> Flask:
    app = Flask("sandbox_control")

    @app.get("/faults")
    def list_faults() -> Response:
        return jsonify(faults=[f.to_dict() for f in sb.faults.list()], available={
            n: {"description": s.description, "params": s.params} for n, s in FAULTS.items()})

    @app.post("/faults")
    def set_fault() -> tuple[Response, int]:
        body: Any = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return jsonify(error='send JSON like {"name": "sms_dropped", "env": "production", '
                                 '"params": {}}'), 400
        params = body.get("params") or {}
        if not isinstance(params, dict):
            return jsonify(error="params must be an object of strings"), 400
        try:
            fault = sb.faults.set(body["name"], str(body.get("env") or "production"),
                                  {str(k): str(v) for k, v in params.items()})
        except FaultError as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(fault.to_dict()), 201

    @app.delete("/faults")
    @app.delete("/faults/<name>")
    def clear_fault(name: str | None = None) -> tuple[Response, int]:
        try:
            n = sb.faults.clear(name, request.args.get("env") or None)
        except FaultError as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(cleared=n), 200

    @app.get("/info")
    def info() -> Response:
        return jsonify(sb.info(secrets=False))

    return app

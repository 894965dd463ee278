"""Flask app factory. Each area is a blueprint module listed in BLUEPRINTS exposing ``bp``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from controlplane.results import iso, utcnow

if TYPE_CHECKING:
    from controlplane.app import Runtime

# One line per blueprint module; each exposes `bp` (a flask.Blueprint).
BLUEPRINTS = [
    "controlplane.web.ops",
    "controlplane.web.checks",
    "controlplane.web.incidents",
    "controlplane.web.silences",
    "controlplane.web.slack_webhook",
    "controlplane.web.dr",
    "controlplane.web.twilio_webhook",
    "controlplane.web.oncall",
    "controlplane.web.runbooks",
]


def create_app(runtime: Runtime) -> Flask:
    app = Flask(__name__)
    app.config["runtime"] = runtime
    app.jinja_env.globals["now_iso"] = lambda: iso(utcnow())
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(name).bp)
    app.register_error_handler(HTTPException, _api_errors_as_json)
    return app


def _api_errors_as_json(exc: HTTPException) -> Response | HTTPException:
    """Under /api/ an error is JSON ``{"error": ...}`` like every other answer there; pages
    keep Flask's HTML error page."""
    if not request.path.startswith("/api/"):
        return exc
    resp = jsonify(error=exc.description or exc.name)
    resp.status_code = exc.code or 500
    return resp


def runtime() -> Runtime:
    """The Runtime of the app handling the current request."""
    rt: Runtime = current_app.config["runtime"]
    return rt

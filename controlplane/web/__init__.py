"""Flask app factory. Each area is a blueprint module listed in BLUEPRINTS exposing ``bp``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from flask import Flask, current_app

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
]


def create_app(runtime: Runtime) -> Flask:
    app = Flask(__name__)
    app.config["runtime"] = runtime
    app.jinja_env.globals["now_iso"] = lambda: iso(utcnow())
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(name).bp)
    return app


def runtime() -> Runtime:
    """The Runtime of the app handling the current request."""
    rt: Runtime = current_app.config["runtime"]
    return rt

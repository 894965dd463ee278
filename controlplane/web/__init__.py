"""Flask app factory. Each area is a blueprint module listed in BLUEPRINTS exposing ``bp``.

Everything every answer shares is set here: the request size limit, security headers,
redaction of every value a page renders, JSON errors under /api/ and bounded ids in URLs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, jsonify, request
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from controlplane.redact import redact
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
    "controlplane.web.openapi",
]

MAX_BODY_BYTES = 1024 * 1024
"""Default request body limit; routes that need less check their own before reading."""

SECURITY_HEADERS = {
    # No inline script or style anywhere: every script is a file under /static.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

MAX_DB_ID = 2**63 - 1


class DbIdConverter(IntegerConverter):
    """``<int:...>`` in every route: ids past a 64-bit integer are 404, not a database
    overflow (500)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_DB_ID)
        super().__init__(map, *args, **kwargs)


def create_app(runtime: Runtime) -> Flask:
    app = Flask(__name__)
    app.config["runtime"] = runtime
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.url_map.converters["int"] = DbIdConverter  # before any route is registered
    app.jinja_env.globals["now_iso"] = lambda: iso(utcnow())
    app.jinja_env.finalize = _redacted_output
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(name).bp)
    app.register_error_handler(HTTPException, _api_errors_as_json)
    app.after_request(_security_headers)
    return app


def _redacted_output(value: Any) -> Any:
    """Every ``{{ value }}`` a template prints passes the same redaction as logs; markup we
    built (charts) stays markup."""
    if not isinstance(value, str):
        return value
    hidden = redact(value)
    if hidden is value:
        return value
    return Markup(hidden) if isinstance(value, Markup) else hidden


def _security_headers(resp: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    return resp


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

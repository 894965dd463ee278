"""voice360, simulated: its liveness endpoint ``GET /``."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

from controlplane.sandbox.platform import env_by_host


def create_app() -> Flask:
    app = Flask("voice360")

    @app.get("/")
    def root() -> Response:
        env = env_by_host(request.host)
        return jsonify(service="voice360", status="ok", env=env.name if env else "production")

    return app

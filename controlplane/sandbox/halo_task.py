"""halo-task-manager-api, simulated: creates ID-card links, texts them, serves the PDF.

Errors use ASP.NET Core's ProblemDetails shape, as the real .NET API does.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import Flask, Response, g, jsonify, request
from twilio.base.exceptions import TwilioException, TwilioRestException

from controlplane.sandbox import pdfcard
from controlplane.sandbox.platform import SandboxEnv, env_by_host, env_by_name

if TYPE_CHECKING:
    from controlplane.sandbox.runner import Sandbox

log = logging.getLogger(__name__)
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass
class IdCardLink:
    token: str
    env: str
    client_id: str
    name: str
    phone: str
    url: str
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


def problem(status: int, title: str, detail: str = "") -> tuple[Response, int]:
    body = {"type": f"https://tools.ietf.org/html/rfc9110#section-15.{status // 100}",
            "title": title, "status": status, "traceId": secrets.token_hex(8)}
    if detail:
        body["detail"] = detail
    resp = jsonify(body)
    resp.mimetype = "application/problem+json"
    return resp, status


def create_app(sb: Sandbox) -> Flask:
    app = Flask("halo_task")

    @app.before_request
    def route_env() -> tuple[Response, int] | None:
        env = env_by_host(request.host)
        if env is None and request.host.split(":")[0] in ("127.0.0.1", "localhost"):
            env = env_by_name("production")
        if env is None or request.host.split(":")[0] not in (env.api, "127.0.0.1", "localhost"):
            return problem(404, "Not Found", f"no halo-task API at host {request.host}")
        g.env = env
        if sb.faults.active("halo_task_500", env) is not None:
            return problem(500, "An error occurred while processing your request.")
        return None

    @app.after_request
    def cors(resp: Response) -> Response:
        # The card page's app (on the environment's front-end host) reads the card
        # cross-origin, as the real Angular app does.
        origin = request.headers.get("Origin", "")
        env = getattr(g, "env", None)
        if env is not None and urlsplit(origin).hostname in (env.frontend, env.bic_agent):
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
        return resp

    @app.get("/health")
    def health() -> Response:
        return Response("Healthy", mimetype="text/plain")

    @app.post("/api/idcards/send-link")
    def send_link() -> tuple[Response, int]:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), sb.halo_token.encode()):
            return problem(401, "Unauthorized", "missing or wrong bearer token")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return problem(400, "One or more validation errors occurred.",
                           "send a JSON object with clientId, phoneNumber and fullName")
        missing = [k for k in ("clientId", "phoneNumber", "fullName") if not body.get(k)]
        if missing:
            return problem(400, "One or more validation errors occurred.",
                           f"required: {', '.join(missing)}")
        if not E164.match(str(body["phoneNumber"])):
            return problem(400, "One or more validation errors occurred.",
                           "phoneNumber must be E.164, like +15550100001")
        return _send(sb, g.env, str(body["clientId"]), str(body["fullName"]),
                     str(body["phoneNumber"]))

    @app.get("/api/idcards/<token>")
    def card(token: str) -> tuple[Response, int]:
        link = sb.links.get(token)
        if link is None or link.env != g.env.name:
            return problem(404, "Not Found", "no ID card for this link")
        return jsonify({"clientId": link.client_id, "fullName": link.name,
                        "environment": link.env}), 200

    @app.get("/api/idcards/<token>/pdf")
    def pdf(token: str) -> Response | tuple[Response, int]:
        link = sb.links.get(token)
        if link is None or link.env != g.env.name:
            return problem(404, "Not Found", "no ID card for this link")
        data = pdfcard.render(link.name, link.client_id, g.env.label)
        if sb.faults.active("pdf_broken", g.env) is not None:
            data = pdfcard.broken(data)
        return Response(data, mimetype="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="idcard-{link.client_id}.pdf"'})

    return app


def _send(sb: Sandbox, env: SandboxEnv, client_id: str, name: str,
          phone: str) -> tuple[Response, int]:
    token = secrets.token_urlsafe(18)
    wrong = sb.faults.active("wrong_link_host", env)
    host = wrong["host"] if wrong else env.frontend
    url = f"https://{host}:{sb.port('bic_agent')}/idcard/{token}"
    sb.links[token] = IdCardLink(token, env.name, client_id, name, phone, url)
    try:
        msg = sb.twilio_client().messages.create(
            to=phone, from_=env.sender,
            body=f"Techhalo 360Voice: your ID card is ready. Open {url}")
    except TwilioRestException as exc:
        return problem(502, "SMS provider rejected the message", f"Twilio {exc.code}: {exc.msg}")
    except TwilioException as exc:
        return problem(502, "SMS provider unreachable", str(exc))
    log.info("sandbox idcard link sent env=%s client=%s sid=%s", env.name, client_id, msg.sid)
    return jsonify({"linkId": token[-6:], "messageSid": msg.sid, "status": msg.status}), 202

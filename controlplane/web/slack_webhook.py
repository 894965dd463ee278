"""``/webhooks/slack/interactive``: the Acknowledge button in our Slack messages.

Slack signs every request (``X-Slack-Signature``, v0 HMAC-SHA256 over
``v0:{timestamp}:{body}`` with the app's signing secret) and stamps it
(``X-Slack-Request-Timestamp``). A bad signature, or a timestamp more than five minutes
away, gets 401 and changes nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request
from slack_sdk.signature import SignatureVerifier

from controlplane.notifiers.slack import RUN_RUNBOOK, SlackConfig
from controlplane.web import runtime
from controlplane.web.incidents import incident_service

log = logging.getLogger(__name__)

bp = Blueprint("slack_webhook", __name__)


@bp.post("/webhooks/slack/interactive")
def interactive() -> tuple[Response, int]:
    slack = runtime().config.notifiers.get("slack")
    if not isinstance(slack, SlackConfig) or slack.signing_secret is None:
        return jsonify(error="Slack webhook disabled: set notifiers.slack.signing_secret"), 403
    body = request.get_data()
    verifier = SignatureVerifier(slack.signing_secret.get_secret_value())
    if not verifier.is_valid_request(body, dict(request.headers)):
        log.warning("slack webhook rejected: bad signature or stale timestamp remote=%s",
                    request.remote_addr)
        return jsonify(error="invalid Slack signature or timestamp"), 401
    try:
        payload: dict[str, Any] = json.loads(request.form["payload"])
    except (KeyError, ValueError):
        return jsonify(error="expected a form field `payload` with JSON"), 400
    user = payload.get("user") or {}
    by = str(user.get("username") or user.get("name") or user.get("id") or "slack user")
    acked = []
    for action in payload.get("actions") or []:
        if action.get("action_id") == RUN_RUNBOOK:
            from controlplane.web.runbooks import run_from_slack

            return jsonify(response_type="ephemeral", replace_original=False,
                           text=run_from_slack(slack, str(action.get("value") or ""),
                                               str(user.get("id") or ""), by)), 200
        if action.get("action_id") != "acknowledge":
            continue
        try:
            inc = incident_service().acknowledge(int(action.get("value")), by, "slack")
            acked.append(inc.id)
        except (LookupError, ValueError, TypeError) as exc:
            return jsonify(response_type="ephemeral", replace_original=False,
                           text=f"Could not acknowledge: {exc}"), 200
    if not acked:
        return jsonify(error="no acknowledge action in the payload"), 400
    return jsonify(response_type="ephemeral", replace_original=False,
                   text=f"Acknowledged incident {', '.join(map(str, acked))}"), 200

"""``/webhooks/slack/interactive``: the Acknowledge button in our Slack messages.

Slack signs every request (``X-Slack-Signature``, v0 HMAC-SHA256 over
``v0:{timestamp}:{body}`` with the app's signing secret) and stamps it
(``X-Slack-Request-Timestamp``). A bad signature, or a timestamp more than five minutes
away, gets 401 and changes nothing. The body is read only after its declared size is
known to be small: an unauthenticated sender cannot make us buffer a large upload.
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

MAX_SLACK_BODY = 64 * 1024
"""An interactive payload with one button click is a few kB; Slack's own limit for the
message it came from is far below this."""


@bp.post("/webhooks/slack/interactive")
def interactive() -> tuple[Response, int]:
    slack = runtime().config.notifiers.get("slack")
    if not isinstance(slack, SlackConfig) or slack.signing_secret is None \
            or not slack.signing_secret.get_secret_value():
        return jsonify(error="Slack webhook disabled: set notifiers.slack.signing_secret"), 403
    size = request.content_length
    if size is None:
        return jsonify(error="send Content-Length (Slack always does)"), 411
    if size > MAX_SLACK_BODY:
        return jsonify(error=f"body of {size} bytes refused; at most {MAX_SLACK_BODY}"), 413
    stamp = request.headers.get("X-Slack-Request-Timestamp", "")
    if not stamp.isdigit() or len(stamp) > 12:
        log.warning("slack webhook rejected: bad timestamp remote=%s", request.remote_addr)
        return jsonify(error="X-Slack-Request-Timestamp must be a unix time in seconds"), 401
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
    if not isinstance(payload, dict):
        return jsonify(error="the `payload` field must hold a JSON object"), 400
    return _act(slack, payload)


def _act(slack: SlackConfig, payload: dict[str, Any]) -> tuple[Response, int]:
    user = payload.get("user")
    user = user if isinstance(user, dict) else {}
    by = str(user.get("username") or user.get("name") or user.get("id") or "slack user")[:120]
    acked = []
    actions = payload.get("actions")
    for action in actions if isinstance(actions, list) else []:
        if not isinstance(action, dict):
            continue
        if action.get("action_id") == RUN_RUNBOOK:
            from controlplane.web.runbooks import run_from_slack

            return jsonify(response_type="ephemeral", replace_original=False,
                           text=run_from_slack(slack, str(action.get("value") or ""),
                                               str(user.get("id") or ""), by)), 200
        if action.get("action_id") != "acknowledge":
            continue
        try:
            inc = incident_service().acknowledge(int(str(action.get("value"))), by, "slack")
            acked.append(inc.id)
        except (LookupError, ValueError, TypeError, OverflowError) as exc:
            return jsonify(response_type="ephemeral", replace_original=False,
                           text=f"Could not acknowledge: {exc}"), 200
    if not acked:
        return jsonify(error="no acknowledge action in the payload"), 400
    return jsonify(response_type="ephemeral", replace_original=False,
                   text=f"Acknowledged incident {', '.join(map(str, acked))}"), 200

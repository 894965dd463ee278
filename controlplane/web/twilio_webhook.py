"""Twilio's inbound-SMS webhook: ``POST /webhooks/twilio/sms``.

The request must carry a valid ``X-Twilio-Signature`` computed with the auth token of an
``idcard_sms`` check that receives by webhook; anything else gets 403 and is dropped (and
logged, without the signature). Accepted texts go to the shared SMS inbox those checks
wait on.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request
from twilio.request_validator import RequestValidator

from controlplane.probes.idcard_sms import IdCardSmsConfig
from controlplane.probes.inbox import Sms
from controlplane.web import runtime

log = logging.getLogger(__name__)

bp = Blueprint("twilio_webhook", __name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _tokens(to: str) -> list[str]:
    """Auth tokens of webhook-receiving idcard_sms checks, those watching ``to`` first."""
    mine: list[str] = []
    others: list[str] = []
    for check in runtime().config.checks:
        if not isinstance(check, IdCardSmsConfig) or check.receive != "webhook":
            continue
        token = check.twilio.auth_token.get_secret_value()
        (mine if check.phone == to else others).append(token)
    return mine + others


def _signed_url() -> str:
    """The URL Twilio signed: the public one when we sit behind a proxy."""
    public = runtime().config.web.public_url.rstrip("/")
    if public:
        return public + request.full_path.rstrip("?")
    return request.url


@bp.post("/webhooks/twilio/sms")
def inbound_sms() -> tuple[Response, int] | Response:
    params = request.form.to_dict()
    signature = request.headers.get("X-Twilio-Signature", "")
    url = _signed_url()
    to = params.get("To", "")
    valid = bool(signature) and any(RequestValidator(t).validate(url, params, signature)
                                    for t in _tokens(to))
    if not valid:
        log.warning("twilio webhook rejected reason=%s remote=%s to=%s",
                    "bad signature" if signature else "no signature", request.remote_addr, to)
        return Response("invalid or missing X-Twilio-Signature\n", status=403,
                        mimetype="text/plain"), 403
    runtime().context.services.sms_inbox.add(Sms(
        sid=params.get("MessageSid") or params.get("SmsSid", ""), to=to,
        from_=params.get("From", ""), body=params.get("Body", ""), status="received"))
    log.info("twilio webhook accepted sid=%s to=%s", params.get("MessageSid", ""), to)
    return Response(EMPTY_TWIML, mimetype="text/xml")

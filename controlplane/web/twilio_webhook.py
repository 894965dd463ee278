"""Twilio's inbound-SMS webhook: ``POST /webhooks/twilio/sms``.

The request must carry a valid ``X-Twilio-Signature`` computed with the auth token of an
``idcard_sms`` check that receives by webhook, or of a Twilio notification channel;
anything else gets 403 and is dropped (and logged, without the signature). An empty auth
token signs nothing: with no token at all every request is refused (an empty key would let
anyone forge a text). Sender-chosen fields are logged with repr() so a newline cannot forge
a log line.

A reply ``ACK <incident id>`` from the phone of someone in ``oncall.people`` acknowledges
that incident (which stops its escalation) and is answered with a text saying so; other
accepted texts go to the shared SMS inbox the idcard_sms checks wait on.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from xml.sax.saxutils import escape

from flask import Blueprint, Response, request
from twilio.request_validator import RequestValidator

from controlplane.notifiers.twilio import TwilioConfig
from controlplane.probes.idcard_sms import IdCardSmsConfig
from controlplane.probes.inbox import Sms
from controlplane.web import runtime

log = logging.getLogger(__name__)

bp = Blueprint("twilio_webhook", __name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
ACK = re.compile(r"\s*ack\s+#?(\d+)\s*", re.IGNORECASE)


def _tokens(to: str) -> list[str]:
    """Auth tokens of webhook-receiving idcard_sms checks, those watching ``to`` first."""
    mine: list[str] = []
    others: list[str] = []
    for check in runtime().config.checks:
        if not isinstance(check, IdCardSmsConfig) or check.receive != "webhook":
            continue
        token = check.twilio.auth_token.get_secret_value()
        if token:
            (mine if check.phone == to else others).append(token)
    for channel in runtime().config.notifiers.values():
        if isinstance(channel, TwilioConfig):  # pages go out from it; replies come back
            token = channel.auth_token.get_secret_value()
            if token:
                (mine if channel.from_number == to else others).append(token)
    return mine + others


def webhook_warnings(checks: list[Any]) -> list[str]:
    """What `controlplane validate` and start-up warn about: webhook checks that cannot
    accept any text because their Twilio auth token is empty."""
    return [f"check {c.id}: receive: webhook with an empty twilio.auth_token; the SMS webhook "
            "refuses every text for it until TWILIO_AUTH_TOKEN (or the field) is set"
            for c in checks if isinstance(c, IdCardSmsConfig) and c.receive == "webhook"
            and not c.twilio.auth_token.get_secret_value()]


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
        log.warning("twilio webhook rejected reason=%s remote=%s to=%r",
                    "bad signature" if signature else "no signature", request.remote_addr,
                    to[:40])
        return Response("invalid or missing X-Twilio-Signature\n", status=403,
                        mimetype="text/plain"), 403
    ack = ACK.fullmatch(params.get("Body", ""))
    if ack:
        return _acknowledge(int(ack.group(1)), params.get("From", ""))
    runtime().context.services.sms_inbox.add(Sms(
        sid=params.get("MessageSid") or params.get("SmsSid", ""), to=to,
        from_=params.get("From", ""), body=params.get("Body", ""), status="received"))
    log.info("twilio webhook accepted sid=%r to=%r", params.get("MessageSid", "")[:64], to[:40])
    return Response(EMPTY_TWIML, mimetype="text/xml")


def _acknowledge(incident_id: int, sender: str) -> Response:
    """``ACK <id>`` from an on-call person's phone; the answer is a text back to them."""
    from controlplane.web.incidents import incident_service

    people = runtime().config.oncall.people
    who = next((p.name for p in people.values() if p.phone and p.phone == sender), None)
    if who is None:
        log.warning("twilio ack refused: sender is not in oncall.people incident=%s",
                    incident_id)
        answer = "Not acknowledged: this number is not in the on-call list."
    else:
        try:
            incident_service().acknowledge(incident_id, who, "sms")
            answer = f"Acknowledged incident #{incident_id}. Escalation stopped."
            log.info("twilio ack incident=%s by=%s", incident_id, who)
        except (LookupError, ValueError, OverflowError) as exc:  # an id past 64 bits
            answer = f"Not acknowledged: {exc}."
    return Response('<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
                    f"{escape(answer)}</Message></Response>", mimetype="text/xml")

"""Twilio: an SMS (``sms``) or a voice call reading the alert (``call``) to each number.

Both go through the ``twilio`` SDK (``controlplane.probes.twilio_api`` points it at the
configured API base, the sandbox fake in tests). The SDK does not retry; the outbox does.

Idempotency (``attempts > 0``: an earlier attempt may have reached Twilio):

- **sms**: every text ends with ``ref <8 hex>`` from the outbox entry's idempotency key.
  Before resending we list the messages from our number to that number, newest first, back
  to the time the notification was queued (minus a minute of clock skew), and skip a
  number whose identical text is there. Exact: one text per number per notification.
- **call**: a Call resource carries no text of ours to match, so before calling again we
  skip a number that was called from our number since the notification was queued.
  Guarantee: never two calls for one notification; a retry may be skipped when another
  call to the same number from the same caller id was placed meanwhile (both page the
  same person at the same time).

Errors: 5xx, 429 and unreachable are retried; 4xx (bad credentials, invalid or blocked
number, rejected parameters) are permanent.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import requests
from pydantic import Field, SecretStr, field_validator
from twilio.base.exceptions import TwilioException, TwilioRestException

from controlplane.durations import Duration
from controlplane.notifiers.base import (
    Clock,
    Event,
    FilteredConfig,
    Incident,
    Notification,
    Notifier,
    Refs,
    TransportError,
    summary,
    system_clock,
)
from controlplane.probes.twilio_api import DEFAULT_API_BASE, twilio_client

log = logging.getLogger(__name__)

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
CLOCK_SKEW = timedelta(seconds=60)
CALL_EVENTS: tuple[Event, ...] = ("open", "reminder")
SMS_LIMIT = 320  # two segments; the carrier splits longer ones anyway


def _e164(v: str) -> str:
    if not E164.match(v):
        raise ValueError(f"{v!r} is not a phone number in E.164 form such as +15551234567")
    return v


class TwilioConfig(FilteredConfig):
    account_sid: str = Field(pattern=r"^(AC[0-9a-fA-F]{32})?$", min_length=34)
    auth_token: SecretStr
    from_number: str
    to: list[str] = Field(min_length=1, description="default numbers (E.164)")
    api_base: str = DEFAULT_API_BASE
    ca_file: str | None = None
    timeout: Duration = 10.0

    _from = field_validator("from_number")(_e164)

    @field_validator("to")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        return [_e164(n) for n in v]

    @field_validator("auth_token")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value():
            raise ValueError("you must give the auth token (Twilio console, Account info)")
        return v


class SmsConfig(TwilioConfig):
    pass


class CallConfig(TwilioConfig):
    events: list[Event] = Field(default_factory=lambda: list(CALL_EVENTS))


class _TwilioNotifier(Notifier[Any]):
    """What SMS and calls share: the client, numbers, error mapping, lookups."""

    contact = "phone"

    def __init__(self, cfg: TwilioConfig, clock: Clock = system_clock) -> None:
        super().__init__(cfg, clock)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            c: TwilioConfig = self.cfg
            self._client = twilio_client(c.account_sid, c.auth_token.get_secret_value(),
                                         c.api_base, c.ca_file, c.timeout)
        return self._client

    def secrets(self) -> list[str]:
        return [self.cfg.auth_token.get_secret_value()]

    def route(self, incident: Incident) -> list[str]:
        return list(self.cfg.to)

    def notify(self, n: Notification) -> Refs:
        sids: list[str] = []
        try:
            for number in n.to or self.cfg.to:
                since = n.created_at - CLOCK_SKEW
                found = self._earlier(number, n, since) if n.attempts else None
                if found:
                    log.info("twilio %s already sent incident=%s sid=%s", self.channel,
                             n.incident_id, found)
                    sids.append(found)
                    continue
                sids.append(self._send(number, n))
        except TwilioRestException as exc:
            raise _classify(self.channel, exc) from None
        except (requests.RequestException, TwilioException) as exc:
            raise TransportError(f"{self.channel} unreachable: {type(exc).__name__}") from None
        return {"sid": ",".join(sids)} if n.action == "open" else {}

    def _send(self, number: str, n: Notification) -> str:
        raise NotImplementedError

    def _earlier(self, number: str, n: Notification, since: datetime) -> str | None:
        raise NotImplementedError


class SmsNotifier(_TwilioNotifier):
    """Critical incidents' open and resolve as a text to each number."""

    channel = "sms"
    config_model = SmsConfig

    def _send(self, number: str, n: Notification) -> str:
        msg = self.client.messages.create(to=number, from_=self.cfg.from_number,
                                          body=sms_text(n))
        return str(msg.sid)

    def _earlier(self, number: str, n: Notification, since: datetime) -> str | None:
        body = sms_text(n)
        rows = self.client.messages.stream(to=number, from_=self.cfg.from_number,
                                           page_size=50)
        return next((str(m.sid) for m in _since(rows, since) if m.body == body), None)


class CallNotifier(_TwilioNotifier):
    """A voice call reading the alert: critical incidents' open and reminders."""

    channel = "call"
    config_model = CallConfig

    def _send(self, number: str, n: Notification) -> str:
        call = self.client.calls.create(to=number, from_=self.cfg.from_number,
                                        twiml=call_twiml(n))
        return str(call.sid)

    def _earlier(self, number: str, n: Notification, since: datetime) -> str | None:
        rows = self.client.calls.stream(to=number, from_=self.cfg.from_number, page_size=50)
        return next((str(c.sid) for c in _since(rows, since)), None)


def _since(rows: Iterable[Any], since: datetime) -> Iterable[Any]:
    """Rows (newest first) created at or after ``since``; stops paging at the first older."""
    for row in rows:
        created = row.date_created
        if created is not None and created < since:
            return
        yield row


def ref_tag(key: str) -> str:
    return "ref " + hashlib.sha256(key.encode()).hexdigest()[:8]


def sms_text(n: Notification) -> str:
    p = n.payload
    if n.action == "resolve":
        head = summary({**p, "resolved": True})
    elif p.get("text"):
        head = f"{p['check']} ({p['env'] or 'no env'}): {p['text']}"
    else:
        head = summary(p)
    tail = f" #{n.incident_id} {ref_tag(n.idempotency_key)}"
    return head[:SMS_LIMIT - len(tail)] + tail


CALL_INTRO = {"open": "Control plane alert.", "reminder": "Control plane reminder.",
              "resolve": "Control plane: resolved.", "acknowledge": "Control plane: acknowledged.",
              "update": "Control plane update.", "page": "Control plane page."}


def call_twiml(n: Notification) -> str:
    p = n.payload
    state = "resolved" if n.action == "resolve" else p["status"]
    words = (f"{CALL_INTRO.get(n.action, CALL_INTRO['update'])} {p['severity']} incident "
             f"{n.incident_id}. {p['check']} in {p['env'] or 'no environment'} is {state}. "
             f"{p.get('text') or p['message']}")[:600]
    say = xml_escape(words)
    return (f'<Response><Say voice="alice">{say}</Say><Pause length="1"/>'
            f'<Say voice="alice">{say}</Say></Response>')


def _classify(channel: str, exc: TwilioRestException) -> TransportError:
    status, code, msg = exc.status, exc.code, exc.msg
    if status == 429 or status >= 500:
        return TransportError(f"{channel} unavailable: HTTP {status} {code} {msg}".rstrip())
    hint = f" (check notifiers.{channel}.account_sid/auth_token)" if status == 401 else ""
    return TransportError(f"{channel} rejected the request: HTTP {status} {code} {msg}{hint}",
                          permanent=True)

"""Receiving the synthetic client's SMS: polling Twilio's Messages API, or an inbox that
Twilio's inbound webhook (``/webhooks/twilio/sms``) fills.

The inbox lives in the running control plane's ``ProbeContext.services["sms_inbox"]`` so
the web handler and the probe share it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from controlplane.results import StepFailed

INBOX_SERVICE = "sms_inbox"
LINK = re.compile(r"https?://[^\s<>\"']+")
DELIVERED = ("delivered", "received")
FAILED = ("failed", "undelivered", "canceled")


@dataclass(frozen=True)
class Sms:
    sid: str
    to: str
    from_: str
    body: str
    status: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class SmsInbox:
    """Inbound SMS the webhook accepted, newest last; bounded so it cannot grow forever."""

    def __init__(self, keep: int = 500) -> None:
        self._items: deque[Sms] = deque(maxlen=keep)
        self._cond = threading.Condition()

    def add(self, sms: Sms) -> None:
        with self._cond:
            self._items.append(sms)
            self._cond.notify_all()

    def snapshot(self, to: str) -> set[str]:
        with self._cond:
            return {s.sid for s in self._items if s.to == to} | \
                {_link(s.body) for s in self._items if s.to == to} - {""}

    def wait_for(self, to: str, since: datetime, deadline: float,
                 exclude: set[str]) -> Sms | None:
        """First SMS to ``to`` received at/after ``since`` not in ``exclude``; None at deadline."""
        with self._cond:
            while True:
                for sms in self._items:
                    if sms.to == to and sms.at >= since and sms.sid not in exclude \
                            and _link(sms.body) not in exclude:
                        return sms
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)


def inbox_of(services: dict[str, Any]) -> SmsInbox:
    inbox = services.setdefault(INBOX_SERVICE, SmsInbox())
    assert isinstance(inbox, SmsInbox)
    return inbox


def twilio_error(exc: Exception) -> str:
    """One line from whatever the SDK raised (list pages raise a bare TwilioException)."""
    if isinstance(exc, TwilioRestException):
        return f"Twilio API answered {exc.status} (error {exc.code}): {exc.msg}"
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    if status is not None:
        try:
            body = json.loads(getattr(response, "text", ""))
            return (f"Twilio API answered {status} (error {body.get('code')}): "
                    f"{body.get('message')}")
        except (ValueError, AttributeError):
            return f"Twilio API answered {status}"
    return f"cannot reach the Twilio API: {type(exc).__name__}: {exc}"


def twilio_snapshot(client: Client, to: str) -> set[str]:
    """SIDs and links of the texts to ``to`` Twilio already holds: none of them is ours."""
    try:
        rows = client.messages.list(to=to, limit=100, page_size=100)
    except (TwilioException, OSError) as exc:
        raise StepFailed(twilio_error(exc)) from None
    return {str(m.sid) for m in rows} | {_link(m.body) for m in rows} - {""}


def poll_twilio(client: Client, to: str, since: datetime, deadline: float, interval: float,
                exclude: set[str]) -> tuple[Sms | None, str]:
    """Poll the Messages list for an SMS to ``to`` sent at/after ``since``.

    Returns (sms, "") when one is delivered, or (None, what was seen) at the deadline.
    A message Twilio marks failed/undelivered fails at once: waiting longer cannot help.
    """
    seen = "no message at all"
    while True:
        try:
            rows = client.messages.list(to=to, date_sent_after=since.replace(microsecond=0),
                                        page_size=50, limit=50)
        except (TwilioException, OSError) as exc:
            raise StepFailed(twilio_error(exc)) from None
        # ``exclude`` holds SIDs and links of SMS earlier runs used: Twilio keeps both the
        # outbound and the inbound record of one text, and runs can be seconds apart.
        fresh = [m for m in rows if m.sid not in exclude and _link(m.body) not in exclude
                 and (m.date_sent or m.date_created or since) >= since]
        for m in fresh:
            if m.status in DELIVERED and LINK.search(m.body or ""):
                return Sms(str(m.sid), str(m.to), str(m.from_), str(m.body), str(m.status),
                           m.date_sent or datetime.now(UTC)), ""
        for m in fresh:
            if m.status in FAILED:
                raise StepFailed(f"Twilio reports the SMS {m.sid} to {to} {m.status} "
                                 f"(error {m.error_code}: {m.error_message})")
        if fresh:
            statuses = ", ".join(sorted({str(m.status) for m in fresh}))
            seen = f"{len(fresh)} message(s) seen, status {statuses}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, seen
        time.sleep(min(interval, remaining))


def _link(body: str | None) -> str:
    match = LINK.search(body or "")
    return match.group(0) if match else ""


def lookback(start: datetime, skew: float) -> datetime:
    """The earliest send time we accept: step start minus the allowed clock skew."""
    return start - timedelta(seconds=skew)

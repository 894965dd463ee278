"""Receiving the synthetic client's SMS: polling Twilio's Messages API, or an inbox that
Twilio's inbound webhook (``/webhooks/twilio/sms``) fills.

The inbox (controlplane/probes/inbox.py) lives in the running control plane's
``Services.sms_inbox`` so the web handler and the probe share it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # the SDK loads when a probe talks to Twilio: start-up stays quick
    from twilio.rest import Client

from controlplane.probes.inbox import LINK, Sms, link_in
from controlplane.results import StepFailed

log = logging.getLogger(__name__)

DELIVERED = ("delivered", "received")
FAILED = ("failed", "undelivered", "canceled")


def twilio_error(exc: Exception) -> str:
    """One line from whatever the SDK raised (list pages raise a bare TwilioException)."""
    status, code, message = _error_parts(exc)
    if status is None:
        return f"cannot reach the Twilio API: {type(exc).__name__}: {exc}"
    if status == 429:
        return f"Twilio API rate limit ({status}, error {code}): {message}"
    if code is None and message is None:
        return f"Twilio API answered {status}"
    return f"Twilio API answered {status} (error {code}): {message}"


def _error_parts(exc: Exception) -> tuple[int | None, Any, Any]:
    """(HTTP status, Twilio error code, message); status None when nothing answered."""
    from twilio.base.exceptions import TwilioRestException

    if isinstance(exc, TwilioRestException):
        return exc.status, exc.code, exc.msg
    status = getattr(_response(exc), "status_code", None)
    if status is None:
        return None, None, None
    try:
        body = json.loads(getattr(_response(exc), "text", ""))
        return int(status), body.get("code"), body.get("message")
    except (ValueError, AttributeError):
        return int(status), None, None


def _response(exc: Exception) -> Any:
    return exc.args[1] if len(exc.args) > 1 else None


@dataclass(frozen=True)
class TwilioRetryExhausted:
    """A transient Twilio failure still there when time ran out."""

    error: str  # twilio_error's line for the last failure
    why: str    # "retried until the deadline", or the Retry-After that overshot it

    def __str__(self) -> str:
        return f"{self.error}; {self.why}"


T = TypeVar("T")


def call_twilio(call: Callable[[], T], deadline: float,
                interval: float) -> T | TwilioRetryExhausted:
    """``call()``, retried on transient errors (429, 5xx, no connection) until ``deadline``.

    One 503 or 429 must not fail a critical check; waiting cannot fix a permanent error
    (401 wrong credentials, 404 wrong account), so those raise StepFailed at once. A
    Retry-After that reaches past the deadline ends the wait now: obeying it would only
    hold the verdict back.
    """
    from twilio.base.exceptions import TwilioException

    while True:
        try:
            return call()
        except (TwilioException, OSError) as exc:
            status = _error_parts(exc)[0]
            if status is not None and status != 429 and status < 500:
                raise StepFailed(twilio_error(exc)) from None
            error = twilio_error(exc)
            wait = _retry_after(exc)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (wait is not None and wait > remaining):
            # One wording whichever came first, so the verdict does not hang on timing.
            return TwilioRetryExhausted(error, "retried until the deadline" if wait is None
                                        else f"Twilio asks to retry after {wait:g}s; no retry "
                                        "fits before the deadline")
        pause = min(interval if wait is None else wait, remaining)
        log.info("twilio transient error, retrying status=%s retry_in=%.1f",
                 status or "unreachable", pause)
        time.sleep(pause)


def _retry_after(exc: Exception) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), if the answer had one."""
    headers = getattr(_response(exc), "headers", None) or {}
    value = str(headers.get("Retry-After", "")).strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def twilio_snapshot(client: Client, to: str, deadline: float, interval: float) -> set[str]:
    """SIDs and links of the texts to ``to`` Twilio already holds: none of them is ours."""
    rows = call_twilio(lambda: client.messages.list(to=to, limit=100, page_size=100),
                       deadline, interval)
    if isinstance(rows, TwilioRetryExhausted):
        raise StepFailed(str(rows))
    return {str(m.sid) for m in rows} | {link_in(m.body) for m in rows} - {""}


def poll_twilio(client: Client, to: str, since: datetime, deadline: float, interval: float,
                exclude: set[str]) -> tuple[Sms | None, str]:
    """Poll the Messages list for an SMS to ``to`` sent at/after ``since``.

    Returns (sms, "") when one is delivered, or (None, what was seen) at the deadline.
    A message Twilio marks failed/undelivered fails at once: waiting longer cannot help.
    Transient API errors are retried until the deadline (see call_twilio).
    """
    seen = ""
    while True:
        rows = call_twilio(lambda: client.messages.list(
            to=to, date_sent_after=since.replace(microsecond=0), page_size=50, limit=50),
            deadline, interval)
        if isinstance(rows, TwilioRetryExhausted):
            return None, f"{seen}; then {rows}" if seen else str(rows)
        seen = seen or "no message at all"
        # ``exclude`` holds SIDs and links of SMS earlier runs used: Twilio keeps both the
        # outbound and the inbound record of one text, and runs can be seconds apart.
        fresh = [m for m in rows if m.sid not in exclude and link_in(m.body) not in exclude
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



def lookback(start: datetime, skew: float) -> datetime:
    """The earliest send time we accept: step start minus the allowed clock skew."""
    return start - timedelta(seconds=skew)

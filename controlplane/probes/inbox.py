"""The inbox of SMS Twilio's inbound webhook accepted; the ID-card probe waits on it.

Kept apart from sms_inbox.py (which needs the twilio SDK) so the typed services every probe
context carries cost no client library.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

LINK = re.compile(r"https?://[^\s<>\"']+")


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
                {link_in(s.body) for s in self._items if s.to == to} - {""}

    def wait_for(self, to: str, since: datetime, deadline: float,
                 exclude: set[str]) -> Sms | None:
        """First SMS to ``to`` received at/after ``since`` not in ``exclude``; None at deadline."""
        with self._cond:
            while True:
                for sms in self._items:
                    if sms.to == to and sms.at >= since and sms.sid not in exclude \
                            and link_in(sms.body) not in exclude:
                        return sms
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)


def link_in(body: str | None) -> str:
    """The first link in an SMS body, or ""."""
    match = LINK.search(body or "")
    return match.group(0) if match else ""

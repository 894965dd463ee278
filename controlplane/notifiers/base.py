"""The notifier contract.

The outbox worker hands each stored notification to the channel's :class:`Notifier`.
``notify`` either returns references to remember on the incident (Slack ts, Jira key) or
raises :class:`TransportError`; ``permanent=True`` means retrying cannot help (bad
channel, bad credentials, rejected fields), otherwise the worker retries with backoff
(``retry_after`` when the service said how long to wait).

Delivery is at-least-once from the worker's side; each notifier makes a repeat harmless
(see docs/incidents.md, "Idempotency"): ``Notification.attempts > 0`` tells it that an
earlier attempt may have reached the service, so it must look before it sends again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

ACTIONS = ("open", "update", "reminder", "acknowledge", "resolve")


class TransportError(Exception):
    def __init__(self, message: str, permanent: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass
class Notification:
    """One outbox entry as a notifier sees it."""

    id: int
    incident_id: int
    action: str
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int
    created_at: datetime
    refs: dict[str, str | None] = field(default_factory=dict)


class Notifier(ABC):
    """One channel (``slack``, ``jira``)."""

    channel: ClassVar[str]

    @abstractmethod
    def notify(self, n: Notification) -> dict[str, str]:
        """Deliver ``n``; return incident references to store (may be empty)."""

    def secrets(self) -> list[str]:
        """Configured credentials; the worker blanks them out of every stored error text."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release network clients."""


def duration_text(seconds: float) -> str:
    """``3h 02m`` style, for humans reading a thread."""
    s = round(seconds)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    if d:
        return f"{d}d {h}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {sec:02d}s"
    return f"{sec}s"

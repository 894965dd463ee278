"""The channel contract: every notification channel is one module with one Notifier.

A channel owns four things, all here so that incidents never name a channel:

- its **config model** (``config_model``, a :class:`ChannelConfig`), validated under
  ``notifiers.<channel>`` with FILE:LINE errors;
- its **rules**: :meth:`Notifier.wants` (does this incident event concern the channel),
  :meth:`Notifier.route` (where it goes: ``payload["to"]``) and
  :meth:`Notifier.reminder_interval` (how often an unacknowledged incident is repeated);
- its **delivery**: :meth:`Notifier.notify`, which returns the references to remember
  for the incident (Slack ts, Jira key, a mail's Message-ID) or raises
  :class:`TransportError`; ``permanent=True`` means retrying cannot help (bad address,
  bad credentials, rejected fields), otherwise the outbox retries with backoff
  (``retry_after`` when the service said how long to wait, which pauses the channel).

Delivery is at-least-once from the outbox's side; each notifier makes a repeat harmless
(see docs/channels.md, "Idempotency"): ``Notification.attempts > 0`` tells it that an
earlier attempt may have reached the service, so it must look before it sends again.

Constructing a notifier must not touch the network: the incident service builds them to
ask their rules, also in processes that never deliver (a standby, the web fallback).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controlplane.durations import Duration
from controlplane.severity import SEVERITY_RANK as SEVERITY_RANK
from controlplane.severity import Severity as Severity

Event = Literal["open", "update", "reminder", "acknowledge", "resolve"]
ACTIONS: tuple[Event, ...] = ("open", "update", "reminder", "acknowledge", "resolve")
PAGING_EVENTS: tuple[Event, ...] = ("open", "resolve")
PAGE = "page"
"""The action of an escalation page to one person (see ``Notifier.contact``)."""
Clock = Callable[[], datetime]
Refs = dict[str, str]


def system_clock() -> datetime:
    return datetime.now(UTC)


class TransportError(Exception):
    def __init__(self, message: str, permanent: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after


class ChannelConfig(BaseModel):
    """Fields every channel has; each channel subclasses it with its own."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


class FilteredConfig(ChannelConfig):
    """For channels that page people: which severities and events they take."""

    min_severity: Severity = "critical"
    events: list[Event] = Field(default_factory=lambda: list(PAGING_EVENTS))
    repeat_interval: Duration | None = Field(default=None, description=(
        "repeat an unacknowledged incident this often (needs reminder in events); "
        "none: never"))

    @field_validator("repeat_interval")
    @classmethod
    def _not_noise(cls, v: float | None) -> float | None:
        if v is not None and v < 60:
            raise ValueError("must be at least 60s; reminders more often are noise")
        return v


@dataclass(frozen=True)
class Incident:
    """What a channel's rules may look at (a read-only view of the incident)."""

    id: int
    check: str
    env: str
    kind: str
    severity: str
    state: str
    status: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Notification:
    """One outbox entry as a notifier sees it.

    ``payload`` is the incident snapshot the service wrote (see docs/channels.md), with
    ``payload["to"]`` the destinations :meth:`Notifier.route` chose when it was queued.
    ``refs`` are this channel's references for the incident, as earlier ``notify`` calls
    returned them (empty before the first success). ``subject`` names what the entry is
    about: ``incident/ID``, or another subject's ``KIND/ID`` (a runbook run's audit trail,
    whose ``incident_id`` is None).
    """

    id: int
    incident_id: int | None
    action: str
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int
    created_at: datetime
    refs: dict[str, str] = field(default_factory=dict)
    subject: str = ""

    @property
    def to(self) -> list[str]:
        return [str(t) for t in self.payload.get("to") or []]


C = TypeVar("C", bound=ChannelConfig)


class Notifier(ABC, Generic[C]):
    """One channel (``slack``, ``jira``, ``sms``, ...)."""

    channel: ClassVar[str]
    config_model: ClassVar[type[ChannelConfig]] = ChannelConfig
    contact: ClassVar[str | None] = None
    """The field of an on-call person (``oncall.people``: ``slack``, ``phone``, ``email``)
    this channel reaches them at; None: it cannot page a person. A channel with a contact
    delivers the action ``page`` (escalation, docs/oncall.md): one standalone message to
    ``n.to`` saying ``payload["text"]``, outside the incident's thread, returning no
    references; the policy, not :meth:`wants`, decides that it is sent."""
    cfg: C

    def __init__(self, cfg: C | None = None, clock: Clock = system_clock) -> None:
        if cfg is not None:  # only test doubles without settings leave it out
            self.cfg = cfg
        self.clock = clock

    # -- rules --------------------------------------------------------------------------------

    def wants(self, incident: Incident, event: str) -> bool:
        """Whether ``event`` (one of ACTIONS) on ``incident`` goes to this channel."""
        cfg = getattr(self, "cfg", None)
        if isinstance(cfg, FilteredConfig):
            return event in cfg.events and at_least(incident.severity, cfg.min_severity)
        return True

    def route(self, incident: Incident) -> list[str]:
        """Destinations (channel id, phone numbers, addresses); stored as ``payload["to"]``."""
        return []

    def reminder_interval(self) -> float | None:
        """Seconds between reminders of an unacknowledged incident; None = no reminders."""
        cfg = getattr(self, "cfg", None)
        return cfg.repeat_interval if isinstance(cfg, FilteredConfig) else None

    # -- delivery -----------------------------------------------------------------------------

    @abstractmethod
    def notify(self, n: Notification) -> Refs:
        """Deliver ``n``; return references to keep for the incident (may be empty)."""

    def secrets(self) -> list[str]:
        """Configured credentials; the worker blanks them out of every stored error text."""
        return []

    def close(self) -> None:
        """Release network clients."""


def at_least(severity: str, minimum: str) -> bool:
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum]


def summary(p: dict[str, Any]) -> str:
    """One line for channels without formatting (SMS, call, mail subject)."""
    state = "RESOLVED" if p.get("resolved") or p.get("state") == "resolved" else \
        str(p["status"]).upper()
    return f"[{state}] {p['check']} ({p['env'] or 'no env'}, {p['severity']}): {p['message']}"


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

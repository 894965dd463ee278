"""Incident life cycle: open on a bad transition, update, remind, acknowledge, resolve.

Every change and the notifications it causes are written in ONE transaction (the
incident row, its timeline event and the outbox entries), so a crash can never leave a
change without its notification or a notification without its change. Delivery is the
outbox worker's job (:mod:`controlplane.incidents.outbox`).
Message updates coalesce and may be spaced out (:mod:`controlplane.incidents.coalesce`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.evaluator import State, Transition
from controlplane.incidents import coalesce as updates
from controlplane.incidents import silences
from controlplane.incidents.config import IncidentsConfig
from controlplane.incidents.model import (
    ACKNOWLEDGED,
    ACTIVE_STATES,
    OPEN,
    PENDING,
    RESOLVED,
    IncidentEventRow,
    IncidentRow,
    OutboxRow,
)
from controlplane.metrics import Metrics
from controlplane.notifiers.base import Clock, Incident, Notifier, system_clock
from controlplane.probes.base import CheckConfig
from controlplane.results import Result, Status, iso
from controlplane.severity import SEVERITIES
from controlplane.store import Store

log = logging.getLogger(__name__)

__all__ = ["Clock", "IncidentService", "dedup_key", "system_clock"]
_LEVEL = {Status.DEGRADED: "degraded", Status.FAILING: "failing", Status.ERROR: "failing"}


def dedup_key(check_id: str, env: str) -> str:
    return f"{check_id}/{env}"


class Escalation(Protocol):
    """Paging people while an incident stays open (controlplane/oncall/escalation.py): told
    of opens, acknowledgments and resolutions, and ticked, inside the service's own
    transaction so a step and the change it reacts to commit together."""

    def start(self, host: IncidentService, s: Session, inc: IncidentRow,
              now: datetime) -> None: ...

    def stop(self, host: IncidentService, s: Session, inc: IncidentRow, reason: str,
             now: datetime) -> None: ...

    def tick(self, host: IncidentService, s: Session, now: datetime) -> None: ...

    def committed(self) -> None: ...

    def state(self, s: Session, incident_id: int) -> dict[str, Any] | None: ...


class IncidentService:
    def __init__(self, store: Store, incidents: IncidentsConfig,
                 channels: dict[str, Notifier[Any]], metrics: Metrics | None = None,
                 clock: Clock = system_clock, dashboard_url: str = "",
                 wake: Callable[[], None] | None = None,
                 escalation: Escalation | None = None,
                 button_runbooks: Collection[str] | None = None) -> None:
        self.store = store
        self.cfg = incidents
        self.channels = channels
        """The enabled channels; only their rules are asked here (delivery is the outbox's)."""
        self.metrics = metrics
        self.clock = clock
        self.dashboard_url = (incidents.dashboard_url or dashboard_url).rstrip("/")
        self._wake = wake or (lambda: None)
        self._lock = threading.RLock()
        self.escalation = escalation
        # Runbooks a human starts from the incident ("Run runbook" button); None: every
        # runbook id. An ``auto: true`` runbook starts itself, so it gets no button.
        self.button_runbooks = None if button_runbooks is None else frozenset(button_runbooks)

    # -- pipeline hooks ---------------------------------------------------------------------

    def on_transition(self, t: Transition) -> None:
        check, now = t.check, self.clock()
        bad = t.new == State.FAILING or (t.new == State.DEGRADED and check.notify_on_degraded)
        with self._lock, self.store.session() as s:
            inc = self._active(s, check.id, check.env)
            if inc is None and bad:
                self._open(s, check, t, now)
            elif inc is not None and bad:
                verb = "escalated" if t.new == State.FAILING else "improved"
                inc.status, inc.message = t.new.value, t.result.message
                self._event(s, inc, verb, f"{verb} to {t.new.value}: {t.result.message}", now)
                self._notify(s, inc, "update", now,
                             text=f"{verb.capitalize()} to {t.new.value}: {t.result.message}")
            elif inc is not None:
                self._resolve(s, inc, t.result.message, now)
        self._after_change()

    def on_result(self, result: Result, check: CheckConfig) -> None:
        """A changed message while the incident stays at its level becomes a thread update."""
        level = _LEVEL.get(result.status)
        if level is None:
            return
        with self._lock, self.store.session() as s:
            inc = self._active(s, check.id, check.env)
            if inc is None or inc.status != level or result.message == inc.message:
                return
            now = self.clock()
            inc.message = result.message
            self._event(s, inc, "updated", result.message, now)
            self._notify(s, inc, "update", now, text=f"Update: {result.message}",
                         coalesce=True)
        self._after_change()

    # -- operator actions ---------------------------------------------------------------------

    def acknowledge(self, incident_id: int, by: str, via: str) -> IncidentRow:
        """Stop reminders; raises LookupError (unknown) or ValueError (already resolved)."""
        now = self.clock()
        with self._lock, self.store.session() as s:
            inc = s.get(IncidentRow, incident_id)
            if inc is None:
                raise LookupError(f"no incident {incident_id}")
            if inc.state == RESOLVED:
                raise ValueError(f"incident {incident_id} is already resolved")
            if inc.state == ACKNOWLEDGED:
                return inc
            inc.state, inc.acknowledged_at, inc.acknowledged_by = ACKNOWLEDGED, now, by
            self._event(s, inc, "acknowledged", f"acknowledged by {by} via {via}", now)
            self._notify(s, inc, "acknowledge", now, text=f":eyes: Acknowledged by {by}")
            if self.escalation is not None:
                self.escalation.stop(self, s, inc, f"acknowledged by {by} via {via}", now)
        self._after_change()
        return inc

    # -- time-driven work ---------------------------------------------------------------------

    def tick(self) -> None:
        """Notify incidents whose silence ended; send reminders past repeat_interval."""
        now = self.clock()
        with self._lock, self.store.session() as s:
            for inc in s.scalars(select(IncidentRow).where(IncidentRow.state.in_(ACTIVE_STATES))):
                silence = self._silence(s, inc, now)
                if not inc.notified:
                    if silence is None:
                        self._event(s, inc, "unsilenced", "silence over and still "
                                    f"{inc.status}; notifying now", now)
                        inc.silenced_by = None
                        self._notify(s, inc, "open", now)
                    continue
                due = self._reminders_due(s, inc, now) if inc.state == OPEN and \
                    silence is None else []
                if due:
                    self._event(s, inc, "reminder", f"still {inc.status}", now)
                    self._notify(s, inc, "reminder", now, text=(
                        f":alarm_clock: Still {inc.status} since {iso(inc.since)}, not "
                        f"acknowledged: {inc.message}"), only=due)
            if self.escalation is not None:
                self.escalation.tick(self, s, now)
        if self.escalation is not None:
            self.escalation.committed()
        self._after_change()

    def _reminders_due(self, s: Session, inc: IncidentRow, now: datetime) -> list[str]:
        """Channels whose own reminder interval has passed since their last notification."""
        view, due = _view(inc), []
        for name, channel in self.channels.items():
            interval = channel.reminder_interval()
            if interval is None or not channel.wants(view, "reminder"):
                continue
            last = s.scalar(select(func.max(OutboxRow.created_at)).where(
                OutboxRow.incident_id == inc.id, OutboxRow.channel == name))
            if (now - (_aware(last) or inc.opened_at)).total_seconds() >= interval:
                due.append(name)
        return due

    # -- internals ------------------------------------------------------------------------------

    def _active(self, s: Session, check_id: str, env: str) -> IncidentRow | None:
        return s.scalars(select(IncidentRow).where(
            IncidentRow.dedup_key == dedup_key(check_id, env),
            IncidentRow.state.in_(ACTIVE_STATES)).order_by(IncidentRow.id.desc())).first()

    def _open(self, s: Session, check: CheckConfig, t: Transition, now: datetime) -> None:
        inc = IncidentRow(
            dedup_key=dedup_key(check.id, check.env), check_id=check.id, env=check.env,
            kind=check.kind, name=check.name, severity=check.severity,
            labels=dict(check.labels), runbook=check.runbook, state=OPEN, status=t.new.value,
            message=t.result.message, opened_at=now, since=t.since, notified=False,
            last_notified_message="")
        s.add(inc)
        s.flush()
        self._event(s, inc, "opened", f"{t.old.value} -> {t.new.value}: {t.result.message}",
                    now)
        silence = self._silence(s, inc, now)
        if silence is not None:
            inc.silenced_by = silence.id
            self._event(s, inc, "silenced", f"not notified: silence #{silence.id} "
                        f"({silence.comment}) by {silence.author}", now)
        else:
            self._notify(s, inc, "open", now)
        if self.escalation is not None:  # held while silenced; the tick resumes it
            self.escalation.start(self, s, inc, now)
        if silence is not None:
            return
        log.info("incident opened id=%s check=%s env=%s severity=%s", inc.id, check.id,
                 check.env, check.severity)

    def _resolve(self, s: Session, inc: IncidentRow, message: str, now: datetime) -> None:
        inc.state, inc.resolved_at, inc.message = RESOLVED, now, message
        self._event(s, inc, "resolved", f"recovered: {message}", now)
        if self.escalation is not None:
            self.escalation.stop(self, s, inc, "resolved", now)
        if inc.notified:
            # Sent even during a silence: an open thread must not be left hanging.
            self._notify(s, inc, "resolve", now, force=True)
        log.info("incident resolved id=%s check=%s", inc.id, inc.check_id)

    def _silence(self, s: Session, inc: IncidentRow, now: datetime) -> Any:
        return silences.silenced_by(
            s, silences.Target(inc.check_id, inc.env, inc.labels or {}), now)

    def _event(self, s: Session, inc: IncidentRow, kind: str, message: str,
               now: datetime) -> None:
        s.add(IncidentEventRow(incident_id=inc.id, at=now, kind=kind, message=message))

    def _notify(self, s: Session, inc: IncidentRow, action: str, now: datetime,
                text: str | None = None, force: bool = False,
                coalesce: bool = False, only: list[str] | None = None) -> None:
        if action != "open" and not inc.notified:
            return  # nothing was announced (silenced), so there is nothing to follow up
        if action not in ("open", "resolve") and not force and self._silence(s, inc, now):
            self._event(s, inc, "silenced", f"{action} not sent: silenced", now)
            return
        payload = self.payload(inc, now, text)
        if coalesce:
            payload["coalesce"] = True
        view = _view(inc)
        for channel, notifier in self.channels.items():
            if (only is not None and channel not in only) or not notifier.wants(view, action):
                continue
            due = now
            # Off by default: every update is delivered, in order (outages included).
            coalescing = self.cfg.coalesce_updates or self.cfg.update_interval > 0
            if coalesce and coalescing:
                due = updates.hold_until(s, inc.id, channel, now, self.cfg.update_interval)
                self._coalesce(s, inc, channel, now)
            elif coalescing:
                updates.release(s, inc.id, channel, now)
            routed = {**payload, "to": notifier.route(view)}
            s.add(OutboxRow(incident_id=inc.id, channel=channel, action=action, payload=routed,
                            idempotency_key=uuid.uuid4().hex, state=PENDING, attempts=0,
                            created_at=now, next_attempt_at=due, last_error="", response={}))
        if action == "open":
            inc.notified = True
        inc.last_notified_at, inc.last_notified_message = now, inc.message

    def _coalesce(self, s: Session, inc: IncidentRow, channel: str, now: datetime) -> None:
        replaced = updates.supersede(s, inc.id, channel)
        if replaced:
            self._event(s, inc, "coalesced", f"{channel}: {replaced} unsent "
                        f"update{'s' if replaced > 1 else ''} replaced by the newest", now)

    # -- what escalation uses (the Host protocol of controlplane/oncall/escalation.py) ------

    def silence_of(self, s: Session, inc: IncidentRow, now: datetime) -> Any:
        return self._silence(s, inc, now)

    def event(self, s: Session, inc: IncidentRow, kind: str, message: str,
              now: datetime) -> None:
        self._event(s, inc, kind, message, now)

    def queue(self, s: Session, inc: IncidentRow, channel: str, action: str, now: datetime,
              text: str, to: list[str] | None, extra: dict[str, Any]) -> None:
        """One outbox entry to ``channel`` (to ``to``, or where the channel routes)."""
        payload = {**self.payload(inc, now, text), **extra}
        payload["to"] = to if to is not None else self.channels[channel].route(_view(inc))
        s.add(OutboxRow(incident_id=inc.id, channel=channel, action=action, payload=payload,
                        idempotency_key=uuid.uuid4().hex, state=PENDING, attempts=0,
                        created_at=now, next_attempt_at=now, last_error="", response={}))

    def trail(self, s: Session, inc: IncidentRow, text: str, now: datetime) -> None:
        """An update for the channels that keep the incident's story (thread, ticket)."""
        self._notify(s, inc, "update", now, text=text)

    def notified_channels(self, s: Session, inc: IncidentRow) -> set[str]:
        return set(s.scalars(select(OutboxRow.channel).where(OutboxRow.incident_id == inc.id)))

    def payload(self, inc: IncidentRow, now: datetime, text: str | None = None) -> dict[str, Any]:
        """A snapshot of the incident for one notification (rendered by each notifier)."""
        end = inc.resolved_at or now
        return {
            "incident": inc.id, "check": inc.check_id, "env": inc.env, "kind": inc.kind,
            "name": inc.name, "severity": inc.severity, "status": inc.status,
            "state": inc.state, "message": inc.message, "since": iso(inc.since),
            "labels": inc.labels or {}, "runbook": self.runbook_link(inc.runbook),
            "runbook_id": self._button_runbook(inc.runbook),
            "dashboard": self.link(inc.id), "dedup_key": inc.dedup_key, "text": text,
            "acknowledged_by": inc.acknowledged_by,
            "duration_s": round((end - inc.since).total_seconds(), 3),
        }

    def _button_runbook(self, runbook: str | None) -> str | None:
        if not runbook or "://" in runbook:
            return None
        if self.button_runbooks is not None and runbook not in self.button_runbooks:
            return None
        return runbook

    def link(self, incident_id: int) -> str | None:
        return f"{self.dashboard_url}/incidents/{incident_id}" if self.dashboard_url else None

    def runbook_link(self, runbook: str | None) -> str | None:
        if not runbook or runbook.startswith(("http://", "https://")):
            return runbook
        return f"{self.dashboard_url}/runbooks/{runbook}" if self.dashboard_url else runbook

    def _after_change(self) -> None:
        self.refresh_metrics()
        self._wake()

    def refresh_metrics(self) -> None:
        if self.metrics is None:
            return
        with self.store.session() as s:
            rows = dict(s.execute(select(IncidentRow.severity, func.count()).where(
                IncidentRow.state.in_(ACTIVE_STATES)).group_by(IncidentRow.severity)).all())
            pending = dict(s.execute(select(OutboxRow.channel, func.count()).where(
                OutboxRow.state == PENDING).group_by(OutboxRow.channel)).all())
        for sev in SEVERITIES:
            self.metrics.incidents_open.labels(sev).set(rows.get(sev, 0))
        for channel in self.channels:
            self.metrics.notifications_pending.labels(channel).set(pending.get(channel, 0))


def _view(inc: IncidentRow) -> Incident:
    return Incident(id=inc.id, check=inc.check_id, env=inc.env, kind=inc.kind,
                    severity=inc.severity, state=inc.state, status=inc.status,
                    labels=dict(inc.labels or {}))


def _aware(at: datetime | None) -> datetime | None:
    # func.max() bypasses the UTC column type: SQLite hands back a naive datetime.
    if at is None or at.tzinfo is not None:
        return at
    return at.replace(tzinfo=UTC)

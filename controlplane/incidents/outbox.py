"""The durable outbox worker: delivers stored notifications, in order, at least once.

Per dedup key (check/env) and channel only the oldest pending entry is eligible, so
updates go out in the order they were written, also across the incidents of a flapping
check. An entry about another subject (``subject``: a runbook run's audit trail, see
incidents/api.py) queues per subject, and its references live in
``notification_subjects``. Transient errors back off exponentially (or for Slack's
``Retry-After``, which
also pauses the whole channel; the pause is stored in ``notification_pauses`` so a
restart during it does not send early); permanent errors mark the entry
``failed`` with the reason on the incident timeline and count in
``controlplane_notifications_failed``. An entry is marked ``sent`` only after the
service accepted it; a crash in between means a resend, which each notifier makes
harmless (see notifiers/base.py).

Test hook: ``CONTROLPLANE_OUTBOX_CRASH_AT=before_send|after_send[:channel[:action]]``
makes the process SIGKILL itself at that point, to prove the crash-safety claims.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.incidents.config import OutboxConfig
from controlplane.incidents.model import (
    FAILED,
    PENDING,
    SENT,
    IncidentEventRow,
    IncidentRow,
    OutboxPauseRow,
    OutboxRow,
    SubjectRow,
)
from controlplane.logs import redact
from controlplane.metrics import Metrics
from controlplane.notifiers.base import (
    Clock,
    Notification,
    Notifier,
    TransportError,
    system_clock,
)
from controlplane.store import Store

log = logging.getLogger(__name__)

CRASH_ENV = "CONTROLPLANE_OUTBOX_CRASH_AT"


class OutboxWorker:
    def __init__(self, store: Store, notifiers: dict[str, Notifier[Any]], cfg: OutboxConfig,
                 metrics: Metrics | None = None, clock: Clock = system_clock,
                 on_idle: Callable[[], None] | None = None, idle_every: float = 15.0) -> None:
        self.store = store
        self.notifiers = notifiers
        self.cfg = cfg
        self.metrics = metrics
        self.clock = clock
        self._on_idle = on_idle
        self._idle_every = idle_every
        self._wakes = {channel: threading.Event() for channel in notifiers}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- threads: one per channel, so a slow Jira never delays Slack ---------------------------

    def start(self) -> None:
        for channel in self.notifiers:
            t = threading.Thread(target=self._loop, args=(channel,), name=f"outbox-{channel}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        if self._on_idle is not None:
            t = threading.Thread(target=self._ticker, name="incidents-tick", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake()
        for t in self._threads:
            t.join(timeout)

    def wake(self) -> None:
        for event in self._wakes.values():
            event.set()

    def _loop(self, channel: str) -> None:
        wake = self._wakes[channel]
        while not self._stop.is_set():
            wake.clear()
            try:
                self.run_channel(channel)
                self.refresh_metrics()
            except Exception:
                log.exception("outbox pass failed channel=%s; retrying after the poll "
                              "interval", channel)
            wake.wait(self.cfg.poll_interval)

    def _ticker(self) -> None:
        assert self._on_idle is not None
        while not self._stop.wait(self._idle_every):
            try:
                self._on_idle()
            except Exception:
                log.exception("incident tick failed; retrying on the next tick")

    # -- one pass -------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Try every due head-of-queue entry once; returns how many were attempted."""
        attempted = sum(self.run_channel(channel) for channel in self.notifiers)
        self.refresh_metrics()
        return attempted

    def run_channel(self, channel: str) -> int:
        attempted = 0
        for entry_id in self._due(channel):
            if self._blocked(channel):
                break
            self._deliver(entry_id, self.notifiers[channel])
            attempted += 1
        return attempted

    def paused_until(self, channel: str) -> datetime | None:
        """The end of the channel's stored Retry-After pause, if one is still running."""
        with self.store.session() as s:
            pause = s.get(OutboxPauseRow, channel)
            until = pause.until if pause is not None else None
        return until if until is not None and self.clock() < until else None

    def _blocked(self, channel: str) -> bool:
        return self.paused_until(channel) is not None

    def _due(self, channel: str) -> list[int]:
        if self._blocked(channel):
            return []
        now = self.clock()
        with self.store.session() as s:
            rows = s.execute(select(OutboxRow.id, IncidentRow.dedup_key, OutboxRow.subject,
                                    OutboxRow.next_attempt_at)
                             .outerjoin(IncidentRow, IncidentRow.id == OutboxRow.incident_id)
                             .where(OutboxRow.channel == channel, OutboxRow.state == PENDING)
                             .order_by(OutboxRow.id)).all()
        # One queue per dedup key, not per incident: after fail, recover, fail again during
        # an outage, the second incident's open must not overtake the first one's resolve
        # (Jira would see the ticket reused, then closed while the check is failing).
        # Another subject (a runbook run) is its own queue.
        heads: dict[str, tuple[int, datetime]] = {}
        for entry_id, key, subject, due in rows:
            heads.setdefault(f"incident:{key}" if key is not None else f"subject:{subject}",
                             (entry_id, due))
        return sorted(e for e, due in heads.values() if due <= now)

    def _deliver(self, entry_id: int, notifier: Notifier[Any]) -> None:
        with self.store.session() as s:
            row = s.get(OutboxRow, entry_id)
            if row is None or row.state != PENDING:
                return
            _crash_point("before_send", row.channel, row.action)
            n = Notification(row.id, row.incident_id, row.action, dict(row.payload),
                             row.idempotency_key, row.attempts, row.created_at,
                             dict(_refs(s, row).get(row.channel) or {}),
                             subject=row.subject or f"incident/{row.incident_id}")
            # Record the attempt before sending: after a crash, attempts > 0 tells the
            # notifier to look for an earlier delivery before sending again.
            row.attempts += 1
        try:
            refs = notifier.notify(n)
        except TransportError as exc:
            self._failed(entry_id, _scrubbed(exc, notifier))
            return
        except Exception as exc:
            log.exception("notifier crashed channel=%s entry=%s check=%s", notifier.channel,
                          entry_id, n.payload.get("check"))
            self._failed(entry_id, _scrubbed(TransportError(
                f"notifier crashed: {type(exc).__name__}: {exc}"), notifier))
            return
        _crash_point("after_send", notifier.channel, n.action)
        self._sent(entry_id, refs)

    def _sent(self, entry_id: int, refs: dict[str, str]) -> None:
        now = self.clock()
        with self.store.session() as s:
            row = s.get(OutboxRow, entry_id)
            assert row is not None
            row.state, row.sent_at, row.response, row.last_error = SENT, now, refs, ""
            if refs:  # opaque to us: the channel's own, handed back on its next delivery
                held = _refs(s, row)
                mine = {**(held.get(row.channel) or {}), **{k: v for k, v in refs.items() if v}}
                _keep_refs(s, row, {**held, row.channel: mine})
            what = f"{row.channel} {row.action} delivered" + (
                f" after {row.attempts} attempts" if row.attempts > 1 else "")
            _event(s, row, now, "notified", what)
        log.info("notification sent entry=%s refs=%s", entry_id, refs)

    def _failed(self, entry_id: int, exc: TransportError) -> None:
        now = self.clock()
        with self.store.session() as s:
            row = s.get(OutboxRow, entry_id)
            assert row is not None
            row.last_error = exc.message
            give_up = exc.permanent or (self.cfg.max_attempts and
                                        row.attempts >= self.cfg.max_attempts)
            if give_up:
                row.state = FAILED
                _event(s, row, now, "notify_failed",
                       f"{row.channel} {row.action} failed for good: {exc.message}")
                if self.metrics is not None:
                    self.metrics.notifications_failed.labels(row.channel).inc()
                log.error("notification failed permanently entry=%s channel=%s check=%s "
                          "subject=%s error=%s", entry_id, row.channel,
                          row.payload.get("check"), row.subject or "", exc.message)
                return
            delay = min(self.cfg.backoff_initial * 2 ** (row.attempts - 1), self.cfg.backoff_max)
            if exc.retry_after is not None:
                delay = exc.retry_after
                _pause(s, row.channel, now + timedelta(seconds=delay), exc.message)
            row.next_attempt_at = now + timedelta(seconds=delay)
            if row.attempts == 1:
                _event(s, row, now, "notify_retry",
                       f"{row.channel} {row.action} delayed: {exc.message}; retrying")
            log.warning("notification retry entry=%s channel=%s attempt=%d delay_s=%g error=%s",
                        entry_id, row.channel, row.attempts, delay, exc.message)

    def refresh_metrics(self) -> None:
        if self.metrics is None:
            return
        with self.store.session() as s:
            counts = dict(s.execute(select(OutboxRow.channel, func.count()).where(
                OutboxRow.state == PENDING).group_by(OutboxRow.channel)).all())
        for channel in self.notifiers:
            self.metrics.notifications_pending.labels(channel).set(counts.get(channel, 0))
            # A counter exported from 0, so increase() sees the first failure (alert rules).
            self.metrics.notifications_failed.labels(channel).inc(0)

    def close(self) -> None:
        for n in self.notifiers.values():
            n.close()


def _refs(s: Session, row: OutboxRow) -> dict[str, Any]:
    """The references of the entry's subject: its incident's, or the subject row's."""
    if row.incident_id is not None:
        inc = s.get(IncidentRow, row.incident_id)
        return dict(inc.refs or {}) if inc is not None else {}
    held = s.get(SubjectRow, row.subject)
    return dict(held.refs or {}) if held is not None else {}


def _keep_refs(s: Session, row: OutboxRow, refs: dict[str, Any]) -> None:
    # Always a new dict: a JSON column only sees reassignment.
    if row.incident_id is not None:
        inc = s.get(IncidentRow, row.incident_id)
        assert inc is not None
        inc.refs = refs
        return
    held = s.get(SubjectRow, row.subject)
    if held is None:
        s.add(SubjectRow(subject=row.subject, refs=refs))
    else:
        held.refs = refs


def _event(s: Session, row: OutboxRow, now: datetime, kind: str, message: str) -> None:
    """A line on the incident's timeline; other subjects show their entries themselves
    (``incidents.api.deliveries``)."""
    if row.incident_id is not None:
        s.add(IncidentEventRow(incident_id=row.incident_id, at=now, kind=kind,
                               message=message))


def _pause(s: Session, channel: str, until: datetime, reason: str) -> None:
    pause = s.get(OutboxPauseRow, channel)
    if pause is None:
        s.add(OutboxPauseRow(channel=channel, until=until, reason=reason))
    else:  # the newest Retry-After is the service's current word
        pause.until, pause.reason = until, reason


def _scrubbed(exc: TransportError, notifier: Notifier[Any]) -> TransportError:
    """The error as it may be stored and shown on /incidents: no credentials in it."""
    text = exc.message
    for secret in notifier.secrets():
        if secret:
            text = text.replace(secret, "***")
    return TransportError(redact(text), exc.permanent, exc.retry_after)


def _crash_point(point: str, channel: str, action: str) -> None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    want = spec.split(":")
    if want[0] != point or (len(want) > 1 and want[1] != channel) or \
            (len(want) > 2 and want[2] != action):
        return
    log.warning("test crash hook firing point=%s channel=%s action=%s", point, channel, action)
    os.kill(os.getpid(), signal.SIGKILL)

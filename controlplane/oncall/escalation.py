"""Escalation: while an incident stays open and unacknowledged, page people step by step.

A policy (``oncall.policies``, the first whose ``match`` fits the incident) is a chain of
steps; each fires ``after`` the previous one and pages its targets: ``oncall:<schedule>``
(whoever is on call *when the step fires*, so a handoff during an incident pages the new
person), ``person:<id>``, or ``channel:<name>`` (the channel's own destination). People are
reached through the step's ``via`` channels, at the contact each channel declares
(``Notifier.contact``: a Slack id, a phone number, an email address); this module never
names a channel.

Durability: the chain's position lives in ``incident_escalations``. Firing a step writes,
in the incident service's one transaction, the outbox entries of its pages, the timeline
events, the trail update (Slack thread, Jira comment) and the advanced position: a
process killed at any point has either fired the step entirely (the outbox delivers it)
or not at all (it fires after the restart), never twice.

Stops: acknowledging or resolving stops the chain for good. A silence holds it: the due
step waits and fires when the silence ends if the incident is still open and
unacknowledged, and the later steps keep their delays from then.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from controlplane.incidents.model import OPEN, IncidentRow, UTCDateTime
from controlplane.oncall import overrides
from controlplane.oncall.config import OncallConfig, PersonConfig, PolicyConfig, StepConfig
from controlplane.oncall.schedule import on_call
from controlplane.results import iso
from controlplane.store import Base

log = logging.getLogger(__name__)

ACTIVE, STOPPED, DONE = "active", "stopped", "done"
CRASH_ENV = "CONTROLPLANE_ESCALATION_CRASH_AT"
"""Test hook: ``after_step:N`` SIGKILLs the process right after step N (1-based) has been
written but before its transaction commits; ``between:N`` right after it committed."""


class EscalationRow(Base):
    __tablename__ = "incident_escalations"

    incident_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy: Mapped[str] = mapped_column(String(120))
    round: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    """The next step to fire (0-based)."""
    next_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(10), default=ACTIVE)
    reason: Mapped[str] = mapped_column(Text, default="")
    held_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The silence whose hold is already on the timeline (said once, not every tick)."""


class Host(Protocol):
    """What escalation needs from the incident service (implemented there)."""

    @property
    def channels(self) -> Mapping[str, Any]: ...

    def silence_of(self, s: Session, inc: IncidentRow, now: datetime) -> Any: ...

    def event(self, s: Session, inc: IncidentRow, kind: str, message: str,
              now: datetime) -> None: ...

    def queue(self, s: Session, inc: IncidentRow, channel: str, action: str, now: datetime,
              text: str, to: list[str] | None, extra: dict[str, Any]) -> None: ...

    def trail(self, s: Session, inc: IncidentRow, text: str, now: datetime) -> None: ...

    def notified_channels(self, s: Session, inc: IncidentRow) -> set[str]: ...


class Escalator:
    def __init__(self, config: OncallConfig) -> None:
        self.config = config
        self.policies = config.effective_policies()
        self._fired: list[int] = []

    def committed(self) -> None:
        """Called after the tick's transaction committed (the crash hook's ``between``)."""
        fired, self._fired = self._fired, []
        for step in fired:
            _crash_point("between", step)

    # -- hooks called by the incident service, inside its transaction ------------------------

    def policy_for(self, inc: IncidentRow) -> tuple[str, PolicyConfig] | None:
        labels = inc.labels or {}
        for pid, policy in self.policies.items():
            m = policy.match
            if m.severity and inc.severity not in m.severity:
                continue
            if m.env and inc.env not in m.env:
                continue
            if all(str(labels.get(k)) == v for k, v in m.labels.items()):
                return pid, policy
        return None

    def start(self, host: Host, s: Session, inc: IncidentRow, now: datetime) -> None:
        found = self.policy_for(inc)
        if found is None or s.get(EscalationRow, inc.id) is not None:
            return
        pid, policy = found
        row = EscalationRow(incident_id=inc.id, policy=pid, round=0, step=0,
                            next_at=now + timedelta(seconds=policy.steps[0].after),
                            state=ACTIVE, reason="")
        s.add(row)
        host.event(s, inc, "escalation", f"escalation policy {pid}: {len(policy.steps)} "
                   f"steps{_repeats(policy)}", now)
        self._run(host, s, inc, row, now)

    def stop(self, host: Host, s: Session, inc: IncidentRow, reason: str,
             now: datetime) -> None:
        row = s.get(EscalationRow, inc.id)
        if row is None or row.state != ACTIVE:
            return
        row.state, row.reason = STOPPED, reason
        host.event(s, inc, "escalation", f"escalation stopped: {reason}", now)
        log.info("escalation stopped incident=%s reason=%s", inc.id, reason)

    def tick(self, host: Host, s: Session, now: datetime) -> None:
        rows = list(s.scalars(select(EscalationRow).where(
            EscalationRow.state == ACTIVE, EscalationRow.next_at <= now)
            .order_by(EscalationRow.next_at)))
        for row in rows:
            inc = s.get(IncidentRow, row.incident_id)
            if inc is not None:
                self._run(host, s, inc, row, now)

    def state(self, s: Session, incident_id: int) -> dict[str, Any] | None:
        row = s.get(EscalationRow, incident_id)
        if row is None:
            return None
        return {"policy": row.policy, "round": row.round, "next_step": row.step + 1,
                "next_at": iso(row.next_at) if row.state == ACTIVE else None,
                "state": row.state, "reason": row.reason}

    # -- firing ------------------------------------------------------------------------------

    def _run(self, host: Host, s: Session, inc: IncidentRow, row: EscalationRow,
             now: datetime) -> None:
        """Fire every step that is due (several after a long outage of our own)."""
        policy = self.policies.get(row.policy)
        if policy is None:
            row.state, row.reason = STOPPED, f"policy {row.policy} no longer configured"
            host.event(s, inc, "escalation", f"escalation stopped: {row.reason}", now)
            return
        while row.state == ACTIVE and row.next_at <= now:
            if inc.state != OPEN:
                row.state, row.reason = STOPPED, f"incident {inc.state}"
                return
            silence = host.silence_of(s, inc, now)
            if silence is not None:
                if row.held_by != silence.id:
                    row.held_by = silence.id
                    host.event(s, inc, "escalation", f"escalation held: silence "
                               f"#{silence.id} ({silence.comment}); step {row.step + 1} "
                               "fires when it ends if still unacknowledged", now)
                return
            if row.held_by is not None:
                # Resume where it was held, from now: the steps due meanwhile do not all
                # go out at once, each keeps its delay after the one before.
                row.held_by, row.next_at = None, now
            self._fire(host, s, inc, row, policy, now)
            self._advance(row, policy)

    def _advance(self, row: EscalationRow, policy: PolicyConfig) -> None:
        fired_at = row.next_at  # the chain keeps its own times, however late a tick runs
        if row.step + 1 < len(policy.steps):
            row.step += 1
            row.next_at = fired_at + timedelta(seconds=policy.steps[row.step].after)
        elif row.round < policy.repeat:
            row.round, row.step = row.round + 1, 0
            row.next_at = fired_at + timedelta(
                seconds=policy.repeat_after + policy.steps[0].after)
        else:
            row.state, row.reason = DONE, "every step fired"

    def _fire(self, host: Host, s: Session, inc: IncidentRow, row: EscalationRow,
              policy: PolicyConfig, now: datetime) -> None:
        step = policy.steps[row.step]
        label = f"step {row.step + 1}/{len(policy.steps)}" + (
            f", round {row.round + 1}/{policy.repeat + 1}" if policy.repeat else "")
        text = (f"Escalation {label}: incident #{inc.id} still open and unacknowledged. "
                f"Reply ACK {inc.id} to acknowledge.")
        done: list[str] = []
        for target in step.notify:
            kind, _, ref = target.partition(":")
            if kind == "channel":
                done += self._channel(host, s, inc, row, ref, text, now)
                continue
            person_id, why = self._person(s, kind, ref, now)
            if person_id is None:
                host.event(s, inc, "escalation", f"{label}: nobody is on call for {ref}; "
                           "nobody paged for this target", now)
                continue
            done += self._page(host, s, inc, step, person_id, why, text, label, now)
        summary = f"{label}: " + ("; ".join(done) if done else "nobody could be paged")
        host.event(s, inc, "paged", summary, now)
        host.trail(s, inc, f":rotating_light: Escalation {summary}", now)
        log.info("escalation step fired incident=%s policy=%s round=%d step=%d pages=%d",
                 inc.id, row.policy, row.round, row.step + 1, len(done))
        _crash_point("after_step", row.step + 1)
        self._fired.append(row.step + 1)

    def _person(self, s: Session, kind: str, ref: str,
                now: datetime) -> tuple[str | None, str]:
        if kind == "person":
            return ref, ""
        shift = on_call(self.config.schedules[ref],
                        overrides.effective(s, self.config, ref), now)
        return (shift.person, f" (on call for {ref})") if shift else (None, "")

    def _page(self, host: Host, s: Session, inc: IncidentRow, step: StepConfig,
              person_id: str, why: str, text: str, label: str, now: datetime) -> list[str]:
        person = self.config.people[person_id]
        out: list[str] = []
        for via in step.via:
            address = self._address(host, via, person)
            if isinstance(address, Exception):
                host.event(s, inc, "escalation", f"{label}: cannot page {person.name} via "
                           f"{via}: {address}", now)
                continue
            host.queue(s, inc, via, "page", now, text, [address],
                       {"escalation": {"step": label, "person": person_id,
                                       "name": person.name}})
            out.append(f"paged {person.name}{why} via {via}")
        return out

    def _address(self, host: Host, via: str, person: PersonConfig) -> str | Exception:
        notifier = host.channels.get(via)
        if notifier is None:
            return LookupError(f"channel {via} is not configured under notifiers")
        contact = getattr(notifier, "contact", None)
        if contact is None:
            return LookupError(f"the {via} channel cannot reach a person")
        address = getattr(person, contact, None)
        if not address:
            return LookupError(f"no {contact} in oncall.people")
        return str(address)

    def _channel(self, host: Host, s: Session, inc: IncidentRow, row: EscalationRow,
                 channel: str, text: str, now: datetime) -> list[str]:
        if channel not in host.channels:
            host.event(s, inc, "escalation", f"channel {channel} is not configured under "
                       "notifiers; skipped", now)
            return []
        if row.round == 0 and row.step == 0 and channel in host.notified_channels(s, inc):
            return [f"{channel} has the incident"]
        host.queue(s, inc, channel, "reminder", now, text, None, {})
        return [f"{channel} reminded"]


def _repeats(policy: PolicyConfig) -> str:
    return f", repeated {policy.repeat} more times" if policy.repeat else ""


def _crash_point(point: str, step: int) -> None:
    spec = os.environ.get(CRASH_ENV)
    if spec == f"{point}:{step}":
        log.warning("test crash hook firing point=%s step=%d", point, step)
        os.kill(os.getpid(), signal.SIGKILL)

"""One facade over the on-call config and the stored overrides, for the CLI, the web pages
and escalation: who is on call, the coming shifts, and override changes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from controlplane.oncall import overrides
from controlplane.oncall.config import OncallConfig, PersonConfig
from controlplane.oncall.schedule import Shift, on_call, shifts
from controlplane.results import iso, utcnow
from controlplane.store import Store

DEFAULT_DAYS = 28


class OncallService:
    def __init__(self, config: OncallConfig, store: Store,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.store = store
        self.clock = clock

    def on_call(self, schedule: str, at: datetime | None = None) -> Shift | None:
        """The shift on call for ``schedule`` at ``at`` (default now); None for a gap.
        KeyError for an unknown schedule."""
        sched = self.config.schedule(schedule)
        with self.store.session() as s:
            ovs = overrides.effective(s, self.config, schedule)
        return on_call(sched, ovs, at or self.clock())

    def person_on_call(self, schedule: str, at: datetime | None = None) -> PersonConfig | None:
        shift = self.on_call(schedule, at)
        return self.config.people[shift.person] if shift else None

    def shifts(self, schedule: str, start: datetime, end: datetime) -> list[Shift]:
        sched = self.config.schedule(schedule)
        with self.store.session() as s:
            ovs = overrides.effective(s, self.config, schedule)
        return shifts(sched, ovs, start, end)

    def schedule_json(self, schedule: str, at: datetime | None = None,
                      days: int = DEFAULT_DAYS, contacts: bool = False) -> dict[str, Any]:
        """Now and the shifts of the next ``days`` days (the current one from its start)."""
        at = at or self.clock()
        sched = self.config.schedule(schedule)
        current = self.on_call(schedule, at)
        start = current.start if current else at
        coming = self.shifts(schedule, start, at + timedelta(days=days))
        return {"id": schedule, "name": sched.name or schedule, "timezone": sched.timezone,
                "now": self.shift_json(current, contacts) if current else None,
                "shifts": [self.shift_json(x, contacts) for x in coming]}

    def shift_json(self, shift: Shift, contacts: bool = False) -> dict[str, Any]:
        return {"from": iso(shift.start), "to": iso(shift.end), "source": shift.source,
                "person": self.person_json(shift.person, contacts)}

    def person_json(self, person_id: str, contacts: bool = False) -> dict[str, Any]:
        p = self.config.people[person_id]
        out: dict[str, Any] = {"id": person_id, "name": p.name, "slack": p.slack,
                               "timezone": p.timezone}
        if contacts:
            out |= {"phone": p.phone, "email": p.email}
        return out

    def add_override(self, *, schedule: str, person: str, covers: str | None,
                     starts_at: datetime, ends_at: datetime, reason: str, author: str,
                     source: str) -> dict[str, Any]:
        with self.store.session() as s:
            row = overrides.add(s, self.config, schedule=schedule, person=person,
                                covers=covers, starts_at=starts_at, ends_at=ends_at,
                                reason=reason, author=author, source=source, now=self.clock())
            return overrides.to_json(row)

    def remove_override(self, override_id: int) -> dict[str, Any] | None:
        with self.store.session() as s:
            row = overrides.remove(s, override_id, self.clock())
            return overrides.to_json(row) if row else None

    def list_overrides(self, schedule: str | None = None,
                       include_old: bool = False) -> list[dict[str, Any]]:
        with self.store.session() as s:
            return [overrides.to_json(r) for r in overrides.listed(
                s, self.clock(), schedule=schedule, include_old=include_old)]

    def feed_shifts(self, schedule: str, at: datetime | None = None, back_days: int = 7,
                    ahead_days: int = 56) -> list[Shift]:
        """Shifts for a calendar feed: from a week back to eight weeks ahead, whole shifts
        at both ends (a clipped one would show a false handoff in the calendar)."""
        at = at or self.clock()
        start, end = at - timedelta(days=back_days), at + timedelta(days=ahead_days)
        first, last = self.on_call(schedule, start), self.on_call(schedule, end)
        return self.shifts(schedule, first.start if first else start,
                           last.end if last else end)

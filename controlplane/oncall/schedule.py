"""Who is on call when: pure functions from a schedule, its overrides and an instant.

Handoffs are wall-clock times in the layer's zone: a 09:00 handoff stays at 09:00 local
across daylight-saving changes, so the shift that spans a change is an hour shorter or
longer. A handoff that falls into the hour skipped in spring happens as the clock jumps
(02:30 on the change day becomes 03:30 summer time); one in the hour repeated in autumn
happens the first time that hour comes round.

Layers stack: where a later layer has someone on call, it wins over the earlier ones.
Overrides win over every layer, later ones over earlier ones; an override that ``covers``
somebody applies only where that person would have been on call without overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from controlplane.oncall.config import DAYS, LayerConfig, Restriction, ScheduleConfig


@dataclass(frozen=True)
class Override:
    """A stored or configured override, in the neutral shape the computation needs."""

    id: str
    person: str
    starts_at: datetime
    ends_at: datetime
    covers: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Shift:
    """``person`` is on call from ``start`` (inclusive) to ``end`` (exclusive), both UTC."""

    start: datetime
    end: datetime
    person: str
    source: str
    """The layer's name, or ``override <id>``."""

    def covers_instant(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class _Segment:
    start: datetime
    end: datetime
    person: str
    source: str
    rank: int
    key: tuple[str | int, ...]
    """Pieces of one original shift share a key; only they are merged back together."""


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``day at`` in ``tz`` (see the module doc for the
    skipped and repeated hours)."""
    naive = datetime.combine(day, at)
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _handoff(layer: LayerConfig, tz: ZoneInfo, k: int) -> datetime:
    # Step on the wall clock, not in elapsed seconds, so local handoff times hold.
    naive = datetime.combine(layer.start, layer.handoff) + timedelta(
        seconds=layer.shift_seconds * k)
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)


def layer_shifts(layer: LayerConfig, tz: ZoneInfo, start: datetime,
                 end: datetime) -> list[tuple[int, datetime, datetime, str]]:
    """``(k, from, to, person)`` for each shift of ``layer`` overlapping ``[start, end)``,
    unclipped; none before the layer's start."""
    step = layer.shift_seconds
    anchor = datetime.combine(layer.start, layer.handoff)
    local_start = start.astimezone(tz).replace(tzinfo=None)
    k = max(0, int((local_start - anchor).total_seconds() // step) - 1)
    out: list[tuple[int, datetime, datetime, str]] = []
    while True:
        a, b = _handoff(layer, tz, k), _handoff(layer, tz, k + 1)
        if a >= end:
            return out
        if b > start:
            out.append((k, a, b, layer.people[k % len(layer.people)]))
        k += 1


def restriction_windows(restrictions: list[Restriction], tz: ZoneInfo, start: datetime,
                        end: datetime) -> list[tuple[datetime, datetime]]:
    """The UTC windows of the weekly ``restrictions`` that overlap ``[start, end)``."""
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    out: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        for r in restrictions:
            if DAYS[day.weekday()] not in r.days:
                continue
            end_day = day if r.end > r.start else day + timedelta(days=1)
            a, b = local_instant(day, r.start, tz), local_instant(end_day, r.end, tz)
            if a < end and b > start:
                out.append((a, b))
        day += timedelta(days=1)
    return sorted(out)


def _layer_segments(schedule: ScheduleConfig, start: datetime,
                    end: datetime) -> list[_Segment]:
    segments: list[_Segment] = []
    for rank, layer in enumerate(schedule.layers):
        tz = schedule.layer_zone(layer)
        name = layer.name or f"layer {rank + 1}"
        windows = (restriction_windows(layer.restrictions, tz, start, end)
                   if layer.restrictions else [(start, end)])
        for k, a, b, person in layer_shifts(layer, tz, start, end):
            key: tuple[str | int, ...] = (rank, k)
            for wa, wb in windows:
                lo, hi = max(a, wa, start), min(b, wb, end)
                if lo < hi:
                    segments.append(_Segment(lo, hi, person, name, rank, key))
    return segments


def _flatten(segments: list[_Segment], start: datetime, end: datetime) -> list[_Segment]:
    """The winning segment (highest rank) on each stretch of time, merged back together."""
    points = sorted({start, end} | {s.start for s in segments} | {s.end for s in segments})
    out: list[_Segment] = []
    for a, b in pairwise(points):
        if a < start or b > end:
            continue
        live = [s for s in segments if s.start <= a and s.end >= b]
        if not live:
            continue
        top = max(live, key=lambda s: s.rank)
        if out and out[-1].key == top.key and out[-1].end == a:
            prev = out[-1]
            out[-1] = _Segment(prev.start, b, prev.person, prev.source, prev.rank, prev.key)
        else:
            out.append(_Segment(a, b, top.person, top.source, top.rank, top.key))
    return out


def shifts(schedule: ScheduleConfig, overrides: list[Override], start: datetime,
           end: datetime) -> list[Shift]:
    """The final on-call timeline in ``[start, end)``, clipped to it; gaps are stretches
    with nobody on call."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    base = _flatten(_layer_segments(schedule, start, end), start, end)
    top = len(schedule.layers)
    segments = list(base)
    for i, ov in enumerate(overrides):
        lo, hi = max(ov.starts_at, start), min(ov.ends_at, end)
        if lo >= hi:
            continue
        key: tuple[str | int, ...] = ("override", ov.id)
        if ov.covers is None:
            segments.append(_Segment(lo, hi, ov.person, f"override {ov.id}", top + i, key))
            continue
        for seg in base:
            a, b = max(lo, seg.start), min(hi, seg.end)
            if a < b and seg.person == ov.covers:
                segments.append(_Segment(a, b, ov.person, f"override {ov.id}", top + i, key))
    return [Shift(s.start, s.end, s.person, s.source) for s in _flatten(segments, start, end)]


def on_call(schedule: ScheduleConfig, overrides: list[Override],
            at: datetime) -> Shift | None:
    """The whole shift (not clipped to a window) on call at ``at``, or None for a gap."""
    at = at.astimezone(UTC)
    reach = timedelta(seconds=max(layer.shift_seconds for layer in schedule.layers))
    reach += timedelta(days=1)
    while True:
        timeline = shifts(schedule, overrides, at - reach, at + reach)
        current = next((s for s in timeline if s.covers_instant(at)), None)
        if current is None:
            return None
        edge = current.start == at - reach or current.end == at + reach
        if not edge or reach > timedelta(days=800):
            return current
        reach *= 2  # a long override reaches past the window: look further

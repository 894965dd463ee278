"""An iCalendar feed (RFC 5545) of a schedule's shifts, for calendar subscriptions.

Times are written in UTC (``…Z``), so no VTIMEZONE is needed and every client shows the
handoffs at the right local time. A shift's UID is made of the schedule, its start and
its person, so a re-fetched feed updates the events it sent before instead of adding new
ones, and a changed shift (an override) replaces the old one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from controlplane.oncall.config import OncallConfig
from controlplane.oncall.schedule import Shift

PRODID = "-//Techhalo//360Voice control plane//EN"


def calendar(cfg: OncallConfig, schedule: str, timeline: list[Shift], now: datetime,
             host: str = "controlplane") -> str:
    """The VCALENDAR text (CRLF line ends, folded at 75 octets) for ``timeline``."""
    sched = cfg.schedule(schedule)
    title = sched.name or schedule
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN",
             "METHOD:PUBLISH", f"X-WR-CALNAME:{escape(f'On call: {title}')}",
             "X-WR-TIMEZONE:UTC", "REFRESH-INTERVAL;VALUE=DURATION:PT1H",
             "X-PUBLISHED-TTL:PT1H"]
    for shift in timeline:
        person = cfg.people[shift.person]
        lines += ["BEGIN:VEVENT",
                  f"UID:{schedule}-{stamp(shift.start)}-{shift.person}@{host}",
                  f"DTSTAMP:{stamp(now)}",
                  f"DTSTART:{stamp(shift.start)}",
                  f"DTEND:{stamp(shift.end)}",
                  f"SUMMARY:{escape(f'On call: {person.name} ({title})')}",
                  f"DESCRIPTION:{escape(_description(schedule, shift, person.timezone))}",
                  "TRANSP:TRANSPARENT",
                  "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)


def _description(schedule: str, shift: Shift, person_zone: str) -> str:
    return (f"Schedule: {schedule}\nFrom: {shift.source}\n"
            f"{shift.person}'s time zone: {person_zone}")


def stamp(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def escape(text: str) -> str:
    """TEXT value escaping (RFC 5545 §3.3.11)."""
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))


def fold(line: str) -> str:
    """Fold a content line at 75 octets (§3.1), never inside a UTF-8 character."""
    out: list[str] = []
    current, size, limit = "", 0, 75
    for ch in line:
        width = len(ch.encode())
        if size + width > limit:
            out.append(current)
            current, size, limit = " ", 1, 75
        current += ch
        size += width
    out.append(current)
    return "\r\n".join(out)

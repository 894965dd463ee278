"""Silences and maintenance windows: matchers on check id, env and labels.

A silence is one-off (``starts_at``..``ends_at``) or recurring (a 5-field ``cron`` that
opens the window, plus ``duration``). Silences from the config file are re-synced on
every start (``source = "config"``); the API and CLI add ``source = "api"`` ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # SQLAlchemy and APScheduler load when silences are used, not when a
    # config without any validates (bench/startup)
    from apscheduler.triggers.cron import CronTrigger
    from sqlalchemy.orm import Session

    from controlplane.incidents.model import SilenceRow

MAX_SILENCE_S = 366 * 86400.0
"""Longest silence or window: a year. Longer is a check to disable, not to silence."""


def validate_window(starts_at: datetime | None, ends_at: datetime | None, cron: str | None,
                    duration: float | None, now: datetime | None = None) -> None:
    """Raise ValueError saying how to fix a silence whose time window makes no sense.

    With ``now`` (a silence added through the API or the CLI) a window that has already
    ended is refused too; config silences are re-read on every start, so an old one there
    simply stays inactive."""
    for ts in (starts_at, ends_at):
        if ts is not None and ts.tzinfo is None:
            raise ValueError("times need a zone, e.g. 2026-11-26T22:00:00Z")
    if duration is not None and not 0 < duration <= MAX_SILENCE_S:
        raise ValueError(f"duration must be more than 0s and at most 366d, not {duration:g}s")
    if cron is not None:
        if not duration:
            raise ValueError("a recurring silence (cron) needs a duration, e.g. duration: 2h")
        trigger = parse_cron(cron)
        if trigger.get_next_fire_time(None, starts_at or datetime.now(UTC)) is None:
            raise ValueError(f"cron {cron!r} never fires (no such date); check the day and "
                             "month fields")
    elif ends_at is None and duration is None:
        raise ValueError("a one-off silence needs ends_at or duration")
    if starts_at and ends_at and ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
    if now is not None and ends_at is not None and ends_at <= now:
        raise ValueError("ends_at is in the past; a silence must end in the future")


def known_check_ids(cfg: Any) -> set[str]:
    """Check ids a silence may name: the config's checks, which include the built-in ones
    of backups, drills and the DR tracker."""
    return {c.id for c in cfg.checks}


def unknown_check(check: str | None, known: set[str] | None) -> str | None:
    """The instruction for a matcher on a check id the config does not have, else None."""
    if not check or known is None or check in known:
        return None
    return (f"no check with id {check!r}; use one of the ids from `controlplane check list` "
            "(a typo would silence nothing)")


def parse_cron(expr: str) -> CronTrigger:
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(expr, timezone=UTC)
    except ValueError as exc:
        raise ValueError(f"invalid cron {expr!r} ({exc}); use 5 fields like '0 2 * * sun'") \
            from None


@dataclass(frozen=True)
class Target:
    """What a silence is matched against."""

    check: str
    env: str
    labels: dict[str, Any]


def matches(row: SilenceRow, target: Target) -> bool:
    if row.check_id and row.check_id != target.check:
        return False
    if row.env and row.env != target.env:
        return False
    return all(str(target.labels.get(k)) == str(v) for k, v in (row.labels or {}).items())


def window_at(row: SilenceRow, now: datetime) -> tuple[datetime, datetime] | None:
    """The window of ``row`` that contains ``now``, or None when it is not active."""
    if row.expired_at is not None and row.expired_at <= now:
        return None
    if row.starts_at is not None and now < row.starts_at:
        return None
    if row.ends_at is not None and now >= row.ends_at:
        return None
    if row.cron:
        length = timedelta(seconds=row.duration_s or 0)
        start = parse_cron(row.cron).get_next_fire_time(None, now - length)
        if start is None or start > now:
            return None
        end = min(start + length, row.ends_at) if row.ends_at else start + length
        return (start, end) if now < end else None
    start = row.starts_at or row.created_at
    end = row.ends_at or start + timedelta(seconds=row.duration_s or 0)
    return (start, end) if now < end else None


def active(session: Session, now: datetime) -> list[SilenceRow]:
    from sqlalchemy import select

    from controlplane.incidents.model import SilenceRow
    rows = session.scalars(select(SilenceRow).where(SilenceRow.expired_at.is_(None))
                           .order_by(SilenceRow.id))
    return [r for r in rows if window_at(r, now) is not None]


def silenced_by(session: Session, target: Target, now: datetime) -> SilenceRow | None:
    return next((r for r in active(session, now) if matches(r, target)), None)


def add(session: Session, *, check: str | None, env: str | None, labels: dict[str, str],
        comment: str, author: str, now: datetime, starts_at: datetime | None = None,
        ends_at: datetime | None = None, cron: str | None = None,
        duration: float | None = None, source: str = "api",
        known_checks: set[str] | None = None) -> SilenceRow:
    """Add a silence. ``known_checks`` (the config's check ids) refuses a matcher on a check
    that does not exist."""
    if not (check or env or labels):
        raise ValueError("a silence needs at least one matcher (check, env or a label); "
                         "silencing everything is not allowed")
    if not comment.strip():
        raise ValueError("a silence needs a comment saying why")
    if not author.strip():
        raise ValueError("a silence needs an author")
    validate_window(starts_at, ends_at, cron, duration,
                    now=None if source == "config" else now)
    problem = unknown_check(check, known_checks)
    if problem:
        raise ValueError(problem)
    if cron is None and ends_at is None and duration is not None:
        ends_at = (starts_at or now) + timedelta(seconds=duration)
    from controlplane.incidents.model import SilenceRow

    row = SilenceRow(check_id=check or None, env=env or None, labels=dict(labels),
                     starts_at=starts_at or (None if cron else now), ends_at=ends_at, cron=cron,
                     duration_s=duration, comment=comment, author=author, created_at=now,
                     source=source)
    session.add(row)
    session.flush()
    return row


def expire(session: Session, silence_id: int, now: datetime) -> SilenceRow | None:
    from controlplane.incidents.model import SilenceRow

    row = session.get(SilenceRow, silence_id)
    if row is None:
        return None
    if row.expired_at is None:
        row.expired_at = now
    return row


def sync_static(session: Session, silences: list[Any], now: datetime) -> None:
    """Replace the config-defined silences with those of the current config."""
    from sqlalchemy import delete

    from controlplane.incidents.model import SilenceRow

    session.execute(delete(SilenceRow).where(SilenceRow.source == "config"))
    for s in silences:
        add(session, check=s.matchers.check, env=s.matchers.env, labels=s.matchers.labels,
            comment=s.comment, author=s.author, now=now, starts_at=s.starts_at,
            ends_at=s.ends_at, cron=s.cron, duration=s.duration, source="config")


def to_json(row: SilenceRow, now: datetime) -> dict[str, Any]:
    from controlplane.results import iso

    window = window_at(row, now)
    return {
        "id": row.id, "matchers": {"check": row.check_id, "env": row.env,
                                   "labels": row.labels or {}},
        "starts_at": iso(row.starts_at) if row.starts_at else None,
        "ends_at": iso(row.ends_at) if row.ends_at else None,
        "cron": row.cron, "duration_s": row.duration_s, "comment": row.comment,
        "author": row.author, "created_at": iso(row.created_at),
        "expired_at": iso(row.expired_at) if row.expired_at else None, "source": row.source,
        "active": window is not None,
        "active_until": iso(window[1]) if window else None,
    }

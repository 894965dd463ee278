"""Overrides kept in the store: added and removed through the CLI, the API or /oncall.

The table is the on-call feature's (controlplane/features.py), made by migration 0004. A
removed override keeps its row (``removed_at``), so who changed the schedule stays on
record.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from controlplane.incidents.model import UTCDateTime
from controlplane.oncall.config import OncallConfig
from controlplane.oncall.schedule import Override
from controlplane.results import iso
from controlplane.store import Base

log = logging.getLogger(__name__)


class OverrideRow(Base):
    __tablename__ = "oncall_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule: Mapped[str] = mapped_column(String(120), index=True)
    person: Mapped[str] = mapped_column(String(120))
    covers: Mapped[str | None] = mapped_column(String(120), nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(120))
    source: Mapped[str] = mapped_column(String(10), default="api")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


def add(s: Session, cfg: OncallConfig, *, schedule: str, person: str, covers: str | None,
        starts_at: datetime, ends_at: datetime, reason: str, author: str, source: str,
        now: datetime) -> OverrideRow:
    """Store a new override; ValueError says what to fix when it names unknown people or
    a window that makes no sense."""
    check(cfg, schedule=schedule, person=person, covers=covers, starts_at=starts_at,
          ends_at=ends_at, now=now)
    row = OverrideRow(schedule=schedule, person=person, covers=covers,
                      starts_at=starts_at.astimezone(UTC), ends_at=ends_at.astimezone(UTC),
                      reason=reason, author=author, source=source, created_at=now)
    s.add(row)
    s.flush()
    log.info("oncall override added id=%d schedule=%s person=%s covers=%s from=%s to=%s "
             "author=%s", row.id, schedule, person, covers or "-", row.starts_at.isoformat(),
             row.ends_at.isoformat(), author)
    return row


def check(cfg: OncallConfig, *, schedule: str, person: str, covers: str | None,
          starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    if schedule not in cfg.schedules:
        raise ValueError(f"unknown schedule {schedule!r}; use one of: "
                         + (", ".join(sorted(cfg.schedules)) or "(none configured)"))
    for who in (person, covers):
        if who is not None and who not in cfg.people:
            raise ValueError(f"unknown person {who!r}; use one of: "
                             + (", ".join(sorted(cfg.people)) or "(none configured)"))
    if person == covers:
        raise ValueError(f"{person} cannot cover themselves; name who is covered with covers")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValueError("times need a zone, e.g. 2026-12-24T09:00:00+01:00")
    if ends_at <= starts_at:
        raise ValueError("the end must be after the start")
    if ends_at <= now:
        raise ValueError("the override ends in the past; nothing would change")


def remove(s: Session, override_id: int, now: datetime) -> OverrideRow | None:
    """Remove an override (kept on record); None when there is no such live override."""
    row = s.get(OverrideRow, override_id)
    if row is None or row.removed_at is not None:
        return None
    row.removed_at = now
    log.info("oncall override removed id=%d schedule=%s person=%s", row.id, row.schedule,
             row.person)
    return row


def listed(s: Session, now: datetime, *, schedule: str | None = None,
           include_old: bool = False) -> list[OverrideRow]:
    """Live overrides that have not ended; ``include_old`` adds ended and removed ones."""
    query = select(OverrideRow).order_by(OverrideRow.starts_at, OverrideRow.id)
    if schedule is not None:
        query = query.where(OverrideRow.schedule == schedule)
    if not include_old:
        query = query.where(OverrideRow.removed_at.is_(None), OverrideRow.ends_at > now)
    return list(s.scalars(query))


def effective(s: Session, cfg: OncallConfig, schedule: str) -> list[Override]:
    """Every override that applies to ``schedule``: the config's first, then the stored ones
    in the order they were added (a later one wins where they overlap)."""
    out = [Override(f"c{i + 1}", o.person, o.starts_at.astimezone(UTC),
                    o.ends_at.astimezone(UTC), o.covers, o.reason)
           for i, o in enumerate(cfg.overrides) if o.schedule == schedule]
    rows = s.scalars(select(OverrideRow).where(OverrideRow.schedule == schedule,
                                               OverrideRow.removed_at.is_(None))
                     .order_by(OverrideRow.id))
    out += [Override(str(r.id), r.person, r.starts_at, r.ends_at, r.covers, r.reason)
            for r in rows]
    return out


def to_json(row: OverrideRow) -> dict[str, Any]:
    return {"id": row.id, "schedule": row.schedule, "person": row.person,
            "covers": row.covers, "from": iso(row.starts_at), "to": iso(row.ends_at),
            "reason": row.reason, "author": row.author, "source": row.source,
            "created_at": iso(row.created_at),
            "removed_at": iso(row.removed_at) if row.removed_at else None}


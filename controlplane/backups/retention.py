"""Retention: keep the last N, the newest per day for D days and per ISO week for W weeks.

The newest drill-verified backup is always kept, whatever the rules say, so pruning can
never leave a component without a backup known to restore.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from controlplane.backups import catalog
from controlplane.backups.blob import BlobError, BlobStore
from controlplane.backups.catalog import COMPLETE, PRUNED, BackupRow, aware
from controlplane.backups.config import RetentionConfig
from controlplane.results import utcnow
from controlplane.store import Store

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    id: str
    started_at: datetime
    verified: bool


@dataclass
class Decision:
    id: str
    component: str
    keep: bool
    reason: str
    size_bytes: int | None = None


def plan(items: list[Candidate], rules: RetentionConfig,
         now: datetime) -> dict[str, str]:
    """Reasons to keep, by backup id; ids absent from the answer may be deleted."""
    newest = sorted(items, key=lambda c: c.started_at, reverse=True)
    keep: dict[str, str] = {}
    for c in newest[: rules.keep_last]:
        keep.setdefault(c.id, f"among the last {rules.keep_last}")
    seen_days: set[str] = set()
    seen_weeks: set[tuple[int, int]] = set()
    for c in newest:
        ts = c.started_at
        day = ts.strftime("%Y-%m-%d")
        if now - ts <= timedelta(days=rules.daily_days) and day not in seen_days:
            seen_days.add(day)
            keep.setdefault(c.id, f"newest of {day} (daily for {rules.daily_days} days)")
        week = ts.isocalendar()[:2]
        if now - ts <= timedelta(weeks=rules.weekly_weeks) and week not in seen_weeks:
            seen_weeks.add(week)
            keep.setdefault(c.id, f"newest of week {week[0]}-W{week[1]:02d} "
                                  f"(weekly for {rules.weekly_weeks} weeks)")
    verified = [c for c in newest if c.verified]
    if verified:
        keep[verified[0].id] = "newest verified backup (never pruned)"
    return keep


def decide(store: Store, components: dict[str, RetentionConfig],
           now: datetime | None = None) -> list[Decision]:
    now = now or utcnow()
    out: list[Decision] = []
    with store.session() as s:
        for name, rules in sorted(components.items()):
            rows = catalog.backups(s, name, COMPLETE, limit=100000)
            items = [Candidate(r.id, aware(r.started_at), r.verified_at is not None)
                     for r in rows]
            keep = plan(items, rules, now)
            for r in rows:
                reason = keep.get(r.id, "outside every retention rule")
                out.append(Decision(r.id, name, r.id in keep, reason, r.size_bytes))
    return out


def prune(store: Store, blob: BlobStore, decisions: list[Decision]) -> list[str]:
    """Delete blob + manifest of each backup not kept; mark its row pruned. Returns errors."""
    errors: list[str] = []
    for d in decisions:
        if d.keep:
            continue
        with store.session() as s:
            row = s.get(BackupRow, d.id)
            if row is None or row.status != COMPLETE:
                continue
            names = [row.blob_name, row.manifest_name]
        try:
            for name in names:
                blob.delete(name)
        except BlobError as exc:
            errors.append(f"{d.id}: {exc}")
            continue
        with store.session() as s:
            row = s.get(BackupRow, d.id)
            if row is not None:
                row.status, row.pruned_at = PRUNED, utcnow()
        log.info("backup pruned backup_id=%s reason=%r", d.id, d.reason)
    return errors

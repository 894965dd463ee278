"""Message updates that replace each other instead of piling up.

A check whose message changes every run (lag numbers, "expires in N days") makes a
message update per run. By default every one is delivered, in order, outages included.
Two opt-in rules keep that from becoming a reply and a comment per run:

- **Coalescing** (``incidents.coalesce_updates``): a new message update replaces the
  incident's unsent, never-attempted message updates queued after its last other notification (open,
  escalation, acknowledge, reminder, resolve); they are marked ``skipped``. An entry tried
  once may have reached the service, and the other actions carry news of their own: they
  stay and end the run, so the order against them holds.
- **Spacing** (``incidents.update_interval``, implies coalescing): a message update is held until
  ``update_interval`` after the previous one was sent; while held, newer ones replace it.
  Any other notification releases a held update at once, so it never waits behind it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.incidents.model import PENDING, SENT, SKIPPED, OutboxRow

REPLACED = "replaced by a newer update before it was sent"


def is_message_update(row: OutboxRow) -> bool:
    return row.action == "update" and bool((row.payload or {}).get("coalesce"))


def _rows(s: Session, incident_id: int, channel: str) -> list[OutboxRow]:
    """The incident's entries for ``channel``, newest first."""
    return list(s.scalars(select(OutboxRow).where(
        OutboxRow.incident_id == incident_id, OutboxRow.channel == channel,
        OutboxRow.state.in_((PENDING, SENT))).order_by(OutboxRow.id.desc())))


def hold_until(s: Session, incident_id: int, channel: str, now: datetime,
               interval: float) -> datetime:
    """When a new message update may go out: now, or later under ``update_interval``."""
    if interval <= 0:
        return now
    for row in _rows(s, incident_id, channel):
        if not is_message_update(row):
            continue
        if row.state == PENDING:  # the one it replaces (or queues behind): same hold
            return max(now, row.next_attempt_at)
        assert row.sent_at is not None
        return max(now, row.sent_at + timedelta(seconds=interval))
    return now


def supersede(s: Session, incident_id: int, channel: str) -> int:
    """Skip the unsent message updates a newer one replaces; returns how many."""
    replaced = 0
    for row in _rows(s, incident_id, channel):  # newest first: the trailing run
        if row.state != PENDING or not is_message_update(row) or row.attempts:
            break
        row.state, row.last_error = SKIPPED, REPLACED
        replaced += 1
    return replaced


def release(s: Session, incident_id: int, channel: str, now: datetime) -> None:
    """Send held message updates now: another notification must not wait behind them."""
    for row in _rows(s, incident_id, channel):
        if row.state == PENDING and is_message_update(row) and row.next_attempt_at > now:
            row.next_attempt_at = now

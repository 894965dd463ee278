"""What each applied Secrets restore did, in the store (``controlplane restore history``).

One row per `controlplane restore secrets` run that was applied (a dry-run writes nothing):
the backup and its component, who ran it where, the options, and one action per Secret
(``done`` with the key names it changed, ``unchanged``, ``skip``, ``conflict``,
``missing-namespace``); key names only, never a value. The table is declared here (feature
``secret_restores`` in controlplane/features.py) and created by migration 0007.
"""

from __future__ import annotations

import getpass
import logging
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.results import iso, utcnow
from controlplane.store import Store
from controlplane.store.db import Base

log = logging.getLogger(__name__)

APPLIED = "applied"
"""Every planned write was done (or nothing needed doing)."""
INCOMPLETE = "incomplete"
"""Conflicts or missing namespaces: some Secrets were not written; run again to re-plan."""
FAILED = "failed"
"""The API failed part-way; the actions list what was written before."""


class SecretRestoreRow(Base):
    __tablename__ = "secret_restores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    backup_id: Mapped[str] = mapped_column(String(160), index=True)
    component: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20))
    cluster: Mapped[str] = mapped_column(String(300), default="")
    operator: Mapped[str] = mapped_column(String(300), default="")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actions: Mapped[list[Any]] = mapped_column(default=list)
    message: Mapped[str] = mapped_column(Text, default="")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "backup_id": self.backup_id, "component": self.component,
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
                "status": self.status, "cluster": self.cluster, "operator": self.operator,
                "options": self.options, "counts": counts(self.actions),
                "actions": self.actions, "message": self.message}


def counts(actions: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(str(a["action"]) for a in actions).items()))


def operator() -> str:
    """Who ran the restore: the OS user and host (the store has no other identity for a CLI)."""
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def record(store: Store, backup_id: str, component: str, started: datetime, cluster: str,
           options: dict[str, Any], actions: list[dict[str, Any]], error: str = "") -> int:
    """Store one applied restore; returns its id."""
    bad = any(a["action"] in ("conflict", "missing-namespace") for a in actions)
    status = FAILED if error else INCOMPLETE if bad else APPLIED
    with store.session() as s:
        row = SecretRestoreRow(backup_id=backup_id, component=component, started_at=started,
                               finished_at=utcnow(), status=status, cluster=cluster,
                               operator=operator(), options=options, actions=actions,
                               message=error)
        s.add(row)
        s.flush()
        rid = row.id
    log.info("secrets restore recorded id=%d backup_id=%s status=%s counts=%s", rid, backup_id,
             status, counts(actions))
    return rid


def history(store: Store, backup_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Newest first."""
    with store.session() as s:
        q = select(SecretRestoreRow)
        if backup_id:
            q = q.where(SecretRestoreRow.backup_id == backup_id)
        rows = s.scalars(q.order_by(SecretRestoreRow.id.desc()).limit(limit))
        return [r.to_dict() for r in rows]


def summary_line(r: dict[str, Any]) -> str:
    c = ", ".join(f"{n} {verb}" for verb, n in r["counts"].items()) or "nothing"
    return (f"#{r['id']} {r['started_at']} {r['status']}: {r['backup_id']} ({r['component']}) "
            f"into {r['cluster']} by {r['operator']}: {c}")

"""Release manifests in the store: what each environment ran, recorded when it changed.

The table is declared here (feature ``release_manifest`` in controlplane/features.py) and
created by migration 0006.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from controlplane.results import iso, utcnow
from controlplane.store import Store
from controlplane.store.db import Base

log = logging.getLogger(__name__)


class ReleaseManifestRow(Base):
    __tablename__ = "release_manifests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env: Mapped[str] = mapped_column(String(40), index=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(160), default="")
    services: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "env": self.env, "recorded_at": iso(self.recorded_at),
                "source": self.source, "services": self.services}


def fingerprint(services: dict[str, Any]) -> str:
    """What makes two manifests the same release: images, digests and Helm revisions."""
    canon = {name: {k: s.get(k) for k in ("image", "digest", "helm_release", "helm_revision")}
             for name, s in sorted(services.items())}
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()


def record(store: Store, env: str, services: dict[str, Any], source: str = "",
           ) -> tuple[dict[str, Any], bool]:
    """Store ``services`` for ``env`` unless the newest manifest is the same release.

    Returns (the current manifest, whether it was new). A digest that only now became known
    (pod status reports it) for the same image updates the newest row in place."""
    fp = fingerprint(services)
    with store.session() as s:
        last = _latest(s, env)
        if last is not None and last.fingerprint == fp:
            return last.to_dict(), False
        row = ReleaseManifestRow(env=env, recorded_at=utcnow(), fingerprint=fp, source=source,
                                 services=services)
        s.add(row)
        s.flush()
        log.info("release manifest recorded env=%s id=%d source=%s", env, row.id, source)
        return row.to_dict(), True


def _latest(s: Session, env: str) -> ReleaseManifestRow | None:
    return s.scalars(select(ReleaseManifestRow).where(ReleaseManifestRow.env == env)
                     .order_by(ReleaseManifestRow.id.desc()).limit(1)).first()


def latest(store: Store, env: str, at: datetime | None = None) -> dict[str, Any] | None:
    """The newest manifest of ``env`` (as of ``at`` when given)."""
    with store.session() as s:
        q = select(ReleaseManifestRow).where(ReleaseManifestRow.env == env)
        if at is not None:
            q = q.where(ReleaseManifestRow.recorded_at <= at)
        row = s.scalars(q.order_by(ReleaseManifestRow.id.desc()).limit(1)).first()
        return row.to_dict() if row else None


def history(store: Store, env: str, limit: int = 50) -> list[dict[str, Any]]:
    """Manifests of ``env``, newest first."""
    with store.session() as s:
        rows = s.scalars(select(ReleaseManifestRow).where(ReleaseManifestRow.env == env)
                         .order_by(ReleaseManifestRow.id.desc()).limit(limit)).all()
        return [r.to_dict() for r in rows]


def all_of(store: Store, env: str) -> list[dict[str, Any]]:
    return history(store, env, limit=100_000)


def environments(store: Store) -> list[str]:
    with store.session() as s:
        return sorted(set(s.scalars(select(ReleaseManifestRow.env)).all()))

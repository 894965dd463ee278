"""Orphan blobs: backup blobs in storage that no kept catalog row refers to.

They come from a manifest upload that failed after the dump was committed when the cleanup
delete failed too, from ``failed`` and ``corrupt`` backups, and from blobs nobody catalogued.
Retention (``backup prune`` and the prune after each backup) sweeps them: every blob under a
component's ``COMPONENT/ENV/`` prefix whose name is not that of a ``complete`` or ``running``
backup is deleted once it is older than the component's backup ``timeout``, so an upload in
progress (committed a moment before its catalog row could be read) is never touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from controlplane.backups.blob import BlobError, BlobInfo, BlobStore
from controlplane.backups.catalog import COMPLETE, RUNNING, BackupRow
from controlplane.backups.config import BackupComponentConfig
from controlplane.results import utcnow
from controlplane.store import Store

log = logging.getLogger(__name__)

BACKUP_SUFFIXES = (".dump.age", ".json.age", ".manifest.json")
KEPT_STATUSES = (COMPLETE, RUNNING)
"""Rows whose blobs are not orphans: complete ones (retention decides) and running ones."""


@dataclass
class Orphan:
    name: str
    component: str
    size: int
    age_s: float | None
    min_age_s: float
    backup_id: str | None
    """The catalog row that names this blob (failed, corrupt or pruned), if any."""
    reason: str

    @property
    def delete(self) -> bool:
        return self.age_s is not None and self.age_s >= self.min_age_s

    def describe(self) -> str:
        if self.age_s is None:
            return f"{self.reason}; age unknown, kept"
        age = human_age(self.age_s)
        if self.delete:
            return f"{self.reason}; {age} old"
        return (f"{self.reason}; {age} old, younger than {human_age(self.min_age_s)} (the "
                "backup timeout): may be an upload in progress, kept")


def prefix_of(name: str, cfg: BackupComponentConfig) -> str:
    """Where a component's blobs live (see service.blob_names)."""
    return f"{name}/{cfg.env}/"


def find(store: Store, blob: BlobStore, components: dict[str, BackupComponentConfig],
         now: datetime | None = None) -> tuple[list[Orphan], list[str]]:
    """Orphans of each component, oldest decision first; and errors (listing failed)."""
    now = now or utcnow()
    found: list[Orphan] = []
    errors: list[str] = []
    for name, cfg in sorted(components.items()):
        prefix = prefix_of(name, cfg)
        # List first, then read the catalog: a row is written before its blobs, so every
        # listed blob of a live backup already has its row by the time we read it.
        try:
            listing = blob.list(prefix)
        except BlobError as exc:
            errors.append(f"{name}: cannot look for orphan blobs under {prefix}: {exc}")
            continue
        owners = _owners(store, name)
        for info in listing:
            orphan = _judge(info, name, cfg.timeout, owners, now)
            if orphan is not None:
                found.append(orphan)
    return found, errors


def _owners(store: Store, component: str) -> dict[str, tuple[str, str]]:
    """Blob name -> (backup id, status) for every catalog row of the component."""
    with store.session() as s:
        rows = s.execute(select(BackupRow.id, BackupRow.status, BackupRow.blob_name,
                                BackupRow.manifest_name)
                         .where(BackupRow.component == component)).all()
    out: dict[str, tuple[str, str]] = {}
    for backup_id, status, blob_name, manifest_name in rows:
        for n in (blob_name, manifest_name):
            if n:
                out[n] = (backup_id, status)
    return out


def _judge(info: BlobInfo, component: str, min_age: float,
           owners: dict[str, tuple[str, str]], now: datetime) -> Orphan | None:
    if not info.name.endswith(BACKUP_SUFFIXES):
        log.warning("not a backup blob, left alone name=%s; move it out of %s", info.name,
                    info.name.rsplit("/", 1)[0] + "/")
        return None
    owner = owners.get(info.name)
    if owner is not None and owner[1] in KEPT_STATUSES:
        return None
    age = (now - info.modified).total_seconds() if info.modified is not None else None
    if owner is None:
        return Orphan(info.name, component, info.size, age, min_age, None,
                      "no catalog row refers to it")
    return Orphan(info.name, component, info.size, age, min_age, owner[0],
                  f"backup {owner[0]} is {owner[1]}")


def delete(store: Store, blob: BlobStore, orphans: list[Orphan]) -> list[str]:
    """Delete the orphans old enough; note it on their catalog rows. Returns errors."""
    errors: list[str] = []
    for o in orphans:
        if not o.delete:
            continue
        try:
            blob.delete(o.name)
        except BlobError as exc:
            errors.append(f"orphan blob {o.name}: {exc}")
            continue
        log.info("orphan blob deleted component=%s name=%s bytes=%d reason=%r", o.component,
                 o.name, o.size, o.describe())
        if o.backup_id is not None:
            with store.session() as s:
                row = s.get(BackupRow, o.backup_id)
                # Status stays (failed / corrupt): pruned_at says its blobs are gone.
                if row is not None and row.status not in KEPT_STATUSES and not row.pruned_at:
                    row.pruned_at = utcnow()
    return errors


def human_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"

"""The backup-kind contract and its registry: one member per kind of thing backed up.

A kind (``backups.components.NAME.kind``) says how a component is backed up and drilled;
the catalog, blob layout, encryption, locking, retention and the DR tracker are shared.
Members: ``postgres`` (pg_dump) and ``kafka-metadata`` (topics, offsets, ACLs). To add one,
write a :class:`BackupKind`, list it in :data:`MEMBERS`, add its name to
``BackupComponentConfig.kind``; tests/backups/test_kinds.py runs the contract over all.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from controlplane.backups.blob import BlobStore
    from controlplane.backups.config import BackupsConfig
    from controlplane.backups.service import BackupOutcome
    from controlplane.backups.streams import ProgressFn
    from controlplane.dr.drill import DrillOutcome
    from controlplane.store import Store


class BackupJobLike(Protocol):
    backup_id: str

    def run(self) -> BackupOutcome: ...


class DrillLike(Protocol):
    drill_id: int

    def run(self) -> DrillOutcome: ...


class BackupKind(ABC):
    kind: ClassVar[str]
    drill_steps: ClassVar[tuple[str, ...]]
    """The steps a passing drill of this kind records, in order (shown in docs and tests)."""

    @abstractmethod
    def summary(self, manifest: dict[str, Any]) -> str:
        """One line on what a complete backup holds ("12 tables", "4 topics, 2 groups")."""

    @abstractmethod
    def job(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
            progress: ProgressFn | None = None) -> BackupJobLike:
        """One backup run of component ``name``."""

    @abstractmethod
    def drill(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
              progress: ProgressFn | None = None, on_demand: bool = False) -> DrillLike:
        """One restore drill of component ``name`` (its duration is the measured RTO)."""


class PostgresKind(BackupKind):
    kind = "postgres"
    drill_steps = ("pick", "verify", "create-scratch", "restore", "check", "drop-scratch")

    def summary(self, manifest: dict[str, Any]) -> str:
        return f"{len(manifest.get('row_counts', {}))} tables"

    def job(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
            progress: ProgressFn | None = None) -> BackupJobLike:
        from controlplane.backups.service import BackupJob

        return BackupJob(name, backups, store, blob, progress)

    def drill(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
              progress: ProgressFn | None = None, on_demand: bool = False) -> DrillLike:
        from controlplane.dr.drill import Drill

        return Drill(name, backups, store, blob, progress, on_demand=on_demand)


MEMBERS: dict[str, str] = {
    "postgres": "controlplane.backups.base:PostgresKind",
    "kafka-metadata": "controlplane.dr.kafka_drill:KafkaMetadataKind",
}


def kind_of(name: str) -> BackupKind:
    """The registered member for a kind name (imported on first use)."""
    if name not in MEMBERS:
        raise KeyError(f"no backup kind {name!r}; known: {', '.join(sorted(MEMBERS))}")
    module, _, attr = MEMBERS[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    member = cls()
    assert isinstance(member, BackupKind)
    return member


def all_kinds() -> list[BackupKind]:
    return [kind_of(n) for n in MEMBERS]

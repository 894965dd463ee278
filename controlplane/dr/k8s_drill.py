"""Backup kind ``kubernetes-secrets``: the Secrets backup and drill of
controlplane/backups/k8s_secrets.py as a member of the backup-kind registry.

The component's ``backups.components.NAME`` entry (cluster, namespaces, exclusions,
recipients, identity_file, drill.namespace) becomes the Secrets backup's own config, so
``backup run``, cron, retention, ``drill run`` and the DR tracker treat it like the others.
"""

from __future__ import annotations

from typing import Any

from controlplane.backups import k8s_secrets
from controlplane.backups.base import BackupJobLike, BackupKind, DrillLike
from controlplane.backups.blob import BlobStore
from controlplane.backups.catalog import BackupRow
from controlplane.backups.config import BackupComponentConfig, BackupsConfig
from controlplane.backups.k8s_secrets import SecretsBackup, SecretsBackupConfig
from controlplane.backups.service import BackupOutcome
from controlplane.backups.streams import ProgressFn
from controlplane.dr.drill import DrillOutcome
from controlplane.store import Store


def secrets_config(name: str, backups: BackupsConfig) -> SecretsBackupConfig:
    if name not in backups.components:
        known = ", ".join(sorted(backups.components)) or "none configured"
        raise KeyError(f"no backup component {name!r} (configured: {known})")
    comp: BackupComponentConfig = backups.components[name]
    return SecretsBackupConfig(
        env=comp.env, cluster=comp.cluster, namespaces=comp.namespaces,
        include_service_account_tokens=comp.include_service_account_tokens,
        include_helm_releases=comp.include_helm_releases, recipients=comp.recipients,
        identity_file=comp.identity_file, drill_namespace=comp.drill.namespace,
        timeout=min(comp.timeout, 600.0))  # per Kubernetes API request


class SecretsJob:
    def __init__(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
                 progress: ProgressFn | None) -> None:
        self.job = SecretsBackup(secrets_config(name, backups), store, blob, progress,
                                 component=name)
        self.store = store
        self.backup_id = ""

    def run(self) -> BackupOutcome:
        result = self.job.run()
        self.backup_id = self.job.backup_id
        with self.store.session() as s:
            row = s.get(BackupRow, self.backup_id)
            data = row.to_dict() if row is not None else {}
        return BackupOutcome(self.backup_id, result, data)


class SecretsDrill:
    def __init__(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
                 on_demand: bool) -> None:
        self.name, self.cfg = name, secrets_config(name, backups)
        self.store, self.blob, self.on_demand = store, blob, on_demand
        self.drill_id = 0

    def run(self) -> DrillOutcome:
        # An unset identity_file fails the drill's load step (the key cannot be read).
        result = k8s_secrets.drill(self.cfg, self.store, self.blob, self.cfg.identity_file or "",
                                   self.on_demand, component=self.name)
        self.drill_id = int(result.details["drill_id"])
        return DrillOutcome(self.drill_id, result)


class KubernetesSecretsKind(BackupKind):
    kind = "kubernetes-secrets"
    drill_steps = ("load", "restore", "compare", "cleanup")

    def summary(self, manifest: dict[str, Any]) -> str:
        return k8s_secrets.summary(manifest)

    def job(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
            progress: ProgressFn | None = None) -> BackupJobLike:
        return SecretsJob(name, backups, store, blob, progress)

    def drill(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
              progress: ProgressFn | None = None, on_demand: bool = False) -> DrillLike:
        return SecretsDrill(name, backups, store, blob, on_demand)

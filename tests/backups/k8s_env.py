"""A kubernetes-secrets backup environment on the test-bed cluster and Azurite: a source
namespace the product may read, and deploy/rbac's drill role (scratch namespaces
controlplane-drill-*, held to that prefix by its admission policy)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controlplane.backups.blob import BlobStore, open_blob_store
from controlplane.backups.config import BackupsConfig, BlobConfig, DrConfig
from controlplane.dr.component import BackupOps
from controlplane.k8s.testbed import KubeCluster
from controlplane.metrics import Metrics
from controlplane.pipeline import Pipeline
from controlplane.store import Store
from tests.backups.conftest import AgeKey
from tests.k8s.objects import Admin, secret
from tests.services.azurite import Azurite
from tests.services.kube import enable_drills, grant, new_namespace, product_connection

COMPONENT = "kubernetes-secrets"


@dataclass
class SecretsEnv:
    ops: BackupOps
    store: Store
    blob: BlobStore
    store_dsn: str
    component: dict[str, Any]
    blob_cfg: BlobConfig
    tmp: Path
    source: str

    def config_file(self) -> str:
        """The same setup as a config file for the CLI (the platform's DR defaults on)."""
        conn = self.blob_cfg.connection_string
        assert conn is not None
        doc = {"environments": {"production": {"label": "Production"}},
               "store": {"dsn": self.store_dsn}, "check_files": [],
               "blob": {"backend": "azure", "container": self.blob_cfg.container,
                        "connection_string": conn.get_secret_value()},
               "backups": {"components": {COMPONENT: self.component}}}
        path = self.tmp / "controlplane.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)


def make_secrets_env(tmp: Path, key: AgeKey, azurite: Azurite, cluster: KubeCluster,
                     stores: list[Store] | None = None, **extra: Any) -> SecretsEnv:
    source = new_namespace(cluster, "prod")
    grant(cluster, source, "controlplane-secrets-read")
    enable_drills(cluster)
    Admin(cluster).apply(source,
                         secret("voice360-env", {"DATABASE_URL": "postgresql://a:pw-7@db/a",
                                                 "TWILIO_TOKEN": "tw-42"}),
                         secret("halo-task-manager-api-env", {"JWT_KEY": "k-1"}))
    conn = product_connection(cluster)
    component: dict[str, Any] = {
        "kind": "kubernetes-secrets",
        "cluster": {"api_server": conn.api_server, "token_file": conn.token_file,
                    "ca_file": conn.ca_file},
        "namespaces": [source], "recipients": [key.recipient], "identity_file": key.path,
        **extra}
    blob_cfg = BlobConfig(backend="azure", connection_string=azurite.connection_string,
                          container=f"s{uuid.uuid4().hex[:12]}")
    backups = BackupsConfig.model_validate({"components": {COMPONENT: component}})
    store_dsn = f"sqlite:///{tmp / 'cp.db'}"
    store = Store(store_dsn)
    if stores is not None:
        stores.append(store)
    blob = open_blob_store(blob_cfg)
    ops = BackupOps(backups, DrConfig(), store, blob, Pipeline(store, Metrics()))
    return SecretsEnv(ops, store, blob, store_dsn, component, blob_cfg, tmp, source)

"""A kafka-metadata backup environment on real Kafka fixtures and Azurite (tests of
backups and of DR drills share it)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.backups import catalog, kafka_admin
from controlplane.backups.blob import BlobStore, open_blob_store
from controlplane.backups.config import BackupsConfig, BlobConfig, DrConfig
from controlplane.backups.crypto import decrypt_stream
from controlplane.dr.component import BackupOps
from controlplane.metrics import Metrics
from controlplane.pipeline import Pipeline
from controlplane.results import Status
from controlplane.store import Store
from tests.backups.conftest import AgeKey
from tests.services.azurite import Azurite
from tests.services.kafka import KafkaCluster

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="kafka-s3cret-pw";')
COMPONENT = "kafka-metadata"


@dataclass
class KafkaEnv:
    ops: BackupOps
    store: Store
    blob: BlobStore
    blob_cfg: BlobConfig
    key: AgeKey
    store_dsn: str
    tmp: Path
    topic: str
    group: str

    def backup(self) -> tuple[str, dict[str, Any]]:
        result = self.ops.run_backup(COMPONENT)
        assert result.status == Status.OK, result.message
        with self.store.session() as s:
            row = catalog.backups(s, COMPONENT)[0]
            return row.id, dict(row.manifest)

    def decrypted(self, manifest: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        decrypt_stream(io.BytesIO(self.blob.get_bytes(manifest["blob"])), out,  # type: ignore[arg-type]
                       [self.key.identity])
        return out.getvalue()

    def config_file(self, source: str, drill_target: str | None = None) -> str:
        doc = {"environments": {"production": {"label": "Production"}},
               "store": {"dsn": self.store_dsn}, "check_files": [],
               "blob": {"backend": "azure", "container": self.blob_cfg.container,
                        "connection_string":
                            self.blob_cfg.connection_string.get_secret_value()  # type: ignore[union-attr]
                        },
               "backups": {"components": {COMPONENT: {
                   "kind": "kafka-metadata", "bootstrap": source,
                   "recipients": [self.key.recipient], "identity_file": self.key.path,
                   "drill": {"bootstrap": drill_target} if drill_target else {}}}},
               "dr": {"defaults": False, "components": {"kafka": {
                   "rto": 3600, "rpo": 86400, "backup_component": COMPONENT}}}}
        path = self.tmp / "controlplane.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)


def make_kafka_env(tmp: Path, key: AgeKey, azurite: Azurite, source: KafkaCluster,
                   target: str | None = None, stores: list[Store] | None = None,
                   retention: dict[str, Any] | None = None,
                   drill_timeout: float = 300,
                   component: dict[str, Any] | None = None) -> KafkaEnv:
    """``component``: more (or other) fields of the component (TLS/SASL settings)."""
    blob_cfg = BlobConfig(backend="azure", connection_string=azurite.connection_string,
                          container=f"k{uuid.uuid4().hex[:12]}")
    backups = BackupsConfig.model_validate({"components": {COMPONENT: {
        "kind": "kafka-metadata", "bootstrap": source.bootstrap, "recipients": [key.recipient],
        "identity_file": key.path, "drill": {"bootstrap": target, "timeout": drill_timeout},
        "retention": retention or {}, **(component or {})}}})
    store_dsn = f"sqlite:///{tmp / 'cp.db'}"
    store = Store(store_dsn)
    if stores is not None:
        stores.append(store)
    dr = DrConfig.model_validate({"defaults": False, "components": {"kafka": {
        "rto": 3600, "rpo": 86400, "backup_component": COMPONENT}}})
    blob = open_blob_store(blob_cfg)
    ops = BackupOps(backups, dr, store, blob, Pipeline(store, Metrics()))
    suffix = uuid.uuid4().hex[:6]
    return KafkaEnv(ops, store, blob, blob_cfg, key, store_dsn, tmp, f"orders-{suffix}",
                    f"billing-{suffix}")


@pytest.fixture
def stores() -> Iterator[list[Store]]:
    out: list[Store] = []
    yield out
    for s in out:
        s.close()


def fill(cluster: KafkaCluster, env: KafkaEnv, replication: int = 1) -> None:
    cluster.create_topic(env.topic, 3, replication, config={"retention.ms": "3600000"})
    cluster.produce(env.topic, {0: 7, 1: 4, 2: 1})
    cluster.commit(env.group, {(env.topic, 0): 5, (env.topic, 1): 4})


def set_broker_secret(cluster: KafkaCluster) -> None:
    ka: Any = kafka_admin._ka()
    admin = cluster.admin()
    res = ka.ConfigResource(ka.ResourceType.BROKER, "1", incremental_configs=[
        ka.ConfigEntry("listener.name.plaintext.plain.sasl.jaas.config", JAAS,
                       incremental_operation=ka.AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(30)

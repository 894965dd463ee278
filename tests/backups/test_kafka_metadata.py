"""kafka-metadata backups and restores on real KRaft clusters, with Azurite as blob storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyrage import x25519

from controlplane.backups import catalog, kafka_admin
from controlplane.results import Status
from controlplane.store import Store
from tests.backups.conftest import AgeKey
from tests.backups.kafka_env import COMPONENT, fill, make_kafka_env, set_broker_secret, stores
from tests.services.azurite import Azurite
from tests.services.common import run_cli
from tests.services.kafka import KafkaCluster

pytestmark = [pytest.mark.kafka, pytest.mark.azurite]
__all__ = ["stores"]


def test_backup_holds_topics_configs_offsets_and_no_secret(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka1: KafkaCluster,
        stores: list[Store]) -> None:
    env = make_kafka_env(tmp_path, age_key, azurite, kafka1, stores=stores)
    fill(kafka1, env)
    set_broker_secret(kafka1)
    backup_id, manifest = env.backup()
    encrypted = env.blob.get_bytes(manifest["blob"])
    assert encrypted.startswith(b"age-encryption.org/v1") and env.topic.encode() not in encrypted
    plain = env.decrypted(manifest)
    doc = json.loads(plain)
    assert doc["topics"][env.topic] == {"partitions": 3, "replication_factor": 1,
                                        "configs": {"retention.ms": "3600000"}}
    assert doc["groups"][env.group] == {f"{env.topic}:0": 5, f"{env.topic}:1": 4}
    assert doc["broker_configs"]["1"]["listener.name.plaintext.plain.sasl.jaas.config"] == \
        "<redacted>"
    assert b"kafka-s3cret-pw" not in plain
    assert doc["acls"] == []  # no ACLs on the fixture cluster
    assert manifest["kind"] == "kafka-metadata" and manifest["message_data"] == \
        "not saved (metadata only)"
    assert env.topic in manifest["unprotected_topics"]
    assert manifest["counts"]["topics"] == len(doc["topics"])
    with env.store.session() as s:
        row = s.get(catalog.BackupRow, backup_id)
        assert row is not None and row.status == catalog.COMPLETE
        assert row.size_bytes == len(encrypted)


def test_restore_into_empty_cluster_matches_topics_configs_and_offsets(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka1: KafkaCluster,
        kafka_disposable: KafkaCluster, stores: list[Store]) -> None:
    env = make_kafka_env(tmp_path, age_key, azurite, kafka1, stores=stores)
    fill(kafka1, env)
    backup_id, manifest = env.backup()
    cfg = env.config_file(kafka1.bootstrap)
    dry = run_cli("restore", "kafka", backup_id, "--bootstrap", kafka_disposable.bootstrap,
                  "--dry-run", "--config", cfg, timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert (f"would create topic {env.topic}: 3 partitions, replication factor 1, configs "
            "retention.ms=3600000\n") in dry.stdout
    assert f"would commit offsets of group {env.group}: {env.topic}:0=5, {env.topic}:1=4\n" \
        in dry.stdout
    assert dry.stdout.endswith(f"dry run: nothing was written to {kafka_disposable.bootstrap}\n")
    assert kafka_disposable.topic_names() == set()
    rest = run_cli("restore", "kafka", backup_id, "--bootstrap", kafka_disposable.bootstrap,
                   "--config", cfg, timeout=300)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert rest.stdout.startswith(f"OK  {backup_id} restored into {kafka_disposable.bootstrap}"
                                  f": {manifest['counts']['topics']} topics")
    got = kafka_admin.isolated(kafka_admin.collect, kafka_disposable.bootstrap, 30.0,
                               timeout=90)
    assert got["topics"][env.topic] == {"partitions": 3, "replication_factor": 1,
                                        "configs": {"retention.ms": "3600000"}}
    assert got["groups"][env.group] == {f"{env.topic}:0": 5, f"{env.topic}:1": 4}
    again = run_cli("restore", "kafka", backup_id, "--bootstrap", kafka_disposable.bootstrap,
                    "--config", cfg, timeout=300)
    assert again.returncode == 1
    assert "restore only into an empty cluster (nothing was written)" in again.stderr


def test_tampered_or_wrong_key_backup_is_refused_before_anything_is_written(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka1: KafkaCluster,
        kafka_disposable: KafkaCluster, stores: list[Store]) -> None:
    env = make_kafka_env(tmp_path, age_key, azurite, kafka1, kafka_disposable.bootstrap,
                         stores=stores)
    fill(kafka1, env)
    backup_id, manifest = env.backup()
    cfg = env.config_file(kafka1.bootstrap)
    other = tmp_path / "other-key.txt"
    other.write_text(f"{x25519.Identity.generate()}\n")
    wrong = run_cli("restore", "kafka", backup_id, "--bootstrap", kafka_disposable.bootstrap,
                    "--identity", str(other), "--config", cfg, timeout=300)
    assert wrong.returncode == 1
    assert wrong.stdout.startswith(f"FAILING  {backup_id}  ")
    assert "does not match any recipient of this backup (wrong key); nothing was restored" \
        in wrong.stdout
    data = bytearray(env.blob.get_bytes(manifest["blob"]))
    data[-40] ^= 0x01
    env.blob.put_bytes(manifest["blob"], bytes(data))
    tampered = run_cli("restore", "kafka", backup_id, "--bootstrap",
                       kafka_disposable.bootstrap, "--config", cfg, timeout=300)
    assert tampered.returncode == 1
    assert f"{manifest['blob']} was modified" in tampered.stdout
    assert tampered.stdout.rstrip().endswith("nothing was restored")
    assert kafka_disposable.topic_names() == set()
    result = env.ops.run_drill(COMPONENT)
    assert result.status == Status.FAILING
    assert "was modified" in result.message and result.details["failed_step"] == "verify"


def test_kafka_backups_are_retained_by_the_shared_rules(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka1: KafkaCluster,
        stores: list[Store]) -> None:
    env = make_kafka_env(tmp_path, age_key, azurite, kafka1, stores=stores,
                         retention={"keep_last": 1, "daily_days": 0, "weekly_weeks": 0})
    first, first_manifest = env.backup()
    second, _ = env.backup()
    with env.store.session() as s:
        rows = {r.id: r.status for r in catalog.backups(s, COMPONENT)}
    assert rows == {first: catalog.PRUNED, second: catalog.COMPLETE}
    assert [b.name for b in env.blob.list(f"{COMPONENT}/")] == sorted(
        [f"{COMPONENT}/production/{second}.dump.age",
         f"{COMPONENT}/production/{second}.manifest.json"])
    assert first_manifest["blob"] == f"{COMPONENT}/production/{first}.dump.age"

"""Kafka drills on real clusters: the recovery drill (restore into an empty cluster) and the
broker drill on the 3-node cluster; both give the DR tracker's ``kafka`` component its RTO."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.backups import catalog
from controlplane.backups.catalog import DrillRow
from controlplane.dr import tracker
from controlplane.results import Status
from controlplane.store import Store
from tests.backups.conftest import AgeKey
from tests.backups.kafka_env import COMPONENT, fill, make_kafka_env, stores
from tests.services.azurite import Azurite
from tests.services.common import run_cli
from tests.services.kafka import KafkaCluster, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.azurite]
__all__ = ["stores"]


def kafka_status(env_store: Store, ops: object) -> tracker.ComponentStatus:
    (cs,) = tracker.evaluate(env_store, ops.dr)  # type: ignore[attr-defined]
    assert cs.component == "kafka"
    return cs


def latest_drill(store: Store) -> DrillRow:
    with store.session() as s:
        row = catalog.drills(s, COMPONENT)[0]
        s.expunge(row)
        return row


def test_recovery_drill_restores_checks_cleans_and_rf1_reads_unprotected(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka1: KafkaCluster,
        kafka_disposable: KafkaCluster, stores: list[Store]) -> None:
    env = make_kafka_env(tmp_path, age_key, azurite, kafka1, kafka_disposable.bootstrap,
                         stores=stores)
    fill(kafka1, env)
    backup_id, manifest = env.backup()
    result = env.ops.run_drill(COMPONENT)
    assert result.status == Status.OK, result.message
    assert [s.name for s in result.steps] == ["pick", "verify", "restore", "check", "clean"]
    assert result.steps[3].message == "topics, configs and committed offsets match the backup"
    wait_until(lambda: {t for t in kafka_disposable.topic_names() if not t.startswith("__")}
               == set(), 60, "restored topics deleted")
    assert result.steps[4].message == "restored topics and groups deleted"
    drill = latest_drill(env.store)
    assert (drill.status, drill.backup_id) == (catalog.PASSED, backup_id)
    cs = kafka_status(env.store, env.ops)
    assert cs.rto_s == drill.duration_s and cs.rto_status == tracker.MET
    assert cs.rpo_s is not None and cs.rpo_status == tracker.MET
    # Every topic of the 1-node cluster has one copy: never "met", whatever RTO and RPO say.
    rf1 = manifest["unprotected_topics"]
    assert env.topic in rf1
    assert (cs.status, cs.status_words) == (tracker.UNPROTECTED, "Unprotected")
    assert cs.reasons == [
        f"message data unprotected: {len(rf1)} topics with replication factor 1 ("
        + ", ".join(rf1[:5]) + (" ..." if len(rf1) > 5 else "")
        + "); losing their broker loses their messages, the metadata backup restores "
          "topics and offsets only"]
    (dr_result,) = env.ops.evaluate_dr()
    assert dr_result.status == Status.DEGRADED
    assert dr_result.message.startswith("kafka: Unprotected")
    assert "message data unprotected" in dr_result.message


def test_broker_drill_times_a_stopped_broker_back_to_healthy_as_the_kafka_rto(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka3: KafkaCluster,
        stores: list[Store]) -> None:
    env = make_kafka_env(tmp_path, age_key, azurite, kafka3, stores=stores)
    fill(kafka3, env, replication=3)
    kafka3.commit(env.group, {(env.topic, 0): 7, (env.topic, 1): 4, (env.topic, 2): 1})
    _, manifest = env.backup()
    assert env.topic not in manifest["unprotected_topics"]
    node = kafka3.nodes[2]
    try:
        result = env.ops.run_broker_drill(COMPONENT, lambda: kafka3.stop_node(node),
                                          lambda: kafka3.start_node(node), down_s=8)
    finally:
        if not node.running:
            kafka3.start_node(node)
        kafka3.wait_ready()
    assert result.status == Status.OK, result.message
    assert [s.name for s in result.steps] == ["baseline", "stop-broker", "start-broker",
                                              "wait-healthy"]
    assert result.steps[3].message.startswith("under-replicated 0, lag {")
    drill = latest_drill(env.store)
    assert drill.status == catalog.PASSED and drill.restore_s is not None
    assert 8 < drill.restore_s <= drill.duration_s  # type: ignore[operator]
    cs = kafka_status(env.store, env.ops)
    assert cs.rto_s == drill.duration_s and cs.rto_status == tracker.MET


def test_broker_drill_fails_when_the_broker_stays_down_and_the_rto_reads_breached(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka3: KafkaCluster,
        stores: list[Store]) -> None:
    env = make_kafka_env(tmp_path, age_key, azurite, kafka3, stores=stores, drill_timeout=15)
    fill(kafka3, env, replication=3)
    node = kafka3.nodes[1]
    try:
        result = env.ops.run_broker_drill(COMPONENT, lambda: kafka3.stop_node(node),
                                          lambda: None, down_s=1)
    finally:
        if not node.running:
            kafka3.start_node(node)
        kafka3.wait_ready()
    assert result.status == Status.FAILING
    assert result.details["failed_step"] == "wait-healthy"
    assert "cluster not healthy within 15s: under-replicated " in result.message
    cs = kafka_status(env.store, env.ops)
    assert cs.rto_status == tracker.BREACHED
    assert cs.reasons[0].startswith("latest drill failed at wait-healthy: cluster not healthy")
    wait_until(lambda: env.ops.run_broker_drill(COMPONENT, lambda: None, lambda: None,
                                                down_s=0).status == Status.OK,
               120, "the cluster healthy again after the broker came back", interval=2)


def test_cli_drill_run_kafka_metadata_restores_into_the_drill_cluster(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka1: KafkaCluster,
        kafka_disposable: KafkaCluster, stores: list[Store]) -> None:
    env = make_kafka_env(tmp_path, age_key, azurite, kafka1, stores=stores)
    fill(kafka1, env)
    backup_id, _ = env.backup()
    cfg = env.config_file(kafka1.bootstrap, kafka_disposable.bootstrap)
    run = run_cli("drill", "run", COMPONENT, "--config", cfg, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith(f"OK  drill-{COMPONENT}  drill of {COMPONENT} passed: "
                                 f"{backup_id} restored and verified in ")
    assert str(age_key.identity) not in run.stdout + run.stderr

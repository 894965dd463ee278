"""kafka_cluster against real 1-node and 3-node KRaft clusters."""

from __future__ import annotations

import json
import time

from controlplane.metrics import Metrics
from controlplane.probes.kafka_cluster import (
    KafkaClusterConfig,
    KafkaClusterProbe,
    TopicPolicy,
)
from controlplane.results import Status
from tests.services.common import free_port, run_cli
from tests.services.kafka import KafkaCluster, wait_until


def probe(bootstrap: str, topics: list[TopicPolicy], **kw: object) -> KafkaClusterProbe:
    cfg = KafkaClusterConfig.model_validate(
        {"id": "kc", "kind": "kafka_cluster", "bootstrap": bootstrap, "timeout": 20,
         "topics": topics, **kw})
    return KafkaClusterProbe(cfg)


def test_single_broker_reports_no_replication_and_policy_gaps(kafka1: KafkaCluster) -> None:
    kafka1.create_topic("solo.calls", 2)
    result = probe(kafka1.bootstrap, [TopicPolicy(name="solo.calls")],
                   expect_brokers=1).execute()
    assert result.status is Status.DEGRADED
    assert result.message == (
        "single broker, no replication: losing broker 1 loses every partition; "
        "topic solo.calls replication factor 1 < 3; topic solo.calls min.insync.replicas 1 < 2")
    assert [f["code"] for f in result.details["findings"]] == [
        "single_broker", "replication_factor", "min_insync_replicas"]
    assert result.details["topics"]["solo.calls"] == {
        "exists": True, "partitions": 2, "replication_factor": 1, "min_insync_replicas": 1}


def test_policy_met_on_single_broker_still_reports_the_single_broker(
        kafka1: KafkaCluster) -> None:
    result = probe(kafka1.bootstrap, [TopicPolicy(name="solo.calls", min_replication_factor=1,
                                                  min_insync_replicas=1)]).execute()
    assert result.status is Status.DEGRADED
    assert result.message == ("single broker, no replication: losing broker 1 loses every "
                              "partition")


def test_missing_policy_topic_fails(kafka1: KafkaCluster) -> None:
    result = probe(kafka1.bootstrap, [TopicPolicy(name="no.such.topic")],
                   single_broker_status="degraded").execute()
    assert result.status is Status.FAILING
    assert "topic no.such.topic does not exist (deleted?)" in result.message


def test_new_dlq_messages_degrade_and_many_fail(kafka1: KafkaCluster) -> None:
    kafka1.create_topic("solo.calls.dlq", 2)
    p = probe(kafka1.bootstrap, [TopicPolicy(name="solo.calls.dlq", dlq=True,
                                             min_replication_factor=1, min_insync_replicas=1)],
              dlq_growth_crit=10)
    first = p.execute()
    assert first.details["dlq"] == {"solo.calls.dlq": {"messages": 0, "new": None}}
    kafka1.produce("solo.calls.dlq", {0: 2, 1: 1})
    second = p.execute()
    assert second.status is Status.DEGRADED
    assert second.message.endswith("; DLQ solo.calls.dlq +3 messages since the last run")
    kafka1.produce("solo.calls.dlq", {0: 11})
    third = p.execute()
    assert third.status is Status.FAILING
    assert third.message.endswith("; DLQ solo.calls.dlq +11 messages since the last run (> 10)")
    assert third.metrics["dlq_new_messages"] == 11
    assert p.execute().status is Status.DEGRADED  # no growth: only the single-broker risk


def test_three_brokers_one_stopped_fails_then_recovers(kafka3: KafkaCluster) -> None:
    kafka3.create_topic("ha.calls", 3)
    kafka3.create_topic("ha.solo", 1, assignment=[[3]])  # one replica, on the broker we stop
    # ha.solo is also watched as a DLQ: its offsets become unreadable with its only broker.
    solo = TopicPolicy(name="ha.solo", min_replication_factor=1, min_insync_replicas=1,
                       dlq=True)
    p = probe(kafka3.bootstrap, [TopicPolicy(name="ha.calls"), solo], expect_brokers=3)
    # Until every broker has the new topic's metadata the first runs may see it as unknown.
    healthy = wait_until(lambda: (r := p.execute()).status is Status.OK and r, 60,
                         "a healthy first run")
    assert healthy.details["brokers"] == [1, 2, 3]
    assert healthy.details["topics"]["ha.calls"] == {
        "exists": True, "partitions": 3, "replication_factor": 3, "min_insync_replicas": 2}

    victim = kafka3.nodes[2]
    kafka3.stop_node(victim)
    result = p.execute()
    if result.status is not Status.FAILING:  # the second run, one short interval later
        time.sleep(5)
        result = p.execute()
    assert result.status is Status.FAILING
    assert result.details["offline"] == ["ha.solo[0]"]
    assert "1 offline partitions (no leader): ha.solo[0]" in result.message
    urp = [tp for tp in result.details["under_replicated"] if tp.startswith("ha.calls")]
    assert urp == ["ha.calls[0]", "ha.calls[1]", "ha.calls[2]"]
    assert "under-replicated partitions: " in result.message
    assert "ha.calls[0,1,2]" in result.message
    # The unreadable DLQ is one more finding; it hides none of the others.
    assert "cannot read the offsets of DLQ ha.solo[0]: " in result.message
    assert result.details["dlq"]["ha.solo"] == {"messages": None, "new": None}
    m = Metrics()
    KafkaClusterProbe.export_metrics(result, m)
    assert m.registry.get_sample_value("controlplane_kafka_under_replicated_partitions",
                                       {"cluster": "kc"}) == len(result.details["under_replicated"])

    # The controller fences the stopped broker once its session times out.
    gone = f"2 of 3 brokers online (offline: broker 3 127.0.0.1:{victim.port})"
    wait_until(lambda: p.execute().message.startswith(gone), 120, "broker 3 reported offline",
               interval=2)

    kafka3.restart_node(victim)
    back = wait_until(lambda: (r := p.execute()).status is Status.OK and r, 180,
                      "the cluster check to return to ok", interval=2)
    assert back.message.startswith("3 brokers, ")
    assert back.metrics["under_replicated_partitions"] == 0
    assert back.metrics["offline_partitions"] == 0


def test_cli_reports_broker_count_as_json(kafka3: KafkaCluster) -> None:
    proc = run_cli("probe", "kafka-cluster", "--bootstrap", kafka3.bootstrap,
                   "--expect-brokers", "4", "--topic", "ha.calls", "--json")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["kind"], out["status"]) == ("kafka_cluster", "failing")
    assert out["message"] == "3 of 4 brokers online"
    assert out["metrics"]["brokers"] == 3


def test_an_unreadable_cluster_drops_its_under_replicated_series(kafka1: KafkaCluster) -> None:
    m = Metrics()
    good = probe(kafka1.bootstrap, [], cluster="main").execute()
    KafkaClusterProbe.export_metrics(good, m)
    get = m.registry.get_sample_value
    assert get("controlplane_kafka_under_replicated_partitions", {"cluster": "main"}) == 0
    down = probe(f"127.0.0.1:{free_port()}", [], cluster="main", timeout=2).execute()
    assert down.status is Status.FAILING
    assert down.details["cluster"] == "main"
    KafkaClusterProbe.export_metrics(down, m)
    assert get("controlplane_kafka_under_replicated_partitions", {"cluster": "main"}) is None


def test_metadata_naming_no_controller_fails() -> None:
    from types import SimpleNamespace

    p = probe("127.0.0.1:9092", [], expect_brokers=3)
    b = {i: SimpleNamespace(id=i, host=f"10.0.0.{i}", port=9092) for i in (1, 2, 3)}
    p._brokers(SimpleNamespace(brokers=b, controller_id=2))  # all seen once
    findings = p._brokers(SimpleNamespace(brokers={1: b[1], 3: b[3]}, controller_id=-1))
    assert [(f.status, f.code, f.message) for f in findings] == [
        (Status.FAILING, "brokers_missing",
         "2 of 3 brokers online (offline: broker 2 10.0.0.2:9092)"),
        (Status.FAILING, "no_controller", "no active controller")]

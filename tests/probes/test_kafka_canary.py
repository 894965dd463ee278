"""kafka_canary against a real 1-node Kafka: a message makes the round trip, or it fails."""

from __future__ import annotations

from confluent_kafka import Producer

from controlplane.probes.kafka_canary import KafkaCanaryConfig, KafkaCanaryProbe
from controlplane.results import Status
from tests.services.kafka import KafkaCluster


def canary(bootstrap: str, **kw: object) -> KafkaCanaryProbe:
    cfg = KafkaCanaryConfig.model_validate(
        {"id": "canary", "kind": "kafka_canary", "bootstrap": bootstrap, "timeout": 20,
         "sla": 10, **kw})
    return KafkaCanaryProbe(cfg)


def test_canary_creates_its_topic_and_round_trips_each_partition(kafka1: KafkaCluster) -> None:
    p = canary(kafka1.bootstrap, topic="canary.rt", partitions=2)
    try:
        first = p.execute()
        second = p.execute()
    finally:
        p.close()
    for result in (first, second):
        assert result.status is Status.OK, result.message
        assert result.metrics["messages"] == 2 and result.metrics["received"] == 2
        assert result.metrics["produce_ack_s"] is not None
        assert result.metrics["roundtrip_s"] is not None
        assert result.metrics["roundtrip_s"] >= result.metrics["produce_ack_s"]
        assert result.message.startswith("2 messages round-tripped through canary.rt: max ack ")
    assert [r["partition"] for r in second.details["partitions"]] == [0, 1]
    assert second.details["leaders"] == {"0": 1, "1": 1}


def test_canary_fails_when_the_message_is_not_back_within_its_sla(
        kafka1: KafkaCluster) -> None:
    # A transaction left open on the partition holds back the last stable offset: the
    # canary's message is acknowledged but no read_committed consumer can see it (a real
    # way consumers stall in production).
    kafka1.create_topic("canary.stuck", 1)
    txn = Producer({"bootstrap.servers": kafka1.bootstrap, "transactional.id": "stuck-txn",
                    "log_level": 0})
    txn.init_transactions(60)
    txn.begin_transaction()
    txn.produce("canary.stuck", b"open", partition=0)
    txn.flush(60)
    p = canary(kafka1.bootstrap, topic="canary.stuck", create_topic=False, sla=2, timeout=10)
    try:
        result = p.execute()
    finally:
        p.close()
        txn.abort_transaction(60)
    assert result.status is Status.FAILING
    assert result.message == ("message to canary.stuck[0] (leader broker 1) not read back "
                              "within 2s")
    assert result.metrics["received"] == 0
    assert result.metrics["produce_ack_s"] is not None


def test_canary_without_topic_and_creation_disabled_fails_clearly(
        kafka1: KafkaCluster) -> None:
    p = canary(kafka1.bootstrap, topic="canary.absent", create_topic=False)
    try:
        result = p.execute()
    finally:
        p.close()
    assert result.status is Status.FAILING
    assert result.message == ("canary topic canary.absent does not exist; create it or set "
                              "create_topic: true")

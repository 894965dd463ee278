"""SASL passwords come from the environment and never reach a result or a log line."""

from __future__ import annotations

import logging

import pytest

from controlplane.probes.base import CheckConfig, ProbeContext
from controlplane.probes.kafka_canary import KafkaCanaryConfig
from controlplane.probes.kafka_cluster import KafkaClusterConfig
from controlplane.probes.kafka_lag import KafkaLagConfig
from controlplane.results import Status
from controlplane.scheduler import CheckRunner
from tests.services.kafka import KafkaCluster

PASSWORD = "s3cret-Kafka-pa55word"
SASL = {"sasl_mechanism": "PLAIN", "sasl_username": "monitor",
        "sasl_password_env": "CP_TEST_KAFKA_SASL_PASSWORD", "timeout": 3}


def sasl_config(index: int, bootstrap: str) -> CheckConfig:
    return [
        KafkaLagConfig(id="s-lag", kind="kafka_lag", bootstrap=bootstrap, **SASL),
        KafkaClusterConfig(id="s-cluster", kind="kafka_cluster", bootstrap=bootstrap,
                           topics=[], **SASL),
        KafkaCanaryConfig(id="s-canary", kind="kafka_canary", bootstrap=bootstrap, sla=2,
                          topic="secrets.canary", **SASL),
    ][index]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["kafka_lag", "kafka_cluster", "kafka_canary"])
def test_rejected_sasl_login_fails_without_showing_the_password(
        index: int, kafka1: KafkaCluster, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # The broker's listener is PLAINTEXT: it refuses the SASL handshake the client starts.
    monkeypatch.setenv("CP_TEST_KAFKA_SASL_PASSWORD", PASSWORD)
    caplog.set_level(logging.DEBUG)
    runner = CheckRunner(sasl_config(index, kafka1.bootstrap), ProbeContext())
    try:
        result = runner.run()
    finally:
        runner.close()
    assert result.status is Status.FAILING, result.message
    assert result.message.startswith(f"cannot reach Kafka at {kafka1.bootstrap}: ")
    # The rest is librdkafka's last error: the failed SASL handshake, or "1/1 brokers are
    # down" when it has already given up on the broker (timing decides which).
    assert PASSWORD not in result.model_dump_json()
    assert PASSWORD not in caplog.text

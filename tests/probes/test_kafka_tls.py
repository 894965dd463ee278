"""Kafka checks over a TLS listener (like the platform's external :9094), real certificates."""

from __future__ import annotations

from pathlib import Path

from controlplane.probes.kafka_cluster import KafkaClusterConfig, KafkaClusterProbe
from controlplane.results import Status
from tests.services.certs import CertFactory
from tests.services.kafka import KafkaCluster


def cluster_probe(k: KafkaCluster, ca_file: Path) -> KafkaClusterProbe:
    return KafkaClusterProbe(KafkaClusterConfig(
        id="tls", kind="kafka_cluster", bootstrap=k.tls_bootstrap, tls=True,
        ca_file=str(ca_file), topics=[], timeout=5))


def test_cluster_check_over_tls_trusting_the_cluster_ca(kafka1: KafkaCluster) -> None:
    assert kafka1.tls is not None
    result = cluster_probe(kafka1, kafka1.tls.ca_file).execute()
    assert result.status is Status.DEGRADED
    assert result.message == ("single broker, no replication: losing broker 1 loses every "
                              "partition")


def test_untrusted_broker_certificate_fails_naming_the_verification_error(
        kafka1: KafkaCluster, tmp_path: Path) -> None:
    other_ca = CertFactory(tmp_path).server(["127.0.0.1"]).ca_file
    result = cluster_probe(kafka1, other_ca).execute()
    assert result.status is Status.FAILING
    assert result.message.startswith(f"cannot reach Kafka at {kafka1.tls_bootstrap}: ")
    assert "certificate verify failed" in result.message

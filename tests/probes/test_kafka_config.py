"""The platform's Kafka checks (checks/kafka.yaml) validate; bad Kafka config is named by line."""

from __future__ import annotations

from pathlib import Path

from controlplane.config import load_config
from controlplane.probes.kafka_canary import KafkaCanaryConfig
from controlplane.probes.kafka_cluster import KafkaClusterConfig
from controlplane.probes.kafka_lag import KafkaLagConfig
from tests.services.common import ROOT, run_cli


def test_platform_config_with_kafka_checks_validates() -> None:
    proc = run_cli("validate", "--config", str(ROOT / "controlplane.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kafka_checks_cover_both_listeners_topics_and_dlqs() -> None:
    cfg = load_config(str(ROOT / "controlplane.yaml"))
    kafka = {c.id: c for c in cfg.checks if c.kind.startswith("kafka_")}
    # kafka-external-production is the kafka_tls check of the external listener (data tier).
    assert sorted(kafka) == ["kafka-canary-production", "kafka-cluster-external-production",
                             "kafka-cluster-production", "kafka-external-production",
                             "kafka-lag-production"]
    internal = kafka["kafka-cluster-production"]
    external = kafka["kafka-cluster-external-production"]
    assert isinstance(internal, KafkaClusterConfig) and isinstance(external, KafkaClusterConfig)
    assert (internal.bootstrap, internal.tls) == ("kafka.kafka.svc:9092", False)
    assert (external.bootstrap, external.tls) == ("kafka-prod-new.techhalo.ai:9094", True)
    assert [(t.name, t.dlq) for t in internal.topics] == [
        ("turn_resolution.v1", False), ("call_trace.v1", False),
        ("turn_resolution.v1.dlq", True), ("call_trace.v1.dlq", True)]
    lag = kafka["kafka-lag-production"]
    assert isinstance(lag, KafkaLagConfig)
    assert lag.topics == ["turn_resolution.v1", "call_trace.v1", "turn_resolution.v1.dlq",
                          "call_trace.v1.dlq"]
    assert (lag.lag_seconds_warn, lag.lag_seconds_crit) == (60.0, 300.0)
    assert isinstance(kafka["kafka-canary-production"], KafkaCanaryConfig)


def test_bad_kafka_settings_are_reported_with_file_and_line(tmp_path: Path) -> None:
    main = tmp_path / "controlplane.yaml"
    main.write_text(
        "environments:\n  dev: {}\ncheck_files: []\nchecks:\n"
        "  - id: lag\n    kind: kafka_lag\n    bootstrap: localhost:9092\n"
        "    group_patterns: [\"(\"]\n"
        "  - id: canary\n    kind: kafka_canary\n    bootstrap: localhost\n")
    proc = run_cli("validate", "--config", str(main))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() + proc.stderr.splitlines() == [
        f"{main}:8: checks.0.group_patterns: '(' is not a valid regular expression: "
        "missing ), unterminated subpattern at position 0",
        f"{main}:11: checks.1.bootstrap: bootstrap entry 'localhost' must be host:port, "
        "e.g. kafka.kafka.svc:9092"]

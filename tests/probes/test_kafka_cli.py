"""`controlplane probe kafka-lag|kafka-cluster` exit codes (DESIGN.md §4): 0 ok or degraded,
1 failing, 2 bad input."""

from __future__ import annotations

import json

from tests.services.common import free_port, run_cli
from tests.services.kafka import KafkaCluster


def test_single_broker_is_degraded_and_exits_zero(kafka1: KafkaCluster) -> None:
    kafka1.create_topic("cli.t", 1)
    proc = run_cli("probe", "kafka-cluster", "--bootstrap", kafka1.bootstrap,
                   "--expect-brokers", "1", "--topic", "cli.t", "--min-replication-factor",
                   "1", "--min-insync-replicas", "1", "--json")
    out = json.loads(proc.stdout)
    assert (proc.returncode, out["status"]) == (0, "degraded"), proc.stdout + proc.stderr
    assert out["message"] == ("single broker, no replication: losing broker 1 loses every "
                              "partition")


def test_unreachable_bootstrap_exits_one_with_a_failing_result() -> None:
    address = f"127.0.0.1:{free_port()}"
    proc = run_cli("probe", "kafka-lag", "--bootstrap", address, "--group", "g",
                   "--timeout", "2s", "--json")
    out = json.loads(proc.stdout)
    assert (proc.returncode, out["kind"], out["status"]) == (1, "kafka_lag", "failing")
    assert out["message"].startswith(f"cannot reach Kafka at {address}: ")


def test_bad_bootstrap_exits_two_saying_what_to_write() -> None:
    proc = run_cli("probe", "kafka-lag", "--bootstrap", "localhost", "--json")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("controlplane: bootstrap: bootstrap entry 'localhost' must "
                                   "be host:port, e.g. kafka.kafka.svc:9092")


def test_missing_bootstrap_exits_two() -> None:
    proc = run_cli("probe", "kafka-cluster", "--json")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == ("controlplane probe kafka-cluster: error: the "
                                            "following arguments are required: --bootstrap")


def test_the_client_process_logs_like_its_parent() -> None:
    address = f"127.0.0.1:{free_port()}"
    proc = run_cli("--log-level", "DEBUG", "probe", "kafka-cluster", "--bootstrap", address,
                   "--timeout", "2s", "--json")
    assert proc.returncode == 1, proc.stderr
    # librdkafka's own lines are logged in the child, at DEBUG, in the parent's format.
    child_lines = [line for line in proc.stderr.splitlines()
                   if "logger=controlplane.kafka.rdkafka" in line]
    assert child_lines, proc.stderr
    assert all(line.startswith("ts=") and " level=DEBUG " in line for line in child_lines)

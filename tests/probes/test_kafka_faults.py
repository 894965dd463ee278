"""Faults: unreachable bootstrap, brokers killed while checks run, groups and topics deleted.

Each gives a clear failing result within the check's timeout (run through the scheduler's
CheckRunner, which records a probe that overstays its timeout as an `error`), and the
scheduler keeps going.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

from controlplane.probes.base import CheckConfig, ProbeContext
from controlplane.probes.kafka_canary import KafkaCanaryConfig
from controlplane.probes.kafka_cluster import KafkaClusterConfig, TopicPolicy
from controlplane.probes.kafka_lag import KafkaLagConfig
from controlplane.results import Result, Status
from controlplane.scheduler import CheckRunner, CheckScheduler
from tests.services.common import free_port
from tests.services.kafka import KafkaCluster, wait_until


def configs(bootstrap: str, timeout: float = 4) -> list[CheckConfig]:
    common: dict[str, Any] = {"bootstrap": bootstrap, "timeout": timeout, "interval": 1}
    return [
        KafkaLagConfig(id="f-lag", kind="kafka_lag", **common),
        KafkaClusterConfig(id="f-cluster", kind="kafka_cluster", topics=[], **common),
        KafkaCanaryConfig(id="f-canary", kind="kafka_canary", topic="faults.canary", sla=2,
                          **common),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["kafka_lag", "kafka_cluster", "kafka_canary"])
def test_unreachable_bootstrap_fails_within_the_timeout(index: int) -> None:
    address = f"127.0.0.1:{free_port()}"
    runner = CheckRunner(configs(address, timeout=3)[index], ProbeContext())
    try:
        result = runner.run()
    finally:
        runner.close()
    assert result.status is Status.FAILING
    assert result.message.startswith(f"cannot reach Kafka at {address}: ")
    assert result.message.endswith("; check the address and port, the TLS settings and that "
                                   "the brokers are running")


def test_killing_every_broker_while_checks_run_fails_them_and_the_scheduler_goes_on(
        kafka_disposable: KafkaCluster) -> None:
    kafka_disposable.create_topic("kill.t", 1)
    kafka_disposable.commit("faults-g", {("kill.t", 0): 0})
    results: list[Result] = []
    lock = threading.Lock()

    def sink(result: Result, check: CheckConfig) -> None:
        with lock:
            results.append(result)

    def latest(check: str) -> list[Result]:
        with lock:
            return [r for r in results if r.check == check]

    sched = CheckScheduler(configs(kafka_disposable.bootstrap), sink, ProbeContext(), jitter=0)
    sched.start()
    try:
        for check in ("f-lag", "f-cluster", "f-canary"):
            wait_until(lambda c=check: any(r.status is not Status.ERROR  # type: ignore[misc]
                                           for r in latest(c)), 90, f"{check} ran")
        for node in kafka_disposable.nodes:
            kafka_disposable.stop_node(node, signal.SIGKILL)
        down = f"cannot reach Kafka at {kafka_disposable.bootstrap}: "
        for check in ("f-lag", "f-cluster", "f-canary"):
            # A run caught half-way may fail on its own terms first (a canary message not
            # back, a group's offsets timing out); then every run says the cluster is down.
            wait_until(lambda c=check: [r for r in latest(c)  # type: ignore[misc]
                                        if r.status is Status.FAILING
                                        and r.message.startswith(down)], 60,
                       f"{check} failing with 'cannot reach Kafka'")
        # All three at once (they run concurrently): each goes on with yet another run.
        seen = {check: len(latest(check)) for check in ("f-lag", "f-cluster", "f-canary")}
        wait_until(lambda: all(len(latest(c)) > n for c, n in seen.items()), 60,
                   "every check keeps running")
        with lock:
            assert not [r.message for r in results if r.status is Status.ERROR]
    finally:
        sched.shutdown(grace_period=10)


def test_group_deleted_between_runs_fails_naming_it(kafka1: KafkaCluster) -> None:
    kafka1.create_topic("faults.g", 1)
    kafka1.produce("faults.g", {0: 3})
    kafka1.commit("doomed-g", {("faults.g", 0): 1})
    # Through the scheduler's runner: a run past the check's timeout would be an `error`.
    p = CheckRunner(KafkaLagConfig(id="l", kind="kafka_lag", bootstrap=kafka1.bootstrap,
                                   groups=["doomed-g"], timeout=20), ProbeContext())
    assert p.run().status is Status.OK
    kafka1.delete_group("doomed-g")
    result = p.run()
    p.close()
    assert result.status is Status.FAILING
    assert result.message == "group doomed-g does not exist (deleted?)"
    assert result.details["groups"]["doomed-g"]["status"] == "ERROR"


def test_topic_deleted_between_runs_fails_naming_it(kafka1: KafkaCluster) -> None:
    kafka1.create_topic("faults.t", 2)
    kafka1.produce("faults.t", {0: 4, 1: 4})
    kafka1.commit("faults-t-g", {("faults.t", 0): 4, ("faults.t", 1): 2})
    lag = CheckRunner(KafkaLagConfig(id="l", kind="kafka_lag", bootstrap=kafka1.bootstrap,
                                     groups=["faults-t-g"], topics=["faults.t"], timeout=20),
                      ProbeContext())
    cluster = CheckRunner(KafkaClusterConfig(
        id="c", kind="kafka_cluster", bootstrap=kafka1.bootstrap, timeout=20,
        topics=[TopicPolicy(name="faults.t", min_replication_factor=1,
                            min_insync_replicas=1)]), ProbeContext())
    assert lag.run().status is Status.OK
    assert cluster.run().status is Status.DEGRADED  # the single broker, nothing else
    kafka1.delete_topic("faults.t")
    wait_until(lambda: "faults.t" not in kafka1.topic_names(), 60,
               "topic gone from metadata")
    result = lag.run()
    lag.close()
    assert result.status is Status.FAILING
    assert result.message.startswith("topic faults.t does not exist (deleted?)")
    c = cluster.run()
    cluster.close()
    assert c.status is Status.FAILING
    assert "topic faults.t does not exist (deleted?)" in c.message

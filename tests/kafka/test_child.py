"""kafka_cluster and kafka_canary run whole in a child process, like the lag check's reads:
a librdkafka abort (confluentinc/librdkafka#4605) fails that run, says why, and the next run
starts a new child."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from controlplane.kafka.child import ChildClient, HostedProbe, ProbeInChild
from controlplane.kafka.client import KafkaUnavailable
from controlplane.probes.base import Probe, ProbeContext
from controlplane.probes.kafka_canary import KafkaCanaryConfig, KafkaCanaryProbe
from controlplane.probes.kafka_cluster import KafkaClusterConfig, KafkaClusterProbe, TopicPolicy
from controlplane.results import Result, Status
from controlplane.scheduler import CheckRunner
from tests.services.common import free_port
from tests.services.kafka import KafkaCluster, wait_until

KINDS = {
    "kafka_cluster": ("inspecting the cluster at",
                      lambda **kw: KafkaClusterProbe(KafkaClusterConfig(
                          kind="kafka_cluster", topics=[], **kw))),
    "kafka_canary": ("sending a canary message through",
                     lambda **kw: KafkaCanaryProbe(KafkaCanaryConfig(
                         kind="kafka_canary", topic="child.canary", sla=2, **kw))),
}


def child_of(probe: Probe[Any]) -> ProbeInChild:
    child = getattr(probe, "child", None)
    assert isinstance(child, ProbeInChild), "the check runs in-process"
    return child


@pytest.mark.parametrize("kind", list(KINDS))
def test_client_process_dying_mid_run_fails_the_run_and_says_why(kind: str) -> None:
    doing, make = KINDS[kind]
    address = f"127.0.0.1:{free_port()}"  # nothing listens: the child waits out its timeout
    probe = make(id=f"child-abort-{kind}", bootstrap=address, timeout=20)
    box: list[Result] = []
    worker = threading.Thread(target=lambda: box.append(probe.execute()))
    try:
        worker.start()
        child = child_of(probe)
        wait_until(lambda: child.conn is not None, 30, "child ready")
        time.sleep(0.5)  # the run is now in the child's hands
        assert child.proc is not None
        os.kill(child.proc.pid, signal.SIGABRT)  # what librdkafka's assertion does
        worker.join(30)
        (result,) = box
        assert result.status is Status.FAILING
        assert result.message == (
            f"the Kafka client process died (killed by SIGABRT) while {doing} {address}; "
            "librdkafka aborts when a broker drops a request mid-flight "
            "(confluentinc/librdkafka#4605); a new one starts on the next run")
    finally:
        worker.join(30)
        probe.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_client_process_killed_between_runs_is_replaced(kafka1: KafkaCluster,
                                                        kind: str) -> None:
    _, make = KINDS[kind]
    probe = make(id=f"child-kill-{kind}", bootstrap=kafka1.bootstrap, timeout=20)
    try:
        first = probe.execute()
        assert first.status is not Status.FAILING, first.message
        child = child_of(probe)
        assert child.proc is not None
        pid = child.proc.pid
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not child.proc.is_alive(), 30, "child gone")  # type: ignore
        again = probe.execute()
        assert again.status is first.status, again.message
        assert child.proc.pid != pid
    finally:
        probe.close()
    assert child.proc is None  # close() stops the child


def test_in_process_when_isolation_is_off(kafka1: KafkaCluster) -> None:
    probe = KafkaClusterProbe(KafkaClusterConfig(
        id="child-off", kind="kafka_cluster", topics=[], bootstrap=kafka1.bootstrap,
        isolate_client=False))
    try:
        assert probe.child is None
        assert probe.execute().status is Status.DEGRADED  # one broker, no replication
    finally:
        probe.close()


def test_what_the_cluster_check_keeps_between_runs_survives_a_new_child(
        kafka1: KafkaCluster) -> None:
    kafka1.create_topic("child.calls.dlq", 1)
    probe = KafkaClusterProbe(KafkaClusterConfig(
        id="child-state", kind="kafka_cluster", bootstrap=kafka1.bootstrap, timeout=20,
        topics=[TopicPolicy(name="child.calls.dlq", dlq=True, min_replication_factor=1,
                            min_insync_replicas=1)]))
    try:
        assert probe.execute().details["dlq"] == {
            "child.calls.dlq": {"messages": 0, "new": None}}
        child = child_of(probe)
        assert child.proc is not None
        os.kill(child.proc.pid, signal.SIGKILL)
        wait_until(lambda: not child.proc.is_alive(), 30, "child gone")  # type: ignore
        kafka1.produce("child.calls.dlq", {0: 4})
        after = probe.execute()
    finally:
        probe.close()
    assert after.details["dlq"] == {"child.calls.dlq": {"messages": 4, "new": 4}}
    assert after.message.endswith("; DLQ child.calls.dlq +4 messages since the last run")


def test_a_stuck_client_process_fails_the_run_within_its_timeout_and_is_replaced(
        kafka1: KafkaCluster) -> None:
    cfg = KafkaClusterConfig(id="child-stuck", kind="kafka_cluster", topics=[],
                             bootstrap=kafka1.bootstrap, timeout=3)
    runner = CheckRunner(cfg, ProbeContext())
    try:
        assert runner.run().status is Status.DEGRADED  # one broker
        assert isinstance(runner.probe, KafkaClusterProbe)
        child = child_of(runner.probe)
        assert child.proc is not None
        stuck = child.proc.pid
        os.kill(stuck, signal.SIGSTOP)  # alive, never answers
        result = runner.run()  # through the scheduler's runner: overstaying is an `error`
        assert result.status is Status.FAILING
        assert result.message == (
            f"cannot reach Kafka at {kafka1.bootstrap}: no answer within the check's "
            "timeout (the client process was stopped and restarts on the next run); check "
            "the address and port, the TLS settings and that the brokers are running")
        wait_until(lambda: not os.path.exists(f"/proc/{stuck}"), 30, "stuck child killed")
        again = runner.run()
        assert again.status is Status.DEGRADED, again.message
        assert child.proc is not None and child.proc.pid != stuck
    finally:
        runner.close()


def test_start_up_counts_against_the_timeout_and_a_slow_start_serves_the_next_run(
        kafka1: KafkaCluster) -> None:
    cfg = KafkaClusterConfig(id="child-slow-start", kind="kafka_cluster", topics=[],
                             bootstrap=kafka1.bootstrap, timeout=20)
    client = ChildClient(cfg, HostedProbe)
    try:
        with pytest.raises(KafkaUnavailable) as info:
            client.call("check", (None,), 0.001)  # no check fits in a millisecond
        # Still starting, or (a warm fork server is quick) ready with no time left to check.
        assert str(info.value) in (
            "the Kafka client process was still starting when the check's timeout ran out; "
            "it goes on for the next run",
            "the Kafka client process took the check's timeout to start; it is ready for "
            "the next run")
        assert client.proc is not None
        pid = client.proc.pid
        outcome, state = client.call("check", (None,), 20)
        assert outcome.status is Status.DEGRADED
        assert list(state) == ["seen_brokers", "dlq_offsets"]
        assert client.proc.pid == pid  # the same child, not a second one
    finally:
        client.close()

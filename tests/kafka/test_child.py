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

from controlplane.kafka.child import ProbeInChild
from controlplane.probes.base import Probe
from controlplane.probes.kafka_canary import KafkaCanaryConfig, KafkaCanaryProbe
from controlplane.probes.kafka_cluster import KafkaClusterConfig, KafkaClusterProbe
from controlplane.results import Result, Status
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

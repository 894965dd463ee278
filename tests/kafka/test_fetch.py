"""The lag check's reads run in a child process, so a librdkafka abort cannot take the
scheduler down (confluentinc/librdkafka#4605); a dead child is reported and replaced."""

from __future__ import annotations

import os
import signal
import threading
import time

from controlplane.kafka.fetch import IsolatedClient
from controlplane.probes.kafka_lag import KafkaLagConfig, KafkaLagProbe
from controlplane.results import Result, Status
from tests.services.common import free_port
from tests.services.kafka import KafkaCluster, wait_until


def test_client_process_killed_between_runs_is_replaced(kafka1: KafkaCluster) -> None:
    kafka1.create_topic("fetch.t", 1)
    kafka1.commit("fetch-g", {("fetch.t", 0): 0})
    p = KafkaLagProbe(KafkaLagConfig(id="fetch", kind="kafka_lag", bootstrap=kafka1.bootstrap,
                                     groups=["fetch-g"], timeout=20))
    try:
        assert p.execute().status is Status.OK
        client = p.client()
        assert client.proc is not None  # type: ignore[union-attr]
        first = client.proc.pid  # type: ignore[union-attr]
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not client.proc.is_alive(), 30, "child gone")  # type: ignore
        again = p.execute()
        assert again.status is Status.OK, again.message
        assert client.proc.pid != first  # type: ignore[union-attr]
    finally:
        p.close()


def test_client_process_dying_mid_run_fails_the_run_and_says_why() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens: the child waits out its timeout
    p = KafkaLagProbe(KafkaLagConfig(id="fetch-abort", kind="kafka_lag", bootstrap=address,
                                     timeout=20))
    box: list[Result] = []
    worker = threading.Thread(target=lambda: box.append(p.execute()))
    try:
        worker.start()
        client = wait_until(lambda: p._client, 30, "client created")
        wait_until(lambda: client.conn is not None, 30, "child ready")
        time.sleep(0.5)  # the request is now in the child's hands
        os.kill(client.proc.pid, signal.SIGABRT)  # what librdkafka's assertion does
        worker.join(30)
        (result,) = box
        assert result.status is Status.FAILING
        assert result.message == (
            f"the Kafka client process died (killed by SIGABRT) while reading offsets from "
            f"{address}; librdkafka aborts when a broker drops a request mid-flight "
            "(confluentinc/librdkafka#4605); a new one starts on the next run")
    finally:
        worker.join(30)
        p.close()


def test_scheduler_shutdown_stops_the_client_process() -> None:
    from controlplane.probes.base import ProbeContext
    from controlplane.scheduler import CheckScheduler

    address = f"127.0.0.1:{free_port()}"
    results: list[Result] = []
    cfg = KafkaLagConfig(id="fetch-shutdown", kind="kafka_lag", bootstrap=address, timeout=2,
                         interval=1)
    sched = CheckScheduler([cfg], lambda r, c: results.append(r), ProbeContext(), jitter=0)
    sched.start()
    try:
        wait_until(lambda: results, 60, "a first run")
        probe = sched.runners["fetch-shutdown"].probe
        assert isinstance(probe, KafkaLagProbe)
        client = probe.client()
        assert isinstance(client, IsolatedClient)
        # A run that overstays replaces its child; wait for one that is alive.
        pid = wait_until(lambda: client.proc is not None and client.proc.is_alive()
                         and client.proc.pid, 60, "a live client process")
    finally:
        sched.shutdown(grace_period=10)
    assert results[0].status is Status.FAILING
    assert client.proc is None
    # The fork server reaps its children: the pid is gone, not a zombie.
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 30, "client process gone")

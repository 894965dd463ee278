"""kafka_lag on a 3-node cluster with a broker that hangs without closing its connections
(SIGSTOP: a frozen VM): runs go on reading from the live brokers."""

from __future__ import annotations

import os
import signal

from controlplane.probes.base import ProbeContext
from controlplane.probes.kafka_lag import KafkaLagConfig
from controlplane.results import Status
from controlplane.scheduler import CheckRunner
from tests.services.kafka import KafkaCluster


def test_hung_broker_does_not_stop_named_groups_being_read(kafka3: KafkaCluster) -> None:
    coordinator = kafka3.coordinator_of("laghang-g")
    victim = next(n for n in kafka3.nodes if n.node_id != coordinator)
    kafka3.create_topic("laghang.t", 1, assignment=[[coordinator]])
    kafka3.produce("laghang.t", {0: 5})
    kafka3.commit("laghang-g", {("laghang.t", 0): 2})
    cfg = KafkaLagConfig(id="lag-hang", kind="kafka_lag", bootstrap=kafka3.bootstrap,
                         groups=["laghang-g"], timeout=6)
    runner = CheckRunner(cfg, ProbeContext())
    assert victim.proc is not None
    try:
        assert runner.run().status is Status.OK
        os.killpg(victim.proc.pid, signal.SIGSTOP)
        # librdkafka picks any connected broker for Metadata: the hung one, some runs.
        results = [runner.run() for _ in range(4)]
        assert [r.message for r in results] == ["1 groups, 1 partitions, total lag 3, "
                                                "max lag 3"] * 4
    finally:
        os.killpg(victim.proc.pid, signal.SIGCONT)
        runner.close()
        kafka3.wait_ready()  # the cluster is shared: whole again before the next test
        kafka3.delete_topic("laghang.t")

"""kafka_lag on a 3-node cluster with a crashed broker: the check still answers within its
timeout (run through the scheduler's CheckRunner, which records a probe that overstays as
an `error`), reads what the live brokers hold and says what it could not list."""

from __future__ import annotations

import signal

from controlplane.probes.base import ProbeContext
from controlplane.probes.kafka_lag import KafkaLagConfig
from controlplane.results import Status
from controlplane.scheduler import CheckRunner
from tests.services.kafka import KafkaCluster, wait_until

HEALTHY = "1 groups, 1 partitions, total lag 3, max lag 3"


def runner(bootstrap: str, **kw: object) -> CheckRunner:
    cfg = KafkaLagConfig(id="lag-ha", kind="kafka_lag", bootstrap=bootstrap, timeout=8,
                         **kw)  # type: ignore[arg-type]
    return CheckRunner(cfg, ProbeContext())


def test_crashed_broker_leaves_the_lag_answered_in_time_naming_what_is_missing(
        kafka3: KafkaCluster) -> None:
    coordinator = kafka3.coordinator_of("lagha-g")
    # The group's data (coordinator, topic) stays on live brokers; another broker crashes.
    kafka3.create_topic("lagha.t", 1, assignment=[[coordinator]])
    kafka3.produce("lagha.t", {0: 5})
    kafka3.commit("lagha-g", {("lagha.t", 0): 2})
    victim = next(n for n in kafka3.nodes if n.node_id != coordinator)
    by_pattern = runner(kafka3.bootstrap, group_patterns=["lagha-.*"])
    by_name = runner(kafka3.bootstrap, groups=["lagha-g"])
    try:
        for r in (by_pattern, by_name):
            first = r.run()
            assert (first.status, first.message) == (Status.OK, HEALTHY), first.message

        kafka3.stop_node(victim, signal.SIGKILL)
        result = by_pattern.run()
        assert result.status is Status.FAILING, result.message
        assert result.message.startswith("consumer groups could not be listed on every broker (")
        assert result.message.endswith(
            "); the groups they coordinate are missing from this run")
        rows = result.details["partitions"]
        assert [(r["group"], r["committed"], r["end_offset"], r["lag"]) for r in rows] == [
            ("lagha-g", 2, 5, 3)]

        # Named groups need no complete listing: the same crash costs them nothing.
        named = by_name.run()
        assert (named.status, named.message) == (Status.OK, HEALTHY)
    finally:
        kafka3.restart_node(victim)
        for r in (by_pattern, by_name):
            r.close()
    again = runner(kafka3.bootstrap, group_patterns=["lagha-.*"])
    try:
        wait_until(lambda: again.run().status is Status.OK, 120,
                   "the lag check to list every broker again", interval=2)
    finally:
        again.close()

"""kafka_lag against a real 1-node Kafka: exact offsets, Burrow statuses, Kafka's own tool."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from controlplane.metrics import Metrics
from controlplane.probes.kafka_lag import KafkaLagConfig, KafkaLagProbe
from controlplane.results import Status
from tests.services.common import free_port, run_cli
from tests.services.kafka import KafkaCluster, wait_until


class LiveConsumer:
    """A group member that stays in its group (polling in a thread) and commits on demand."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "enable.auto.commit": False, "auto.offset.reset": "latest",
                                  "log_level": 0})
        self.consumer.subscribe([topic])
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self.consumer.poll(0.2)

    def assigned(self) -> int:
        with self._lock:
            return len(self.consumer.assignment())

    def commit(self, offsets: list[TopicPartition]) -> None:
        with self._lock:
            self.consumer.commit(offsets=offsets, asynchronous=False)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


@dataclass
class Scenario:
    cluster: KafkaCluster
    live: LiveConsumer


@pytest.fixture(scope="module")
def scenario(kafka1: KafkaCluster) -> Iterator[Scenario]:
    """Groups agree-billing (empty, commits), agree-multi (two topics), agree-partial (a live
    member without commits on one partition) and agree-empty (no members, no commits)."""
    k = kafka1
    k.create_topic("agree.orders", 3)
    k.create_topic("agree.payments", 2)
    k.create_topic("agree.audit", 1)
    k.produce("agree.orders", {0: 10, 1: 20, 2: 5})
    k.produce("agree.payments", {0: 7})
    k.produce("agree.audit", {0: 3})
    k.commit("agree-billing", {("agree.orders", 0): 4, ("agree.orders", 1): 20,
                               ("agree.orders", 2): 0})
    k.commit("agree-multi", {("agree.orders", 0): 10, ("agree.payments", 0): 2,
                             ("agree.payments", 1): 0})
    empty = Consumer({"bootstrap.servers": k.bootstrap, "group.id": "agree-empty",
                      "log_level": 0})
    empty.subscribe(["agree.audit"])
    wait_until(lambda: empty.poll(0.2) is None and empty.assignment(), 60, "empty joins")
    empty.close()
    live = LiveConsumer(k.bootstrap, "agree-partial", "agree.payments")
    wait_until(lambda: live.assigned() == 2, 90, "agree-partial gets both partitions")
    live.commit([TopicPartition("agree.payments", 0, 3)])
    yield Scenario(k, live)
    live.close()


def probe(bootstrap: str, **kw: Any) -> KafkaLagProbe:
    cfg = KafkaLagConfig(id="lag", kind="kafka_lag", bootstrap=bootstrap, timeout=20, **kw)
    return KafkaLagProbe(cfg)


def rows_of(details: dict[str, Any]) -> dict[tuple[str, str, int], tuple[Any, Any, Any]]:
    return {(r["group"], r["topic"], r["partition"]): (r["committed"], r["end_offset"], r["lag"])
            for r in details["partitions"]}


def parse_tool(output: str, prefix: str) -> dict[tuple[str, str, int], tuple[Any, Any, Any]]:
    """Rows of `ConsumerGroupCommand --describe`, '-' read as None."""
    rows = {}
    for line in output.splitlines():
        cols = line.split()
        if len(cols) < 6 or cols[0] == "GROUP" or not cols[0].startswith(prefix):
            continue

        def num(v: str) -> int | None:
            return None if v == "-" else int(v)

        rows[(cols[0], cols[1], int(cols[2]))] = (num(cols[3]), num(cols[4]), num(cols[5]))
    return rows


EXPECTED = {
    ("agree-billing", "agree.orders", 0): (4, 10, 6),
    ("agree-billing", "agree.orders", 1): (20, 20, 0),
    ("agree-billing", "agree.orders", 2): (0, 5, 5),
    ("agree-multi", "agree.orders", 0): (10, 10, 0),
    ("agree-multi", "agree.payments", 0): (2, 7, 5),
    ("agree-multi", "agree.payments", 1): (0, 0, 0),
    ("agree-partial", "agree.payments", 0): (3, 7, 4),
    ("agree-partial", "agree.payments", 1): (None, 0, None),
}


def test_rows_match_consumer_group_command_row_by_row(scenario: Scenario) -> None:
    result = probe(scenario.cluster.bootstrap, group_patterns=["agree-.*"]).execute()
    output, remarks = scenario.cluster.consumer_group_command_output("--describe",
                                                                     "--all-groups")
    tool = parse_tool(output, "agree-")
    ours = rows_of(result.details)
    # The empty group is in both answers, with no rows in either.
    assert [line for line in remarks.splitlines() if "'agree-" in line] == [
        f"Consumer group '{g}' has no active members."
        for g in ("agree-billing", "agree-empty", "agree-multi")]
    assert result.details["groups"]["agree-empty"]["partitions"] == 0
    assert result.details["groups"]["agree-empty"]["partitions"] == 0
    assert sorted(ours) == sorted(tool)
    for key in sorted(tool):
        assert ours[key] == tool[key], key
    assert ours == EXPECTED


def test_lag_sums_and_maxima_per_group_and_topic(scenario: Scenario) -> None:
    result = probe(scenario.cluster.bootstrap, group_patterns=["agree-.*"]).execute()
    assert result.status is Status.OK
    g = result.details["groups"]
    assert sorted(g) == ["agree-billing", "agree-empty", "agree-multi", "agree-partial"]
    assert (g["agree-billing"]["lag_sum"], g["agree-billing"]["lag_max"]) == (11, 6)
    assert g["agree-multi"]["topics"] == {
        "agree.orders": {"partitions": 1, "lag_sum": 0, "lag_max": 0},
        "agree.payments": {"partitions": 2, "lag_sum": 5, "lag_max": 5}}
    assert (g["agree-partial"]["state"], g["agree-partial"]["members"]) == ("STABLE", 1)
    assert (g["agree-empty"]["state"], g["agree-empty"]["partitions"]) == ("EMPTY", 0)
    assert result.details["topics"] == {
        "agree.orders": {"groups": 2, "lag_sum": 11, "lag_max": 6},
        "agree.payments": {"groups": 2, "lag_sum": 9, "lag_max": 5}}
    assert result.metrics["total_lag"] == 20 and result.metrics["max_lag"] == 6
    assert result.message == "4 groups, 8 partitions, total lag 20, max lag 6, max time lag 0s"


def test_time_lag_is_null_until_two_samples_and_zero_when_caught_up(
        scenario: Scenario) -> None:
    k = scenario.cluster
    k.create_topic("timelag.t", 3)
    k.produce("timelag.t", {0: 5, 1: 5, 2: 5})
    k.commit("timelag-g", {("timelag.t", 0): 2, ("timelag.t", 1): 5, ("timelag.t", 2): 0})
    p = probe(k.bootstrap, groups=["timelag-g"])
    first = {r["partition"]: r["lag_seconds"] for r in p.execute().details["partitions"]}
    assert first == {0: None, 1: 0.0, 2: None}
    k.produce("timelag.t", {0: 1, 2: 1})
    second = {r["partition"]: r["lag_seconds"] for r in p.execute().details["partitions"]}
    assert second[1] == 0.0
    # Both partitions' tables are (5, t1), (6, t2): one offset per d = t2 - t1. Committed 2
    # is extrapolated to t1 - 3d, so 4d behind; committed 0 to t1 - 5d, 6d behind.
    assert second[0] is not None and second[0] > 0
    assert second[2] == pytest.approx(second[0] * 1.5, abs=0.002)


def test_empty_group_not_progressing_is_stop_naming_partitions(scenario: Scenario) -> None:
    p = probe(scenario.cluster.bootstrap, groups=["agree-billing"], window=3)
    assert [p.execute().status for _ in range(2)] == [Status.OK, Status.OK]
    result = p.execute()
    assert result.status is Status.FAILING
    assert result.message == "group agree-billing STOP on agree.orders[0,2]"
    assert result.details["groups"]["agree-billing"]["status"] == "STOP"


def test_live_group_not_progressing_is_stall(scenario: Scenario) -> None:
    p = probe(scenario.cluster.bootstrap, groups=["agree-partial"], window=3)
    for _ in range(2):
        p.execute()
    result = p.execute()
    assert result.status is Status.FAILING
    assert result.message == "group agree-partial STALL on agree.payments[0]"


def test_committed_offset_going_back_is_rewind(scenario: Scenario) -> None:
    k = scenario.cluster
    k.commit("rewind-g", {("agree.audit", 0): 3})
    p = probe(k.bootstrap, groups=["rewind-g"])
    assert p.execute().status is Status.OK
    k.commit("rewind-g", {("agree.audit", 0): 1})
    result = p.execute()
    assert result.status is Status.FAILING
    assert result.message == "group rewind-g REWIND on agree.audit[0]"


def test_lag_growing_at_every_step_is_warn_and_degraded(scenario: Scenario) -> None:
    k = scenario.cluster
    k.create_topic("warn.t", 1)
    p = probe(k.bootstrap, groups=["warn-g"], window=3)
    for step in range(3):
        k.produce("warn.t", {0: 3})
        k.commit("warn-g", {("warn.t", 0): step + 1})
        result = p.execute()
        assert result.details["partitions"][0]["lag"] == 2 * (step + 1)
    assert result.status is Status.DEGRADED
    assert result.message == "group warn-g WARN on warn.t[0]"


def test_lag_over_critical_threshold_fails_naming_the_partitions(scenario: Scenario) -> None:
    result = probe(scenario.cluster.bootstrap, groups=["agree-billing", "agree-multi"],
                   lag_crit=4).execute()
    assert result.status is Status.FAILING
    assert result.message == ("group agree-billing lag 6 > 4 on agree.orders[0,2]; "
                              "group agree-multi lag 5 > 4 on agree.payments[0]")


def test_topic_filter_keeps_only_named_topics(scenario: Scenario) -> None:
    result = probe(scenario.cluster.bootstrap, groups=["agree-multi"],
                   topics=["agree.payments"]).execute()
    assert rows_of(result.details) == {
        ("agree-multi", "agree.payments", 0): (2, 7, 5),
        ("agree-multi", "agree.payments", 1): (0, 0, 0)}


def test_group_and_topic_regexes_must_match_the_whole_name(scenario: Scenario) -> None:
    result = probe(scenario.cluster.bootstrap, group_patterns=["agree-(billing|multi)"],
                   topic_patterns=[r"agree\.pay.*"]).execute()
    assert sorted(result.details["groups"]) == ["agree-billing", "agree-multi"]
    assert rows_of(result.details) == {
        ("agree-multi", "agree.payments", 0): (2, 7, 5),
        ("agree-multi", "agree.payments", 1): (0, 0, 0)}
    assert probe(scenario.cluster.bootstrap, group_patterns=["agree"]).execute().message == (
        "no consumer group matches agree")


def test_metrics_are_exported_per_partition_and_group(scenario: Scenario) -> None:
    result = probe(scenario.cluster.bootstrap, groups=["agree-billing"]).execute()
    m = Metrics()
    KafkaLagProbe.export_metrics(result, m)
    get = m.registry.get_sample_value
    assert get("controlplane_kafka_consumergroup_lag",
               {"group": "agree-billing", "topic": "agree.orders", "partition": "0"}) == 6
    assert get("controlplane_kafka_consumergroup_lag_seconds",
               {"group": "agree-billing", "topic": "agree.orders", "partition": "1"}) == 0
    assert get("controlplane_kafka_consumergroup_status", {"group": "agree-billing"}) == 0


def test_cli_prints_one_row_per_partition_as_json(scenario: Scenario) -> None:
    proc = run_cli("probe", "kafka-lag", "--bootstrap", scenario.cluster.bootstrap,
                   "--group", "agree-partial", "--group", "agree-multi", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["kind"], out["status"]) == ("kafka_lag", "ok")
    assert out["details"]["partitions"][0].keys() >= {
        "group", "topic", "partition", "committed", "end_offset", "lag"}
    assert rows_of(out["details"]) == {k: v for k, v in EXPECTED.items()
                                       if k[0] in ("agree-partial", "agree-multi")}


def test_per_partition_fallback_reads_the_same_end_offsets(scenario: Scenario) -> None:
    from confluent_kafka import TopicPartition as TP
    from confluent_kafka.admin._listoffsets import OffsetSpec

    from controlplane.kafka.client import request_deadline
    from controlplane.kafka.offsets import _gather, _list_latest

    admin = scenario.cluster.admin()
    tps = [("agree.orders", 0), ("agree.orders", 1), ("agree.payments", 0)]
    fast = _list_latest(admin, tps, request_deadline(30)).result(30)
    slow = _gather(admin.list_offsets({TP(t, p): OffsetSpec.latest() for t, p in tps},
                                      request_timeout=30)).result(30)
    assert {(k.topic, k.partition): v.offset for k, v in fast.items()} == {
        (k.topic, k.partition): v.offset for k, v in slow.items()} == {
        ("agree.orders", 0): 10, ("agree.orders", 1): 20, ("agree.payments", 0): 7}


def test_unreadable_cluster_sets_known_groups_to_error_and_drops_lag_series(
        scenario: Scenario) -> None:
    m = Metrics()
    cfg = {"id": "lag-metrics-down", "kind": "kafka_lag", "groups": ["agree-billing"]}
    good = KafkaLagProbe(KafkaLagConfig(bootstrap=scenario.cluster.bootstrap, **cfg)).execute()
    KafkaLagProbe.export_metrics(good, m)
    down = KafkaLagProbe(KafkaLagConfig(bootstrap=f"127.0.0.1:{free_port()}", timeout=2,
                                        **cfg)).execute()
    assert down.status is Status.FAILING
    KafkaLagProbe.export_metrics(down, m)
    get = m.registry.get_sample_value
    assert get("controlplane_kafka_consumergroup_status", {"group": "agree-billing"}) == 5
    assert get("controlplane_kafka_consumergroup_lag",
               {"group": "agree-billing", "topic": "agree.orders", "partition": "0"}) is None


def test_missing_sasl_password_variable_is_an_error_naming_it() -> None:
    result = KafkaLagProbe(KafkaLagConfig(
        id="sasl", kind="kafka_lag", bootstrap="127.0.0.1:9", sasl_mechanism="SCRAM-SHA-512",
        sasl_username="monitor", sasl_password_env="CP_TEST_UNSET_KAFKA_PASSWORD")).execute()
    assert result.status is Status.ERROR
    assert result.message == ("environment variable CP_TEST_UNSET_KAFKA_PASSWORD (the SASL "
                              "password) is not set; export it before starting")


def test_many_problems_give_a_short_message_and_all_of_them_in_details(
        scenario: Scenario) -> None:
    k = scenario.cluster
    k.create_topic("many.t", 25)
    k.produce("many.t", dict.fromkeys(range(25), 2))
    names = [f"many-g{i}" for i in range(7)]
    for name in names:
        k.commit(name, {("many.t", p): 0 for p in range(25)})
    result = probe(k.bootstrap, groups=names, lag_crit=1).execute()
    assert result.status is Status.FAILING
    assert result.message.startswith(
        "group many-g0 lag 2 > 1 on many.t[" + ",".join(map(str, range(20)))
        + "] and 5 more partitions; group many-g1 lag 2 > 1 on many.t[0,")
    stopped = probe(k.bootstrap, groups=names, window=2)
    stopped.execute()
    result = stopped.execute()
    assert len(result.details["problems"]) == 7
    assert result.message.endswith("; and 2 more (details.problems)")
    assert result.message.startswith("group many-g0 STOP on many.t[0,1,2,")

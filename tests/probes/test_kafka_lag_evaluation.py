"""kafka_lag's judgement over constructed runs: the group takes its worst partition, time-lag
thresholds, exact rows and exported values (the cluster reads are tested in test_kafka_lag)."""

from __future__ import annotations

from typing import Any

from controlplane.kafka.offsets import GroupOffsets, Snapshot
from controlplane.metrics import Metrics
from controlplane.probes.kafka_lag import KafkaLagConfig, KafkaLagProbe
from controlplane.results import Result, Status

TP = tuple[str, int]


def lag_probe(**kw: Any) -> KafkaLagProbe:
    # No run touches a cluster: each one is fed a snapshot as the fetch would return it.
    return KafkaLagProbe(KafkaLagConfig(id="eval", kind="kafka_lag", bootstrap="127.0.0.1:9",
                                        isolate_client=False, **kw))


def snapshot(committed: dict[str, dict[TP, int | None]], ends: dict[TP, int],
             members: int = 1) -> Snapshot:
    groups = {g: GroupOffsets(g, state="STABLE" if members else "EMPTY", members=members,
                              committed=dict(c)) for g, c in committed.items()}
    return Snapshot(groups, dict(ends), {}, [])


def run(p: KafkaLagProbe, snap: Snapshot, now: float) -> Result:
    rows = p._evaluate(snap, now)
    outcome = p._outcome(snap, rows, [], [])
    return Result(check="eval", kind="kafka_lag", env="test", status=outcome.status,
                  started_at="2026-11-26T12:00:00Z", duration_s=0.0, message=outcome.message,
                  metrics=outcome.metrics, details=outcome.details)


# Three runs of two groups. Group g on topic t: partition 0 progresses (OK), partition 1's
# lag grows at every step (WARN), partition 2 never committed (OK, nulls). Group h: t[1]
# like g's (WARN), and on u[0] its committed offset goes 5 -> 3 -> 4 (REWIND).
RUNS: list[tuple[dict[str, dict[TP, int | None]], dict[TP, int]]] = [
    ({"g": {("t", 0): 0, ("t", 1): 0, ("t", 2): None}, "h": {("t", 1): 0, ("u", 0): 5}},
     {("t", 0): 10, ("t", 1): 10, ("t", 2): 5, ("u", 0): 10}),
    ({"g": {("t", 0): 5, ("t", 1): 1, ("t", 2): None}, "h": {("t", 1): 1, ("u", 0): 3}},
     {("t", 0): 10, ("t", 1): 12, ("t", 2): 5, ("u", 0): 10}),
    ({"g": {("t", 0): 10, ("t", 1): 2, ("t", 2): None}, "h": {("t", 1): 2, ("u", 0): 4}},
     {("t", 0): 12, ("t", 1): 14, ("t", 2): 5, ("u", 0): 10}),
]


def test_each_group_takes_its_worst_partition_and_the_check_its_worst_group() -> None:
    p = lag_probe(window=3)
    results = [run(p, snapshot(c, e), 1000.0 + 10 * i) for i, (c, e) in enumerate(RUNS)]
    # Run 2 already shows h's step back; WARN needs the full window of three.
    assert [r.status for r in results] == [Status.OK, Status.FAILING, Status.FAILING]
    last = results[-1]
    assert last.message == ("group h REWIND on u[0]; group g WARN on t[1]; "
                            "group h WARN on t[1]")
    groups = last.details["groups"]
    assert (groups["g"]["status"], groups["h"]["status"]) == ("WARN", "REWIND")
    assert [(r["group"], r["topic"], r["partition"], r["status"])
            for r in last.details["partitions"]] == [
        ("g", "t", 0, "OK"), ("g", "t", 1, "WARN"), ("g", "t", 2, "OK"),
        ("h", "t", 1, "WARN"), ("h", "u", 0, "REWIND")]
    m = Metrics()
    KafkaLagProbe.export_metrics(last, m)
    get = m.registry.get_sample_value
    assert get("controlplane_kafka_consumergroup_status", {"group": "g"}) == 1
    assert get("controlplane_kafka_consumergroup_status", {"group": "h"}) == 4
    assert get("controlplane_kafka_consumergroup_lag",
               {"group": "g", "topic": "t", "partition": "1"}) == 12
    assert get("controlplane_kafka_consumergroup_lag",
               {"group": "g", "topic": "t", "partition": "2"}) is None


def test_a_group_whose_worst_partition_is_warn_only_degrades_the_check() -> None:
    p = lag_probe(window=3)
    for i, (committed, ends) in enumerate(RUNS):
        result = run(p, snapshot({"g": committed["g"]}, ends), 1000.0 + 10 * i)
    assert result.status is Status.DEGRADED
    assert result.message == "group g WARN on t[1]"


def test_partition_rows_are_exactly_the_public_fields_with_nulls_where_no_commit() -> None:
    p = lag_probe(window=3)
    result = run(p, snapshot(*RUNS[0]), 1000.0)
    assert result.details["partitions"] == [
        {"group": "g", "topic": "t", "partition": 0, "committed": 0, "end_offset": 10,
         "lag": 10, "lag_seconds": None, "status": "OK"},
        {"group": "g", "topic": "t", "partition": 1, "committed": 0, "end_offset": 10,
         "lag": 10, "lag_seconds": None, "status": "OK"},
        {"group": "g", "topic": "t", "partition": 2, "committed": None, "end_offset": 5,
         "lag": None, "lag_seconds": None, "status": "OK"},
        {"group": "h", "topic": "t", "partition": 1, "committed": 0, "end_offset": 10,
         "lag": 10, "lag_seconds": None, "status": "OK"},
        {"group": "h", "topic": "u", "partition": 0, "committed": 5, "end_offset": 10,
         "lag": 5, "lag_seconds": None, "status": "OK"}]
    assert result.details["groups"]["g"] == {
        "state": "STABLE", "members": 1, "partitions": 3, "status": "OK", "lag_sum": 20,
        "lag_max": 10, "lag_seconds_max": None,
        "topics": {"t": {"partitions": 3, "lag_sum": 20, "lag_max": 10}}}


def test_time_lag_over_its_limits_degrades_then_fails_with_exact_seconds() -> None:
    p = lag_probe(lag_seconds_warn=60, lag_seconds_crit=300)
    ends = {("t", 0): 100}
    assert run(p, snapshot({"g": {("t", 0): 100}}, ends), 1000.0).status is Status.OK
    # The log end moves 100 -> 200 between t=1000 and t=1010; the group stays at 100, so
    # the next message it has not read was written at t=1000.
    ends = {("t", 0): 200}
    assert run(p, snapshot({"g": {("t", 0): 100}}, ends), 1010.0).message == (
        "1 groups, 1 partitions, total lag 100, max lag 100, max time lag 10s")
    slow = run(p, snapshot({"g": {("t", 0): 100}}, ends), 1100.0)
    assert slow.status is Status.DEGRADED
    assert slow.message == "group g time lag 100s > 60s on t[0]"
    assert slow.details["partitions"][0]["lag_seconds"] == 100.0
    assert slow.metrics["max_lag_seconds"] == 100.0
    stuck = run(p, snapshot({"g": {("t", 0): 150}}, ends), 1400.5)
    # 150 is halfway between the samples (100, t=1000) and (200, t=1010): t=1005.
    assert stuck.status is Status.FAILING
    assert stuck.message == "group g time lag 395.5s > 300s on t[0]"
    m = Metrics()
    KafkaLagProbe.export_metrics(stuck, m)
    assert m.registry.get_sample_value("controlplane_kafka_consumergroup_lag_seconds", {
        "group": "g", "topic": "t", "partition": "0"}) == 395.5


def test_max_lag_thresholds_pick_the_worse_limit_per_group() -> None:
    p = lag_probe(lag_warn=5, lag_crit=11)
    ends = {("t", 0): 20, ("t", 1): 20}
    result = run(p, snapshot({"g": {("t", 0): 8, ("t", 1): 13},
                              "h": {("t", 0): 13, ("t", 1): 17}}, ends), 1000.0)
    # g: lags 12 and 7, over both limits: only the critical one is named; h: 7 and 3.
    assert result.status is Status.FAILING
    assert result.message == "group g lag 12 > 11 on t[0]; group h lag 7 > 5 on t[0]"


def test_series_of_a_group_no_longer_watched_are_removed() -> None:
    p = lag_probe()
    m = Metrics()
    get = m.registry.get_sample_value
    KafkaLagProbe.export_metrics(run(p, snapshot(*RUNS[0]), 1000.0), m)
    assert get("controlplane_kafka_consumergroup_lag",
               {"group": "h", "topic": "u", "partition": "0"}) == 5
    KafkaLagProbe.export_metrics(run(p, snapshot({"g": RUNS[1][0]["g"]}, RUNS[1][1]), 1010.0), m)
    assert get("controlplane_kafka_consumergroup_lag",
               {"group": "h", "topic": "u", "partition": "0"}) is None
    assert get("controlplane_kafka_consumergroup_status", {"group": "h"}) is None
    assert get("controlplane_kafka_consumergroup_status", {"group": "g"}) == 0
    assert get("controlplane_kafka_consumergroup_lag",
               {"group": "g", "topic": "t", "partition": "1"}) == 11


def test_a_group_unreadable_for_one_run_keeps_its_window() -> None:
    p = lag_probe(window=3)
    stuck = {"g": {("t", 0): 2}, "h": {("u", 0): 0}}
    ends = {("t", 0): 9, ("u", 0): 0}
    for i in range(3):
        stopped = run(p, snapshot(stuck, ends, members=0), 1000.0 + 10 * i)
    assert stopped.message == "group g STOP on t[0]"
    unreadable = snapshot({"g": {}, "h": {("u", 0): 0}}, {("u", 0): 0}, members=0)
    unreadable.groups["g"].error = "no answer within the check's timeout"
    during = run(p, unreadable, 1030.0)
    assert during.message == "group g: no answer within the check's timeout"
    # Had the window been forgotten, g would read OK for the next three runs.
    after = run(p, snapshot(stuck, ends, members=0), 1040.0)
    assert after.message == "group g STOP on t[0]"


def test_windows_of_departed_groups_and_partitions_are_forgotten() -> None:
    p = lag_probe(window=3)
    run(p, snapshot(*RUNS[0]), 1000.0)
    assert {g: sorted(ws) for g, ws in p.windows.groups.items()} == {
        "g": [("t", 0), ("t", 1)], "h": [("t", 1), ("u", 0)]}  # t[2]: never committed
    run(p, snapshot({"g": {("t", 0): 5}}, {("t", 0): 10}), 1010.0)
    assert {g: sorted(ws) for g, ws in p.windows.groups.items()} == {"g": [("t", 0)]}
    assert sorted(p.tables.tables) == [("t", 0)]
    assert len(p.windows) == 1


def test_groups_the_listing_missed_are_exported_as_error_not_dropped() -> None:
    p = lag_probe(group_patterns=["g|h"])
    both = snapshot({"g": {("t", 0): 1}, "h": {("u", 0): 0}}, {("t", 0): 3, ("u", 0): 0})
    m = Metrics()
    KafkaLagProbe.export_metrics(run(p, both, 1000.0), m)
    partial = snapshot({"h": {("u", 0): 0}}, {("u", 0): 0})
    partial.listing_errors = ["Local: Timed out (_TIMED_OUT)"]
    result = run(p, partial, 1010.0)
    assert result.message == (
        "consumer groups could not be listed on every broker (Local: Timed out (_TIMED_OUT)); "
        "the groups they coordinate are missing from this run")
    KafkaLagProbe.export_metrics(result, m)
    get = m.registry.get_sample_value
    assert get("controlplane_kafka_consumergroup_status", {"group": "g"}) == 5  # ERROR
    assert get("controlplane_kafka_consumergroup_status", {"group": "h"}) == 0
    # Its lag series go: an old number would look current.
    assert get("controlplane_kafka_consumergroup_lag",
               {"group": "g", "topic": "t", "partition": "0"}) is None


def test_a_group_picked_by_pattern_that_vanished_is_not_a_failure() -> None:
    p = lag_probe(group_patterns=["g.*"])
    snap = snapshot({"g1": {("t", 0): 1}, "g2": {}}, {("t", 0): 1})
    snap.groups["g2"].state = "DEAD"
    assert run(p, snap, 1000.0).status is Status.OK
    named = lag_probe(groups=["g2"])
    assert run(named, snap, 1000.0).message == "group g2 does not exist (deleted?)"

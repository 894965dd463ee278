"""Collecting offsets: every group is listed once, and only groups that may have members
are described (describing an EMPTY group costs requests and tells nothing)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from controlplane.kafka.client import request_deadline
from controlplane.kafka.offsets import collect, select_groups
from tests.services.kafka import KafkaCluster, wait_until


class DescribeSpy:
    """A real AdminClient that remembers which groups it was asked to describe."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        self.described: list[str] = []

    def describe_consumer_groups(self, groups: list[str], **kw: Any) -> Any:
        self.described += groups
        return self.admin.describe_consumer_groups(groups, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.admin, name)


def test_only_groups_that_may_have_members_are_described(kafka1: KafkaCluster) -> None:
    kafka1.create_topic("offsets.t", 2)
    kafka1.produce("offsets.t", {0: 5, 1: 3})
    kafka1.commit("offsets-idle", {("offsets.t", 0): 2, ("offsets.t", 1): 3})
    live = Consumer({"bootstrap.servers": kafka1.bootstrap, "group.id": "offsets-live",
                     "log_level": 0})
    try:
        live.subscribe(["offsets.t"])
        wait_until(lambda: live.poll(0.2) is None and len(live.assignment()) == 2, 90,
                   "offsets-live owns both partitions")
        spy = DescribeSpy(kafka1.bootstrap)
        names = ["offsets-idle", "offsets-live", "offsets-never-existed"]
        listed = select_groups(spy, names, [], request_deadline(20))  # type: ignore[arg-type]
        assert listed.states == {"offsets-idle": "EMPTY", "offsets-live": "STABLE",
                                 "offsets-never-existed": None}
        snap = collect(spy, listed.states, lambda _t: True,
                       request_deadline(20))  # type: ignore[arg-type]
    finally:
        live.close()
    assert spy.described == ["offsets-live", "offsets-never-existed"]
    idle, busy, gone = (snap.groups[n] for n in names)
    assert (idle.state, idle.members, idle.committed) == (
        "EMPTY", 0, {("offsets.t", 0): 2, ("offsets.t", 1): 3})
    # The live member owns both partitions and never committed: rows with no offset.
    assert (busy.state, busy.members, busy.committed) == (
        "STABLE", 1, {("offsets.t", 0): None, ("offsets.t", 1): None})
    assert (gone.state, gone.members, gone.committed) == ("DEAD", 0, {})
    assert snap.end_offsets == {("offsets.t", 0): 5, ("offsets.t", 1): 3}


def test_offsets_read_through_the_c_method_match_the_wrapper(kafka1: KafkaCluster) -> None:
    from controlplane.kafka.offsets import _committed_of, _first

    kafka1.create_topic("offsets.fast", 3)
    kafka1.produce("offsets.fast", {0: 4, 1: 4, 2: 4})
    kafka1.commit("offsets-fast", {("offsets.fast", 0): 1, ("offsets.fast", 2): 3})
    admin = AdminClient({"bootstrap.servers": kafka1.bootstrap, "log_level": 0})

    def rows(answer: list[Any]) -> set[tuple[str, int, int]]:
        (group,) = answer
        return {(tp.topic, tp.partition, tp.offset) for tp in group.topic_partitions}

    for name in ("offsets-fast", "offsets-never-committed"):
        fast = _committed_of(admin, name, request_deadline(20)).result(20)
        slow = _first(admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(name)], request_timeout=20)[name]).result(20)
        assert rows(fast) == rows(slow)
    assert rows(fast) == set()
    assert rows(_committed_of(admin, "offsets-fast", request_deadline(20)).result(20)) == {
        ("offsets.fast", 0, 1), ("offsets.fast", 2, 3)}


def test_every_row_of_a_partition_shares_one_key(kafka1: KafkaCluster) -> None:
    """2,000 groups on 10,000 partitions: one key object per partition keeps the snapshot
    a tenth of the size to send to the check's process."""
    kafka1.create_topic("offsets.shared", 2)
    kafka1.produce("offsets.shared", {0: 3, 1: 3})
    for group in ("offsets-shared-a", "offsets-shared-b"):
        kafka1.commit(group, {("offsets.shared", 0): 1, ("offsets.shared", 1): 2})
    admin = AdminClient({"bootstrap.servers": kafka1.bootstrap, "log_level": 0})
    snap = collect(admin, {"offsets-shared-a": "EMPTY", "offsets-shared-b": "EMPTY"},
                   lambda t: t == "offsets.shared", request_deadline(20))
    a, b = (sorted(snap.groups[g].committed) for g in ("offsets-shared-a", "offsets-shared-b"))
    ends = sorted(snap.end_offsets)
    assert a == b == ends == [("offsets.shared", 0), ("offsets.shared", 1)]
    assert all(x is y is z for x, y, z in zip(a, b, ends, strict=True))
    assert a[0][0] is a[1][0]  # one topic string

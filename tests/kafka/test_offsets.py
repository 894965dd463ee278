"""Collecting offsets: every group is listed once, and only groups that may have members
are described (describing an EMPTY group costs requests and tells nothing)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer
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

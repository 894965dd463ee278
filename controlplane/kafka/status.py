"""Burrow's consumer status rules over a sliding window of the last N runs per partition.

Each run adds one sample (time, committed offset, log-end offset) per group-partition.
A partition's status, worst rule first:

* REWIND: the committed offset went backwards between two samples in the window.
* STOP: the window is full, the committed offset did not move across it, the group is
  not caught up (lag > allowed) and the group has no active members: nobody is committing.
* STALL: the same, but the group has members: consumers are alive yet not progressing.
* WARN: the window is full and the lag grew at every step.
* OK: anything else (including a partition the group never committed on).

Burrow tells STOP from STALL by the timestamps of the commits themselves (a stalled
consumer keeps committing the same offset; a stopped one stops committing). The
OffsetFetch API carries no commit timestamps, so we use the group's membership, which
is the same fact seen from the coordinator: members present means consumers still run.
A group's status is its worst partition's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class GroupStatus(IntEnum):
    """Values as exported in controlplane_kafka_consumergroup_status."""

    OK = 0
    WARN = 1
    STALL = 2
    STOP = 3
    REWIND = 4
    ERROR = 5


@dataclass(slots=True)
class Sample:
    at: float
    committed: int
    end_offset: int

    @property
    def lag(self) -> int:
        return self.end_offset - self.committed


class PartitionWindow:
    """The last ``size`` samples of one group-partition, kept as running counters.

    Only what the rules need is kept, updated in O(1) per sample (a check may watch
    10,000 partitions): the length of the trailing run of equal committed offsets, of
    strictly growing lag, and how many samples ago the committed offset last went back.
    """

    __slots__ = (
        "count",
        "growth_run",
        "last_committed",
        "last_lag",
        "same_run",
        "since_rewind",
        "size",
    )

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self.last_committed = 0
        self.last_lag = 0
        self.same_run = 0
        self.growth_run = 0
        self.since_rewind: int | None = None

    def add(self, sample: Sample) -> None:
        self.add_values(sample.committed, sample.end_offset - sample.committed)

    def add_values(self, committed: int, lag: int) -> None:
        self.step(committed, lag, False, 0)

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def step(self, committed: int, lag: int, has_members: bool, allowed_lag: int
             ) -> GroupStatus:
        """Add a sample and evaluate the window: one call per row (100,000 rows a run at
        scale), so the rules of :meth:`evaluate` are written out here again;
        tests/kafka/test_status.py holds the two to the same answers."""
        size = self.size
        if self.count:
            if committed < self.last_committed:
                self.since_rewind = 0
            elif self.since_rewind is not None:
                self.since_rewind += 1
            same = self.same_run = self.same_run + 1 if committed == self.last_committed else 1
            growth = self.growth_run = self.growth_run + 1 if lag > self.last_lag else 1
        else:
            same = growth = self.same_run = self.growth_run = 1
        count = self.count = self.count + 1
        self.last_committed, self.last_lag = committed, lag
        rewound = self.since_rewind
        if rewound is not None and rewound <= size - 2:
            return GroupStatus.REWIND
        if count < 2 or count < size:
            return GroupStatus.OK
        if lag > allowed_lag and same >= size:
            return GroupStatus.STALL if has_members else GroupStatus.STOP
        if growth >= size:
            return GroupStatus.WARN
        return GroupStatus.OK

    def evaluate(self, has_members: bool, allowed_lag: int = 0) -> GroupStatus:
        # A step back is in the window while its lower sample is not the window's oldest.
        if self.since_rewind is not None and self.since_rewind <= self.size - 2:
            return GroupStatus.REWIND
        if self.count < 2 or not self.full:
            return GroupStatus.OK
        if self.last_lag > allowed_lag and self.same_run >= self.size:
            return GroupStatus.STALL if has_members else GroupStatus.STOP
        if self.growth_run >= self.size:
            return GroupStatus.WARN
        return GroupStatus.OK


TP = tuple[str, int]


@dataclass
class StatusWindows:
    """The sliding windows of every (group, topic, partition) the check watches, by group
    and then by (topic, partition): a run walks group by group, so it looks up each
    group once and its partitions by the snapshot's own keys (no key built per row)."""

    size: int = 10
    groups: dict[str, dict[TP, PartitionWindow]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups.values())

    def add(self, group: str, topic: str, partition: int, sample: Sample) -> None:
        self.add_values(group, topic, partition, sample.committed, sample.end_offset)

    def add_values(self, group: str, topic: str, partition: int, committed: int,
                   end_offset: int) -> PartitionWindow:
        w = self.window(self.of_group(group), (topic, partition))
        w.add_values(committed, end_offset - committed)
        return w

    def of_group(self, group: str) -> dict[TP, PartitionWindow]:
        """The group's windows, created empty for a new group."""
        mine = self.groups.get(group)
        if mine is None:
            mine = self.groups[group] = {}
        return mine

    def window(self, mine: dict[TP, PartitionWindow], tp: TP) -> PartitionWindow:
        w = mine.get(tp)
        if w is None:
            w = mine[tp] = PartitionWindow(self.size)
        return w

    def evaluate(self, group: str, topic: str, partition: int, has_members: bool,
                 allowed_lag: int = 0) -> GroupStatus:
        w = self.groups.get(group, {}).get((topic, partition))
        return GroupStatus.OK if w is None else w.evaluate(has_members, allowed_lag)

    def forget_except(self, keep: dict[str, set[TP]]) -> None:
        """Keep only the windows of ``keep`` (group: its partitions)."""
        for group in set(self.groups) - set(keep):
            del self.groups[group]
        for group, mine in self.groups.items():
            for tp in set(mine) - keep[group]:
                del mine[tp]

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

import itertools
from collections import deque
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


@dataclass(frozen=True)
class Sample:
    at: float
    committed: int
    end_offset: int

    @property
    def lag(self) -> int:
        return self.end_offset - self.committed


@dataclass
class PartitionWindow:
    size: int
    samples: deque[Sample] = field(default_factory=deque)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        while len(self.samples) > self.size:
            self.samples.popleft()

    @property
    def full(self) -> bool:
        return len(self.samples) >= self.size

    def evaluate(self, has_members: bool, allowed_lag: int = 0) -> GroupStatus:
        s = list(self.samples)
        if any(b.committed < a.committed for a, b in itertools.pairwise(s)):
            return GroupStatus.REWIND
        if len(s) < 2 or not self.full:
            return GroupStatus.OK
        behind = s[-1].lag > allowed_lag
        if behind and s[0].committed == s[-1].committed:
            return GroupStatus.STALL if has_members else GroupStatus.STOP
        if all(b.lag > a.lag for a, b in itertools.pairwise(s)):
            return GroupStatus.WARN
        return GroupStatus.OK


@dataclass
class StatusWindows:
    """The sliding windows of every (group, topic, partition) the check watches."""

    size: int = 10
    windows: dict[tuple[str, str, int], PartitionWindow] = field(default_factory=dict)

    def add(self, group: str, topic: str, partition: int, sample: Sample) -> None:
        key = (group, topic, partition)
        w = self.windows.get(key)
        if w is None:
            w = self.windows[key] = PartitionWindow(self.size)
        w.add(sample)

    def evaluate(self, group: str, topic: str, partition: int, has_members: bool,
                 allowed_lag: int = 0) -> GroupStatus:
        w = self.windows.get((group, topic, partition))
        return GroupStatus.OK if w is None else w.evaluate(has_members, allowed_lag)

    def forget_except(self, keep: set[tuple[str, str, int]]) -> None:
        for key in set(self.windows) - keep:
            del self.windows[key]

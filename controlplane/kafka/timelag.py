"""Time lag: how old is the next message a consumer group has not read yet?

Kafka does not tell. Like kafka-lag-exporter we keep, per topic-partition, a table of
(log-end offset, time seen) samples across runs and read the time at which the log end
passed the group's committed offset off that table:

* caught up (committed >= newest end offset): 0 seconds;
* committed inside the table: linear interpolation between the two samples around it;
* committed older than the oldest sample: extrapolation along the line through the oldest
  and newest samples (the table's average production rate);
* fewer than two samples with distinct offsets: unknown (None).

Lag in seconds = now (the time of this run's sample, the newest) - the estimated time the
log end reached the committed offset. Samples whose offset equals the previous one keep
the earlier time (the time the log end first reached that offset), so idle periods do not
distort the estimate.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field


class OffsetTable:
    """Samples (offset, unix time) with strictly increasing offsets, newest last."""

    __slots__ = ("capacity", "offsets", "times")

    def __init__(self, capacity: int = 60) -> None:
        self.capacity = capacity
        self.offsets: list[int] = []
        self.times: list[float] = []

    @property
    def points(self) -> list[tuple[int, float]]:
        return list(zip(self.offsets, self.times, strict=True))

    def add(self, offset: int, at: float) -> None:
        if self.offsets and offset <= self.offsets[-1]:
            if offset < self.offsets[-1]:
                # The log end went backwards (topic re-created, truncated): start over.
                self.offsets, self.times = [offset], [at]
            return
        self.offsets.append(offset)
        self.times.append(at)
        if len(self.offsets) > self.capacity:
            del self.offsets[0], self.times[0]

    def lag_seconds(self, committed: int | None, now: float) -> float | None:
        """Estimated seconds the group is behind, or None when the table cannot tell."""
        if committed is None or not self.offsets:
            return None
        if committed >= self.offsets[-1]:
            return 0.0
        if len(self.offsets) < 2:
            return None
        produced_at = self._time_of(committed)
        return max(0.0, round(now - produced_at, 3))

    def _time_of(self, offset: int) -> float:
        offs, times = self.offsets, self.times
        i = bisect_left(offs, offset)
        if i == 0:
            o1, t1, o2, t2 = offs[0], times[0], offs[-1], times[-1]  # extrapolate
        else:
            o1, t1, o2, t2 = offs[i - 1], times[i - 1], offs[i], times[i]
            if o2 == offset:
                return t2
        return t1 + (offset - o1) * (t2 - t1) / (o2 - o1)


@dataclass
class TimeLagTables:
    """One table per topic-partition, shared by every group reading it."""

    capacity: int = 60
    tables: dict[tuple[str, int], OffsetTable] = field(default_factory=dict)

    def add(self, topic: str, partition: int, end_offset: int, at: float) -> None:
        key = (topic, partition)
        table = self.tables.get(key)
        if table is None:
            table = self.tables[key] = OffsetTable(self.capacity)
        table.add(end_offset, at)

    def lag_seconds(self, topic: str, partition: int, committed: int | None,
                    now: float) -> float | None:
        table = self.tables.get((topic, partition))
        return None if table is None else table.lag_seconds(committed, now)

    def forget_except(self, keep: set[tuple[str, int]]) -> None:
        """Drop tables of partitions no longer watched (deleted topics, departed groups)."""
        for key in set(self.tables) - keep:
            del self.tables[key]

"""Time lag from (log-end offset, time) tables: interpolation, extrapolation, edge cases."""

from __future__ import annotations

from controlplane.kafka.timelag import OffsetTable, TimeLagTables


def table(*points: tuple[int, float], capacity: int = 60) -> OffsetTable:
    t = OffsetTable(capacity)
    for offset, at in points:
        t.add(offset, at)
    return t


def test_caught_up_group_has_zero_time_lag() -> None:
    assert table((100, 10.0)).lag_seconds(100, now=50.0) == 0.0


def test_committed_beyond_the_log_end_counts_as_caught_up() -> None:
    assert table((100, 10.0), (200, 20.0)).lag_seconds(250, now=20.0) == 0.0


def test_one_sample_is_too_few_to_estimate() -> None:
    assert table((100, 10.0)).lag_seconds(50, now=10.0) is None


def test_no_commit_has_no_time_lag() -> None:
    assert table((100, 10.0), (200, 20.0)).lag_seconds(None, now=20.0) is None


def test_committed_inside_the_table_is_interpolated() -> None:
    # The log end reached 150 halfway between t=10 and t=20: 15 s; seen at now=30.
    t = table((100, 10.0), (200, 20.0), (300, 30.0))
    assert t.lag_seconds(150, now=30.0) == 15.0
    assert t.lag_seconds(200, now=30.0) == 10.0
    assert t.lag_seconds(275, now=30.0) == 2.5


def test_committed_below_the_oldest_sample_is_extrapolated_from_oldest_and_newest() -> None:
    # Slope over the table: 200 offsets in 40 s (5 offsets/s); 0 is 100 below 100 -> t=-10.
    t = table((100, 10.0), (200, 40.0), (300, 50.0))
    assert t.lag_seconds(0, now=50.0) == 60.0


def test_idle_period_keeps_the_time_the_offset_was_first_reached() -> None:
    t = table((100, 10.0), (200, 20.0), (200, 500.0))
    assert list(t.points) == [(100, 10.0), (200, 20.0)]
    assert t.lag_seconds(150, now=500.0) == 485.0


def test_log_end_going_backwards_restarts_the_table() -> None:
    t = table((100, 10.0), (200, 20.0), (5, 30.0))
    assert list(t.points) == [(5, 30.0)]


def test_table_keeps_only_its_capacity_of_newest_samples() -> None:
    t = table(*[(i * 10, float(i)) for i in range(10)], capacity=3)
    assert list(t.points) == [(70, 7.0), (80, 8.0), (90, 9.0)]


def test_tables_are_per_partition_and_forget_unwatched_ones() -> None:
    tables = TimeLagTables(10)
    tables.add("t", 0, 10, 1.0)
    tables.add("t", 0, 20, 2.0)
    tables.add("t", 1, 10, 1.0)
    assert tables.lag_seconds("t", 0, 10, now=2.0) == 1.0
    assert tables.lag_seconds("u", 0, 10, now=2.0) is None
    tables.forget_except({("t", 1)})
    assert sorted(tables.tables) == [("t", 1)]

"""Burrow's rules over a sliding window of samples: OK, WARN, STALL, STOP, REWIND."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.kafka.status import GroupStatus, PartitionWindow, Sample, StatusWindows


def window(*samples: tuple[int, int], size: int = 3) -> PartitionWindow:
    w = PartitionWindow(size)
    for i, (committed, end) in enumerate(samples):
        w.add(Sample(float(i), committed, end))
    return w


def test_progressing_consumer_is_ok() -> None:
    assert window((0, 10), (5, 12), (12, 12)).evaluate(True) is GroupStatus.OK


def test_lag_growing_at_every_step_is_warn() -> None:
    assert window((0, 10), (1, 12), (2, 14)).evaluate(True) is GroupStatus.WARN


def test_lag_growing_with_one_flat_step_is_ok() -> None:
    assert window((0, 10), (2, 12), (3, 14)).evaluate(True) is GroupStatus.OK


def test_committed_not_moving_while_behind_with_members_is_stall() -> None:
    assert window((5, 10), (5, 10), (5, 11)).evaluate(True) is GroupStatus.STALL


def test_committed_not_moving_while_behind_without_members_is_stop() -> None:
    assert window((5, 10), (5, 10), (5, 10)).evaluate(False) is GroupStatus.STOP


def test_committed_not_moving_while_caught_up_is_ok() -> None:
    assert window((10, 10), (10, 10), (10, 10)).evaluate(False) is GroupStatus.OK


def test_lag_within_allowed_lag_is_not_stalled() -> None:
    w = window((8, 10), (8, 10), (8, 10))
    assert w.evaluate(True, allowed_lag=2) is GroupStatus.OK
    assert w.evaluate(True, allowed_lag=1) is GroupStatus.STALL


def test_committed_going_back_is_rewind_even_before_the_window_fills() -> None:
    assert window((5, 10), (3, 10)).evaluate(True) is GroupStatus.REWIND


def test_rules_wait_for_a_full_window() -> None:
    assert window((5, 10), (5, 11)).evaluate(True) is GroupStatus.OK


def test_window_slides_so_an_old_rewind_is_forgotten() -> None:
    w = window((5, 10), (3, 10), (4, 10), (5, 10), (6, 10))
    assert w.evaluate(True) is GroupStatus.OK


def test_windows_are_per_group_partition_and_unknown_ones_are_ok() -> None:
    ws = StatusWindows(2)
    ws.add("g", "t", 0, Sample(0.0, 5, 10))
    ws.add("g", "t", 0, Sample(1.0, 4, 10))
    assert ws.evaluate("g", "t", 0, True) is GroupStatus.REWIND
    assert ws.evaluate("h", "t", 0, True) is GroupStatus.OK
    assert max(GroupStatus.WARN, GroupStatus.STOP) is GroupStatus.STOP


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=25),
       st.integers(2, 5), st.booleans(), st.integers(0, 3))
def test_a_step_answers_as_adding_then_evaluating(samples: list[tuple[int, int]], size: int,
                                                  has_members: bool, allowed: int) -> None:
    stepped, added = PartitionWindow(size), PartitionWindow(size)
    for committed, lag in samples:
        added.add(Sample(0.0, committed, committed + lag))
        assert stepped.step(committed, lag, has_members, allowed) is added.evaluate(
            has_members, allowed)


def test_a_window_steps_through_every_status() -> None:
    w = PartitionWindow(3)
    seen = [w.step(c, lag, False, 0) for c, lag in
            [(0, 1), (1, 2), (2, 3), (2, 3), (2, 3), (1, 3)]]
    assert seen == [GroupStatus.OK, GroupStatus.OK, GroupStatus.WARN, GroupStatus.OK,
                    GroupStatus.STOP, GroupStatus.REWIND]

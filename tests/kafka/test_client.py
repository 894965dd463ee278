"""Shared Kafka client helpers."""

from __future__ import annotations

import gc
import threading

from controlplane.kafka.client import gc_paused


def test_gc_is_paused_inside_and_back_on_after() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads_leave_gc_on_only_when_both_end() -> None:
    first_in, second_done, states = threading.Event(), threading.Event(), []

    def first() -> None:
        with gc_paused():
            first_in.set()
            second_done.wait(10)
            states.append(("first, after second ended", gc.isenabled()))

    worker = threading.Thread(target=first)
    worker.start()
    first_in.wait(10)
    with gc_paused():
        states.append(("second inside", gc.isenabled()))
    second_done.set()
    worker.join(10)
    assert states == [("second inside", False), ("first, after second ended", False)]
    assert gc.isenabled()


def test_gc_left_off_by_the_caller_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_exception_inside_still_turns_gc_back_on() -> None:
    try:
        with gc_paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()

"""Who is on call when: rotations, handoffs across daylight-saving changes, layers and
overrides, computed by the pure schedule functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controlplane.oncall.config import OncallConfig, ScheduleConfig
from controlplane.oncall.schedule import Override, Shift, on_call, shifts

PEOPLE = {p: {"name": p.title()} for p in ("alice", "bob", "carol", "dave")}


def _schedule(*layers: dict[str, Any], timezone: str = "Europe/Berlin") -> ScheduleConfig:
    cfg = OncallConfig.model_validate({"people": PEOPLE, "schedules": {
        "primary": {"timezone": timezone, "layers": list(layers)}}, "policies": {}})
    return cfg.schedules["primary"]


def _z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _table(timeline: list[Shift]) -> list[tuple[str, str, str]]:
    def fmt(ts: datetime) -> str:
        return ts.strftime("%Y-%m-%dT%H:%MZ")
    return [(fmt(s.start), fmt(s.end), s.person) for s in timeline]


WEEKLY = {"rotation": "weekly", "handoff": "09:00", "start": "2026-11-30",
          "people": ["alice", "bob", "carol"]}


def test_weekly_rotation_hands_off_at_nine_local_time() -> None:
    sched = _schedule(WEEKLY)
    before = on_call(sched, [], _z("2026-12-07T07:59:59Z"))  # 08:59:59 CET
    after = on_call(sched, [], _z("2026-12-07T08:00:00Z"))
    assert before == Shift(_z("2026-11-30T08:00Z"), _z("2026-12-07T08:00Z"), "alice", "layer 1")
    assert after == Shift(_z("2026-12-07T08:00Z"), _z("2026-12-14T08:00Z"), "bob", "layer 1")
    assert on_call(sched, [], _z("2026-12-21T08:00Z")).person == "alice"  # type: ignore[union-attr]


def test_the_next_four_weeks_are_clipped_to_the_window() -> None:
    sched = _schedule(WEEKLY)
    timeline = shifts(sched, [], _z("2026-12-02T12:00Z"), _z("2026-12-30T12:00Z"))
    assert _table(timeline) == [
        ("2026-12-02T12:00Z", "2026-12-07T08:00Z", "alice"),
        ("2026-12-07T08:00Z", "2026-12-14T08:00Z", "bob"),
        ("2026-12-14T08:00Z", "2026-12-21T08:00Z", "carol"),
        ("2026-12-21T08:00Z", "2026-12-28T08:00Z", "alice"),
        ("2026-12-28T08:00Z", "2026-12-30T12:00Z", "bob")]


def test_daily_handoff_stays_at_nine_in_berlin_when_summer_time_starts() -> None:
    sched = _schedule({**WEEKLY, "rotation": "daily", "start": "2026-03-27",
                       "people": ["alice", "bob"]})
    timeline = shifts(sched, [], _z("2026-03-27T08:00Z"), _z("2026-03-31T07:00Z"))
    # 29 March 2026: 02:00 CET -> 03:00 CEST; 09:00 local is 08:00Z before, 07:00Z after.
    assert _table(timeline) == [
        ("2026-03-27T08:00Z", "2026-03-28T08:00Z", "alice"),
        ("2026-03-28T08:00Z", "2026-03-29T07:00Z", "bob"),
        ("2026-03-29T07:00Z", "2026-03-30T07:00Z", "alice"),
        ("2026-03-30T07:00Z", "2026-03-31T07:00Z", "bob")]
    assert timeline[1].end - timeline[1].start == timedelta(hours=23)


def test_daily_handoff_stays_at_nine_in_berlin_when_summer_time_ends() -> None:
    sched = _schedule({**WEEKLY, "rotation": "daily", "start": "2026-10-24",
                       "people": ["alice", "bob"]})
    timeline = shifts(sched, [], _z("2026-10-24T07:00Z"), _z("2026-10-26T08:00Z"))
    assert _table(timeline) == [
        ("2026-10-24T07:00Z", "2026-10-25T08:00Z", "alice"),
        ("2026-10-25T08:00Z", "2026-10-26T08:00Z", "bob")]
    assert timeline[0].end - timeline[0].start == timedelta(hours=25)


def test_weekly_handoff_stays_at_nine_in_new_york_across_both_changes() -> None:
    sched = _schedule({**WEEKLY, "start": "2026-03-02", "people": ["alice", "bob"]},
                      timezone="America/New_York")
    spring = shifts(sched, [], _z("2026-03-02T14:00Z"), _z("2026-03-16T13:00Z"))
    # 8 March 2026: EST (-5) -> EDT (-4).
    assert _table(spring) == [("2026-03-02T14:00Z", "2026-03-09T13:00Z", "alice"),
                              ("2026-03-09T13:00Z", "2026-03-16T13:00Z", "bob")]
    autumn = shifts(sched, [], _z("2026-10-26T13:00Z"), _z("2026-11-09T14:00Z"))
    # 1 November 2026: EDT -> EST; the shift over it lasts 169 hours.
    assert _table(autumn) == [("2026-10-26T13:00Z", "2026-11-02T14:00Z", "alice"),
                              ("2026-11-02T14:00Z", "2026-11-09T14:00Z", "bob")]
    assert autumn[0].end - autumn[0].start == timedelta(hours=169)


def test_a_handoff_in_the_skipped_hour_happens_as_the_clock_jumps() -> None:
    sched = _schedule({**WEEKLY, "rotation": "daily", "handoff": "02:30",
                       "start": "2026-03-28", "people": ["alice", "bob"]})
    timeline = shifts(sched, [], _z("2026-03-28T01:30Z"), _z("2026-03-30T00:30Z"))
    # 02:30 on 29 March does not exist in Berlin: the handoff is at 03:30 CEST (01:30Z).
    assert _table(timeline) == [("2026-03-28T01:30Z", "2026-03-29T01:30Z", "alice"),
                                ("2026-03-29T01:30Z", "2026-03-30T00:30Z", "bob")]


def test_a_handoff_in_the_repeated_hour_happens_the_first_time_round() -> None:
    sched = _schedule({**WEEKLY, "rotation": "daily", "handoff": "02:30",
                       "start": "2026-10-24", "people": ["alice", "bob"]})
    timeline = shifts(sched, [], _z("2026-10-24T00:30Z"), _z("2026-10-26T01:30Z"))
    assert _table(timeline) == [("2026-10-24T00:30Z", "2026-10-25T00:30Z", "alice"),
                                ("2026-10-25T00:30Z", "2026-10-26T01:30Z", "bob")]


def test_a_custom_twelve_hour_rotation_keeps_its_local_handoffs_over_the_change() -> None:
    sched = _schedule({"rotation": "custom", "length": "12h", "handoff": "09:00",
                       "start": "2026-03-28", "people": ["alice", "bob"]})
    timeline = shifts(sched, [], _z("2026-03-28T08:00Z"), _z("2026-03-30T07:00Z"))
    assert _table(timeline) == [
        ("2026-03-28T08:00Z", "2026-03-28T20:00Z", "alice"),  # 09:00-21:00 CET
        ("2026-03-28T20:00Z", "2026-03-29T07:00Z", "bob"),    # 21:00 CET - 09:00 CEST
        ("2026-03-29T07:00Z", "2026-03-29T19:00Z", "alice"),
        ("2026-03-29T19:00Z", "2026-03-30T07:00Z", "bob")]


def test_a_custom_three_day_rotation_cycles_through_everyone() -> None:
    sched = _schedule({"rotation": "custom", "length": "3d", "handoff": "10:00",
                       "start": "2026-12-01", "people": ["alice", "bob", "carol"]},
                      timezone="UTC")
    assert [s.person for s in shifts(sched, [], _z("2026-12-01T10:00Z"),
                                     _z("2026-12-13T10:00Z"))] == [
        "alice", "bob", "carol", "alice"]


def test_nobody_is_on_call_before_the_rotation_starts() -> None:
    sched = _schedule(WEEKLY)
    assert on_call(sched, [], _z("2026-11-30T07:59Z")) is None
    assert _table(shifts(sched, [], _z("2026-11-29T00:00Z"), _z("2026-12-01T00:00Z"))) == [
        ("2026-11-30T08:00Z", "2026-12-01T00:00Z", "alice")]


BUSINESS_HOURS = {"name": "business hours", "rotation": "daily", "handoff": "09:00",
                  "start": "2026-11-30", "people": ["dave"],
                  "restrictions": [{"days": ["mon", "tue", "wed", "thu", "fri"],
                                    "start": "09:00", "end": "17:00"}]}


def test_a_later_layer_wins_only_inside_its_restrictions() -> None:
    sched = _schedule(WEEKLY, BUSINESS_HOURS)
    wed_10 = on_call(sched, [], _z("2026-12-02T09:00Z"))
    assert wed_10 == Shift(_z("2026-12-02T08:00Z"), _z("2026-12-02T16:00Z"), "dave",
                           "business hours")
    assert on_call(sched, [], _z("2026-12-02T17:00Z")).person == "alice"  # type: ignore[union-attr]
    assert on_call(sched, [], _z("2026-12-05T09:00Z")).person == "alice"  # type: ignore[union-attr]
    friday_to_monday = shifts(sched, [], _z("2026-12-04T12:00Z"), _z("2026-12-07T12:00Z"))
    assert _table(friday_to_monday) == [
        ("2026-12-04T12:00Z", "2026-12-04T16:00Z", "dave"),
        ("2026-12-04T16:00Z", "2026-12-07T08:00Z", "alice"),
        ("2026-12-07T08:00Z", "2026-12-07T12:00Z", "dave")]


def test_a_night_restriction_runs_past_midnight() -> None:
    night = {**BUSINESS_HOURS, "name": "nights", "restrictions": [
        {"days": ["mon"], "start": "22:00", "end": "06:00"}]}
    sched = _schedule(WEEKLY, night, timezone="UTC")
    assert _table(shifts(sched, [], _z("2026-11-30T20:00Z"), _z("2026-12-01T08:00Z"))) == [
        ("2026-11-30T20:00Z", "2026-11-30T22:00Z", "alice"),
        ("2026-11-30T22:00Z", "2026-12-01T06:00Z", "dave"),
        ("2026-12-01T06:00Z", "2026-12-01T08:00Z", "alice")]


def test_an_override_without_covers_holds_across_the_handoff() -> None:
    sched = _schedule(WEEKLY)
    ov = Override("1", "dave", _z("2026-12-07T07:00Z"), _z("2026-12-07T11:00Z"))
    assert _table(shifts(sched, [ov], _z("2026-12-07T06:00Z"), _z("2026-12-07T12:00Z"))) == [
        ("2026-12-07T06:00Z", "2026-12-07T07:00Z", "alice"),
        ("2026-12-07T07:00Z", "2026-12-07T11:00Z", "dave"),
        ("2026-12-07T11:00Z", "2026-12-07T12:00Z", "bob")]


def test_an_override_covering_someone_ends_at_their_handoff() -> None:
    sched = _schedule(WEEKLY)
    ov = Override("7", "dave", _z("2026-12-06T11:00Z"), _z("2026-12-08T11:00Z"),
                  covers="alice")
    timeline = shifts(sched, [ov], _z("2026-12-06T00:00Z"), _z("2026-12-09T00:00Z"))
    assert _table(timeline) == [
        ("2026-12-06T00:00Z", "2026-12-06T11:00Z", "alice"),
        ("2026-12-06T11:00Z", "2026-12-07T08:00Z", "dave"),
        ("2026-12-07T08:00Z", "2026-12-09T00:00Z", "bob")]
    assert timeline[1].source == "override 7"


def test_an_override_covering_someone_not_on_call_changes_nothing() -> None:
    sched = _schedule(WEEKLY)
    ov = Override("2", "dave", _z("2026-12-01T00:00Z"), _z("2026-12-02T00:00Z"), covers="bob")
    assert on_call(sched, [ov], _z("2026-12-01T12:00Z")).person == "alice"  # type: ignore[union-attr]


def test_the_later_of_two_overlapping_overrides_wins() -> None:
    sched = _schedule(WEEKLY)
    first = Override("1", "carol", _z("2026-12-01T00:00Z"), _z("2026-12-03T00:00Z"))
    second = Override("2", "dave", _z("2026-12-02T00:00Z"), _z("2026-12-02T12:00Z"))
    assert _table(shifts(sched, [first, second], _z("2026-12-01T00:00Z"),
                         _z("2026-12-03T00:00Z"))) == [
        ("2026-12-01T00:00Z", "2026-12-02T00:00Z", "carol"),
        ("2026-12-02T00:00Z", "2026-12-02T12:00Z", "dave"),
        ("2026-12-02T12:00Z", "2026-12-03T00:00Z", "carol")]


def test_on_call_gives_a_long_override_whole() -> None:
    sched = _schedule({**WEEKLY, "rotation": "daily"})
    ov = Override("3", "dave", _z("2026-12-01T00:00Z"), _z("2027-03-01T00:00Z"))
    assert on_call(sched, [ov], _z("2027-01-15T00:00Z")) == Shift(
        _z("2026-12-01T00:00Z"), _z("2027-03-01T00:00Z"), "dave", "override 3")

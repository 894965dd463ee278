"""Silences and maintenance windows: matching, windows, and what a silenced incident sends."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.incidents import silences
from controlplane.incidents.model import SilenceRow
from controlplane.results import Status
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake
from tests.incidents.harness import T0, Harness, tls_check


def _row(**kw: object) -> SilenceRow:
    base: dict[str, object] = {"check_id": None, "env": None, "labels": {}, "starts_at": None,
                               "ends_at": None, "cron": None, "duration_s": None,
                               "comment": "c", "author": "a", "created_at": T0,
                               "expired_at": None}
    return SilenceRow(**{**base, **kw})


def test_matchers_need_every_given_field_to_match() -> None:
    target = silences.Target("tls-x", "production", {"team": "frontend", "tier": "1"})
    assert silences.matches(_row(check_id="tls-x"), target)
    assert silences.matches(_row(env="production", labels={"team": "frontend"}), target)
    assert not silences.matches(_row(check_id="tls-x", env="staging"), target)
    assert not silences.matches(_row(labels={"team": "kafka"}), target)


def test_one_off_window_is_active_from_start_to_end() -> None:
    row = _row(starts_at=T0, ends_at=T0 + timedelta(hours=1))
    assert silences.window_at(row, T0 - timedelta(seconds=1)) is None
    assert silences.window_at(row, T0) == (T0, T0 + timedelta(hours=1))
    assert silences.window_at(row, T0 + timedelta(hours=1)) is None


def test_recurring_window_opens_on_its_cron_for_its_duration() -> None:
    # Sundays 02:00-04:00 UTC; 2026-11-29 is a Sunday.
    row = _row(cron="0 2 * * sun", duration_s=7200.0)
    sunday_3am = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    assert silences.window_at(row, sunday_3am) == (
        datetime(2026, 11, 29, 2, 0, tzinfo=UTC), datetime(2026, 11, 29, 4, 0, tzinfo=UTC))
    assert silences.window_at(row, datetime(2026, 11, 29, 4, 0, tzinfo=UTC)) is None
    assert silences.window_at(row, datetime(2026, 11, 28, 3, 0, tzinfo=UTC)) is None
    assert silences.window_at(row, datetime(2026, 12, 6, 2, 30, tzinfo=UTC)) is not None


def test_expired_silence_is_inactive() -> None:
    row = _row(starts_at=T0, ends_at=T0 + timedelta(hours=1), expired_at=T0)
    assert silences.window_at(row, T0 + timedelta(minutes=1)) is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"check": None, "env": None, "labels": {}}, "a silence needs at least one matcher"),
    ({"cron": "0 2 * * sun"}, "a recurring silence (cron) needs a duration"),
    ({"cron": "0 2 * *", "duration": 60.0}, "invalid cron '0 2 * *'"),
    ({}, "a one-off silence needs ends_at or duration"),
])
def test_invalid_silences_are_refused_with_a_reason(harness: Harness,
                                                    kwargs: dict[str, object],
                                                    message: str) -> None:
    args: dict[str, object] = {"check": "tls-x", "env": None, "labels": {}, "comment": "c",
                               "author": "a", "now": T0, **kwargs}
    with harness.store.session() as s, pytest.raises(ValueError, match="^" + re.escape(message)):
        silences.add(s, **args)  # type: ignore[arg-type]


def test_a_silenced_incident_is_recorded_but_sends_nothing_until_the_silence_ends(
        harness: Harness, slack_fake: SlackFake, jira_fake: JiraFake) -> None:
    check = tls_check()
    with harness.store.session() as s:
        silences.add(s, check=check.id, env=None, labels={}, comment="cert rotation",
                     author="alice", now=harness.clock(), duration=1800.0)
    harness.feed(check, Status.FAILING, "expired", runs=2)
    harness.feed(check, Status.FAILING, "expired, still")
    for _ in range(20):  # 20 minutes of ticks inside the window
        harness.clock.advance(60)
        harness.service.tick()
        harness.deliver()
    assert slack_fake.messages() == [] and jira_fake.issues == {}
    [inc] = harness.incidents()
    assert (inc.state, inc.silenced_by, inc.notified) == ("open", 1, False)
    assert ("silenced", "not notified: silence #1 (cert rotation) by alice") in \
        harness.timeline(inc.id)
    harness.clock.advance(600)  # the window ends
    harness.service.tick()
    harness.deliver()
    [root] = slack_fake.messages()
    assert root.text.endswith("expired, still")
    assert list(jira_fake.issues) == ["OPS-1"]


def test_an_incident_that_recovers_inside_its_silence_never_notifies(
        harness: Harness, slack_fake: SlackFake) -> None:
    check = tls_check()
    with harness.store.session() as s:
        silences.add(s, check=None, env="production", labels={}, comment="maintenance",
                     author="ops", now=harness.clock(), duration=3600.0)
    harness.feed(check, Status.FAILING, "expired", runs=2)
    harness.feed(check, Status.OK, "fine")
    harness.clock.advance(7200)
    harness.service.tick()
    harness.deliver()
    assert slack_fake.messages() == []
    assert harness.incidents()[0].state == "resolved"


def test_updates_are_held_during_a_maintenance_window_but_the_resolve_is_sent(
        harness: Harness, slack_fake: SlackFake) -> None:
    check = tls_check()
    harness.feed(check, Status.FAILING, "expired", runs=2)
    harness.deliver()
    with harness.store.session() as s:
        silences.add(s, check=check.id, env=None, labels={}, comment="window",
                     author="ops", now=harness.clock(), duration=4 * 3600.0)
    harness.feed(check, Status.FAILING, "expired, new message")
    for _ in range(3):
        harness.clock.advance(3600)
        harness.service.tick()
    harness.feed(check, Status.OK, "fine")
    harness.deliver()
    root = slack_fake.messages(roots_only=True)[0]
    assert [m.text for m in slack_fake.messages(thread_ts=root.ts)] == [
        ":white_check_mark: Resolved after 3h 00m: fine"]


def test_static_silences_from_the_config_are_synced_on_start(harness: Harness) -> None:
    from controlplane.incidents.config import SilenceConfig

    spec = SilenceConfig.model_validate({"matchers": {"env": "staging"},
                                         "comment": "staging is noisy", "cron": "0 * * * *",
                                         "duration": "10m"})
    with harness.store.session() as s:
        silences.sync_static(s, [spec], T0)
        silences.sync_static(s, [spec], T0)  # a restart replaces, never duplicates
        rows = [silences.to_json(r, T0) for r in s.query(SilenceRow)]
    assert [(r["source"], r["matchers"]["env"], r["cron"], r["active"]) for r in rows] == [
        ("config", "staging", "0 * * * *", True)]


def test_an_incident_opened_in_a_recurring_window_is_notified_when_the_window_closes(
        harness: Harness, slack_fake: SlackFake) -> None:
    with harness.store.session() as s:  # daily 12:00-12:30 UTC; T0 is 12:00
        silences.add(s, check=None, env=None, labels={"team": "frontend"},
                     comment="daily deploy", author="ci", now=harness.clock(),
                     cron="0 12 * * *", duration=1800.0)
    harness.feed(tls_check(), Status.FAILING, "expired", runs=2)
    for _ in range(29):  # until 12:29:02
        harness.clock.advance(60)
        harness.service.tick()
        harness.deliver()
    assert slack_fake.messages() == []
    harness.clock.advance(60)  # 12:30:02: the window is over
    harness.service.tick()
    harness.deliver()
    [root] = slack_fake.messages()
    assert root.text == "[FAILING] tls-bic-sky-prod (production, critical): expired"
    kinds = [k for k, _ in harness.timeline(1)]
    assert kinds[:3] == ["opened", "silenced", "unsilenced"]

"""Jira specifics: dedup label, search before create, reopen window, comments, transitions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from controlplane.notifiers.base import ACTIONS, Incident, Notification
from controlplane.notifiers.jira import JiraConfig, JiraNotifier, dedup_label
from controlplane.results import Status
from controlplane.sandbox.jira_fake import JiraFake
from tests.incidents.harness import FakeClock, build, make_config, tls_check
from tests.notifiers.test_contract import PAYLOAD


def test_dedup_label_is_a_stable_hash_of_the_key() -> None:
    assert dedup_label("tls-bic-sky-prod/production") == "cp-" + __import__(
        "hashlib").sha256(b"tls-bic-sky-prod/production").hexdigest()[:16]
    assert dedup_label("a/production") != dedup_label("a/staging")


def test_a_lost_local_store_never_creates_a_second_ticket(tmp_path: Path,
                                                          jira_fake: JiraFake) -> None:
    clock = FakeClock()
    jira_fake.clock = clock
    for db in ("first.db", "second.db"):  # the second control plane starts from nothing
        h = build(make_config(None, jira_fake, tmp_path / db), clock)
        h.feed(tls_check(), Status.FAILING, "expired", runs=2)
        h.deliver()
        assert h.incidents()[0].refs["jira"]["key"] == "OPS-1"
        h.close()
    assert list(jira_fake.issues) == ["OPS-1"]
    labels = jira_fake.issue("OPS-1").fields["labels"]
    assert labels == ["controlplane", dedup_label("tls-bic-sky-prod/production")]


def test_failing_again_within_the_reopen_window_reopens_the_same_ticket(
        tmp_path: Path, jira_fake: JiraFake) -> None:
    clock = FakeClock()
    jira_fake.clock = clock
    h = build(make_config(None, jira_fake, tmp_path / "cp.db"), clock)  # reopen_window 1h
    check = tls_check()
    h.feed(check, Status.FAILING, "expired", runs=2)
    h.feed(check, Status.OK, "renewed")
    h.deliver()
    clock.advance(1800)
    h.feed(check, Status.FAILING, "expired again", runs=2)
    h.deliver()
    issue = jira_fake.issue("OPS-1")
    assert (issue.status, issue.transitions) == ("Reopened", ["Done", "Reopen"])
    assert issue.comments[-1]["body"] == "Failing again: expired again"
    assert [i.refs["jira"]["key"] for i in h.incidents()] == ["OPS-1", "OPS-1"]
    h.close()


def test_failing_again_after_the_reopen_window_opens_a_new_ticket(
        tmp_path: Path, jira_fake: JiraFake) -> None:
    clock = FakeClock()
    jira_fake.clock = clock
    h = build(make_config(None, jira_fake, tmp_path / "cp.db"), clock)
    check = tls_check()
    h.feed(check, Status.FAILING, "expired", runs=2)
    h.feed(check, Status.OK, "renewed")
    h.deliver()
    clock.advance(2 * 3600)
    h.feed(check, Status.FAILING, "expired again", runs=2)
    h.deliver()
    assert list(jira_fake.issues) == ["OPS-1", "OPS-2"]
    assert jira_fake.issue("OPS-1").status == "Done"
    assert jira_fake.issue("OPS-2").status == "Open"
    h.close()


def test_a_comment_identical_to_the_last_one_is_skipped(tmp_path: Path,
                                                         jira_fake: JiraFake) -> None:
    h = build(make_config(None, jira_fake, tmp_path / "cp.db"))
    check = tls_check(notify_on_degraded=True)
    h.feed(check, Status.FAILING, "expired", runs=2)
    h.feed(check, Status.FAILING, "expired 1 day ago")
    h.deliver()
    jira_fake.issue("OPS-1").comments.append(
        {"id": "9", "body": "Update: expired 2 days ago", "author": {"name": "someone"}})
    h.feed(check, Status.FAILING, "expired 2 days ago")
    h.deliver()
    assert [c["body"] for c in jira_fake.issue("OPS-1").comments] == [
        "Update: expired 1 day ago", "Update: expired 2 days ago"]
    assert [e.state for e in h.outbox()] == ["sent"] * 3
    h.close()


def test_a_missing_resolve_transition_is_a_permanent_error_naming_the_options(
        tmp_path: Path, jira_fake: JiraFake) -> None:
    cfg = make_config(None, jira_fake, tmp_path / "cp.db")
    assert isinstance(cfg.notifiers["jira"], JiraConfig)
    cfg.notifiers["jira"].resolve_transition = "Close"
    h = build(cfg)
    check = tls_check()
    h.feed(check, Status.FAILING, "expired", runs=2)
    h.feed(check, Status.OK, "renewed")
    h.deliver()
    resolve = h.outbox()[-1]
    assert (resolve.action, resolve.state, resolve.last_error) == (
        "resolve", "failed", "jira issue OPS-1 has no transition 'Close'; available: done; "
        "fix notifiers.jira.resolve_transition/reopen_transition")
    h.close()


def test_wrong_jira_credentials_are_a_permanent_error(tmp_path: Path,
                                                      jira_fake: JiraFake) -> None:
    cfg = make_config(None, jira_fake, tmp_path / "cp.db")
    assert isinstance(cfg.notifiers["jira"], JiraConfig)
    cfg.notifiers["jira"].token = type(cfg.notifiers["jira"].token)("wrong")
    h = build(cfg)
    h.feed(tls_check(), Status.FAILING, "expired", runs=2)
    h.deliver()
    [entry] = h.outbox()
    assert entry.state == "failed"
    assert entry.last_error.startswith("jira rejected the request: HTTP 401 You are not "
                                       "authenticated.")
    h.close()


@pytest.mark.parametrize("broken_step", ["/comment", "/transitions"])
def test_a_reopen_interrupted_between_its_steps_finishes_on_retry_without_repeats(
        tmp_path: Path, jira_fake: JiraFake, broken_step: str) -> None:
    # A 503 at one step stands for a crash there: the retry must finish the other step.
    clock = FakeClock()
    jira_fake.clock = clock
    h = build(make_config(None, jira_fake, tmp_path / "cp.db"), clock)
    check = tls_check()
    h.feed(check, Status.FAILING, "expired", runs=2)
    h.feed(check, Status.OK, "renewed")
    h.deliver()
    clock.advance(600)
    jira_fake.down(503, path=broken_step, count=1)
    h.feed(check, Status.FAILING, "expired again", runs=2)
    h.deliver(passes=1)
    clock.advance(10)
    h.deliver()
    issue = jira_fake.issue("OPS-1")
    assert (issue.status, issue.transitions) == ("Reopened", ["Done", "Reopen"])
    assert [c["body"] for c in issue.comments] == [
        "Resolved after 1s: renewed", "Failing again: expired again"]
    assert [(e.action, e.state, e.attempts) for e in h.outbox()] == [
        ("open", "sent", 1), ("resolve", "sent", 1), ("open", "sent", 2)]
    h.close()


def test_on_jira_cloud_the_enhanced_search_finds_the_ticket_again(tmp_path: Path) -> None:
    # Jira Cloud removed /search; the jira package switches to /search/jql there.
    cloud = JiraFake(deployment="Cloud")
    cloud.start()
    try:
        for db in ("first.db", "second.db"):  # the second control plane starts from nothing
            h = build(make_config(None, cloud, tmp_path / db))
            h.feed(tls_check(), Status.FAILING, "expired", runs=2)
            h.deliver()
            assert h.incidents()[0].refs["jira"]["key"] == "OPS-1"
            h.close()
        assert list(cloud.issues) == ["OPS-1"]
        assert cloud.count("GET", "/rest/api/2/search/jql", 200) == 2
        assert cloud.count("GET", "/rest/api/2/search", 410) == 0
    finally:
        cloud.stop()


def test_a_person_commenting_between_a_lost_answer_and_the_retry_causes_no_duplicate(
        jira_fake: JiraFake) -> None:
    n = JiraNotifier(JiraConfig(server=jira_fake.url, user=jira_fake.user,
                                token=jira_fake.token, project="OPS"))
    refs = n.notify(Notification(1, 1, "open", dict(PAYLOAD), "k1", 0, datetime.now(UTC)))
    update = {**PAYLOAD, "text": "Update: expired 1 day ago"}
    queued = datetime.now(UTC)
    n.notify(Notification(2, 1, "update", update, "k2", 0, queued, refs))  # answer "lost"
    jira_fake.issue("OPS-1").comments.append(
        {"id": "77", "body": "Looking into it", "author": {"name": "alice"},
         "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")})
    n.notify(Notification(2, 1, "update", update, "k2", 1, queued, refs))  # the retry
    assert [c["body"] for c in jira_fake.issue("OPS-1").comments] == [
        "Update: expired 1 day ago", "Looking into it"]


def test_a_message_that_comes_back_later_is_commented_again(tmp_path: Path,
                                                           jira_fake: JiraFake) -> None:
    # Only comments made since the notification was queued count as its earlier attempts.
    clock = FakeClock()
    jira_fake.clock = clock
    h = build(make_config(None, jira_fake, tmp_path / "cp.db"), clock)
    try:
        check = tls_check()
        h.feed(check, Status.FAILING, "expired", runs=2)
        for message in ("lag 500", "lag 900", "lag 500"):
            clock.advance(600)
            h.feed(check, Status.FAILING, message)
            h.deliver()
        assert [c["body"] for c in jira_fake.issue("OPS-1").comments] == [
            "Update: lag 500", "Update: lag 900", "Update: lag 500"]
    finally:
        h.close()


def test_jira_takes_its_minimum_severity_and_never_reminders() -> None:
    n = JiraNotifier(JiraConfig(server="https://jira.example.com", token="t", project="OPS",
                                min_severity="major"))
    major = Incident(1, "c", "production", "tls", "major", "open", "failing")
    minor = Incident(2, "c", "production", "tls", "minor", "open", "failing")
    assert [e for e in ACTIONS if n.wants(major, e)] == [
        "open", "update", "acknowledge", "resolve"]
    assert [e for e in ACTIONS if n.wants(minor, e)] == []
    assert n.reminder_interval() is None

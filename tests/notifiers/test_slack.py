"""Slack specifics: the thread survives a restart, Retry-After is read, routing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from slack_sdk import WebClient

from controlplane.notifiers.base import Notification, TransportError
from controlplane.notifiers.slack import SlackConfig, SlackNotifier, route
from controlplane.results import Status
from controlplane.sandbox.slack_fake import SlackFake
from tests.incidents.harness import FakeClock, build, make_config, tls_check
from tests.notifiers.test_contract import PAYLOAD


def test_an_update_after_a_restart_lands_in_the_same_thread(tmp_path: Path,
                                                            slack_fake: SlackFake) -> None:
    clock = FakeClock()
    cfg = make_config(slack_fake, None, tmp_path / "cp.db")
    check = tls_check()
    first = build(cfg, clock)
    first.feed(check, Status.FAILING, "expired", runs=2)
    first.deliver()
    first.close()
    second = build(cfg, clock)  # a new process on the same store
    second.feed(check, Status.FAILING, "expired, still")
    second.deliver()
    second.close()
    [root] = slack_fake.messages(roots_only=True)
    assert [m.text for m in slack_fake.messages(thread_ts=root.ts)] == [
        "Update: expired, still"]


def test_rate_limit_reports_the_retry_after_seconds(slack_fake: SlackFake) -> None:
    n = SlackNotifier(SlackConfig(token=slack_fake.token, base_url=slack_fake.api_url,
                                  channel="C0ONCALL"))
    slack_fake.rate_limit(retry_after=17)
    with pytest.raises(TransportError) as info:
        n.notify(Notification(1, 1, "open", dict(PAYLOAD), "k", 0, datetime.now(UTC)))
    assert (info.value.permanent, info.value.retry_after, info.value.message) == (
        False, 17.0, "slack rate limited (429), retry after 17s")


def test_routes_match_labels_severity_and_env_in_order() -> None:
    cfg = SlackConfig.model_validate({"token": "x", "channel": "C0DEFAULT", "routes": [
        {"match": {"severity": ["critical"], "env": ["production"]}, "channel": "C0PAGING"},
        {"match": {"labels": {"team": "kafka"}}, "channel": "C0KAFKA"}]})
    assert route(cfg, "critical", "production", {"team": "kafka"}) == "C0PAGING"
    assert route(cfg, "major", "production", {"team": "kafka"}) == "C0KAFKA"
    assert route(cfg, "critical", "staging", {}) == "C0DEFAULT"


def test_a_lost_answer_after_slack_posted_the_root_does_not_post_it_twice(
        tmp_path: Path, slack_fake: SlackFake) -> None:
    # slack_sdk's default retry handler would resend at once, without our lookup.
    clock = FakeClock()
    h = build(make_config(slack_fake, None, tmp_path / "cp.db"), clock)
    try:
        slack_fake.drop_response("chat.postMessage")
        h.feed(tls_check(), Status.FAILING, "expired", runs=2)
        h.deliver(passes=1)
        [entry] = h.outbox()
        assert (entry.state, entry.attempts, entry.last_error) == (
            "pending", 1, "slack unreachable: RemoteDisconnected: Remote end closed "
                          "connection without response")
        clock.advance(10)
        h.deliver()
        [root] = slack_fake.messages()
        assert slack_fake.count("chat.postMessage") == 1
        assert slack_fake.count("conversations.history") == 1
        [entry] = h.outbox()
        assert (entry.state, entry.attempts) == ("sent", 2)
        assert h.incidents()[0].refs["slack"]["ts"] == root.ts
    finally:
        h.close()


def test_a_lost_answer_after_a_thread_reply_does_not_repeat_the_reply(
        tmp_path: Path, slack_fake: SlackFake) -> None:
    clock = FakeClock()
    h = build(make_config(slack_fake, None, tmp_path / "cp.db"), clock)
    try:
        check = tls_check()
        h.feed(check, Status.FAILING, "expired", runs=2)
        h.deliver()
        slack_fake.drop_response("chat.postMessage")
        h.feed(check, Status.FAILING, "expired 1 day ago")
        h.deliver(passes=1)  # posted, the answer lost: pending with one attempt
        h.feed(check, Status.FAILING, "expired 2 days ago")  # the attempted one stays
        clock.advance(10)
        h.deliver()
        [root] = slack_fake.messages(roots_only=True)
        assert [m.text for m in slack_fake.messages(thread_ts=root.ts)] == [
            "Update: expired 1 day ago", "Update: expired 2 days ago"]
        assert [(e.action, e.state, e.attempts) for e in h.outbox()] == [
            ("open", "sent", 1), ("update", "sent", 2), ("update", "sent", 1)]
    finally:
        h.close()


def test_the_earlier_root_is_found_beyond_the_first_page_of_history(
        slack_fake: SlackFake) -> None:
    n = SlackNotifier(SlackConfig(token=slack_fake.token, base_url=slack_fake.api_url,
                                  channel="C0ONCALL"))
    first = n.notify(Notification(1, 1, "open", dict(PAYLOAD), "k", 0, datetime.now(UTC)))
    chatter = WebClient(token=slack_fake.token, base_url=slack_fake.api_url)
    for i in range(250):  # a busy channel: 250 newer messages push ours to page 2
        chatter.chat_postMessage(channel="C0ONCALL", text=f"chatter {i}")
    again = n.notify(Notification(1, 1, "open", dict(PAYLOAD), "k", 1, datetime.now(UTC)))
    assert again == first
    assert slack_fake.count("conversations.history") == 2
    assert slack_fake.count("chat.postMessage") == 251


def test_a_missing_history_scope_for_the_lookup_says_which_scope_to_add(
        slack_fake: SlackFake) -> None:
    n = SlackNotifier(SlackConfig(token=slack_fake.token, base_url=slack_fake.api_url,
                                  channel="C0ONCALL"))
    slack_fake.fail("missing_scope", method="conversations.history", needed="channels:history")
    with pytest.raises(TransportError) as info:
        n.notify(Notification(1, 1, "open", dict(PAYLOAD), "k", 1, datetime.now(UTC)))
    assert (info.value.permanent, info.value.message) == (
        True, "slack rejected the request: missing_scope (add the channels:history scope to "
              "the Slack app)")
    assert slack_fake.messages() == []

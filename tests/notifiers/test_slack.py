"""Slack specifics: the thread survives a restart, Retry-After is read, routing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from controlplane.notifiers.base import ACTIONS, Incident, Notification, TransportError
from controlplane.notifiers.slack import SlackConfig, SlackNotifier, _link, route
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


def _mrkdwn(m: Any) -> list[str]:
    """Every text Slack would parse for mentions and links: the text and mrkdwn blocks."""
    out = [m.text]
    for block in m.blocks:
        for part in [block.get("text") or {}, *(block.get("fields") or []),
                     *(block.get("elements") or [])]:
            if isinstance(part, dict) and part.get("type") == "mrkdwn":
                out.append(part["text"])
    return out


def test_a_probed_body_cannot_mention_the_channel_or_post_a_link(
        slack_fake: SlackFake) -> None:
    n = SlackNotifier(SlackConfig(token=slack_fake.token, base_url=slack_fake.api_url,
                                  channel="C0ONCALL"))
    body = "HTTP 500: <!channel> see <https://evil.example|the fix> & <@U0BOSS>"
    refs = n.notify(Notification(1, 1, "open", {**PAYLOAD, "message": body,
                                                "dashboard": "https://cp.example.com/i/1"},
                                 "k1", 0, datetime.now(UTC)))
    n.notify(Notification(2, 1, "update", {**PAYLOAD, "text": f"Update: {body}"}, "k2", 0,
                          datetime.now(UTC), refs))
    root, reply = slack_fake.messages()
    escaped = ("HTTP 500: &lt;!channel&gt; see &lt;https://evil.example|the fix&gt; &amp; "
               "&lt;@U0BOSS&gt;")
    assert root.text == f"[FAILING] tls-bic-sky-prod (production, critical): {escaped}"
    assert _mrkdwn(root)[1] == escaped
    assert reply.text == f"Update: {escaped}"
    texts = _mrkdwn(root) + _mrkdwn(reply)
    assert not any("<!" in t or "<@" in t or "<https://evil" in t for t in texts)
    assert "<https://cp.example.com/i/1|Dashboard>" in _mrkdwn(root)[-1]  # ours stays a link


def test_a_link_from_config_cannot_break_out_of_its_brackets() -> None:
    assert _link("https://rb.example/a|b><!channel>", "Runbook") == (
        "<https://rb.example/a%7Cb%3E%3C!channel%3E|Runbook>")


def test_an_html_error_page_on_a_later_history_page_is_a_retryable_outage_logged_as_warning(
        slack_fake: SlackFake, caplog: pytest.LogCaptureFixture) -> None:
    n = SlackNotifier(SlackConfig(token=slack_fake.token, base_url=slack_fake.api_url,
                                  channel="C0ONCALL"))
    chatter = WebClient(token=slack_fake.token, base_url=slack_fake.api_url)
    for i in range(250):  # two pages of history to read before resending
        chatter.chat_postMessage(channel="C0ONCALL", text=f"chatter {i}")
    slack_fake.html_error("conversations.history", status=502, after=1)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TransportError) as info:
        n.notify(Notification(1, 1, "open", dict(PAYLOAD), "k", 1, datetime.now(UTC)))
    assert (info.value.permanent, info.value.message) == (
        False, "slack unavailable: answered with a page that is not JSON")
    slack_fake.html_error("conversations.history", status=503)  # now the first page
    with pytest.raises(TransportError) as info:
        n.notify(Notification(1, 1, "open", dict(PAYLOAD), "k", 1, datetime.now(UTC)))
    assert (info.value.permanent, info.value.message) == (False, "slack unavailable: HTTP 503")
    assert [r.levelname for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert any(r.levelname == "WARNING" and "Failed to decode Slack API response" in
               r.getMessage() for r in caplog.records)
    assert slack_fake.count("chat.postMessage") == 250  # nothing posted blind


def test_an_html_page_during_delivery_is_retried_without_a_crash_report(
        tmp_path: Path, slack_fake: SlackFake, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    h = build(make_config(slack_fake, None, tmp_path / "cp.db"), clock)
    try:
        slack_fake.drop_response("chat.postMessage")
        h.feed(tls_check(), Status.FAILING, "expired", runs=2)
        h.deliver(passes=1)
        slack_fake.html_error("conversations.history", status=502)
        clock.advance(10)
        caplog.set_level(logging.INFO)
        h.deliver(passes=1)
        [entry] = h.outbox()
        assert (entry.state, entry.attempts, entry.last_error) == (
            "pending", 2, "slack unavailable: HTTP 502")
        assert not any("notifier crashed" in r.getMessage() for r in caplog.records)
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        clock.advance(10)
        h.deliver()
        assert [(e.state, e.attempts) for e in h.outbox()] == [("sent", 3)]
        assert len(slack_fake.messages()) == 1
    finally:
        h.close()


def test_routing_and_reminders_are_the_slack_channels_own_rules() -> None:
    n = SlackNotifier(SlackConfig.model_validate({
        "token": "x", "channel": "C0DEFAULT", "repeat_interval": "2h",
        "routes": [{"match": {"labels": {"team": "kafka"}}, "channel": "C0KAFKA"}]}))
    kafka = Incident(1, "lag", "production", "kafka_lag", "minor", "open", "failing",
                     {"team": "kafka"})
    assert n.route(kafka) == ["C0KAFKA"]
    assert n.reminder_interval() == 7200.0
    assert all(n.wants(kafka, event) for event in ACTIONS)

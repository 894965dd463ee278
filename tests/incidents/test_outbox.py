"""The durable outbox: retries, backoff, Retry-After, permanent errors, order, metrics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from controlplane.incidents.config import OutboxConfig
from controlplane.incidents.outbox import OutboxWorker
from controlplane.notifiers.base import Notification, Notifier, TransportError
from controlplane.notifiers.jira import JiraConfig
from controlplane.notifiers.slack import SlackConfig
from controlplane.results import Status
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake
from tests.incidents.harness import FakeClock, Harness, build, make_config, tls_check


def _run_for(h: Harness, seconds: int, step: int = 1) -> None:
    """Let fake time pass, giving the worker a pass every ``step`` seconds."""
    for _ in range(0, seconds, step):
        h.clock.advance(step)
        h.worker.run_once()


def test_every_notification_is_stored_before_it_is_sent(
        harness: Harness, slack_fake: SlackFake) -> None:
    harness.feed(tls_check(), Status.FAILING, "expired", runs=2)
    assert slack_fake.messages() == []
    assert [(e.channel, e.action, e.state) for e in harness.outbox()] == [
        ("slack", "open", "pending"), ("jira", "open", "pending")]
    text = harness.metrics.render().decode()
    assert 'controlplane_notifications_pending{channel="slack"} 1.0' in text
    harness.deliver()
    assert [e.state for e in harness.outbox()] == ["sent", "sent"]
    text = harness.metrics.render().decode()
    assert 'controlplane_notifications_pending{channel="slack"} 0.0' in text


def test_slack_down_for_minutes_then_rate_limited_delivers_everything_in_order(
        harness: Harness, slack_fake: SlackFake) -> None:
    check = tls_check()
    slack_fake.down(503)
    harness.feed(check, Status.FAILING, "expired 1 day ago", runs=2)
    for day in range(2, 6):
        harness.clock.advance(60)
        harness.feed(check, Status.FAILING, f"expired {day} days ago")
        _run_for(harness, 60, step=5)
    assert slack_fake.messages() == []
    failed_calls = [c for c in slack_fake.calls if c[1] == 503]
    # Backoff, not hammering: 48 passes over four minutes make only a handful of attempts.
    assert 5 <= len(failed_calls) < 15, failed_calls
    slack_fake.heal()
    slack_fake.rate_limit(retry_after=30, count=1)
    harness.clock.advance(120)  # past any backoff
    harness.worker.run_once()
    # The entry was tried before, so the worker first looks for an earlier delivery.
    assert [c for c in slack_fake.calls if c[1] == 429] == [("conversations.history", 429)]
    calls_before = len(slack_fake.calls)
    _run_for(harness, 29)
    assert len(slack_fake.calls) == calls_before  # Retry-After honoured: nothing for 30 s
    _run_for(harness, 120)
    [root] = slack_fake.messages(roots_only=True)
    assert root.text.endswith("expired 1 day ago")
    assert [m.text for m in slack_fake.messages(thread_ts=root.ts)] == [
        f"Update: expired {d} days ago" for d in range(2, 6)]
    assert {e.state for e in harness.outbox()} == {"sent"}
    [inc] = harness.incidents()
    timeline = harness.timeline(inc.id)
    assert ("notify_retry", "slack open delayed: slack unavailable: HTTP 503; retrying") \
        in timeline


def test_jira_5xx_is_retried_until_it_recovers(harness: Harness, jira_fake: JiraFake) -> None:
    jira_fake.down(503)
    harness.feed(tls_check(), Status.FAILING, "expired", runs=2)
    _run_for(harness, 300, step=10)
    assert jira_fake.issues == {}
    jira_fake.heal()
    _run_for(harness, 400, step=10)
    assert list(jira_fake.issues) == ["OPS-1"]
    assert harness.incidents()[0].refs["jira"]["key"] == "OPS-1"


def test_jira_unreachable_is_retried(tmp_path: Path, slack_fake: SlackFake,
                                     jira_fake: JiraFake) -> None:
    jira_fake.stop()  # connection refused from now on
    h = build(make_config(None, jira_fake, tmp_path / "cp.db"), FakeClock())
    try:
        h.feed(tls_check(), Status.FAILING, "expired", runs=2)
        h.deliver()
        [entry] = h.outbox()
        assert (entry.state, entry.attempts) == ("pending", 1)
        assert entry.last_error == "jira unreachable: ConnectionError"
    finally:
        h.close()


def test_permanent_slack_error_stops_retrying_is_recorded_and_counted(
        harness: Harness, slack_fake: SlackFake) -> None:
    slack_fake.fail("channel_not_found", method="chat.postMessage", count=None)
    harness.feed(tls_check(), Status.FAILING, "expired", runs=2)
    _run_for(harness, 600, step=10)
    assert slack_fake.count("chat.postMessage") == 1
    slack = [e for e in harness.outbox() if e.channel == "slack"]
    assert [(e.state, e.attempts, e.last_error) for e in slack] == [
        ("failed", 1, "slack rejected the request: channel_not_found")]
    assert ("notify_failed", "slack open failed for good: slack rejected the request: "
            "channel_not_found") in harness.timeline(1)
    text = harness.metrics.render().decode()
    assert 'controlplane_notifications_failed_total{channel="slack"} 1.0' in text


def test_invalid_slack_token_is_a_permanent_error(tmp_path: Path, slack_fake: SlackFake) -> None:
    cfg = make_config(slack_fake, None, tmp_path / "cp.db")
    assert isinstance(cfg.notifiers["slack"], SlackConfig)
    cfg.notifiers["slack"].token = type(cfg.notifiers["slack"].token)("xoxb-wrong")
    h = build(cfg)
    try:
        h.feed(tls_check(), Status.FAILING, "expired", runs=2)
        h.deliver()
        [entry] = h.outbox()
        assert (entry.state, entry.last_error) == (
            "failed", "slack rejected the request: invalid_auth")
        assert 'controlplane_notifications_failed_total{channel="slack"} 1.0' in \
            h.metrics.render().decode()
    finally:
        h.close()


def test_jira_field_error_is_permanent_and_names_the_field(
        tmp_path: Path, jira_fake: JiraFake) -> None:
    cfg = make_config(None, jira_fake, tmp_path / "cp.db")
    assert isinstance(cfg.notifiers["jira"], JiraConfig)
    cfg.notifiers["jira"].issue_type = "Epic"
    h = build(cfg)
    try:
        h.feed(tls_check(), Status.FAILING, "expired", runs=2)
        h.deliver()
        [entry] = h.outbox()
        assert (entry.state, entry.last_error) == (
            "failed", "jira rejected the request: HTTP 400 issuetype: "
                      "The issue type selected is invalid.")
        assert "controlplane_notifications_failed_total{channel=\"jira\"} 1.0" in \
            h.metrics.render().decode()
    finally:
        h.close()


def test_a_slow_incident_does_not_hold_up_another(harness: Harness,
                                                  slack_fake: SlackFake) -> None:
    harness.feed(tls_check(id="a"), Status.FAILING, "a down", runs=2)
    slack_fake.down(503, count=2)
    harness.deliver(passes=1)  # a's open fails and backs off
    harness.feed(tls_check(id="b"), Status.FAILING, "b down", runs=2)
    harness.deliver(passes=1)
    assert [m.text.split(":")[0] for m in slack_fake.messages()] == [
        "[FAILING] b (production, critical)"]
    _run_for(harness, 10)
    assert len(slack_fake.messages(roots_only=True)) == 2


class _EchoingNotifier(Notifier):
    """A service whose error text echoes the credential it was sent (some proxies do)."""

    channel = "slack"

    def secrets(self) -> list[str]:
        return ["xoxb-bare-credential-123"]

    def notify(self, n: Notification) -> dict[str, str]:
        raise TransportError("slack rejected the request: bad token xoxb-bare-credential-123",
                             permanent=True)


def test_stored_errors_never_contain_the_notifier_credentials(harness: Harness) -> None:
    harness.feed(tls_check(), Status.FAILING, "expired", runs=2)
    worker = OutboxWorker(harness.store, {"slack": _EchoingNotifier()}, OutboxConfig(),
                          harness.metrics, harness.clock)
    worker.run_once()
    slack = [e for e in harness.outbox() if e.channel == "slack"]
    assert [(e.state, e.last_error) for e in slack] == [
        ("failed", "slack rejected the request: bad token ***")]
    assert ("notify_failed", "slack open failed for good: slack rejected the request: bad "
            "token ***") in harness.timeline(1)


def test_a_lost_answer_after_jira_created_the_issue_does_not_create_a_second(
        tmp_path: Path, jira_fake: JiraFake) -> None:
    clock = FakeClock()
    h = build(make_config(None, jira_fake, tmp_path / "cp.db"), clock)
    try:
        jira_fake.drop_response("/rest/api/2/issue")
        h.feed(tls_check(), Status.FAILING, "expired", runs=2)
        h.deliver(passes=1)
        assert list(jira_fake.issues) == ["OPS-1"]
        [entry] = h.outbox()
        assert (entry.state, entry.attempts, entry.last_error) == (
            "pending", 1, "jira unreachable: ConnectionError")
        clock.advance(10)
        h.deliver()
        assert list(jira_fake.issues) == ["OPS-1"]
        assert jira_fake.count("POST", "/rest/api/2/issue") == 1
        [entry] = h.outbox()
        assert (entry.state, entry.attempts) == ("sent", 2)
        assert h.incidents()[0].refs["jira"]["key"] == "OPS-1"
    finally:
        h.close()


def test_a_flap_during_a_jira_outage_reaches_jira_in_order(
        harness: Harness, jira_fake: JiraFake) -> None:
    # fail, recover, fail again while Jira is down: two incidents, one dedup key. Jira must
    # see open, resolve, reopen in that order, not the second open before the first resolve.
    jira_fake.down(503)
    check = tls_check()
    harness.feed(check, Status.FAILING, "expired", runs=2)
    harness.feed(check, Status.OK, "renewed")
    harness.feed(check, Status.FAILING, "expired again", runs=2)
    _run_for(harness, 60, step=10)
    assert jira_fake.issues == {}
    jira_fake.heal()
    _run_for(harness, 300, step=10)
    issue = jira_fake.issue("OPS-1")
    assert list(jira_fake.issues) == ["OPS-1"]
    assert (issue.status, issue.transitions) == ("Reopened", ["Done", "Reopen"])
    assert [c["body"] for c in issue.comments] == [
        "Resolved after 1s: renewed", "Failing again: expired again"]
    assert [(i.state, i.refs["jira"]["key"]) for i in harness.incidents()] == [
        ("resolved", "OPS-1"), ("open", "OPS-1")]


def test_a_restart_during_a_retry_after_pause_sends_nothing_until_it_ends(
        tmp_path: Path, slack_fake: SlackFake) -> None:
    clock = FakeClock()
    cfg = make_config(slack_fake, None, tmp_path / "cp.db")
    first = build(cfg, clock)
    tls, other = tls_check(), tls_check(id="tls-other-prod")
    first.feed(tls, Status.FAILING, "expired", runs=2)
    first.feed(other, Status.FAILING, "expired too", runs=2)
    slack_fake.rate_limit(retry_after=120, method="chat.postMessage", count=1)
    first.worker.run_once()  # 429 on the first open: Retry-After 120 s for the channel
    assert slack_fake.calls == [("chat.postMessage", 429)]
    first.feed(tls, Status.FAILING, "expired, still")  # an update written during the pause
    first.close()
    second = build(cfg, clock)  # a new process on the same store, 1 s into the pause
    assert second.worker.paused_until("slack") == clock() + timedelta(seconds=119)
    _run_for(second, 118)
    assert (slack_fake.calls, slack_fake.messages()) == ([("chat.postMessage", 429)], [])
    _run_for(second, 1)  # the pause is over
    second.deliver()
    second.close()
    roots = slack_fake.messages(roots_only=True)
    assert [m.text for m in roots] == [
        "[FAILING] tls-bic-sky-prod (production, critical): expired",
        "[FAILING] tls-other-prod (production, critical): expired too"]
    assert [m.text for m in slack_fake.messages(thread_ts=roots[0].ts)] == [
        "Update: expired, still"]
    assert slack_fake.calls[1:] == [("conversations.history", 200), ("chat.postMessage", 200),
                                    ("chat.postMessage", 200), ("chat.postMessage", 200)]
    assert {e.state for e in second.outbox()} == {"sent"}


def test_a_scrubbed_error_text_keeps_its_brackets(tmp_path: Path, jira_fake: JiraFake) -> None:
    h = build(make_config(None, jira_fake, tmp_path / "cp.db"))
    try:
        jira_fake.down(400, path="/search", message=f"gateway refused the request "
                       f"(token={jira_fake.token}) [api_key=k-123]")
        h.feed(tls_check(), Status.FAILING, "expired", runs=2)
        h.deliver()
        [entry] = h.outbox()
        assert (entry.state, entry.last_error) == (
            "failed", "jira rejected the request: HTTP 400 gateway refused the request "
                      "(token=***) [api_key=***]")
    finally:
        h.close()

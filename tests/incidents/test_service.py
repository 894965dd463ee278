"""The incident life cycle, driven through the real pipeline with fake time."""

from __future__ import annotations

from pathlib import Path

from controlplane.results import Status
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake
from tests.incidents.harness import Harness, build, make_config, tls_check


def test_failing_check_opens_one_incident_with_one_root_message_and_one_issue(
        harness: Harness, slack_fake: SlackFake, jira_fake: JiraFake) -> None:
    check = tls_check()
    harness.feed(check, Status.FAILING, "certificate expired 2 days ago", runs=5)
    harness.deliver()
    [inc] = harness.incidents()
    assert (inc.state, inc.status, inc.severity) == ("open", "failing", "critical")
    assert inc.labels == {"team": "frontend"}
    assert inc.runbook == "https://runbooks.example.com/tls"
    [root] = slack_fake.messages()
    assert root.channel == "C0ONCALL" and root.thread_ts is None
    assert root.text == ("[FAILING] tls-bic-sky-prod (production, critical): "
                         "certificate expired 2 days ago")
    block_text = str(root.blocks)
    for part in ("tls-bic-sky-prod", "production", "critical", "2026-11-26T12:00:01Z",
                 "https://runbooks.example.com/tls", "https://cp.example.com/incidents/1"):
        assert part in block_text
    assert inc.refs["slack"]["ts"] == root.ts
    [issue] = jira_fake.issues.values()
    assert issue.fields["summary"] == "[critical] tls-bic-sky-prod (production) is failing"
    assert issue.fields["issuetype"] == {"name": "Incident"}
    assert "Runbook: https://runbooks.example.com/tls" in issue.fields["description"]
    assert inc.refs["jira"]["key"] == issue.key == "OPS-1"


def test_a_single_failing_run_below_the_threshold_opens_nothing(harness: Harness) -> None:
    harness.feed(tls_check(), Status.FAILING, "timeout", runs=1)
    harness.feed(tls_check(), Status.OK, "fine", runs=1)
    assert harness.incidents() == []


def test_degraded_opens_an_incident_only_where_the_check_asks(harness: Harness) -> None:
    quiet = tls_check(id="tls-quiet")
    loud = tls_check(id="tls-loud", notify_on_degraded=True)
    harness.feed(quiet, Status.DEGRADED, "expires in 10 days", runs=3)
    harness.feed(loud, Status.DEGRADED, "expires in 10 days", runs=3)
    assert [(i.check_id, i.status) for i in harness.incidents()] == [("tls-loud", "degraded")]


def test_escalation_and_message_changes_are_thread_replies_in_order(
        harness: Harness, slack_fake: SlackFake) -> None:
    check = tls_check(notify_on_degraded=True)
    harness.feed(check, Status.DEGRADED, "expires in 5 days", runs=2)
    harness.feed(check, Status.DEGRADED, "expires in 4 days")
    harness.feed(check, Status.FAILING, "expired", runs=2)
    harness.deliver()
    root = slack_fake.messages(roots_only=True)[0]
    replies = [m.text for m in slack_fake.messages(thread_ts=root.ts)]
    assert replies == ["Update: expires in 4 days", "Escalated to failing: expired"]
    assert len(harness.incidents()) == 1


def test_recovery_updates_the_root_replies_with_the_duration_and_resolves_jira(
        harness: Harness, slack_fake: SlackFake, jira_fake: JiraFake) -> None:
    check = tls_check()
    harness.feed(check, Status.FAILING, "certificate expired", runs=2)
    harness.deliver()
    harness.clock.advance(3600 + 120)
    harness.feed(check, Status.OK, "certificate valid for 89 days")
    harness.deliver()
    [root] = slack_fake.messages(roots_only=True)
    assert root.edits == 1
    assert root.text.startswith("[RESOLVED] tls-bic-sky-prod")
    assert "Acknowledge" not in str(root.blocks)
    [reply] = slack_fake.messages(thread_ts=root.ts)
    assert reply.text == (":white_check_mark: Resolved after 1h 02m: "
                          "certificate valid for 89 days")
    issue = jira_fake.issue("OPS-1")
    assert (issue.status, issue.transitions) == ("Done", ["Done"])
    assert issue.comments[-1]["body"] == "Resolved after 1h 02m: certificate valid for 89 days"
    [inc] = harness.incidents()
    assert inc.state == "resolved"
    kinds = [k for k, _ in harness.timeline(inc.id)]
    assert kinds == ["opened", "notified", "notified", "resolved", "notified", "notified"]


def test_reminders_follow_repeat_interval_until_acknowledged(
        harness: Harness, slack_fake: SlackFake) -> None:
    check = tls_check()
    harness.feed(check, Status.FAILING, "expired", runs=2)
    harness.deliver()
    harness.clock.advance(1800)
    harness.service.tick()
    harness.deliver()
    assert len(slack_fake.messages()) == 1  # 30 min < repeat_interval (1h)
    harness.clock.advance(1800)
    harness.service.tick()
    harness.deliver()
    root = slack_fake.messages(roots_only=True)[0]
    [reminder] = slack_fake.messages(thread_ts=root.ts)
    assert reminder.text.startswith(":alarm_clock: Still failing since 2026-11-26T12:00:01Z")
    harness.service.acknowledge(1, "alice", "api")
    for _ in range(6):
        harness.clock.advance(3600)
        harness.service.tick()
        harness.deliver()
    texts = [m.text for m in slack_fake.messages(thread_ts=root.ts)]
    assert texts == [reminder.text, ":eyes: Acknowledged by alice"]
    fields = slack_fake.messages(roots_only=True)[0].blocks[2]["fields"]
    assert {"type": "mrkdwn", "text": "*Acknowledged by*\nalice"} in fields


def test_reminders_are_not_sent_to_jira(harness: Harness, jira_fake: JiraFake) -> None:
    harness.feed(tls_check(), Status.FAILING, "expired", runs=2)
    for _ in range(3):
        harness.clock.advance(3600)
        harness.service.tick()
        harness.deliver()
    assert jira_fake.issue("OPS-1").comments == []


def test_acknowledging_a_resolved_incident_is_refused(harness: Harness) -> None:
    check = tls_check()
    harness.feed(check, Status.FAILING, "expired", runs=2)
    harness.feed(check, Status.OK, "fine")
    try:
        harness.service.acknowledge(1, "bob", "api")
    except ValueError as exc:
        assert str(exc) == "incident 1 is already resolved"
    else:
        raise AssertionError("acknowledge of a resolved incident must fail")


def test_routing_by_label_picks_the_channel(harness: Harness, slack_fake: SlackFake) -> None:
    harness.feed(tls_check(id="kafka-lag-prod", labels={"team": "kafka"}), Status.FAILING,
                 "lag 50000", runs=2)
    harness.deliver()
    assert [m.channel for m in slack_fake.messages()] == ["C0KAFKA"]


def test_minor_incidents_stay_out_of_jira(harness: Harness, jira_fake: JiraFake,
                                           slack_fake: SlackFake) -> None:
    harness.feed(tls_check(severity="minor"), Status.FAILING, "expired", runs=2)
    harness.deliver()
    assert jira_fake.issues == {}
    assert len(slack_fake.messages()) == 1


def test_a_new_failure_after_resolve_opens_a_new_incident_and_thread(
        harness: Harness, slack_fake: SlackFake) -> None:
    check = tls_check()
    harness.feed(check, Status.FAILING, "expired", runs=2)
    harness.feed(check, Status.OK, "fine")
    harness.feed(check, Status.FAILING, "expired again", runs=2)
    harness.deliver()
    assert [(i.id, i.state) for i in harness.incidents()] == [(1, "resolved"), (2, "open")]
    assert len(slack_fake.messages(roots_only=True)) == 2


def test_open_incidents_metric_counts_by_severity(harness: Harness) -> None:
    harness.feed(tls_check(id="a"), Status.FAILING, "x", runs=2)
    harness.feed(tls_check(id="b", severity="minor"), Status.FAILING, "x", runs=2)
    text = harness.metrics.render().decode()
    assert 'controlplane_incidents_open{severity="critical"} 1.0' in text
    assert 'controlplane_incidents_open{severity="minor"} 1.0' in text
    assert 'controlplane_incidents_open{severity="major"} 0.0' in text


def test_with_coalescing_unsent_message_updates_give_way_to_the_newest_in_order(
        coalescing: Harness, slack_fake: SlackFake, jira_fake: JiraFake) -> None:
    check = tls_check(id="kafka-lag-prod")
    coalescing.feed(check, Status.FAILING, "lag 100", runs=2)  # open, not yet delivered
    coalescing.feed(check, Status.FAILING, "lag 200")
    coalescing.feed(check, Status.FAILING, "lag 300")
    [inc] = coalescing.incidents()
    coalescing.service.acknowledge(inc.id, "alice", "api")
    coalescing.feed(check, Status.FAILING, "lag 400")
    coalescing.feed(check, Status.FAILING, "lag 500")
    coalescing.feed(check, Status.OK, "lag 0")
    coalescing.deliver()
    [root] = slack_fake.messages(roots_only=True)
    assert root.text == "[RESOLVED] kafka-lag-prod (production, critical): lag 0"
    assert [m.text for m in slack_fake.messages(thread_ts=root.ts)] == [
        "Update: lag 300", ":eyes: Acknowledged by alice", "Update: lag 500",
        ":white_check_mark: Resolved after 5s: lag 0"]
    assert [c["body"] for c in jira_fake.issue("OPS-1").comments] == [
        "Update: lag 300", "Acknowledged by alice", "Update: lag 500",
        "Resolved after 5s: lag 0"]
    assert [(e.channel, e.action, e.state, e.payload["text"]) for e in coalescing.outbox()] == [
        ("slack", "open", "sent", None), ("jira", "open", "sent", None),
        ("slack", "update", "skipped", "Update: lag 200"),
        ("jira", "update", "skipped", "Update: lag 200"),
        ("slack", "update", "sent", "Update: lag 300"),
        ("jira", "update", "sent", "Update: lag 300"),
        ("slack", "acknowledge", "sent", ":eyes: Acknowledged by alice"),
        ("jira", "acknowledge", "sent", ":eyes: Acknowledged by alice"),
        ("slack", "update", "skipped", "Update: lag 400"),
        ("jira", "update", "skipped", "Update: lag 400"),
        ("slack", "update", "sent", "Update: lag 500"),
        ("jira", "update", "sent", "Update: lag 500"),
        ("slack", "resolve", "sent", None), ("jira", "resolve", "sent", None)]
    assert [e for e in coalescing.timeline(inc.id) if e[0] in ("updated", "coalesced")] == [
        ("updated", "lag 200"), ("updated", "lag 300"),
        ("coalesced", "slack: 1 unsent update replaced by the newest"),
        ("coalesced", "jira: 1 unsent update replaced by the newest"),
        ("updated", "lag 400"), ("updated", "lag 500"),
        ("coalesced", "slack: 1 unsent update replaced by the newest"),
        ("coalesced", "jira: 1 unsent update replaced by the newest")]


def test_with_coalescing_an_update_already_attempted_is_kept_and_later_ones_merge(
        coalescing: Harness, slack_fake: SlackFake) -> None:
    check = tls_check(id="kafka-lag-prod")
    coalescing.feed(check, Status.FAILING, "lag 100", runs=2)
    coalescing.deliver()
    slack_fake.down(503)
    coalescing.feed(check, Status.FAILING, "lag 200")
    coalescing.deliver(passes=1)  # tried once, may have reached Slack: it must stay
    for lag in (300, 400, 500):
        coalescing.feed(check, Status.FAILING, f"lag {lag}")
    slack_fake.heal()
    coalescing.clock.advance(60)
    coalescing.deliver()
    [root] = slack_fake.messages(roots_only=True)
    assert [m.text for m in slack_fake.messages(thread_ts=root.ts)] == [
        "Update: lag 200", "Update: lag 500"]
    assert [(e.action, e.state, e.attempts) for e in coalescing.outbox()
            if e.channel == "slack"] == [
        ("open", "sent", 1), ("update", "sent", 2), ("update", "skipped", 0),
        ("update", "skipped", 0), ("update", "sent", 1)]


def test_update_interval_holds_message_updates_and_other_notifications_release_them(
        tmp_path: Path, slack_fake: SlackFake) -> None:
    cfg = make_config(slack_fake, None, tmp_path / "cp.db")
    cfg.incidents.update_interval = 300.0
    h = build(cfg)
    try:
        check = tls_check(id="kafka-lag-prod")
        h.feed(check, Status.FAILING, "lag 100", runs=2)
        h.feed(check, Status.FAILING, "lag 200")  # the first update goes at once
        h.deliver()
        [root] = slack_fake.messages(roots_only=True)

        def replies() -> list[str]:
            return [m.text for m in slack_fake.messages(thread_ts=root.ts)]

        assert replies() == ["Update: lag 200"]
        h.feed(check, Status.FAILING, "lag 300")  # held until 300 s after lag 200 was sent
        h.feed(check, Status.FAILING, "lag 400")  # replaces it, same hold
        h.clock.advance(297)
        h.deliver()
        assert replies() == ["Update: lag 200"]
        h.clock.advance(1)  # 300 s since lag 200 was sent
        h.deliver()
        assert replies() == ["Update: lag 200", "Update: lag 400"]
        h.feed(check, Status.FAILING, "lag 500")  # held again
        [inc] = h.incidents()
        h.service.acknowledge(inc.id, "alice", "api")  # must not wait behind it
        h.deliver()
        assert replies() == ["Update: lag 200", "Update: lag 400", "Update: lag 500",
                             ":eyes: Acknowledged by alice"]
        assert [(e.action, e.state, e.payload["text"]) for e in h.outbox()] == [
            ("open", "sent", None), ("update", "sent", "Update: lag 200"),
            ("update", "skipped", "Update: lag 300"), ("update", "sent", "Update: lag 400"),
            ("update", "sent", "Update: lag 500"),
            ("acknowledge", "sent", ":eyes: Acknowledged by alice")]
    finally:
        h.close()

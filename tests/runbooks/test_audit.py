"""The auditors' trail: a Jira issue per run (or comments on the incident's issue), Slack
start and end, all through the durable outbox, checked in the Jira and Slack fakes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from controlplane.incidents.model import IncidentRow, OutboxRow
from controlplane.results import utcnow
from controlplane.runbooks import runs
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake
from controlplane.web import create_app
from tests.runbooks.conftest import MakeSite, Site, runbook, step


def _notifiers(slack: SlackFake, jira: JiraFake) -> dict[str, Any]:
    return {"notifiers": {
        "slack": {"token": slack.token, "base_url": slack.api_url, "channel": "C0ONCALL"},
        "jira": {"server": jira.url, "user": jira.user, "token": jira.token,
                 "project": "OPS"}},
        "web": {"admin_token": "t", "public_url": "https://cp.example.com"}}


def _deliver(site: Site) -> None:
    worker = site.runtime.component("incidents").worker  # type: ignore[union-attr]
    for _ in range(10):
        if not worker.run_once():
            return


def _due_now(site: Site) -> None:
    """Skip the outbox's backoff: retries are due at once."""
    with site.runtime.store.session() as s:
        s.execute(update(OutboxRow).where(OutboxRow.state == "pending")
                  .values(next_attempt_at=utcnow()))


def _incident_count(site: Site) -> int:
    with site.runtime.store.session() as s:
        return int(s.scalar(select(func.count()).select_from(IncidentRow)) or 0)


def _site(make_site: MakeSite, slack: SlackFake, jira: JiraFake) -> Site:
    return make_site([runbook("rb", [
        step("ask", "approve", args={"message": "Go?"}),
        step("tell", "note", args={"text": "done by {{ run.started_by }}"}),
    ], parameters={"db": {"type": "string", "default": "restored"}})],
        extra=_notifiers(slack, jira))


def test_a_run_opens_a_jira_issue_with_its_trail_and_posts_start_and_end(
        make_site: MakeSite, slack_fake: SlackFake, jira_fake: JiraFake) -> None:
    site = _site(make_site, slack_fake, jira_fake)
    run_id = site.start("rb", {"db": "voice360_restored"}, by="alice")
    site.wait(run_id, ("waiting_approval",))
    _deliver(site)
    (issue,) = jira_fake.issues.values()
    assert issue.fields["summary"] == f"[major] runbook rb #{run_id} (no env) is running"
    assert issue.fields["description"].startswith(
        f":arrow_forward: Runbook rb run #{run_id} started by alice (test); parameters "
        f"db=voice360_restored; https://cp.example.com/runbooks/runs/{run_id}")
    (root,) = slack_fake.messages("C0ONCALL", roots_only=True)
    assert f"Runbook rb run #{run_id} started by alice" in root.text
    assert not [b for b in root.blocks if b.get("type") == "actions"]  # no Acknowledge
    runs.decide(site.runtime.store, run_id, True, "bob", "api", "ok")
    run = site.wait(run_id)
    _deliver(site)
    assert run["status"] == "succeeded"
    assert site.run(run_id)["jira_key"] == issue.key
    trail = issue.comments[0]["body"]
    lines = trail.splitlines()
    assert lines[0].startswith(f"Runbook rb run #{run_id}: succeeded after ")
    assert lines[0].endswith(": all 2 steps done")
    assert lines[2] == "Steps:"
    assert lines[3].startswith("- ask [approve]: succeeded in ")
    assert lines[3].endswith(": approved by bob: ok")
    assert lines[4].startswith("- tell [note]: succeeded in ")
    assert lines[4].endswith(": done by alice")
    assert lines[5].startswith("Approved (ask) by bob via api at ")
    assert lines[6] == f"Run page: https://cp.example.com/runbooks/runs/{run_id}"
    assert issue.status == "Done"
    replies = slack_fake.messages("C0ONCALL", thread_ts=root.ts)
    assert len(replies) == 1 and replies[0].text.startswith(":white_check_mark: Resolved "
                                                             "after ")
    assert replies[0].text.endswith(": succeeded after " + replies[0].text.split(
        ": succeeded after ")[1])
    assert [(d["channel"], d["action"], d["state"]) for d in site.run(run_id)["audit"]] == [
        ("slack", "open", "sent"), ("jira", "open", "sent"), ("jira", "update", "sent"),
        ("slack", "resolve", "sent"), ("jira", "resolve", "sent")]


def test_a_run_started_by_hand_creates_no_incident(make_site: MakeSite, slack_fake: SlackFake,
                                                   jira_fake: JiraFake) -> None:
    site = _site(make_site, slack_fake, jira_fake)
    client = create_app(site.runtime).test_client()
    run_id = site.start("rb", by="alice")
    site.wait(run_id, ("waiting_approval",))
    runs.decide(site.runtime.store, run_id, True, "bob", "api", "ok")
    site.wait(run_id)
    _deliver(site)
    assert len(jira_fake.issues) == 1 and len(slack_fake.messages("C0ONCALL")) == 2
    assert _incident_count(site) == 0
    assert client.get("/api/v1/incidents").get_json() == {"incidents": []}
    page = client.get("/incidents").get_data(as_text=True)
    assert f"run #{run_id}" not in page and "runbook rb" not in page


def test_the_trail_survives_a_jira_outage(make_site: MakeSite, slack_fake: SlackFake,
                                          jira_fake: JiraFake) -> None:
    site = _site(make_site, slack_fake, jira_fake)
    jira_fake.down(503)
    run_id = site.start("rb")
    site.wait(run_id, ("waiting_approval",))
    runs.decide(site.runtime.store, run_id, False, "carol", "cli", "no")
    assert site.wait(run_id)["status"] == "failed"
    _deliver(site)
    assert jira_fake.issues == {}
    jira_open = next(d for d in site.run(run_id)["audit"] if d["channel"] == "jira")
    assert (jira_open["state"], jira_open["attempts"]) == ("pending", 1)
    assert jira_open["last_error"].startswith("jira ")
    jira_fake.heal()
    # The issue is created but the answer is lost: the retry must find it, not make another.
    jira_fake.drop_response("/rest/api/2/issue", count=1)
    for _ in range(4):
        _due_now(site)
        _deliver(site)
    (issue,) = jira_fake.issues.values()  # exactly one, though the create was retried
    assert jira_fake.count("POST", "/rest/api/2/issue", 201) - jira_fake.count(
        "POST", "/comment", 201) == 1  # one create: the retry found the issue by its label
    trail, end = (c["body"] for c in issue.comments)  # each once
    assert "Rejected (ask) by carol via cli" in trail
    assert end.startswith("Resolved after ") and end.endswith(": rejected by carol: no")
    assert issue.status == "Done"
    assert {d["state"] for d in site.run(run_id)["audit"]} == {"sent"}
    assert site.run(run_id)["jira_key"] == issue.key
    assert _incident_count(site) == 0


def test_a_run_from_an_incident_comments_on_its_issue_and_thread(
        make_site: MakeSite, slack_fake: SlackFake, jira_fake: JiraFake) -> None:
    extra = _notifiers(slack_fake, jira_fake)
    site = make_site([runbook("fix-it", [step("tell", "note", args={"text": "fixed"})],
                              auto=True)], extra=extra,
                     checks=[{"id": "api-up", "kind": "tcp", "target": "127.0.0.1:9",
                              "failure_threshold": 1, "runbook": "fix-it",
                              "severity": "critical", "timeout": "1s"}])
    rb_component = site.runtime.component("runbooks")
    assert rb_component is not None
    from controlplane.probes import probe_class

    check = site.config.check("api-up")
    result = probe_class("tcp")(check).execute()
    assert result.status.value == "failing"
    site.runtime.pipeline.process(result, check)  # incident opens; the runbook starts
    (run,) = runs.history(site.runtime.store, "fix-it")
    assert (run["trigger"], run["started_by"]) == ("incident", f"incident #{run['incident_id']}")
    site.wait(run["id"])
    _deliver(site)
    (issue,) = jira_fake.issues.values()  # the incident's issue; no second one
    bodies = [c["body"] for c in issue.comments]
    assert bodies[0].startswith(f"Runbook fix-it run #{run['id']} started by incident #")
    assert bodies[1].startswith(f"Runbook fix-it run #{run['id']}: succeeded after ")
    (root,) = slack_fake.messages("C0ONCALL", roots_only=True)
    replies = [m.text for m in slack_fake.messages("C0ONCALL", thread_ts=root.ts)]
    assert len(replies) == 2 and "started by incident" in replies[0]
    assert replies[1].startswith(f"Runbook fix-it run #{run['id']}: succeeded")
    assert _incident_count(site) == 1  # the check's own incident only
    assert site.run(run["id"])["jira_key"] == issue.key

"""The auditors' trail: a Jira issue per run (or comments on the incident's issue), Slack
start and end, all through the durable outbox, checked in the Jira and Slack fakes."""

from __future__ import annotations

from typing import Any

from controlplane.incidents.model import IncidentRow
from controlplane.runbooks import runs
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake
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
    with site.runtime.store.session() as s:
        rec = s.get(IncidentRow, run["audit_incident_id"])
        assert rec is not None and (rec.kind, rec.state, rec.status) == (
            "runbook", "resolved", "succeeded")


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
    jira_fake.heal()
    worker = site.runtime.component("incidents").worker  # type: ignore[union-attr]
    with site.runtime.store.session() as s:  # the backoff is due now
        from sqlalchemy import update

        from controlplane.incidents.model import OutboxRow
        from controlplane.results import utcnow

        s.execute(update(OutboxRow).values(next_attempt_at=utcnow()))
    for _ in range(5):
        worker.run_once()
    (issue,) = jira_fake.issues.values()
    assert "Rejected (ask) by carol via cli" in issue.comments[0]["body"]
    assert issue.status == "Done"


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

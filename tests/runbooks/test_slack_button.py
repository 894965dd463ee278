"""An incident naming a runbook gets a signed "Run runbook" button in Slack; only Slack
admins may press it, and only values the control plane signed start anything."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from flask.testing import FlaskClient

from controlplane.probes import probe_class
from controlplane.runbooks import runs
from controlplane.sandbox.slack_fake import SlackFake, sign
from controlplane.web import create_app
from tests.runbooks.conftest import MakeSite, Site, runbook, step

SECRET = "slack-signing-secret"


def _press(client: FlaskClient, value: str, user: str, secret: str = SECRET) -> Any:
    payload = {"type": "block_actions", "user": {"id": user, "username": user.lower()},
               "actions": [{"action_id": "run_runbook", "value": value, "type": "button"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = int(time.time())
    return client.post("/webhooks/slack/interactive", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sign(secret, body, ts)})


def _incident(make_site: MakeSite, slack: SlackFake) -> tuple[Site, str]:
    site = make_site([runbook("restart-api", [step("tell", "note", args={"text": "ok"})])],
                     extra={"notifiers": {"slack": {
                         "token": slack.token, "base_url": slack.api_url, "channel": "C0ONCALL",
                         "signing_secret": SECRET, "admins": ["U0ADMIN"]}}},
                     checks=[{"id": "api-up", "kind": "tcp", "target": "127.0.0.1:9",
                              "failure_threshold": 1, "runbook": "restart-api",
                              "timeout": "1s"}])
    check = site.config.check("api-up")
    site.runtime.pipeline.process(probe_class("tcp")(check).execute(), check)
    worker = site.runtime.component("incidents").worker  # type: ignore[union-attr]
    worker.run_once()
    (root,) = slack.messages("C0ONCALL", roots_only=True)
    (actions,) = [b for b in root.blocks if b.get("type") == "actions"]
    (button,) = [e for e in actions["elements"] if e["action_id"] == "run_runbook"]
    assert button["text"]["text"] == "Run runbook"
    assert button["value"].startswith("restart-api:1:")
    assert runs.history(site.runtime.store) == []  # not auto: nothing started by itself
    return site, str(button["value"])


def test_an_admin_presses_run_runbook_and_it_runs_for_the_incident(
        make_site: MakeSite, slack_fake: SlackFake) -> None:
    site, value = _incident(make_site, slack_fake)
    client = create_app(site.runtime).test_client()
    resp = _press(client, value, "U0ADMIN")
    assert resp.status_code == 200
    assert resp.get_json()["text"] == "Started runbook restart-api: run #1 /runbooks/runs/1"
    run = site.wait(1)
    assert (run["status"], run["trigger"], run["started_by"], run["incident_id"]) == (
        "succeeded", "slack", "u0admin (slack)", 1)


def test_only_admins_and_only_signed_values_start_a_run(make_site: MakeSite,
                                                       slack_fake: SlackFake) -> None:
    site, value = _incident(make_site, slack_fake)
    client = create_app(site.runtime).test_client()
    resp = _press(client, value, "U0SOMEONE")
    assert resp.get_json()["text"] == ("Only Slack admins may run runbooks "
                                       "(notifiers.slack.admins); ask one, or use the "
                                       "dashboard with the admin token")
    forged = value.replace("restart-api:1:", "restart-api:2:")
    assert _press(client, forged, "U0ADMIN").get_json()["text"] == (
        "This button is not one the control plane sent; nothing was started")
    assert _press(client, value, "U0ADMIN", secret="wrong").status_code == 401
    assert runs.history(site.runtime.store) == []


def test_an_auto_runbook_gets_no_run_runbook_button(make_site: MakeSite,
                                                    slack_fake: SlackFake) -> None:
    site = make_site([runbook("restart-api", [step("tell", "note", args={"text": "ok"})],
                              auto=True)],
                     extra={"notifiers": {"slack": {
                         "token": slack_fake.token, "base_url": slack_fake.api_url,
                         "channel": "C0ONCALL", "signing_secret": SECRET,
                         "admins": ["U0ADMIN"]}}},
                     checks=[{"id": "api-up", "kind": "tcp", "target": "127.0.0.1:9",
                              "failure_threshold": 1, "runbook": "restart-api",
                              "timeout": "1s"}])
    check = site.config.check("api-up")
    site.runtime.pipeline.process(probe_class("tcp")(check).execute(), check)
    worker = site.runtime.component("incidents").worker  # type: ignore[union-attr]
    worker.run_once()
    (root,) = slack_fake.messages("C0ONCALL", roots_only=True)
    (actions,) = [b for b in root.blocks if b.get("type") == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == ["acknowledge"]
    assert "Runbook" in json.dumps(root.blocks)  # the link to the runbook stays
    (run,) = runs.history(site.runtime.store)  # it started by itself instead
    assert (run["runbook"], run["trigger"]) == ("restart-api", "incident")

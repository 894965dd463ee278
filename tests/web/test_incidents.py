"""Incidents and silences over HTTP: pages, JSON API, acknowledge, Slack's button."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.probes.base import CheckConfig
from controlplane.results import Result, Status
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake, click_button, sign
from controlplane.web import create_app

TOKEN = "s3cret-admin-token"
SIGNING = "slack-signing-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECK = CheckConfig(id="tls-bic-sky-prod", kind="synthetic", env="production",
                    severity="critical", failure_threshold=1, labels={"team": "frontend"},
                    runbook="tls-renew")


@pytest.fixture
def rt(tmp_path: Path, slack_fake: SlackFake, jira_fake: JiraFake) -> Iterator[Runtime]:
    cfg = {"environments": {"production": {}}, "store": {"dsn": f"sqlite:///{tmp_path}/cp.db"},
           "web": {"admin_token": TOKEN, "public_url": "https://cp.example.com"},
           "check_files": [],
           "notifiers": {"slack": {"token": slack_fake.token, "base_url": slack_fake.api_url,
                                   "channel": "C0ONCALL", "signing_secret": SIGNING},
                         "jira": {"server": jira_fake.url, "user": jira_fake.user,
                                  "token": jira_fake.token, "project": "OPS"}}}
    path = tmp_path / "controlplane.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runtime = build_runtime(load_config(str(path)))
    yield runtime
    runtime.stop(0)


@pytest.fixture
def client(rt: Runtime) -> FlaskClient:
    return create_app(rt).test_client()


def _fail(rt: Runtime, message: str = "certificate expired") -> None:
    rt.pipeline.process(Result(check=CHECK.id, kind=CHECK.kind, env=CHECK.env,
                               status=Status.FAILING, message=message), CHECK)
    worker: Any = rt.component("incidents").worker  # type: ignore[union-attr]
    worker.run_once()


def test_incidents_api_lists_the_incident_with_links_and_references(
        rt: Runtime, client: FlaskClient) -> None:
    _fail(rt)
    body = client.get("/api/v1/incidents").get_json()
    [inc] = body["incidents"]
    assert {k: inc[k] for k in ("id", "check", "env", "severity", "state", "status",
                                "message", "runbook", "dashboard")} == {
        "id": 1, "check": "tls-bic-sky-prod", "env": "production", "severity": "critical",
        "state": "open", "status": "failing", "message": "certificate expired",
        "runbook": "tls-renew", "dashboard": "https://cp.example.com/incidents/1"}
    assert inc["jira"] == {"key": "OPS-1"}
    assert inc["slack"]["channel"] == "C0ONCALL"
    detail = client.get("/api/v1/incidents/1").get_json()
    assert [e["kind"] for e in detail["timeline"]] == ["opened", "notified", "notified"]
    assert [(n["channel"], n["action"], n["state"]) for n in detail["notifications"]] == [
        ("slack", "open", "sent"), ("jira", "open", "sent")]
    assert client.get("/api/v1/incidents?state=resolved").get_json() == {"incidents": []}
    assert client.get("/api/v1/incidents?state=bogus").status_code == 400
    assert client.get("/api/v1/incidents/99").status_code == 404


def test_acknowledge_needs_the_admin_token(rt: Runtime, client: FlaskClient) -> None:
    _fail(rt)
    resp = client.post("/api/v1/incidents/1/acknowledge", json={"by": "mallory"})
    assert resp.status_code == 401
    assert client.get("/api/v1/incidents/1").get_json()["state"] == "open"
    resp = client.post("/api/v1/incidents/1/acknowledge", json={"by": "alice"}, headers=AUTH)
    assert resp.status_code == 200
    assert (resp.get_json()["state"], resp.get_json()["acknowledged_by"]) == (
        "acknowledged", "alice")
    timeline = client.get("/api/v1/incidents/1").get_json()["timeline"]
    assert {"kind": "acknowledged", "message": "acknowledged by alice via api"} in [
        {k: e[k] for k in ("kind", "message")} for e in timeline]


def test_incidents_page_lists_active_incidents_and_permanent_failures(
        rt: Runtime, client: FlaskClient, slack_fake: SlackFake) -> None:
    slack_fake.fail("channel_not_found", method="chat.postMessage", count=None)
    _fail(rt)
    html = client.get("/incidents").get_data(as_text=True)
    assert '<tr data-incident="1">' in html
    assert 'class="ack" data-id="1"' in html
    assert "slack rejected the request: channel_not_found" in html
    assert "incidents.js" in html
    page = client.get("/incidents/1").get_data(as_text=True)
    assert "slack open failed for good: slack rejected the request: channel_not_found" in page
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'controlplane_notifications_failed_total{channel="slack"} 1.0' in metrics
    assert 'controlplane_incidents_open{severity="critical"} 1.0' in metrics


def test_silences_api_adds_lists_and_expires(rt: Runtime, client: FlaskClient) -> None:
    # The check has reported (it is not in this config): a silence may name it.
    rt.pipeline.process(Result(check=CHECK.id, kind=CHECK.kind, env=CHECK.env,
                               status=Status.OK), CHECK)
    spec = {"matchers": {"check": "tls-bic-sky-prod"}, "comment": "cert rotation",
            "author": "alice", "duration": "2h"}
    assert client.post("/api/v1/silences", json=spec).status_code == 401
    resp = client.post("/api/v1/silences", json=spec, headers=AUTH)
    assert resp.status_code == 201
    created = resp.get_json()
    assert (created["id"], created["active"], created["author"]) == (1, True, "alice")
    assert client.get("/api/v1/silences").status_code == 401
    [listed] = client.get("/api/v1/silences", headers=AUTH).get_json()["silences"]
    assert listed["matchers"] == {"check": "tls-bic-sky-prod", "env": None, "labels": {}}
    assert "cert rotation" in client.get("/silences").get_data(as_text=True)
    assert client.delete("/api/v1/silences/1").status_code == 401
    assert client.delete("/api/v1/silences/1", headers=AUTH).status_code == 200
    assert client.get("/api/v1/silences", headers=AUTH).get_json() == {"silences": []}
    assert client.delete("/api/v1/silences/7", headers=AUTH).status_code == 404


def test_invalid_silence_gets_400_with_the_reason(client: FlaskClient) -> None:
    resp = client.post("/api/v1/silences", headers=AUTH, json={
        "matchers": {"check": "x"}, "comment": "c", "cron": "0 2 * * sun"})
    assert resp.status_code == 400
    assert resp.get_json()["problems"] == [
        "body: a recurring silence (cron) needs a duration, e.g. duration: 2h"]
    resp = client.post("/api/v1/silences", headers=AUTH, json={
        "matchers": {}, "comment": "c", "duration": "1h"})
    assert resp.get_json() == {"error": "a silence needs at least one matcher (check, env or "
                                        "a label); silencing everything is not allowed"}


def test_expiring_a_silence_notifies_the_incident_it_held_back(
        rt: Runtime, client: FlaskClient, slack_fake: SlackFake) -> None:
    client.post("/api/v1/silences", headers=AUTH, json={
        "matchers": {"env": "production"}, "comment": "maintenance", "duration": "1h"})
    _fail(rt)
    assert slack_fake.messages() == []
    client.delete("/api/v1/silences/1", headers=AUTH)
    rt.component("incidents").worker.run_once()  # type: ignore[union-attr]
    assert len(slack_fake.messages()) == 1


@pytest.fixture
def served(rt: Runtime) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, create_app(rt), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_slack_acknowledge_button_acknowledges_and_updates_the_thread(
        rt: Runtime, served: str, slack_fake: SlackFake) -> None:
    _fail(rt)
    status, body = click_button(served + "/webhooks/slack/interactive", SIGNING, 1, "alice")
    assert status == 200
    assert json.loads(body)["text"] == "Acknowledged incident 1"
    rt.component("incidents").worker.run_once()  # type: ignore[union-attr]
    [root] = slack_fake.messages(roots_only=True)
    assert [m.text for m in slack_fake.messages(thread_ts=root.ts)] == [
        ":eyes: Acknowledged by alice"]
    assert "\"action_id\": \"acknowledge\"" not in json.dumps(root.blocks)  # button gone


@pytest.mark.parametrize(("secret", "age_s"), [("wrong-secret", 0), (SIGNING, 600)])
def test_slack_webhook_with_bad_signature_or_old_timestamp_gets_401_and_changes_nothing(
        rt: Runtime, served: str, client: FlaskClient, secret: str, age_s: int) -> None:
    _fail(rt)
    status, body = click_button(served + "/webhooks/slack/interactive", secret, 1, "mallory",
                                timestamp=int(time.time()) - age_s)
    assert status == 401
    assert json.loads(body) == {"error": "invalid Slack signature or timestamp"}
    assert client.get("/api/v1/incidents/1").get_json()["state"] == "open"


def test_slack_webhook_rejects_a_replayed_body_with_another_signature(
        rt: Runtime, served: str) -> None:
    _fail(rt)
    ts = int(time.time())
    status, _ = click_button(served + "/webhooks/slack/interactive", SIGNING, 1, "x",
                             timestamp=ts, signature=sign(SIGNING, b"other body", ts))
    assert status == 401


def test_slack_webhook_with_a_timestamp_that_is_not_a_number_gets_401(served: str) -> None:
    resp = requests.post(served + "/webhooks/slack/interactive", data={"payload": "{}"},
                         headers={"X-Slack-Request-Timestamp": "abc",
                                  "X-Slack-Signature": "v0=00"}, timeout=10)
    assert (resp.status_code, resp.json()) == (
        401, {"error": "X-Slack-Request-Timestamp must be a unix time in seconds"})


def test_slack_webhook_refuses_a_large_body_before_reading_it(served: str) -> None:
    ts = int(time.time())
    body = b"payload=" + b"x" * (100 * 1024)
    resp = requests.post(served + "/webhooks/slack/interactive", data=body, timeout=10,
                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                  "X-Slack-Request-Timestamp": str(ts),
                                  "X-Slack-Signature": sign(SIGNING, body, ts)})
    assert (resp.status_code, resp.json()) == (
        413, {"error": f"body of {len(body)} bytes refused; at most 65536"})


@pytest.mark.browser
def test_dashboard_acknowledge_button_asks_for_the_token_and_acknowledges(
        rt: Runtime, served: str, client: FlaskClient) -> None:
    from playwright.sync_api import sync_playwright

    _fail(rt)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("dialog", lambda dialog: dialog.accept(TOKEN))
            page.goto(served + "/incidents")
            page.click('button.ack[data-id="1"]')
            page.wait_for_selector("text=by dashboard", timeout=60_000)
        finally:
            browser.close()
    inc = client.get("/api/v1/incidents/1").get_json()
    assert (inc["state"], inc["acknowledged_by"]) == ("acknowledged", "dashboard")
    assert {"kind": "acknowledged", "message": "acknowledged by dashboard via dashboard"} in [
        {k: e[k] for k in ("kind", "message")} for e in inc["timeline"]]


def test_no_page_or_api_answer_shows_a_credential(rt: Runtime, client: FlaskClient,
                                                  slack_fake: SlackFake,
                                                  jira_fake: JiraFake) -> None:
    slack_fake.fail("invalid_auth", method="chat.postMessage", count=None)
    jira_fake.down(401)
    _fail(rt)
    client.post("/api/v1/silences", headers=AUTH, json={
        "matchers": {"env": "staging"}, "comment": "patching", "duration": "1h"})
    pages = ["/incidents", "/incidents/1", "/api/v1/incidents", "/api/v1/incidents/1",
             "/silences", "/api/v1/silences?all=1", "/metrics"]
    bodies = {p: client.get(p, headers=AUTH).get_data(as_text=True) for p in pages}
    assert "slack rejected the request: invalid_auth" in bodies["/incidents"]
    assert "jira rejected the request: HTTP 401" in bodies["/incidents"]
    for secret in (slack_fake.token, jira_fake.token, SIGNING, TOKEN):
        assert [p for p, body in bodies.items() if secret in body] == [], secret

"""The web server as an attacker meets it: limits, headers, auth, and bad input that must get
a 4xx with our own message, never a 500. Served by the production server (waitress)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from twilio.request_validator import RequestValidator

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.results import Result, Status
from controlplane.server import WebServer
from controlplane.store.results import add_results
from controlplane.web import SECURITY_HEADERS, create_app

pytestmark = pytest.mark.usefixtures("scripted_kind")

TOKEN = "s3cret-admin-token"
CONFIG = f"""
environments:
  production: {{label: Production}}
store: {{dsn: "sqlite:///%(db)s"}}
web: {{admin_token: {TOKEN}}}
check_files: []
notifiers:
  slack: {{token: xoxb-test-0000, channel: C0123ABCD, signing_secret: ""}}
checks:
  - {{id: tls-prod, kind: scripted, env: production}}
  - id: idcard-webhook
    kind: idcard_sms
    env: production
    api_token: t
    phone: "+15550100001"
    receive: webhook
    timeout: 400
    twilio: {{account_sid: AC{"1" * 32}, auth_token: ""}}
"""
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    path = tmp_path / "controlplane.yaml"
    path.write_text(CONFIG % {"db": tmp_path / "cp.db"})
    runtime = build_runtime(load_config(str(path)))
    yield runtime
    runtime.stop(0)


@pytest.fixture
def base(rt: Runtime) -> Iterator[str]:
    server = WebServer(create_app(rt), "127.0.0.1", 0).start()
    yield server.url
    server.stop()


def test_every_answer_carries_the_security_headers(base: str) -> None:
    for path in ("/", "/incidents", "/api/v1/checks", "/no/such/page"):
        resp = requests.get(base + path, timeout=10)
        assert {k: resp.headers.get(k) for k in SECURITY_HEADERS} == SECURITY_HEADERS
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp


def test_pages_have_no_inline_script(base: str) -> None:
    for path in ("/", "/incidents", "/silences", "/dr", "/checks/tls-prod"):
        html = requests.get(base + path, timeout=10).text
        assert "<script>" not in html and " onclick=" not in html, path


@pytest.mark.parametrize(("header", "status"), [
    (f"Bearer {TOKEN}", 200), (f"bearer {TOKEN}", 200), (f"BEARER  {TOKEN} ", 200),
    (TOKEN, 401), (f"Basic {TOKEN}", 401), (f"Bearer {TOKEN}x", 401), ("Bearer", 401), ("", 401),
])
def test_admin_token_only_as_a_bearer_credential(base: str, header: str, status: int) -> None:
    resp = requests.get(base + "/api/v1/silences", headers={"Authorization": header},
                        timeout=10)
    assert resp.status_code == status
    if status == 401:
        assert resp.json()["error"] == ("missing or wrong admin token: send it as "
                                        "'Authorization: Bearer <web.admin_token>'")
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="controlplane"'


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/api/v1/checks/tls-prod/results?since=inf", 400, "is neither an ISO 8601 time"),
    ("/api/v1/checks/tls-prod/results?since=nan", 400, "is neither an ISO 8601 time"),
    ("/api/v1/checks/tls-prod/results?since=99999999999d", 400, "further than the calendar"),
    ("/api/v1/checks/tls-prod/results?limit=100000000000000000000", 200, None),
    ("/api/v1/incidents?limit=100000000000000000000", 200, None),
    ("/api/v1/incidents?limit=1e20", 400, "limit must be a whole number from 1 to 1000"),
    ("/api/v1/incidents/99999999999999999999999", 404, "not found"),
    ("/incidents/99999999999999999999999", 404, None),
])
def test_unauthenticated_bad_input_gets_a_clear_4xx(base: str, path: str, status: int,
                                                   message: str | None) -> None:
    resp = requests.get(base + path, timeout=10)
    assert resp.status_code == status
    if message is not None:
        assert message in resp.json()["error"].lower() or message in resp.json()["error"]


@pytest.mark.parametrize(("duration", "message"), [
    ("inf", "'inf' is not a duration; write it like 30s, 5m, 1h30m or 2d"),
    ("nan", "'nan' is not a duration; write it like 30s, 5m, 1h30m or 2d"),
    ("99999999999d", "duration must be more than 0s and at most 366d, not 8.64e+15s"),
    ("0s", "duration must be more than 0s and at most 366d, not 0s"),
])
def test_silence_durations_out_of_range_get_our_own_message(base: str, duration: str,
                                                           message: str) -> None:
    resp = requests.post(base + "/api/v1/silences", headers=AUTH, timeout=10, json={
        "matchers": {"check": "tls-prod"}, "comment": "c", "duration": duration})
    assert resp.status_code == 400
    assert resp.json()["problems"] == [f"duration: {message}"] or \
        resp.json()["problems"] == [f"body: {message}"]


def test_silence_validation_refuses_what_would_silence_nothing(base: str) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    def add(**fields: object) -> requests.Response:
        body = {"matchers": {"check": "tls-prod"}, "comment": "c", **fields}
        return requests.post(base + "/api/v1/silences", headers=AUTH, json=body, timeout=10)

    resp = add(ends_at=past)
    assert (resp.status_code, resp.json()["error"]) == (
        400, "ends_at is in the past; a silence must end in the future")
    resp = add(cron="0 2 31 2 *", duration="1h")
    assert resp.status_code == 400
    assert resp.json()["problems"] == [
        "body: cron '0 2 31 2 *' never fires (no such date); check the day and month fields"]
    resp = requests.post(base + "/api/v1/silences", headers=AUTH, timeout=10, json={
        "matchers": {"check": "tls-prdo"}, "comment": "c", "duration": "1h"})
    assert (resp.status_code, resp.json()["error"]) == (
        400, "no check with id 'tls-prdo'; use one of the ids from `controlplane check list` "
             "(a typo would silence nothing)")
    assert add(duration="1h").status_code == 201


def test_empty_slack_signing_secret_gives_403(base: str) -> None:
    resp = requests.post(base + "/webhooks/slack/interactive", data={"payload": "{}"},
                         headers={"X-Slack-Request-Timestamp": "abc"}, timeout=10)
    assert resp.status_code == 403
    assert resp.json()["error"] == "Slack webhook disabled: set notifiers.slack.signing_secret"


def test_a_huge_body_is_refused_before_it_is_read(base: str) -> None:
    # Declares 250 MB and sends none of it: the answer comes at once, from the headers.
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /webhooks/slack/interactive HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 262144000\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_body_over_one_megabyte_is_refused_on_every_route(base: str) -> None:
    resp = requests.post(base + "/api/v1/silences", headers=AUTH, data=b"x" * (1024 * 1024 + 1),
                         timeout=10)
    assert resp.status_code == 413


def test_an_empty_twilio_auth_token_refuses_a_text_signed_with_it(
        base: str, rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    params = {"MessageSid": "SM" + "1" * 32, "From": "+15550199001",
              "To": "+15550100001\nts=forged level=INFO msg=all good", "Body": "hi"}
    url = base + "/webhooks/twilio/sms"
    forged = RequestValidator("").compute_signature(url, params)
    with caplog.at_level(logging.WARNING, logger="controlplane.web.twilio_webhook"):
        resp = requests.post(url, data=params, headers={"X-Twilio-Signature": forged},
                             timeout=10)
    assert resp.status_code == 403
    [record] = [r for r in caplog.records if "twilio webhook rejected" in r.getMessage()]
    assert "\n" not in record.getMessage()
    assert "to='+15550100001\\nts=forged" in record.getMessage()


def test_validate_warns_about_a_webhook_check_without_an_auth_token(
        rt: Runtime) -> None:
    from controlplane.web.twilio_webhook import webhook_warnings

    assert webhook_warnings(rt.config.checks) == [
        "check idcard-webhook: receive: webhook with an empty twilio.auth_token; the SMS "
        "webhook refuses every text for it until TWILIO_AUTH_TOKEN (or the field) is set"]


def test_a_secret_stored_in_a_result_never_reaches_a_page(base: str, rt: Runtime) -> None:
    leaked = Result(check="tls-prod", kind="scripted", env="production", status=Status.FAILING,
                    message="upstream said Authorization: Basic YWxpY2U6aHVudGVyMg== and "
                            "xoxb-1234-5678-leakedvalue")
    with rt.store.session() as s:
        add_results(s, [leaked])
    html = requests.get(base + "/checks/tls-prod", timeout=10).text
    assert "YWxpY2U6aHVudGVyMg" not in html and "leakedvalue" not in html
    assert "Basic ***" in html

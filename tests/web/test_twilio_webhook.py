"""POST /webhooks/twilio/sms on a real control plane web server: signatures decide."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.probes.inbox import SmsInbox
from controlplane.results import Status
from controlplane.sandbox.runner import Sandbox
from controlplane.web import create_app
from tests.services.sandbox import idcard_check_dict, write_config

PHONE = "+15550100001"


@pytest.fixture
def control_plane(sandbox: Sandbox, tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    check = idcard_check_dict(sandbox, receive="webhook", id="idcard-webhook",
                              sla={"receive_sms": 3, "total": 60})
    cfg = load_config(str(write_config(tmp_path / "controlplane.yaml", [check])))
    runtime = build_runtime(cfg)
    server = make_server("127.0.0.1", 0, create_app(runtime), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", runtime
    server.shutdown()
    runtime.stop(0)


def post(base: str, params: dict[str, str], token: str | None,
         url: str | None = None) -> requests.Response:
    target = f"{base}/webhooks/twilio/sms"
    headers = {}
    if token is not None:
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(
            url or target, params)
    return requests.post(target, data=params, headers=headers, timeout=10)


def inbound(body: str = "Open https://bic-sky.halo360.ai/idcard/abc") -> dict[str, str]:
    return {"MessageSid": "SM" + "1" * 32, "AccountSid": "AC" + "2" * 32, "From": "+15550199001",
            "To": PHONE, "Body": body, "NumMedia": "0", "SmsStatus": "received"}


def inbox(runtime: Runtime) -> SmsInbox:
    return runtime.context.services.sms_inbox


def test_valid_signature_is_accepted_into_the_inbox(
        sandbox: Sandbox, control_plane: tuple[str, Runtime]) -> None:
    base, runtime = control_plane
    assert sandbox.twilio is not None
    resp = post(base, inbound(), sandbox.twilio.auth_token)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/xml")
    assert resp.text == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    assert inbox(runtime).snapshot(PHONE) == {"SM" + "1" * 32,
                                              "https://bic-sky.halo360.ai/idcard/abc"}


def test_bad_signature_gets_403_and_is_ignored(
        control_plane: tuple[str, Runtime]) -> None:
    base, runtime = control_plane
    resp = post(base, inbound(), "not-the-auth-token")
    assert (resp.status_code, resp.text) == (403, "invalid or missing X-Twilio-Signature\n")
    assert inbox(runtime).snapshot(PHONE) == set()


def test_missing_signature_gets_403(control_plane: tuple[str, Runtime]) -> None:
    base, runtime = control_plane
    assert post(base, inbound(), None).status_code == 403
    assert inbox(runtime).snapshot(PHONE) == set()


def test_signature_for_another_url_gets_403(
        sandbox: Sandbox, control_plane: tuple[str, Runtime]) -> None:
    base, runtime = control_plane
    assert sandbox.twilio is not None
    resp = post(base, inbound(), sandbox.twilio.auth_token, url="https://elsewhere.example/sms")
    assert resp.status_code == 403
    assert inbox(runtime).snapshot(PHONE) == set()


def test_tampered_body_gets_403(sandbox: Sandbox, control_plane: tuple[str, Runtime]) -> None:
    base, _ = control_plane
    assert sandbox.twilio is not None
    params = inbound()
    signature = RequestValidator(sandbox.twilio.auth_token).compute_signature(
        f"{base}/webhooks/twilio/sms", params)
    params["Body"] = "Open https://evil.example/idcard/abc"
    resp = requests.post(f"{base}/webhooks/twilio/sms", data=params, timeout=10,
                         headers={"X-Twilio-Signature": signature})
    assert resp.status_code == 403


def test_idcard_check_receives_its_sms_by_webhook(
        sandbox: Sandbox, control_plane: tuple[str, Runtime]) -> None:
    base, runtime = control_plane
    assert sandbox.twilio is not None
    sandbox.twilio.set_sms_url(PHONE, f"{base}/webhooks/twilio/sms")
    result = runtime.scheduler.run_now("idcard-webhook")
    assert result.status == Status.OK, result.message
    receive = next(s for s in result.steps if s.name == "receive_sms")
    assert receive.message.startswith("SMS SM") and " received after " in receive.message
    accepted: list[dict[str, Any]] = sandbox.twilio.webhook_log
    assert any(e["url"].startswith(base) and e.get("status") == 200 for e in accepted)


def test_webhook_check_fails_when_the_sms_never_comes(
        sandbox: Sandbox, control_plane: tuple[str, Runtime]) -> None:
    base, runtime = control_plane
    assert sandbox.twilio is not None
    sandbox.twilio.set_sms_url(PHONE, f"{base}/webhooks/twilio/sms")
    sandbox.faults.set("sms_dropped")
    result = runtime.scheduler.run_now("idcard-webhook")
    assert result.status == Status.FAILING
    assert result.message == ("receive_sms: no SMS delivered to +15550100001 within 3s (nothing "
                              "valid came to /webhooks/twilio/sms; check the number's SmsUrl "
                              "points at this control plane)")

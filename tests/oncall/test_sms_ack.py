"""Replying "ACK <id>" to a page acknowledges the incident through the signed Twilio
webhook of a real control plane web server, and stops its escalation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.incidents.model import IncidentEventRow, IncidentRow
from controlplane.results import Result, Status
from controlplane.sandbox.servers import AppServer
from controlplane.sandbox.twilio_fake import TwilioFake
from controlplane.web import create_app
from tests.incidents.harness import tls_check
from tests.oncall.test_escalation import ALICE, CAROL, FROM, OPS, oncall

CHECK = tls_check(failure_threshold=1)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Runtime, TwilioFake]]:
    fake = TwilioFake()
    api = AppServer("twilio", fake.app).start()
    phone = {"account_sid": fake.account_sid, "auth_token": fake.auth_token,
             "from_number": FROM, "to": [OPS], "api_base": api.url}
    policy = {"steps": [{"notify": ["oncall:primary"], "via": ["sms"]},
                        {"after": "10m", "notify": ["oncall:secondary"], "via": ["sms"]}]}
    cfg = {"environments": {"production": {}}, "check_files": [],
           "store": {"dsn": f"sqlite:///{tmp_path / 'cp.db'}"},
           "notifiers": {"sms": phone}, "oncall": oncall(policies={"all": policy})}
    path = tmp_path / "controlplane.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runtime = build_runtime(load_config(str(path)))
    server = make_server("127.0.0.1", 0, create_app(runtime), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", runtime, fake
    server.shutdown()
    runtime.stop(0)
    api.stop()
    fake.stop()


def _open(rt: Runtime) -> int:
    rt.pipeline.process(Result(check=CHECK.id, kind=CHECK.kind, env=CHECK.env,
                               status=Status.FAILING, message="certificate expired"), CHECK)
    with rt.store.session() as s:
        [inc] = s.query(IncidentRow).all()
        return inc.id


def _reply(base: str, token: str, sender: str, body: str) -> requests.Response:
    url = f"{base}/webhooks/twilio/sms"
    params = {"MessageSid": "SM" + "1" * 32, "From": sender, "To": FROM, "Body": body}
    signature = RequestValidator(token).compute_signature(url, params)
    return requests.post(url, data=params, headers={"X-Twilio-Signature": signature},
                         timeout=10)


def _events(rt: Runtime, incident_id: int) -> list[tuple[str, str]]:
    with rt.store.session() as s:
        rows: Any = s.query(IncidentEventRow).filter_by(incident_id=incident_id).order_by(
            IncidentEventRow.id)
        return [(r.kind, r.message) for r in rows]


def test_ack_reply_from_the_paged_person_acknowledges_and_stops_the_chain(
        served: tuple[str, Runtime, TwilioFake]) -> None:
    base, rt, fake = served
    inc = _open(rt)
    resp = _reply(base, fake.auth_token, ALICE, f"ack {inc}")
    assert resp.status_code == 200
    assert resp.text == ('<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
                         f"Acknowledged incident #{inc}. Escalation stopped.</Message>"
                         "</Response>")
    events = _events(rt, inc)
    assert ("acknowledged", "acknowledged by Alice Martin via sms") in events
    assert events[-1] == ("escalation", "escalation stopped: acknowledged by Alice Martin "
                                        "via sms")
    detail = requests.get(f"{base}/api/v1/incidents/{inc}", timeout=10).json()
    assert detail["escalation"] == {
        "policy": "all", "round": 0, "next_step": 2, "next_at": None, "state": "stopped",
        "reason": "acknowledged by Alice Martin via sms"}
    page = requests.get(f"{base}/incidents/{inc}", timeout=10).text
    assert ('<p id="escalation">Escalation <span class="mono">all</span>:\nstopped '
            "(acknowledged by Alice Martin via sms)") in page
    again = _reply(base, fake.auth_token, CAROL, f"ACK #{inc}")
    assert "Acknowledged incident" in again.text  # acknowledging twice is harmless


def test_ack_from_a_number_not_on_call_or_unsigned_changes_nothing(
        served: tuple[str, Runtime, TwilioFake]) -> None:
    base, rt, fake = served
    inc = _open(rt)
    page = requests.get(f"{base}/incidents/{inc}", timeout=10).text
    assert ('<p id="escalation">Escalation <span class="mono">all</span>:\nstep 2 at <span '
            'class="mono">') in page
    stranger = _reply(base, fake.auth_token, "+15550177777", f"ACK {inc}")
    assert "this number is not in the on-call list" in stranger.text
    forged = _reply(base, "not-the-auth-token", ALICE, f"ACK {inc}")
    assert forged.status_code == 403
    unknown = _reply(base, fake.auth_token, ALICE, "ACK 999")
    assert "Not acknowledged: no incident 999." in unknown.text
    with rt.store.session() as s:
        row = s.get(IncidentRow, inc)
        assert row is not None and row.state == "open"

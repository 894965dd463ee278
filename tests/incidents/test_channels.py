"""Incidents reach every configured channel by that channel's own rules: which severities
and events it takes, where it routes them, and how often it reminds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.results import Status
from controlplane.sandbox.servers import AppServer
from controlplane.sandbox.slack_fake import SlackFake
from controlplane.sandbox.twilio_fake import TwilioFake
from tests.incidents.harness import FakeClock, Harness, build, make_config, tls_check
from tests.notifiers.receiver import SECRET, Receiver

PHONES = ["+15550100001", "+15550100002"]


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioFake, str]]:
    fake = TwilioFake()
    server = AppServer("twilio", fake.app).start()
    yield fake, server.url
    server.stop()
    fake.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _harness(tmp_path: Path, slack: SlackFake, twilio: tuple[TwilioFake, str],
             receiver: Receiver, clock: FakeClock, **call: Any) -> Harness:
    fake, url = twilio
    phone = {"account_sid": fake.account_sid, "auth_token": fake.auth_token,
             "from_number": "+15550199001", "to": PHONES, "api_base": url}
    base = make_config(slack, None, tmp_path / "cp.db")
    notifiers: dict[str, Any] = {
        "slack": base.notifiers["slack"], "sms": phone,
        "call": {**phone, "to": PHONES[:1], **call},
        "webhook": {"url": receiver.url, "secret": SECRET, "min_severity": "major"}}
    return build(make_config(slack, None, tmp_path / "cp.db", notifiers=notifiers), clock)


def test_a_critical_incident_texts_and_calls_on_call_and_posts_the_webhook(
        tmp_path: Path, slack_fake: SlackFake, twilio: tuple[TwilioFake, str],
        receiver: Receiver) -> None:
    clock = FakeClock()
    h = _harness(tmp_path, slack_fake, twilio, receiver, clock)
    try:
        check = tls_check()
        h.feed(check, Status.FAILING, "expired", runs=2)
        h.feed(check, Status.FAILING, "expired 1 day ago")
        h.feed(check, Status.OK, "renewed")
        h.deliver()
        fake, _ = twilio
        assert [(m.to, m.body.split(" #")[0]) for m in fake.messages] == [
            (PHONES[0], "[FAILING] tls-bic-sky-prod (production, critical): expired"),
            (PHONES[1], "[FAILING] tls-bic-sky-prod (production, critical): expired"),
            (PHONES[0], "[RESOLVED] tls-bic-sky-prod (production, critical): renewed"),
            (PHONES[1], "[RESOLVED] tls-bic-sky-prod (production, critical): renewed")]
        assert [c.to for c in fake.calls] == [PHONES[0]]  # calls: open (and reminders) only
        assert "tls-bic-sky-prod in production is failing. expired" in str(fake.calls[0].twiml)
        assert [p["body"]["action"] for p in receiver.posts] == ["open", "update", "resolve"]
        assert [(e.channel, e.action) for e in h.outbox()] == [
            ("slack", "open"), ("sms", "open"), ("call", "open"), ("webhook", "open"),
            ("slack", "update"), ("webhook", "update"),
            ("slack", "resolve"), ("sms", "resolve"), ("webhook", "resolve")]
        assert {e.state for e in h.outbox()} == {"sent"}
        [inc] = h.incidents()
        assert sorted(inc.refs) == ["call", "slack", "sms"]
    finally:
        h.close()


def test_a_minor_incident_pages_no_one(tmp_path: Path, slack_fake: SlackFake,
                                       twilio: tuple[TwilioFake, str],
                                       receiver: Receiver) -> None:
    h = _harness(tmp_path, slack_fake, twilio, receiver, FakeClock())
    try:
        h.feed(tls_check(severity="minor"), Status.FAILING, "expired", runs=2)
        h.deliver()
        assert [e.channel for e in h.outbox()] == ["slack"]
        assert twilio[0].messages == [] and receiver.posts == []
    finally:
        h.close()


def test_each_channel_reminds_on_its_own_interval_until_acknowledged(
        tmp_path: Path, slack_fake: SlackFake, twilio: tuple[TwilioFake, str],
        receiver: Receiver) -> None:
    clock = FakeClock()
    h = _harness(tmp_path, slack_fake, twilio, receiver, clock, repeat_interval="2h")
    try:
        h.feed(tls_check(), Status.FAILING, "expired", runs=2)
        h.deliver()
        for _ in range(4):  # slack every hour, the call every two
            clock.advance(3600)
            h.service.tick()
        h.deliver()
        reminders = [e.channel for e in h.outbox() if e.action == "reminder"]
        assert reminders == ["slack", "slack", "call", "slack", "slack", "call"]
        assert len(twilio[0].calls) == 3
        h.service.acknowledge(1, "alice", "api")
        clock.advance(3 * 3600)
        h.service.tick()
        assert [e.channel for e in h.outbox() if e.action == "reminder"] == reminders
    finally:
        h.close()


def test_routing_is_asked_when_queued_and_kept_with_the_entry(
        harness: Harness, slack_fake: SlackFake) -> None:
    harness.feed(tls_check(labels={"team": "kafka"}), Status.FAILING, "lag", runs=2)
    harness.deliver()
    [open_] = [e for e in harness.outbox() if e.channel == "slack"]
    assert open_.payload["to"] == ["C0KAFKA"]
    assert [m.channel for m in slack_fake.messages()] == ["C0KAFKA"]


def test_incidents_import_no_channel_module() -> None:
    # Only the contract and the registry: a channel is added without touching incidents.
    import ast

    root = Path(__file__).resolve().parents[2] / "controlplane" / "incidents"
    imported = set()
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
    assert sorted(m for m in imported if m.startswith("controlplane.notifiers")) == [
        "controlplane.notifiers", "controlplane.notifiers.base"]

"""Escalation on the contract fakes (Slack, Jira, Twilio) and a real SMTP server, with a
fake clock: the platform's default chain, acknowledgment, handoffs, silences, outages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.config import ControlPlaneConfig
from controlplane.incidents import silences
from controlplane.results import Status
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.servers import AppServer
from controlplane.sandbox.slack_fake import SlackFake
from controlplane.sandbox.twilio_fake import TwilioFake
from tests.incidents.harness import FakeClock, Harness, build, tls_check
from tests.services.smtp import PASSWORD, USER, SmtpServer, smtp_server  # noqa: F401

ALICE, BOB, CAROL, DANA, OPS = ("+15550100001", "+15550100002", "+15550100003",
                                "+15550100009", "+15550100099")
FROM = "+15550199001"


def oncall(handoff: str = "12:30", **extra: Any) -> dict[str, Any]:
    return {
        "people": {
            "alice": {"name": "Alice Martin", "slack": "U0ALICE01", "phone": ALICE,
                      "email": "alice@techhalo.ai"},
            "bob": {"name": "Bob Stone", "slack": "U0BOB0001", "phone": BOB},
            "carol": {"name": "Carol Diaz", "phone": CAROL},
            "manager": {"name": "Dana Fox", "phone": DANA, "email": "dana@techhalo.ai"}},
        "schedules": {
            "primary": {"layers": [{"rotation": "daily", "handoff": handoff,
                                    "start": "2026-11-25", "people": ["alice", "bob"]}]},
            "secondary": {"layers": [{"rotation": "weekly", "start": "2026-11-23",
                                      "people": ["carol"]}]}},
        **extra}


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioFake, str]]:
    fake = TwilioFake()
    server = AppServer("twilio", fake.app).start()
    yield fake, server.url
    server.stop()
    fake.stop()


def config(tmp_path: Path, slack: SlackFake, jira: JiraFake, twilio: tuple[TwilioFake, str],
           smtp: SmtpServer, **oncall_over: Any) -> ControlPlaneConfig:
    fake, url = twilio
    phone = {"account_sid": fake.account_sid, "auth_token": fake.auth_token,
             "from_number": FROM, "to": [OPS], "api_base": url}
    return ControlPlaneConfig.model_validate({
        "environments": {"production": {}},
        "store": {"dsn": f"sqlite:///{tmp_path / 'cp.db'}"},
        "notifiers": {
            "slack": {"token": slack.token, "base_url": slack.api_url, "channel": "C0ONCALL"},
            "jira": {"server": jira.url, "user": jira.user, "token": jira.token,
                     "project": "OPS"},
            "sms": phone, "call": phone,
            "email": {"host": smtp.host, "port": smtp.port, "ca_file": smtp.ca_file,
                      "username": USER, "password": PASSWORD, "sender": "cp@techhalo.ai",
                      "to": ["ops@techhalo.ai"]}},
        "incidents": {"dashboard_url": "https://cp.example.com"},
        "oncall": oncall(**oncall_over)})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(tmp_path: Path, slack_fake: SlackFake, jira_fake: JiraFake,
         twilio: tuple[TwilioFake, str], smtp_server: SmtpServer,  # noqa: F811
         clock: FakeClock) -> Iterator[Any]:
    built: list[Harness] = []

    def _make(**over: Any) -> Harness:
        jira_fake.clock = clock
        h = build(config(tmp_path, slack_fake, jira_fake, twilio, smtp_server, **over), clock)
        built.append(h)
        return h

    yield _make
    for h in built:
        h.close()


CHECK = tls_check(failure_threshold=1)


def open_incident(h: Harness) -> int:
    h.feed(CHECK, Status.FAILING, "certificate expired")
    h.deliver()
    [inc] = h.incidents()
    return inc.id


def advance(h: Harness, clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    h.service.tick()
    h.deliver()


def pages(fake: TwilioFake) -> list[tuple[str, str]]:
    """(number, kind) of every text and call to a person (not the channel's ops number)."""
    texts = [(m.to, "sms") for m in fake.messages if m.to != OPS]
    return texts + [(c.to, "call") for c in fake.calls if c.to != OPS]


def escalations(h: Harness, incident_id: int) -> list[str]:
    return [m for k, m in h.timeline(incident_id) if k in ("paged", "escalation")]


def test_a_critical_incident_walks_the_default_chain_to_the_manager(
        make: Any, clock: FakeClock, slack_fake: SlackFake, jira_fake: JiraFake,
        twilio: tuple[TwilioFake, str], smtp_server: SmtpServer) -> None:  # noqa: F811
    h = make()
    fake, _ = twilio
    inc = open_incident(h)
    # At once: the Slack channel has the incident; Alice (on call) gets a DM with the button.
    [root] = [m for m in slack_fake.messages(channel="C0ONCALL") if m.thread_ts is None]
    [dm] = slack_fake.messages(channel="D0ALICE01")
    assert dm.text.startswith(f"Escalation step 1/4: incident #{inc} still open")
    assert any(b.get("block_id") == f"incident-{inc}" for b in dm.blocks)
    assert pages(fake) == []
    advance(h, clock, 298)  # opened at T0, now T0+1s
    assert pages(fake) == []
    advance(h, clock, 1)
    assert pages(fake) == [(ALICE, "sms")]
    assert f"Reply ACK {inc} to acknowledge" in fake.messages[-1].body
    advance(h, clock, 600)
    assert pages(fake) == [(ALICE, "sms"), (CAROL, "sms"), (CAROL, "call")]
    advance(h, clock, 900)
    assert pages(fake) == [(ALICE, "sms"), (CAROL, "sms"), (DANA, "sms"), (CAROL, "call")]
    [mail] = [m for m in smtp_server.box.mails if "dana@techhalo.ai" in str(m["To"])]
    assert "Escalation step 4/4" in mail.get_payload()
    assert escalations(h, inc) == [
        "escalation policy critical: 4 steps",
        "step 1/4: slack has the incident; paged Alice Martin (on call for primary) via slack",
        "step 2/4: paged Alice Martin (on call for primary) via sms",
        "step 3/4: paged Carol Diaz (on call for secondary) via sms; paged Carol Diaz (on "
        "call for secondary) via call",
        "step 4/4: paged Dana Fox via sms; paged Dana Fox via email"]
    # The trail: a thread reply and a Jira comment per step.
    replies = [m.text for m in slack_fake.messages(channel="C0ONCALL", thread_ts=root.ts)]
    assert sum("Escalation step" in r for r in replies) == 4
    [issue] = jira_fake.issues.values()
    assert sum("Escalation step" in c["body"] for c in issue.comments) == 4
    advance(h, clock, 3600)  # nothing left to fire
    assert len(pages(fake)) == 4


def test_acknowledging_stops_the_chain(make: Any, clock: FakeClock,
                                       twilio: tuple[TwilioFake, str]) -> None:
    h = make()
    fake, _ = twilio
    inc = open_incident(h)
    advance(h, clock, 300)
    assert pages(fake) == [(ALICE, "sms")]
    h.service.acknowledge(inc, "Alice Martin", "dashboard")
    advance(h, clock, 3600)
    assert pages(fake) == [(ALICE, "sms")]
    assert escalations(h, inc)[-1] == ("escalation stopped: acknowledged by Alice Martin via "
                                       "dashboard")


def test_resolving_stops_the_chain(make: Any, clock: FakeClock,
                                   twilio: tuple[TwilioFake, str]) -> None:
    h = make()
    fake, _ = twilio
    inc = open_incident(h)
    h.feed(CHECK, Status.OK, "renewed")
    advance(h, clock, 3600)
    assert pages(fake) == []
    assert escalations(h, inc)[-1] == "escalation stopped: resolved"


def test_a_handoff_during_the_incident_pages_the_new_on_call(
        make: Any, clock: FakeClock, slack_fake: SlackFake,
        twilio: tuple[TwilioFake, str]) -> None:
    h = make(handoff="12:03")  # Alice hands over to Bob three minutes after it opens
    fake, _ = twilio
    inc = open_incident(h)
    assert [m.channel for m in slack_fake.messages() if m.channel.startswith("D")] == [
        "D0ALICE01"]
    advance(h, clock, 300)
    assert pages(fake) == [(BOB, "sms")]
    assert escalations(h, inc)[-1] == "step 2/4: paged Bob Stone (on call for primary) via sms"


def test_an_override_decides_who_is_paged(make: Any, clock: FakeClock,
                                          twilio: tuple[TwilioFake, str]) -> None:
    h = make(overrides=[{"schedule": "primary", "person": "carol", "covers": "alice",
                         "from": "2026-11-26T00:00:00Z", "to": "2026-11-27T00:00:00Z"}])
    fake, _ = twilio
    inc = open_incident(h)
    advance(h, clock, 300)
    assert pages(fake) == [(CAROL, "sms")]
    # Carol has no Slack id: step 1 says so instead of pretending.
    assert "step 1/4: cannot page Carol Diaz via slack: no slack in oncall.people" in \
        escalations(h, inc)


def test_a_silence_holds_the_chain_until_it_ends(make: Any, clock: FakeClock,
                                                 twilio: tuple[TwilioFake, str]) -> None:
    h = make()
    fake, _ = twilio
    inc = open_incident(h)
    with h.store.session() as s:
        sid = silences.add(s, check=CHECK.id, env=None, labels={}, comment="cert swap",
                           author="bob", now=clock(), duration=3600.0).id
    advance(h, clock, 1200)  # steps 2 and 3 were due meanwhile
    assert pages(fake) == []
    assert escalations(h, inc)[-1] == (
        f"escalation held: silence #{sid} (cert swap); step 2 fires when it ends if still "
        "unacknowledged")
    with h.store.session() as s:
        silences.expire(s, sid, clock())
    advance(h, clock, 1)
    assert pages(fake) == [(ALICE, "sms")]  # step 2 now; step 3 keeps its 10 minutes
    advance(h, clock, 599)
    assert pages(fake) == [(ALICE, "sms")]
    advance(h, clock, 1)
    assert pages(fake) == [(ALICE, "sms"), (CAROL, "sms"), (CAROL, "call")]


def test_a_slack_outage_delays_only_the_slack_page(
        make: Any, clock: FakeClock, slack_fake: SlackFake,
        twilio: tuple[TwilioFake, str]) -> None:
    h = make()
    fake, _ = twilio
    slack_fake.down(503)
    inc = open_incident(h)
    advance(h, clock, 300)
    assert pages(fake) == [(ALICE, "sms")]  # SMS goes out while Slack is down
    assert slack_fake.messages() == []
    states = {(e.channel, e.action): e.state for e in h.outbox()}
    assert states[("slack", "page")] == "pending" and states[("sms", "page")] == "sent"
    slack_fake.heal()
    advance(h, clock, 120)  # past the backoff
    assert [m.channel for m in slack_fake.messages() if m.channel.startswith("D")] == [
        "D0ALICE01"]
    notified = [m for k, m in h.timeline(inc) if k == "notified"]
    assert notified.index("sms page delivered") < notified.index("slack page delivered")


def test_a_policy_repeats_the_chain_while_nobody_acknowledges(
        make: Any, clock: FakeClock, twilio: tuple[TwilioFake, str]) -> None:
    h = make(policies={"all": {"repeat": 1, "repeat_after": "10m", "steps": [
        {"notify": ["oncall:primary"], "via": ["sms"]},
        {"after": "5m", "notify": ["oncall:secondary"], "via": ["sms"]}]}})
    fake, _ = twilio
    inc = open_incident(h)
    advance(h, clock, 300)
    advance(h, clock, 600)
    assert pages(fake) == [(ALICE, "sms"), (CAROL, "sms"), (ALICE, "sms")]
    advance(h, clock, 300)
    assert pages(fake) == [(ALICE, "sms"), (CAROL, "sms"), (ALICE, "sms"), (CAROL, "sms")]
    advance(h, clock, 3600)
    assert len(pages(fake)) == 4
    assert escalations(h, inc)[-1] == "step 2/2, round 2/2: paged Carol Diaz (on call for " \
                                      "secondary) via sms"


def test_incidents_no_policy_matches_are_not_escalated(
        make: Any, clock: FakeClock, twilio: tuple[TwilioFake, str]) -> None:
    h = make()
    fake, _ = twilio
    h.feed(tls_check(failure_threshold=1, severity="major"), Status.FAILING, "expiring")
    advance(h, clock, 3600)
    [inc] = h.incidents()
    assert pages(fake) == [] and escalations(h, inc.id) == []


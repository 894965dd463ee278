"""The notifier contract, one suite for every integration, each against its contract fake.

Every notifier must: return references for the incident on open; turn service outages
into retryable TransportErrors and rejections into permanent ones; and make a resend after
an unrecorded success harmless (``attempts > 0``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.notifiers.base import Notification, Notifier, TransportError
from controlplane.notifiers.jira import JiraConfig, JiraNotifier
from controlplane.notifiers.slack import SlackConfig, SlackNotifier
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.slack_fake import SlackFake

PAYLOAD: dict[str, Any] = {
    "incident": 1, "check": "tls-bic-sky-prod", "env": "production", "kind": "tls",
    "name": "", "severity": "critical", "status": "failing", "state": "open",
    "message": "certificate expired", "since": "2026-11-26T12:00:00Z", "labels": {},
    "runbook": None, "dashboard": None, "dedup_key": "tls-bic-sky-prod/production",
    "text": None, "acknowledged_by": None, "duration_s": 90.0, "channel": "C0ONCALL"}


@dataclass
class Subject:
    notifier: Notifier
    outage: Callable[[], None]        # the service answers 503 until healed
    reject: Callable[[], None]        # the service rejects the next request for good
    delivered: Callable[[], int]      # how many incident objects (roots / issues) exist
    heal: Callable[[], None]


def _slack(fake: SlackFake) -> Subject:
    n = SlackNotifier(SlackConfig(token=fake.token, base_url=fake.api_url,
                                  channel="C0ONCALL"))
    return Subject(n, lambda: fake.down(503), lambda: fake.fail("channel_not_found"),
                   lambda: len(fake.messages(roots_only=True)), fake.heal)


def _jira(fake: JiraFake) -> Subject:
    n = JiraNotifier(JiraConfig(server=fake.url, user=fake.user, token=fake.token,
                                project="OPS"))
    return Subject(n, lambda: fake.down(503),
                   lambda: setattr(fake, "issue_types", set()),
                   lambda: len(fake.issues), fake.heal)


@pytest.fixture(params=["slack", "jira"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "slack":
        fake: Any = SlackFake()
        fake.start()
        yield _slack(fake)
    else:
        fake = JiraFake()
        fake.start()
        yield _jira(fake)
    fake.stop()


def _open(attempts: int = 0, key: str = "key-1") -> Notification:
    return Notification(1, 1, "open", dict(PAYLOAD), key, attempts, datetime.now(UTC))


def test_open_returns_references_to_store_on_the_incident(subject: Subject) -> None:
    refs = subject.notifier.notify(_open())
    assert refs and all(v for v in refs.values())
    assert subject.delivered() == 1


def test_an_outage_is_a_retryable_error(subject: Subject) -> None:
    subject.outage()
    with pytest.raises(TransportError) as info:
        subject.notifier.notify(_open())
    assert info.value.permanent is False
    assert "unavailable: HTTP 503" in info.value.message
    subject.heal()
    subject.notifier.notify(_open(attempts=1))
    assert subject.delivered() == 1


def test_a_rejection_is_a_permanent_error(subject: Subject) -> None:
    subject.reject()
    with pytest.raises(TransportError) as info:
        subject.notifier.notify(_open())
    assert info.value.permanent is True
    assert "rejected the request" in info.value.message
    assert subject.delivered() == 0


def test_a_resend_after_an_unrecorded_success_does_not_duplicate(subject: Subject) -> None:
    first = subject.notifier.notify(_open())
    again = subject.notifier.notify(_open(attempts=1))
    assert again == first
    assert subject.delivered() == 1


def test_updates_need_the_references_from_open(subject: Subject) -> None:
    update = Notification(2, 1, "update", {**PAYLOAD, "text": "still failing"}, "key-2", 0,
                          datetime.now(UTC), refs={})
    with pytest.raises(TransportError) as info:
        subject.notifier.notify(update)
    assert info.value.permanent is True

"""The channel contract, one suite for every registered channel, each against its contract
fake or real server (tests/notifiers/subjects.py).

Every notifier must: deliver open, update and resolve; return references for the incident
on open when its later messages need them; turn service outages into retryable
TransportErrors and rejections into permanent ones; and make a resend after an unrecorded
success harmless (``attempts > 0``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.notifiers import CHANNELS, notifier_class, valid_channels
from controlplane.notifiers.base import PAGE, Incident, Notification, TransportError
from tests.notifiers.subjects import SUBJECTS, Subject

PAYLOAD: dict[str, Any] = {
    "incident": 1, "check": "tls-bic-sky-prod", "env": "production", "kind": "tls",
    "name": "", "severity": "critical", "status": "failing", "state": "open",
    "message": "certificate expired", "since": "2026-11-26T12:00:00Z", "labels": {},
    "runbook": None, "dashboard": None, "dedup_key": "tls-bic-sky-prod/production",
    "text": None, "acknowledged_by": None, "duration_s": 90.0, "channel": "C0ONCALL"}
INCIDENT = Incident(id=1, check="tls-bic-sky-prod", env="production", kind="tls",
                    severity="critical", state="open", status="failing")


@pytest.fixture(params=valid_channels())
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    with SUBJECTS[request.param](request) as s:
        yield s


def _n(subject: Subject, action: str = "open", attempts: int = 0, key: str = "key-1",
       refs: dict[str, str] | None = None, **extra: Any) -> Notification:
    payload = {**PAYLOAD, "to": subject.notifier.route(INCIDENT), **extra}
    return Notification(1, 1, action, payload, key, attempts, datetime.now(UTC), refs or {})


def test_every_registered_channel_has_a_contract_subject() -> None:
    assert sorted(SUBJECTS) == sorted(CHANNELS)


def test_open_delivers_and_returns_references_to_store_on_the_incident(
        subject: Subject) -> None:
    refs = subject.notifier.notify(_n(subject))
    if subject.threaded:
        assert refs and all(v for v in refs.values())
    assert subject.delivered() == 1
    assert subject.sent() == 1


def test_update_and_resolve_are_delivered_once_each(subject: Subject) -> None:
    refs = subject.notifier.notify(_n(subject))
    subject.notifier.notify(_n(subject, "update", key="key-2", refs=refs,
                               text="Update: expired 1 day ago"))
    assert subject.sent() == 2
    subject.notifier.notify(_n(subject, "resolve", key="key-3", refs=refs, state="resolved",
                               message="certificate renewed"))
    assert subject.sent() == 3
    assert subject.delivered() == 1


def test_an_outage_is_a_retryable_error(subject: Subject) -> None:
    subject.outage()
    with pytest.raises(TransportError) as info:
        subject.notifier.notify(_n(subject))
    assert info.value.permanent is False
    assert subject.outage_text in info.value.message
    subject.heal()
    subject.notifier.notify(_n(subject, attempts=1))
    assert subject.delivered() == 1


def test_a_rejection_is_a_permanent_error(subject: Subject) -> None:
    subject.reject()
    with pytest.raises(TransportError) as info:
        subject.notifier.notify(_n(subject))
    assert info.value.permanent is True
    assert "rejected the request" in info.value.message
    assert subject.delivered() == 0


def test_a_resend_after_an_unrecorded_success_does_not_duplicate(subject: Subject) -> None:
    first = subject.notifier.notify(_n(subject))
    again = subject.notifier.notify(_n(subject, attempts=1))
    assert again == first
    assert subject.delivered() == 1


def test_a_resent_update_after_an_unrecorded_success_does_not_duplicate(
        subject: Subject) -> None:
    refs = subject.notifier.notify(_n(subject))
    update = {"key": "key-2", "refs": refs, "text": "Update: expired 1 day ago"}
    subject.notifier.notify(_n(subject, "update", **update))
    subject.notifier.notify(_n(subject, "update", attempts=1, **update))
    assert subject.sent() == 2


def test_updates_need_the_references_from_open_only_where_they_thread(
        subject: Subject) -> None:
    update = _n(subject, "update", key="key-2", text="still failing")
    if subject.threaded:
        with pytest.raises(TransportError) as info:
            subject.notifier.notify(update)
        assert info.value.permanent is True
        assert subject.sent() == 0
    else:  # texts, calls, mails and posts stand alone
        subject.notifier.notify(update)
        assert subject.sent() == 1


def test_secrets_name_every_configured_credential(subject: Subject) -> None:
    assert subject.notifier.secrets() and all(subject.notifier.secrets())


ADDRESSES = {"slack": "U0ALICE01", "phone": "+15550100005", "email": "alice@example.com"}


@pytest.fixture(params=[c for c in valid_channels() if notifier_class(c).contact])
def pager(request: pytest.FixtureRequest) -> Iterator[Subject]:
    with SUBJECTS[request.param](request) as s:
        yield s


def test_a_channel_that_reaches_people_delivers_a_page_outside_the_thread(
        pager: Subject) -> None:
    contact = pager.notifier.contact
    assert contact in ADDRESSES
    page = _n(pager, PAGE, text="Escalation step 2/4: incident #1 still open")
    page.payload["to"] = [ADDRESSES[contact]]
    assert pager.notifier.notify(page) == {}  # no references: the incident's stay its own
    assert pager.sent() == 1


def test_a_page_resent_after_an_unrecorded_success_does_not_duplicate(pager: Subject) -> None:
    assert pager.notifier.contact is not None
    page = _n(pager, PAGE, text="Escalation step 2/4: incident #1 still open")
    page.payload["to"] = [ADDRESSES[pager.notifier.contact]]
    pager.notifier.notify(page)
    page.attempts = 1
    pager.notifier.notify(page)
    assert pager.sent() == 1

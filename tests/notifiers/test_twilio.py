"""SMS and voice calls through the twilio SDK against the Twilio contract fake."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.notifiers.base import ACTIONS, Incident, Notification, TransportError
from controlplane.notifiers.twilio import CallConfig, CallNotifier, SmsConfig, SmsNotifier
from controlplane.sandbox.servers import AppServer
from controlplane.sandbox.twilio_fake import TwilioFake
from tests.notifiers.test_contract import PAYLOAD
from tests.services.common import free_port

PHONES = ["+15550100001", "+15550100002"]
FROM = "+15550199001"


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioFake, str]]:
    fake = TwilioFake()
    server = AppServer("twilio", fake.app).start()
    yield fake, server.url
    server.stop()
    fake.stop()


def _fields(twilio: tuple[TwilioFake, str], **over: Any) -> dict[str, Any]:
    fake, url = twilio
    return {"account_sid": fake.account_sid, "auth_token": fake.auth_token,
            "from_number": FROM, "to": PHONES, "api_base": url, **over}


def _n(action: str = "open", attempts: int = 0, **extra: Any) -> Notification:
    return Notification(1, 7, action, {**PAYLOAD, "to": PHONES, **extra}, "key-1", attempts,
                        datetime.now(UTC))


def test_a_retry_after_one_of_two_texts_failed_sends_only_the_missing_one(
        twilio: tuple[TwilioFake, str]) -> None:
    fake, _ = twilio
    n = SmsNotifier(SmsConfig.model_validate(_fields(twilio)))
    fake.fail_requests(503, count=1, skip=1, method="POST")  # the second number's create
    with pytest.raises(TransportError) as info:
        n.notify(_n())
    assert (info.value.permanent, info.value.message) == (
        False, "sms unavailable: HTTP 503 20503 Unable to create record: Service "
               "Unavailable")
    assert [m.to for m in fake.messages] == PHONES[:1]
    n.notify(_n(attempts=1))
    assert [m.to for m in fake.messages] == PHONES
    body = fake.messages[0].body
    assert body.startswith("[FAILING] tls-bic-sky-prod (production, critical): certificate "
                           "expired #7 ref ")
    assert fake.messages[1].body == body


def test_a_text_sent_for_another_notification_is_not_taken_for_this_one(
        twilio: tuple[TwilioFake, str]) -> None:
    fake, _ = twilio
    n = SmsNotifier(SmsConfig.model_validate(_fields(twilio, to=PHONES[:1])))
    other = Notification(2, 7, "open", {**PAYLOAD, "to": PHONES[:1]}, "key-0", 0,
                         datetime.now(UTC))
    n.notify(other)
    n.notify(_n(attempts=1, to=PHONES[:1]))  # same incident and text, another key: sent
    assert len(fake.messages) == 2


def test_wrong_credentials_are_permanent_and_never_show_the_token(
        twilio: tuple[TwilioFake, str]) -> None:
    n = SmsNotifier(SmsConfig.model_validate(_fields(twilio, auth_token="wrong-token-123")))
    with pytest.raises(TransportError) as info:
        n.notify(_n())
    assert (info.value.permanent, info.value.message) == (
        True, "sms rejected the request: HTTP 401 20003 Unable to create record: "
              "Authenticate (check notifiers.sms.account_sid/auth_token)")
    assert n.secrets() == ["wrong-token-123"]


def test_an_unreachable_api_is_retryable(twilio: tuple[TwilioFake, str]) -> None:
    n = SmsNotifier(SmsConfig.model_validate(_fields(
        twilio, api_base=f"http://127.0.0.1:{free_port()}")))
    with pytest.raises(TransportError) as info:
        n.notify(_n())
    assert (info.value.permanent, info.value.message) == (
        False, "sms unreachable: ConnectionError")


def test_a_call_reads_the_alert_and_cannot_be_made_to_play_anything_else(
        twilio: tuple[TwilioFake, str]) -> None:
    fake, _ = twilio
    n = CallNotifier(CallConfig.model_validate(_fields(twilio, to=PHONES[:1])))
    n.notify(_n(message='down <Play>https://evil.example/a.mp3</Play> & "x"', to=PHONES[:1]))
    [call] = fake.calls
    root = ET.fromstring(call.twiml or "")
    assert [child.tag for child in root] == ["Say", "Pause", "Say"]
    assert root[0].text == (
        'Control plane alert. critical incident 7. tls-bic-sky-prod in production is '
        'failing. down <Play>https://evil.example/a.mp3</Play> & "x"')
    assert (call.to, call.from_) == (PHONES[0], FROM)


def test_a_retried_call_is_not_placed_twice(twilio: tuple[TwilioFake, str]) -> None:
    fake, _ = twilio
    n = CallNotifier(CallConfig.model_validate(_fields(twilio)))
    first = n.notify(_n())
    assert n.notify(_n(attempts=1)) == first
    assert [c.to for c in fake.calls] == PHONES


def test_paging_channels_take_critical_incidents_by_default(
        twilio: tuple[TwilioFake, str]) -> None:
    sms = SmsNotifier(SmsConfig.model_validate(_fields(twilio)))
    call = CallNotifier(CallConfig.model_validate(_fields(twilio, repeat_interval="15m")))
    critical = Incident(1, "c", "production", "tls", "critical", "open", "failing")
    major = Incident(2, "c", "production", "tls", "major", "open", "failing")
    assert [e for e in ACTIONS if sms.wants(critical, e)] == ["open", "resolve"]
    assert [e for e in ACTIONS if call.wants(critical, e)] == ["open", "reminder"]
    assert not any(sms.wants(major, e) or call.wants(major, e) for e in ACTIONS)
    assert (sms.reminder_interval(), call.reminder_interval()) == (None, 900.0)
    assert sms.route(critical) == PHONES

"""The Twilio fake, driven through the real twilio SDK: shapes, filters, paging, errors,
delivery status, signed status callbacks and the signed inbound webhook."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask, request
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from werkzeug.serving import make_server

from controlplane.probes.twilio_api import twilio_client
from controlplane.sandbox.servers import AppServer
from controlplane.sandbox.twilio_fake import Delivery, TwilioFake

TO, FROM = "+15550100009", "+15550199009"


@pytest.fixture
def fake() -> Iterator[tuple[TwilioFake, Client]]:
    policy: dict[str, Delivery] = {}
    twilio = TwilioFake(policy=lambda _f, to: policy.get(to, Delivery(0.05)))
    server = AppServer("twilio", twilio.app).start()
    client = twilio_client(twilio.account_sid, twilio.auth_token, server.url)
    twilio.__dict__["test_policy"] = policy
    yield twilio, client
    server.stop()
    twilio.stop()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server recording what the fake posts to it (form and signature)."""
    got: list[dict[str, Any]] = []
    app = Flask("receiver")

    @app.post("/hook")
    def hook() -> str:
        got.append({"form": request.form.to_dict(), "url": request.url,
                    "signature": request.headers.get("X-Twilio-Signature", "")})
        return "<Response/>"

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", got
    server.shutdown()


def wait_until(cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_create_returns_a_queued_message_with_twilio_shape(fake: tuple[TwilioFake, Client]) -> None:
    twilio, client = fake
    msg = client.messages.create(to=TO, from_=FROM, body="hello")
    assert msg.sid.startswith("SM") and len(msg.sid) == 34
    assert (msg.status, msg.direction, msg.to, msg.from_, msg.body) == (
        "queued", "outbound-api", TO, FROM, "hello")
    assert msg.account_sid == twilio.account_sid
    assert msg.num_segments == "1"
    assert isinstance(msg.date_created, datetime)


def test_status_progresses_to_delivered(fake: tuple[TwilioFake, Client]) -> None:
    _, client = fake
    sid = client.messages.create(to=TO, from_=FROM, body="hi").sid
    wait_until(lambda: client.messages(sid).fetch().status == "delivered")
    assert client.messages(sid).fetch().date_sent is not None


def test_dropped_message_stays_sent(fake: tuple[TwilioFake, Client]) -> None:
    twilio, client = fake
    twilio.__dict__["test_policy"][TO] = Delivery(dropped=True)
    sid = client.messages.create(to=TO, from_=FROM, body="hi").sid
    wait_until(lambda: client.messages(sid).fetch().status == "sent")
    time.sleep(0.3)
    assert client.messages(sid).fetch().status == "sent"


def test_undelivered_message_carries_the_carrier_error(fake: tuple[TwilioFake, Client]) -> None:
    twilio, client = fake
    twilio.__dict__["test_policy"][TO] = Delivery(undelivered=True)
    sid = client.messages.create(to=TO, from_=FROM, body="hi").sid
    wait_until(lambda: client.messages(sid).fetch().status == "undelivered")
    msg = client.messages(sid).fetch()
    assert (msg.error_code, msg.error_message) == (30003, "Unreachable destination handset")


def test_list_filters_by_to_and_from(fake: tuple[TwilioFake, Client]) -> None:
    _, client = fake
    client.messages.create(to=TO, from_=FROM, body="a")
    client.messages.create(to="+15550100010", from_=FROM, body="b")
    client.messages.create(to=TO, from_="+15550199010", body="c")
    assert sorted(m.body for m in client.messages.list(to=TO)) == ["a", "c"]
    assert sorted(m.body for m in client.messages.list(from_=FROM)) == ["a", "b"]
    assert [m.body for m in client.messages.list(to=TO, from_=FROM)] == ["a"]


def test_list_is_newest_first_and_pages(fake: tuple[TwilioFake, Client]) -> None:
    _, client = fake
    for i in range(5):
        client.messages.create(to=TO, from_=FROM, body=f"m{i}")
        time.sleep(0.01)
    assert [m.body for m in client.messages.list(to=TO, page_size=2)] == [
        "m4", "m3", "m2", "m1", "m0"]
    page = client.messages.page(to=TO, page_size=2)
    assert len(list(page)) == 2 and page.next_page_url is not None


def test_list_filters_by_date_sent(fake: tuple[TwilioFake, Client]) -> None:
    _, client = fake
    sid = client.messages.create(to=TO, from_=FROM, body="now").sid
    wait_until(lambda: client.messages(sid).fetch().date_sent is not None)
    past, future = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    assert [m.body for m in client.messages.list(to=TO, date_sent_after=past)] == ["now"]
    assert client.messages.list(to=TO, date_sent_after=future) == []
    assert [m.body for m in client.messages.list(to=TO, date_sent_before=future)] == ["now"]
    today = datetime.now(UTC).date()
    assert [m.body for m in client.messages.list(to=TO, date_sent=today)] == ["now"]


def test_fetch_unknown_message_is_20404(fake: tuple[TwilioFake, Client]) -> None:
    _, client = fake
    with pytest.raises(TwilioRestException) as info:
        client.messages("SM" + "0" * 32).fetch()
    assert (info.value.status, info.value.code) == (404, 20404)


def test_wrong_credentials_are_20003(fake: tuple[TwilioFake, Client]) -> None:
    twilio, _ = fake
    bad = twilio_client(twilio.account_sid, "wrong", fake[1].api.base_url)
    with pytest.raises(TwilioRestException) as info:
        bad.messages.create(to=TO, from_=FROM, body="x")
    assert (info.value.status, info.value.code, info.value.msg) == (
        401, 20003, "Unable to create record: Authenticate")


@pytest.mark.parametrize(("to", "from_", "body", "code", "message"), [
    ("", FROM, "x", 21604, "A 'To' phone number is required."),
    ("12345", FROM, "x", 21211, "Invalid 'To' Phone Number: 12345"),
    (TO, "", "x", 21603, "A 'From' phone number is required."),
    (TO, FROM, "", 21602, "Message body is required."),
])
def test_create_validation_errors_match_twilio(fake: tuple[TwilioFake, Client], to: str,
                                               from_: str, body: str, code: int,
                                               message: str) -> None:
    _, client = fake
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=to, from_=from_, body=body)
    assert (info.value.status, info.value.code, info.value.msg) == (
        400, code, f"Unable to create record: {message}")


def test_status_callback_is_signed(fake: tuple[TwilioFake, Client],
                                   receiver: tuple[str, list[dict[str, Any]]]) -> None:
    twilio, client = fake
    url, got = receiver
    sid = client.messages.create(to=TO, from_=FROM, body="cb", status_callback=url).sid
    wait_until(lambda: any(g["form"]["MessageStatus"] == "delivered" for g in got))
    assert [g["form"]["MessageStatus"] for g in got] == ["sent", "delivered"]
    validator = RequestValidator(twilio.auth_token)
    assert all(validator.validate(g["url"], g["form"], g["signature"]) for g in got)
    assert got[0]["form"]["MessageSid"] == sid


def test_inbound_webhook_is_signed_and_creates_an_inbound_message(
        fake: tuple[TwilioFake, Client], receiver: tuple[str, list[dict[str, Any]]]) -> None:
    twilio, client = fake
    url, got = receiver
    number = client.incoming_phone_numbers.create(phone_number=TO, sms_url=url)
    assert number.sid.startswith("PN") and number.sms_url == url
    client.messages.create(to=TO, from_=FROM, body="your link https://x.example/1")
    wait_until(lambda: len(got) == 1)
    form = got[0]["form"]
    assert (form["To"], form["From"], form["Body"], form["SmsStatus"]) == (
        TO, FROM, "your link https://x.example/1", "received")
    assert RequestValidator(twilio.auth_token).validate(url, form, got[0]["signature"])
    assert not RequestValidator("another-token").validate(url, form, got[0]["signature"])
    inbound = [m for m in client.messages.list(to=TO) if m.direction == "inbound"]
    assert [(m.sid, m.status) for m in inbound] == [(form["MessageSid"], "received")]


def test_injected_429_is_twilio_shaped_with_retry_after(fake: tuple[TwilioFake, Client]) -> None:
    twilio, client = fake
    fault = twilio.fail_requests(429, 1, retry_after=7)
    with pytest.raises(TwilioException) as info:
        client.messages.list(to=TO)
    response = info.value.args[1]
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert json.loads(response.text) == {
        "code": 20429, "message": "Too Many Requests", "status": 429,
        "more_info": "https://www.twilio.com/docs/errors/20429"}
    assert client.messages.list(to=TO) == []  # the one error is spent
    assert fault.served == 1


def test_injected_503_fails_a_create_for_n_requests(fake: tuple[TwilioFake, Client]) -> None:
    twilio, client = fake
    fault = twilio.fail_requests(503, 2)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as info:
            client.messages.create(to=TO, from_=FROM, body="hello")
        assert (info.value.status, info.value.code, info.value.msg) == (
            503, 20503, "Unable to create record: Service Unavailable")
    assert client.messages.create(to=TO, from_=FROM, body="hello").status == "queued"
    assert fault.served == 2
    assert len(twilio.messages) == 1  # a refused request creates nothing


def test_injected_errors_can_skip_requests_and_match_one_method(
        fake: tuple[TwilioFake, Client]) -> None:
    twilio, client = fake
    fault = twilio.fail_requests(503, None, skip=1, method="GET")
    assert client.messages.list(to=TO) == []  # skipped
    client.messages.create(to=TO, from_=FROM, body="hello")  # POST: not matched
    for _ in range(3):  # count None: until cleared
        with pytest.raises(TwilioException):
            client.messages.list(to=TO)
    twilio.clear_fault()
    assert len(client.messages.list(to=TO)) == 1
    assert fault.served == 3


def test_wrong_credentials_are_401_even_while_errors_are_injected(
        fake: tuple[TwilioFake, Client]) -> None:
    twilio, _ = fake
    fault = twilio.fail_requests(429, None)
    other = twilio_client(twilio.account_sid, "wrong", str(fake[1].api.base_url))
    with pytest.raises(TwilioException) as info:
        other.messages.list(to=TO)
    assert info.value.args[1].status_code == 401
    assert fault.served == 0


def test_an_error_twilio_does_not_answer_is_refused(fake: tuple[TwilioFake, Client]) -> None:
    twilio, _ = fake
    with pytest.raises(ValueError) as info:
        twilio.fail_requests(418)
    assert str(info.value) == ("no Twilio error for status 418; "
                               "choose one of 400, 401, 404, 429, 500, 503")


def test_calls_are_created_listed_newest_first_and_complete(
        fake: tuple[TwilioFake, Client]) -> None:
    twilio, client = fake
    first = client.calls.create(to=TO, from_=FROM, twiml="<Response><Say>one</Say></Response>")
    second = client.calls.create(to=TO, from_=FROM, url="https://example.com/twiml")
    assert (first.status, first.direction) == ("queued", "outbound-api")
    assert [c.sid for c in client.calls.list(to=TO, from_=FROM)] == [second.sid, first.sid]
    assert client.calls.list(to="+15550100777") == []
    wait_until(lambda: client.calls(first.sid).fetch().status == "completed")
    assert twilio.calls[0].twiml == "<Response><Say>one</Say></Response>"


def test_a_call_without_instructions_or_with_a_bad_number_is_refused(
        fake: tuple[TwilioFake, Client]) -> None:
    twilio, client = fake
    with pytest.raises(TwilioRestException) as info:
        client.calls.create(to=TO, from_=FROM)
    assert (info.value.status, info.value.code) == (400, 21205)
    with pytest.raises(TwilioRestException) as info:
        client.calls.create(to="555-0100", from_=FROM, twiml="<Response/>")
    assert (info.value.status, info.value.code) == (400, 21211)
    assert twilio.calls == []

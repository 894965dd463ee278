"""The generic webhook against a real receiver that verifies the signature."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.notifiers.base import Notification, TransportError
from controlplane.notifiers.webhook import WebhookConfig, WebhookNotifier, sign
from tests.notifiers.receiver import SECRET, Receiver
from tests.notifiers.test_contract import PAYLOAD
from tests.services.common import free_port


def _notifier(url: str, **over: Any) -> WebhookNotifier:
    return WebhookNotifier(WebhookConfig.model_validate({"url": url, "secret": SECRET,
                                                         **over}))


def _n(action: str = "open", key: str = "key-1") -> Notification:
    return Notification(1, 7, action, {**PAYLOAD, "to": ["ignored"]}, key, 0,
                        datetime.now(UTC))


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    assert sign("k", "1700000000", b'{"a":1}') == (
        "sha256=" + __import__("hmac").new(b"k", b'1700000000.{"a":1}', "sha256").hexdigest())


def test_the_receiver_gets_a_signed_json_notification(webhook_receiver: Receiver) -> None:
    assert _notifier(webhook_receiver.url, headers={"X-Team": "sre"}).notify(_n()) == {}
    [post] = webhook_receiver.posts
    assert post["body"] == {"action": "open", "incident": 7, "idempotency_key": "key-1",
                            "payload": {k: v for k, v in PAYLOAD.items()}}
    assert post["headers"]["X-Controlplane-Idempotency-Key"] == "key-1"
    assert post["headers"]["X-Team"] == "sre"
    assert post["headers"]["Content-Type"] == "application/json"


def test_a_wrong_secret_is_refused_by_the_receiver_and_a_permanent_error(
        webhook_receiver: Receiver) -> None:
    n = _notifier(webhook_receiver.url, secret="not-the-shared-secret")
    with pytest.raises(TransportError) as info:
        n.notify(_n())
    assert (info.value.permanent, info.value.message) == (
        True, "webhook rejected the request: HTTP 401 Unauthorized")
    assert (webhook_receiver.posts, webhook_receiver.refused) == ([], [401])


def test_a_429_with_retry_after_pauses_the_channel(webhook_receiver: Receiver) -> None:
    webhook_receiver.answer = (429, {"Retry-After": "42"})
    with pytest.raises(TransportError) as info:
        _notifier(webhook_receiver.url).notify(_n())
    assert (info.value.permanent, info.value.retry_after, info.value.message) == (
        False, 42.0, "webhook unavailable: HTTP 429, retry after 42s")


def test_nothing_listening_is_a_retryable_error() -> None:
    with pytest.raises(TransportError) as info:
        _notifier(f"http://127.0.0.1:{free_port()}/hook").notify(_n())
    assert (info.value.permanent, info.value.message) == (
        False, "webhook unreachable: ConnectionError")


def test_a_redirect_is_not_followed_and_is_permanent(webhook_receiver: Receiver) -> None:
    webhook_receiver.answer = (302, {"Location": "https://elsewhere.example/"})
    with pytest.raises(TransportError) as info:
        _notifier(webhook_receiver.url).notify(_n())
    assert (info.value.permanent, info.value.message) == (
        True, "webhook rejected the request: HTTP 302 Found")


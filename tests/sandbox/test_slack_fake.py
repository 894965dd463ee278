"""The Slack fake speaks the Web API as slack_sdk expects it."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from controlplane.sandbox.slack_fake import SlackFake, start


def _client(fake: SlackFake, token: str | None = None) -> WebClient:
    return WebClient(token=token if token is not None else fake.token, base_url=fake.api_url)


def test_auth_test_answers_for_the_right_token(slack_fake: SlackFake) -> None:
    assert _client(slack_fake).auth_test()["team_id"] == "T0SANDBOX"
    with pytest.raises(SlackApiError) as info:
        _client(slack_fake, "xoxb-wrong").auth_test()
    assert info.value.response["error"] == "invalid_auth"


def test_messages_threads_updates_and_history(slack_fake: SlackFake) -> None:
    c = _client(slack_fake)
    root = c.chat_postMessage(channel="C0ONCALL", text="root",
                              metadata={"event_type": "t", "event_payload": {"key": "k"}})
    c.chat_postMessage(channel="C0ONCALL", text="reply", thread_ts=root["ts"])
    c.chat_update(channel="C0ONCALL", ts=root["ts"], text="root, edited")
    history = c.conversations_history(channel="C0ONCALL", include_all_metadata=True)
    assert [m["text"] for m in history["messages"]] == ["root, edited"]
    assert history["messages"][0]["metadata"] == {"event_type": "t",
                                                  "event_payload": {"key": "k"}}
    replies = c.conversations_replies(channel="C0ONCALL", ts=root["ts"])
    assert [m["text"] for m in replies["messages"]] == ["root, edited", "reply"]
    assert slack_fake.messages(roots_only=True)[0].edits == 1


@pytest.mark.parametrize(("call", "error"), [
    (lambda c: c.chat_postMessage(channel="C0NOPE", text="x"), "channel_not_found"),
    (lambda c: c.chat_postMessage(channel="C0ONCALL", text="x", thread_ts="1.0"),
     "thread_not_found"),
    (lambda c: c.chat_update(channel="C0ONCALL", ts="1.0", text="x"), "message_not_found"),
])
def test_errors_come_back_as_ok_false(slack_fake: SlackFake, call: object, error: str) -> None:
    with pytest.raises(SlackApiError) as info:
        call(_client(slack_fake))  # type: ignore[operator]
    assert info.value.response.status_code == 200
    assert info.value.response["error"] == error


def test_missing_token_is_not_authed(slack_fake: SlackFake) -> None:
    with pytest.raises(SlackApiError) as info:
        _client(slack_fake, "").chat_postMessage(channel="C0ONCALL", text="x")
    assert info.value.response["error"] == "not_authed"


def test_injected_429_carries_retry_after_and_then_clears(slack_fake: SlackFake) -> None:
    slack_fake.rate_limit(retry_after=12, method="chat.postMessage", count=1)
    with pytest.raises(SlackApiError) as info:
        _client(slack_fake).chat_postMessage(channel="C0ONCALL", text="x")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "12"
    _client(slack_fake).chat_postMessage(channel="C0ONCALL", text="x")
    assert slack_fake.calls == [("chat.postMessage", 429), ("chat.postMessage", 200)]


def test_start_entry_point_serves_until_stopped() -> None:
    url, stop = start("127.0.0.1", 0)
    try:
        client = WebClient(token="xoxb-sandbox-token", base_url=url + "/api/")
        assert client.auth_test()["ok"] is True
    finally:
        stop()

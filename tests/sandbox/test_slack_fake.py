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


def test_history_returns_metadata_only_when_asked_for(slack_fake: SlackFake) -> None:
    c = _client(slack_fake)
    c.chat_postMessage(channel="C0ONCALL", text="root",
                       metadata={"event_type": "t", "event_payload": {"key": "k"}})
    assert "metadata" not in c.conversations_history(channel="C0ONCALL")["messages"][0]
    with_meta = c.conversations_history(channel="C0ONCALL", include_all_metadata=True)
    assert with_meta["messages"][0]["metadata"] == {"event_type": "t",
                                                    "event_payload": {"key": "k"}}


def test_history_pages_with_a_cursor_newest_first(slack_fake: SlackFake) -> None:
    c = _client(slack_fake)
    for i in range(5):
        c.chat_postMessage(channel="C0ONCALL", text=f"m{i}")
    first = c.conversations_history(channel="C0ONCALL", limit=2)
    assert (first["has_more"], [m["text"] for m in first["messages"]]) == (True, ["m4", "m3"])
    pages = [[m["text"] for m in page["messages"]]
             for page in c.conversations_history(channel="C0ONCALL", limit=2)]
    assert pages == [["m4", "m3"], ["m2", "m1"], ["m0"]]


def test_history_oldest_is_exclusive_unless_inclusive(slack_fake: SlackFake) -> None:
    c = _client(slack_fake)
    ts = c.chat_postMessage(channel="C0ONCALL", text="m")["ts"]
    assert c.conversations_history(channel="C0ONCALL", oldest=ts)["messages"] == []
    assert len(c.conversations_history(channel="C0ONCALL", oldest=ts,
                                       inclusive=True)["messages"]) == 1


def test_a_dropped_response_still_posts_the_message(slack_fake: SlackFake) -> None:
    slack_fake.drop_response("chat.postMessage")
    client = WebClient(token=slack_fake.token, base_url=slack_fake.api_url, retry_handlers=[])
    with pytest.raises(ConnectionError):
        client.chat_postMessage(channel="C0ONCALL", text="x")
    assert [m.text for m in slack_fake.messages()] == ["x"]


def test_post_message_takes_a_channel_name_but_history_and_replies_need_the_id(
        slack_fake: SlackFake) -> None:
    c = _client(slack_fake)
    posted = c.chat_postMessage(channel="#oncall", text="root")
    assert (posted["channel"], [m.channel for m in slack_fake.messages()]) == (
        "C0ONCALL", ["C0ONCALL"])
    for call in (lambda: c.conversations_history(channel="#oncall"),
                 lambda: c.conversations_history(channel="oncall"),
                 lambda: c.conversations_replies(channel="#oncall", ts=posted["ts"])):
        with pytest.raises(SlackApiError) as info:
            call()
        assert info.value.response["error"] == "channel_not_found"

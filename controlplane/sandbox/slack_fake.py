"""A stateful Slack Web API fake for tests and the demo.

Speaks ``/api/auth.test``, ``chat.postMessage``, ``chat.update``, ``conversations.history``
and ``conversations.replies`` with Slack's shapes: ``{"ok": false, "error": ...}`` errors
(``not_authed``, ``invalid_auth``, ``channel_not_found``, ``message_not_found``,
``thread_not_found``), channels by ID (``chat.postMessage`` also takes a channel's name,
``#oncall`` or ``oncall``; every other method answers ``channel_not_found`` to a name, as
Slack does), message ``metadata`` (returned by the history calls only with
``include_all_metadata``), threads by ``thread_ts``, cursor pagination
(``response_metadata.next_cursor``), and 429 with ``Retry-After``. Point
``slack_sdk.WebClient(base_url=fake.url + "/api/")`` at it.

Tests inject faults (:meth:`SlackFake.fail`, :meth:`SlackFake.rate_limit`,
:meth:`SlackFake.down`, :meth:`SlackFake.drop_response`, :meth:`SlackFake.html_error`)
and read what arrived
(:meth:`SlackFake.messages`, ``calls``).
:func:`start` is the entry point for the demo: ``url, stop = start(host, port)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from controlplane.sandbox.fakehttp import FakeServer, Request, Response

DEFAULT_TOKEN = "xoxb-sandbox-token"
DEFAULT_CHANNELS = ("C0ONCALL", "C0PLATFORM", "C0KAFKA")
DEFAULT_NAMES = {"oncall": "C0ONCALL", "platform": "C0PLATFORM", "kafka": "C0KAFKA"}
HTML_ERROR = (b"<!DOCTYPE html><html><head><title>%d</title></head><body><h1>Slack is "
              b"having trouble</h1><p>Error %d. Please try again.</p></body></html>")


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[Any]
    thread_ts: str | None = None
    metadata: dict[str, Any] | None = None
    edits: int = 0
    received_at: float = field(default_factory=time.time)


class SlackFake:
    def __init__(self, token: str = DEFAULT_TOKEN,
                 channels: tuple[str, ...] = DEFAULT_CHANNELS,
                 names: dict[str, str] | None = None) -> None:
        self.token = token
        self.channels = set(channels)
        self.names = dict(DEFAULT_NAMES if names is None else names)  # name -> channel ID
        self.calls: list[tuple[str, int]] = []  # (method, HTTP status) in arrival order
        self.on_message: Callable[[Message], None] | None = None
        self._messages: list[Message] = []
        self._lock = threading.Lock()
        self._last_ts = 0.0
        self._html: list[list[Any]] = []  # [method, skip, count, status]
        self.server = FakeServer(self._handle, self._record)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        return self.server.start(host, port)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_url(self) -> str:
        """The ``base_url`` for slack_sdk."""
        return self.server.url + "/api/"

    def stop(self) -> None:
        self.server.stop()

    # -- fault injection ------------------------------------------------------------------

    def fail(self, error: str, method: str = "", count: int | None = 1,
             status: int = 200, **extra: str) -> None:
        """Answer the next ``count`` calls of ``method`` with ``ok: false, error`` (plus
        ``extra`` fields, e.g. ``needed="channels:history"`` for ``missing_scope``)."""
        self.server.add_fault(f"/api/{method}", Response(status, {"ok": False, "error": error,
                                                                 **extra}), count)

    def rate_limit(self, retry_after: int, method: str = "", count: int | None = 1) -> None:
        self.server.add_fault(f"/api/{method}", Response(
            429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}), count)

    def down(self, status: int = 503, method: str = "", count: int | None = None) -> None:
        """Answer with an HTTP error (no Slack body) until :meth:`heal`."""
        self.server.add_fault(f"/api/{method}", Response(status, b"upstream unavailable"),
                              count)

    def drop_response(self, method: str, count: int | None = 1) -> None:
        """Handle the next ``count`` calls of ``method``, then close the connection unanswered
        (the message IS posted; the caller cannot know)."""
        self.server.add_fault(f"/api/{method}", None, count)

    def html_error(self, method: str, status: int = 502, after: int = 0,
                   count: int = 1) -> None:
        """Answer ``count`` calls of ``method`` with an HTML error page (what Slack's edge
        serves in an outage), after letting ``after`` of them through (e.g. the first page
        of a paged lookup)."""
        with self._lock:
            self._html.append([method, after, count, status])

    def heal(self) -> None:
        self.server.clear_faults()
        with self._lock:
            self._html.clear()

    # -- inspection -----------------------------------------------------------------------

    def messages(self, channel: str | None = None, thread_ts: str | None = None,
                 roots_only: bool = False) -> list[Message]:
        with self._lock:
            out = [m for m in self._messages if channel is None or m.channel == channel]
        if thread_ts is not None:
            out = [m for m in out if m.thread_ts == thread_ts]
        if roots_only:
            out = [m for m in out if m.thread_ts is None]
        return out

    def count(self, method: str, status: int = 200) -> int:
        return sum(1 for m, s in self.calls if m == method and s == status)

    # -- the API --------------------------------------------------------------------------

    def _record(self, req: Request, resp: Response) -> None:
        with self._lock:
            self.calls.append((req.path.removeprefix("/api/"), resp.status))

    def _handle(self, req: Request) -> Response:
        method = req.path.removeprefix("/api/")
        with self._lock:
            for rule in self._html:
                if rule[0] != method or rule[2] <= 0:
                    continue
                if rule[1] > 0:
                    rule[1] -= 1
                    break
                rule[2] -= 1
                return Response(rule[3], HTML_ERROR % (rule[3], rule[3]),
                                {"Content-Type": "text/html"})
        return self._dispatch(method, req)

    def _dispatch(self, method: str, req: Request) -> Response:
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test, "chat.postMessage": self._post,
            "chat.update": self._update, "conversations.history": self._history,
            "conversations.replies": self._replies, "conversations.open": self._open_dm}
        if method not in handlers:
            return Response(404, {"ok": False, "error": "unknown_method"})
        auth = req.headers.get("authorization", "")
        args = req.form()
        given = auth.removeprefix("Bearer ").strip() or str(args.get("token", ""))
        if not given:
            return Response(200, {"ok": False, "error": "not_authed"})
        if not hmac.compare_digest(given, self.token):
            return Response(200, {"ok": False, "error": "invalid_auth"})
        try:
            return Response(200, handlers[method](args))
        except _ApiError as exc:
            return Response(200, {"ok": False, "error": str(exc)})

    def _auth_test(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://sandbox.slack.com/", "team": "sandbox",
                "user": "controlplane", "team_id": "T0SANDBOX", "user_id": "U0CONTROL",
                "bot_id": "B0CONTROL"}

    def _channel(self, args: dict[str, Any], by_name: bool = False) -> str:
        channel = str(args.get("channel", ""))
        if by_name:  # only chat.postMessage resolves a name; the answer carries the ID
            channel = self.names.get(channel.removeprefix("#"), channel)
            if re.fullmatch(r"[UW][A-Z0-9]{6,}", channel):  # a member id: their DM with us
                channel = "D" + channel[1:]
                self.channels.add(channel)
        if channel not in self.channels:
            raise _ApiError("channel_not_found")
        return channel

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, by_name=True)
        blocks = _json_arg(args.get("blocks"), [])
        text = str(args.get("text") or "")
        if not text and not blocks:
            raise _ApiError("no_text")
        thread_ts = args.get("thread_ts") or None
        with self._lock:
            if thread_ts and not any(m.ts == thread_ts and m.channel == channel
                                     for m in self._messages):
                raise _ApiError("thread_not_found")
            msg = Message(channel, self._next_ts(), text, blocks, thread_ts,
                          _json_arg(args.get("metadata"), None))
            self._messages.append(msg)
        if self.on_message is not None:
            self.on_message(msg)
        return {"ok": True, "channel": channel, "ts": msg.ts, "message": _view(msg, True)}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        ts = str(args.get("ts", ""))
        with self._lock:
            msg = next((m for m in self._messages if m.channel == channel and m.ts == ts), None)
            if msg is None:
                raise _ApiError("message_not_found")
            msg.text = str(args.get("text") or msg.text)
            msg.blocks = _json_arg(args.get("blocks"), msg.blocks)
            msg.edits += 1
        return {"ok": True, "channel": channel, "ts": ts, "text": msg.text}

    def _open_dm(self, args: dict[str, Any]) -> dict[str, Any]:
        """The DM with one member (``users``), as Slack answers it: ``{"channel": {"id"}}``."""
        user = str(args.get("users", ""))
        if not re.fullmatch(r"[UW][A-Z0-9]{6,}", user):
            raise _ApiError("user_not_found")
        with self._lock:
            self.channels.add("D" + user[1:])
        return {"ok": True, "channel": {"id": "D" + user[1:]}}

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        """Roots newest first; ``oldest`` is exclusive unless ``inclusive``, like Slack."""
        channel = self._channel(args)
        oldest = float(args.get("oldest") or 0)
        inclusive = _flag(args.get("inclusive"))
        with self._lock:
            roots = [m for m in self._messages if m.channel == channel and m.thread_ts is None
                     and (float(m.ts) > oldest or (inclusive and float(m.ts) == oldest))]
        return _page(list(reversed(roots)), args, 100)

    def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """The parent then its replies, oldest first."""
        channel = self._channel(args)
        ts = str(args.get("ts", ""))
        with self._lock:
            root = [m for m in self._messages if m.channel == channel and m.ts == ts]
            if not root:
                raise _ApiError("thread_not_found")
            thread = root + [m for m in self._messages if m.thread_ts == ts]
        return _page(thread, args, 1000)

    def _next_ts(self) -> str:
        # Slack ts values are unique per channel and increase; keep them strictly rising.
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"


class _ApiError(Exception):
    pass


def _json_arg(value: Any, default: Any) -> Any:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return json.loads(value)
    return value


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _page(messages: list[Message], args: dict[str, Any], default_limit: int) -> dict[str, Any]:
    """One page of ``messages`` with Slack's cursor pagination; metadata only on request."""
    cursor = str(args.get("cursor") or "")
    start = int(base64.b64decode(cursor).decode().removeprefix("offset:")) if cursor else 0
    limit = min(int(args.get("limit") or default_limit), 999)
    page = messages[start:start + limit]
    more = start + limit < len(messages)
    metadata = _flag(args.get("include_all_metadata"))
    return {"ok": True, "messages": [_view(m, metadata) for m in page], "has_more": more,
            "response_metadata": {"next_cursor": base64.b64encode(
                f"offset:{start + limit}".encode()).decode() if more else ""}}


def _view(m: Message, metadata: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text, "blocks": m.blocks,
                           "user": "U0CONTROL", "bot_id": "B0CONTROL"}
    if m.thread_ts:
        out["thread_ts"] = m.thread_ts
    if m.metadata and metadata:  # Slack returns it only with include_all_metadata=true
        out["metadata"] = m.metadata
    return out


def sign(signing_secret: str, body: bytes, timestamp: int) -> str:
    """Slack's v0 request signature for ``body`` sent at ``timestamp``."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def click_button(webhook_url: str, signing_secret: str, incident_id: int, user: str,
                 timestamp: int | None = None, signature: str | None = None) -> tuple[int, str]:
    """Send the interactive payload Slack sends when someone clicks our Acknowledge button."""
    payload = {"type": "block_actions", "user": {"id": "U0ONCALL", "username": user,
                                                 "name": user},
               "actions": [{"action_id": "acknowledge", "value": str(incident_id),
                            "block_id": f"incident-{incident_id}", "type": "button"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    req = urllib.request.Request(webhook_url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature or sign(signing_secret, body, ts)})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def start(host: str = "127.0.0.1", port: int = 0,
          token: str = DEFAULT_TOKEN) -> tuple[str, Callable[[], None]]:
    """Start a fake; returns (base URL, stop). slack_sdk's base_url is ``url + "/api/"``."""
    fake = SlackFake(token=token)
    return fake.start(host, port), fake.stop

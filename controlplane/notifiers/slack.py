"""Slack through ``slack_sdk.WebClient``: a root message per incident, updates in its thread.

Idempotency: every message carries Slack message ``metadata`` with the outbox entry's
idempotency key. When an earlier attempt may have reached Slack (the process died between
sending and recording it, or the answer was lost on the way), we look the key up with
``conversations.history`` / ``conversations.replies`` (every page) before sending again.
``chat.update`` is naturally idempotent. The SDK's own retry handlers are switched off:
its default resends a request after a dropped connection without that lookup, which
would post the message twice; retries are the outbox's job.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from controlplane.durations import Duration
from controlplane.notifiers.base import (
    PAGE,
    ChannelConfig,
    Clock,
    Incident,
    Notification,
    Notifier,
    Refs,
    Severity,
    TransportError,
    duration_text,
    system_clock,
)

log = logging.getLogger(__name__)

EVENT_TYPE = "controlplane_notification"
TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                    "request_timeout", "team_added_to_org"}
_EMOJI = {"critical": ":red_circle:", "major": ":large_orange_circle:",
          "minor": ":large_yellow_circle:"}


# Public (C), private/group (G) and DM (D) conversation ids. Names are refused: the
# idempotency lookup (conversations.history) accepts only ids, so a name would make every
# retried root message fail with channel_not_found.
SLACK_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")


def slack_channel_id(v: str) -> str:
    if not SLACK_CHANNEL_ID.fullmatch(v):
        raise ValueError(f"slack channel {v!r} must be a channel ID like C0123ABCD (channel "
                         "details → bottom of the About tab), not a name")
    return v


class RouteMatch(BaseModel):
    """Which incidents a route takes: every given label must match; severity in the list."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(default_factory=dict)
    severity: list[Severity] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)


class SlackRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: RouteMatch = Field(default_factory=RouteMatch)
    channel: str = Field(min_length=1)

    _channel_id = field_validator("channel")(slack_channel_id)


class SlackConfig(ChannelConfig):
    token: SecretStr
    base_url: str = "https://slack.com/api/"
    channel: str = Field(min_length=1, description="default channel when no route matches")
    routes: list[SlackRoute] = Field(default_factory=list)
    repeat_interval: Duration = 4 * 3600.0
    signing_secret: SecretStr | None = None
    timeout: Duration = 10.0
    admins: list[str] = Field(default_factory=list, description=(
        "Slack user ids (U…) allowed to press admin-only buttons (Run runbook)"))

    _channel_id = field_validator("channel")(slack_channel_id)

    @field_validator("base_url")
    @classmethod
    def _slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return v if v.endswith("/") else v + "/"

    @field_validator("repeat_interval")
    @classmethod
    def _repeat_positive(cls, v: float) -> float:
        if v < 60:
            raise ValueError("must be at least 60s; reminders more often are noise")
        return v


class _QuietSdkLog(logging.Logger):
    """slack_sdk logs an HTML error page (Slack in an outage) at ERROR; for us it is a
    retryable outage the outbox reports at WARNING, so it must not page Sentry."""

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.warning(msg, *args, **kwargs)


def _sdk_logger() -> logging.Logger:
    logger = _QuietSdkLog(f"{__name__}.sdk")
    logger.parent = log
    return logger


class SlackNotifier(Notifier[SlackConfig]):
    """Every incident event goes to Slack: a root message on open, the rest in its thread."""

    channel = "slack"
    config_model = SlackConfig
    contact = "slack"

    def __init__(self, cfg: SlackConfig, clock: Clock = system_clock) -> None:
        super().__init__(cfg, clock)
        self.client = WebClient(token=cfg.token.get_secret_value(), base_url=cfg.base_url,
                                timeout=int(cfg.timeout), retry_handlers=[],
                                logger=_sdk_logger())

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.cfg.token, self.cfg.signing_secret) if s]

    def route(self, incident: Incident) -> list[str]:
        return [route(self.cfg, incident.severity, incident.env, incident.labels)]

    def reminder_interval(self) -> float | None:
        return self.cfg.repeat_interval

    def notify(self, n: Notification) -> Refs:
        try:
            if n.action == "open":
                return self._open(n)
            if n.action == PAGE:
                self._page(n)
                return {}
            if n.action == "resolve":
                self._update_root(n, resolved=True)
                self._reply(n, self._resolve_text(n.payload))
                return {}
            if n.action == "acknowledge":
                self._update_root(n, resolved=False)
            self._reply(n, n.payload.get("text") or n.payload["message"])
            return {}
        except SlackApiError as exc:
            raise _classify(exc) from None
        except json.JSONDecodeError:
            # A paged lookup (conversations.history) answered with an HTML error page: the
            # SDK parses later pages itself and does not wrap the error.
            raise TransportError("slack unavailable: answered with a page that is not "
                                 "JSON") from None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout
            raise TransportError(f"slack unreachable: {type(exc).__name__}: {exc}") from None

    # -- actions ----------------------------------------------------------------------------

    def _open(self, n: Notification) -> Refs:
        # Entries queued before routing moved into the channel carry "channel".
        channel = (n.to or [n.payload.get("channel") or self.cfg.channel])[0]
        if n.attempts:
            found = self._find_root(channel, n)
            if found:
                log.info("slack root already posted incident=%s ts=%s", n.incident_id, found)
                return {"channel": channel, "ts": found}
        resp = self.client.chat_postMessage(
            channel=channel, text=self._summary(n.payload), blocks=self._blocks(n.payload),
            metadata=self._metadata(n), unfurl_links=False)
        return {"channel": str(resp["channel"]), "ts": str(resp["ts"])}

    def _page(self, n: Notification) -> None:
        # A DM by member id (Slack opens the conversation). Before a resend, the DM is
        # opened for its id and its history searched for this entry's key.
        text = escape(n.payload.get("text") or n.payload["message"])
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
                  *self._blocks(n.payload)]
        for user in n.to:
            if n.attempts:
                dm = str(self.client.conversations_open(users=user)["channel"]["id"])
                if self._find_root(dm, n):
                    log.info("slack page already posted incident=%s", n.incident_id)
                    continue
            self.client.chat_postMessage(channel=user, text=text, blocks=blocks,
                                         metadata=self._metadata(n), unfurl_links=False)

    def _reply(self, n: Notification, text: str) -> None:
        channel, ts = self._root(n)
        if n.attempts and self._find_reply(channel, ts, n):
            log.info("slack reply already posted incident=%s key=%s", n.incident_id,
                     n.idempotency_key)
            return
        self.client.chat_postMessage(channel=channel, thread_ts=ts, text=escape(text),
                                     metadata=self._metadata(n))

    def _update_root(self, n: Notification, resolved: bool) -> None:
        channel, ts = self._root(n)
        p = dict(n.payload)
        if resolved:
            p["resolved"] = True
        self.client.chat_update(channel=channel, ts=ts, text=self._summary(p),
                                blocks=self._blocks(p))

    def _root(self, n: Notification) -> tuple[str, str]:
        channel, ts = n.refs.get("channel"), n.refs.get("ts")
        if not channel or not ts:
            raise TransportError("no Slack root message for this incident (its open "
                                 "notification failed); see the incident timeline",
                                 permanent=True)
        return channel, ts

    # -- lookups before a resend ------------------------------------------------------------

    def _find_root(self, channel: str, n: Notification) -> str | None:
        # Ten minutes of margin for clock skew between us and Slack; every page is read so
        # a busy channel cannot hide the earlier post.
        oldest = f"{n.created_at.timestamp() - 600:.6f}"
        pages = self.client.conversations_history(channel=channel, oldest=oldest, limit=200,
                                                  include_all_metadata=True)
        return next((ts for page in pages if (ts := _with_key(
            page.get("messages") or [], n.idempotency_key))), None)

    def _find_reply(self, channel: str, ts: str, n: Notification) -> str | None:
        pages = self.client.conversations_replies(channel=channel, ts=ts, limit=200,
                                                  include_all_metadata=True)
        return next((found for page in pages if (found := _with_key(
            page.get("messages") or [], n.idempotency_key))), None)

    # -- rendering --------------------------------------------------------------------------

    def _metadata(self, n: Notification) -> dict[str, Any]:
        return {"event_type": EVENT_TYPE,
                "event_payload": {"key": n.idempotency_key, "incident": n.incident_id}}

    @staticmethod
    def _summary(p: dict[str, Any]) -> str:
        state = "RESOLVED" if p.get("resolved") else p["status"].upper()
        return escape(f"[{state}] {p['check']} ({p['env'] or 'no env'}, {p['severity']}): "
                      f"{p['message']}")

    def _blocks(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        resolved = bool(p.get("resolved"))
        # plain_text (the header) is shown as is; every mrkdwn text is escaped.
        title = (f":white_check_mark: Resolved: {p['check']}" if resolved else
                 f"{_EMOJI.get(p['severity'], '')} {p['status'].capitalize()}: {p['check']}")
        fields = [f"*Check*\n{escape(p['check'])}", f"*Env*\n{escape(p['env'] or '-')}",
                  f"*Severity*\n{p['severity']}", f"*Since*\n{p['since']}"]
        if p.get("acknowledged_by") and not resolved:
            fields.append(f"*Acknowledged by*\n{escape(p['acknowledged_by'])}")
        links = [_link(p["dashboard"], "Dashboard")] if p.get("dashboard") else []
        if p.get("runbook"):
            links.append(_link(p["runbook"], "Runbook"))
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": escape(p["message"][:2900]) or "-"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        ]
        if links:
            blocks.append({"type": "context",
                           "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
        buttons: list[dict[str, Any]] = []
        if not resolved and not p.get("acknowledged_by"):
            buttons.append({"type": "button", "action_id": "acknowledge",
                            "text": {"type": "plain_text", "text": "Acknowledge"},
                            "value": str(p["incident"]), "style": "primary"})
        secret = self.cfg.signing_secret
        if not resolved and p.get("runbook_id") and secret is not None:
            buttons.append({"type": "button", "action_id": RUN_RUNBOOK,
                            "text": {"type": "plain_text", "text": "Run runbook"},
                            "value": runbook_button(secret.get_secret_value(),
                                                    str(p["runbook_id"]), int(p["incident"]))})
        if buttons:
            blocks.append({"type": "actions", "block_id": f"incident-{p['incident']}",
                           "elements": buttons})
        return blocks

    @staticmethod
    def _resolve_text(p: dict[str, Any]) -> str:
        return (f":white_check_mark: Resolved after {duration_text(p['duration_s'])}: "
                f"{p['message']}")


RUN_RUNBOOK = "run_runbook"


def runbook_button(secret: str, runbook_id: str, incident_id: int) -> str:
    """The Run runbook button's value, signed: the webhook starts only what we offered."""
    body = f"{runbook_id}:{incident_id}"
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{body}:{mac}"


def parse_runbook_button(secret: str, value: str) -> tuple[str, int] | None:
    """(runbook id, incident id) from a button value whose signature holds, else None."""
    runbook_id, _, rest = value.partition(":")
    incident = rest.partition(":")[0]
    if not incident.isdigit() or not hmac.compare_digest(
            runbook_button(secret, runbook_id, int(incident)), value):
        return None
    return runbook_id, int(incident)


def escape(text: str) -> str:
    """Slack's escaping for text it parses: a probed body cannot mention <!channel>, a
    user or a link of its own (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    # Inside <url|label> the url ends at "|" or ">": percent-encode them, never escape.
    safe = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    return f"<{safe}|{label}>"


def route(cfg: SlackConfig, severity: str, env: str, labels: dict[str, Any]) -> str:
    """The channel the first matching route names, else the default channel."""
    for r in cfg.routes:
        m = r.match
        if m.severity and severity not in m.severity:
            continue
        if m.env and env not in m.env:
            continue
        if all(str(labels.get(k)) == v for k, v in m.labels.items()):
            return r.channel
    return cfg.channel


def _with_key(messages: list[dict[str, Any]], key: str) -> str | None:
    for m in messages:
        meta = m.get("metadata") or {}
        if meta.get("event_type") == EVENT_TYPE and \
                (meta.get("event_payload") or {}).get("key") == key:
            return str(m["ts"])
    return None


def _classify(exc: SlackApiError) -> TransportError:
    status = exc.response.status_code
    error = str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) else ""
    if status == 429 or error == "ratelimited":
        after = _retry_after(exc.response.headers)
        return TransportError(f"slack rate limited (429), retry after {after:g}s",
                              retry_after=after)
    if not re.fullmatch(r"[a-z_]+", error):
        error = ""  # not a Slack error code (an HTML or text error page)
    if status >= 500 or error in TRANSIENT_ERRORS:
        return TransportError(f"slack unavailable: HTTP {status} {error}".rstrip())
    hint = ""
    if error == "missing_scope" and isinstance(exc.response.data, dict):
        hint = f" (add the {exc.response.data.get('needed', '?')} scope to the Slack app)"
    return TransportError(f"slack rejected the request: {error or f'HTTP {status}'}{hint}",
                          permanent=True)


def _retry_after(headers: Any) -> float:
    raw = None
    for k, v in dict(headers or {}).items():
        if k.lower() == "retry-after":
            raw = v[0] if isinstance(v, list) else v
    try:
        return max(1.0, float(raw)) if raw is not None else 30.0
    except ValueError:
        return 30.0

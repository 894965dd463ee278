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

import http.client
import logging
import re
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from controlplane.incidents.config import SlackConfig
from controlplane.notifiers.base import Notification, Notifier, TransportError, duration_text

log = logging.getLogger(__name__)

EVENT_TYPE = "controlplane_notification"
TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                    "request_timeout", "team_added_to_org"}
_EMOJI = {"critical": ":red_circle:", "major": ":large_orange_circle:",
          "minor": ":large_yellow_circle:"}


class SlackNotifier(Notifier):
    channel = "slack"

    def __init__(self, cfg: SlackConfig) -> None:
        self.cfg = cfg
        self.client = WebClient(token=cfg.token.get_secret_value(), base_url=cfg.base_url,
                                timeout=int(cfg.timeout), retry_handlers=[])

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.cfg.token, self.cfg.signing_secret) if s]

    def route(self, severity: str, env: str, labels: dict[str, Any]) -> str:
        return route(self.cfg, severity, env, labels)

    def notify(self, n: Notification) -> dict[str, str]:
        try:
            if n.action == "open":
                return self._open(n)
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
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout
            raise TransportError(f"slack unreachable: {type(exc).__name__}: {exc}") from None

    # -- actions ----------------------------------------------------------------------------

    def _open(self, n: Notification) -> dict[str, str]:
        channel = n.payload["channel"]
        if n.attempts:
            found = self._find_root(channel, n)
            if found:
                log.info("slack root already posted incident=%s ts=%s", n.incident_id, found)
                return {"slack_channel": channel, "slack_ts": found}
        resp = self.client.chat_postMessage(
            channel=channel, text=self._summary(n.payload), blocks=self._blocks(n.payload),
            metadata=self._metadata(n), unfurl_links=False)
        return {"slack_channel": str(resp["channel"]), "slack_ts": str(resp["ts"])}

    def _reply(self, n: Notification, text: str) -> None:
        channel, ts = self._root(n)
        if n.attempts and self._find_reply(channel, ts, n):
            log.info("slack reply already posted incident=%s key=%s", n.incident_id,
                     n.idempotency_key)
            return
        self.client.chat_postMessage(channel=channel, thread_ts=ts, text=text,
                                     metadata=self._metadata(n))

    def _update_root(self, n: Notification, resolved: bool) -> None:
        channel, ts = self._root(n)
        p = dict(n.payload)
        if resolved:
            p["resolved"] = True
        self.client.chat_update(channel=channel, ts=ts, text=self._summary(p),
                                blocks=self._blocks(p))

    def _root(self, n: Notification) -> tuple[str, str]:
        channel, ts = n.refs.get("slack_channel"), n.refs.get("slack_ts")
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
        return f"[{state}] {p['check']} ({p['env'] or 'no env'}, {p['severity']}): {p['message']}"

    def _blocks(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        resolved = bool(p.get("resolved"))
        title = (f":white_check_mark: Resolved: {p['check']}" if resolved else
                 f"{_EMOJI.get(p['severity'], '')} {p['status'].capitalize()}: {p['check']}")
        fields = [f"*Check*\n{p['check']}", f"*Env*\n{p['env'] or '-'}",
                  f"*Severity*\n{p['severity']}", f"*Since*\n{p['since']}"]
        if p.get("acknowledged_by") and not resolved:
            fields.append(f"*Acknowledged by*\n{p['acknowledged_by']}")
        links = [f"<{p['dashboard']}|Dashboard>"] if p.get("dashboard") else []
        if p.get("runbook"):
            links.append(f"<{p['runbook']}|Runbook>")
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": p["message"][:2900] or "-"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        ]
        if links:
            blocks.append({"type": "context",
                           "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
        if not resolved and not p.get("acknowledged_by"):
            blocks.append({"type": "actions", "block_id": f"incident-{p['incident']}",
                           "elements": [{"type": "button", "action_id": "acknowledge",
                                         "text": {"type": "plain_text", "text": "Acknowledge"},
                                         "value": str(p["incident"]), "style": "primary"}]})
        return blocks

    @staticmethod
    def _resolve_text(p: dict[str, Any]) -> str:
        return (f":white_check_mark: Resolved after {duration_text(p['duration_s'])}: "
                f"{p['message']}")


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

"""Jira through the ``jira`` package: one issue per incident, found again by a dedup label.

The label is ``cp-`` plus 16 hex digits of sha256(dedup key). Before creating we search
for an issue carrying it, so a restart, a retry after an unrecorded success or a lost
local store never opens a second ticket. A comment is skipped when its body is already
the issue's last comment or any comment made since the notification was queued (a person
may have commented between a lost answer and the retry);
resolve applies the configured transition; a failure within ``reopen_window`` of the
last resolution reopens that issue, later ones get a new issue.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from jira import JIRA, JIRAError
from pydantic import Field, SecretStr, field_validator

from controlplane.durations import Duration
from controlplane.notifiers.base import (
    ChannelConfig,
    Clock,
    Incident,
    Notification,
    Notifier,
    Refs,
    Severity,
    TransportError,
    at_least,
    duration_text,
    system_clock,
)

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(seconds=60)
"""Margin between our clock and Jira's when telling which comments a retry may have made."""


class JiraConfig(ChannelConfig):
    server: str
    user: str = ""
    token: SecretStr
    project: str = Field(min_length=1, pattern=r"^[A-Z][A-Z0-9_]*$")
    issue_type: str = "Incident"
    min_severity: Severity = "major"
    resolve_transition: str = "Done"
    reopen_transition: str = "Reopen"
    reopen_window: Duration = 24 * 3600.0
    timeout: Duration = 15.0

    @field_validator("server")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be the Jira base URL such as https://example.atlassian.net")
        return v.rstrip("/")


def dedup_label(dedup_key: str) -> str:
    return "cp-" + hashlib.sha256(dedup_key.encode()).hexdigest()[:16]


class JiraNotifier(Notifier[JiraConfig]):
    """The audit trail: incidents of ``min_severity`` or worse, every event but reminders."""

    channel = "jira"
    config_model = JiraConfig

    def __init__(self, cfg: JiraConfig, clock: Clock = system_clock) -> None:
        super().__init__(cfg, clock)
        self._client: JIRA | None = None

    def secrets(self) -> list[str]:
        return [self.cfg.token.get_secret_value()]

    def wants(self, incident: Incident, event: str) -> bool:
        # Reminders are for on-call; Jira gets what auditors need.
        return event != "reminder" and at_least(incident.severity, self.cfg.min_severity)

    @property
    def client(self) -> JIRA:
        if self._client is None:
            token = self.cfg.token.get_secret_value()
            auth: dict[str, Any] = ({"basic_auth": (self.cfg.user, token)} if self.cfg.user
                                    else {"token_auth": token})
            # Retries are the outbox's job: the client must fail fast and let us back off.
            self._client = JIRA(server=self.cfg.server, max_retries=0,
                                timeout=self.cfg.timeout, **auth)
        return self._client

    def notify(self, n: Notification) -> Refs:
        try:
            if n.action == "open":
                return {"key": self._open(n)}
            key = n.refs.get("key") or self._find(n.payload["dedup_key"], open_only=True)
            if not key:
                raise TransportError("no Jira issue for this incident (its open notification "
                                     "failed or was below min_severity)", permanent=True)
            if n.action == "resolve":
                self._comment(key, self._resolve_text(n.payload), n.created_at)
                self._transition(key, self.cfg.resolve_transition)
            else:
                text = n.payload.get("text") or n.payload["message"]
                self._comment(key, re.sub(r"^:[a-z_]+:\s*", "", text), n.created_at)
            return {"key": key}
        except JIRAError as exc:
            self._client = None if exc.status_code in (None, 401) else self._client
            raise _classify(exc) from None
        except requests.RequestException as exc:
            self._client = None
            raise TransportError(f"jira unreachable: {type(exc).__name__}") from None

    # -- actions ----------------------------------------------------------------------------

    def _open(self, n: Notification) -> str:
        p = n.payload
        found = self._latest(p["dedup_key"])
        if found is not None:
            key, done, resolved_at = found
            if not done:
                log.info("jira issue already open key=%s incident=%s", key, n.incident_id)
                return key
            window = timedelta(seconds=self.cfg.reopen_window)
            if resolved_at is not None and self.clock() - resolved_at <= window:
                # Comment first: both steps are repeat-safe in this order, while a crash
                # after the transition would make the retry see an open issue and stop.
                self._comment(key, f"Failing again: {p['message']}", n.created_at)
                self._transition(key, self.cfg.reopen_transition)
                log.info("jira issue reopened key=%s incident=%s", key, n.incident_id)
                return key
        issue = self.client.create_issue(fields={
            "project": {"key": self.cfg.project},
            "issuetype": {"name": self.cfg.issue_type},
            "summary": f"[{p['severity']}] {p['check']} ({p['env'] or 'no env'}) is "
                       f"{p['status']}"[:250],
            "description": self._description(p),
            "labels": ["controlplane", dedup_label(p["dedup_key"])],
        })
        log.info("jira issue created key=%s incident=%s", issue.key, n.incident_id)
        return str(issue.key)

    def _latest(self, dedup_key: str) -> tuple[str, bool, datetime | None] | None:
        jql = (f'project = "{self.cfg.project}" AND labels = "{dedup_label(dedup_key)}" '
               "ORDER BY created DESC")
        issues = self.client.search_issues(jql, maxResults=1,
                                           fields="status,resolutiondate,labels")
        if not issues:
            return None
        issue = issues[0]
        category = issue.fields.status.statusCategory.key
        resolved = getattr(issue.fields, "resolutiondate", None)
        return issue.key, category == "done", _parse_time(resolved)

    def _find(self, dedup_key: str, open_only: bool) -> str | None:
        found = self._latest(dedup_key)
        if found is None or (open_only and found[1]):
            return None
        return found[0]

    def _comment(self, key: str, body: str, queued_at: datetime) -> None:
        # Not only the last comment: someone may have commented between the attempt whose
        # answer was lost and this retry. Older comments are history: the same text may
        # rightly come again (a message that flaps back).
        comments = self.client.comments(key)
        since = queued_at - CLOCK_SKEW
        recent = [c for i, c in enumerate(comments) if i == len(comments) - 1 or
                  (created := _parse_time(getattr(c, "created", None))) is None or
                  created >= since]
        if any(str(c.body).strip() == body.strip() for c in recent):
            log.info("jira comment skipped (already on the issue) key=%s", key)
            return
        self.client.add_comment(key, body)

    def _transition(self, key: str, name: str) -> None:
        issue = self.client.issue(key, fields="status")
        done = issue.fields.status.statusCategory.key == "done"
        if done == (name == self.cfg.resolve_transition):
            return  # already where the transition would take it
        options = {t["name"].lower(): t["id"] for t in self.client.transitions(key)}
        if name.lower() not in options:
            raise TransportError(f"jira issue {key} has no transition {name!r}; available: "
                                 f"{', '.join(sorted(options)) or 'none'}; fix "
                                 "notifiers.jira.resolve_transition/reopen_transition",
                                 permanent=True)
        self.client.transition_issue(key, options[name.lower()])

    # -- rendering --------------------------------------------------------------------------

    @staticmethod
    def _description(p: dict[str, Any]) -> str:
        lines = [p["message"], "", f"Check: {p['check']} ({p['kind']})",
                 f"Environment: {p['env'] or '-'}", f"Severity: {p['severity']}",
                 f"Since: {p['since']}"]
        if p.get("labels"):
            lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in
                                                sorted(p["labels"].items())))
        if p.get("runbook"):
            lines.append(f"Runbook: {p['runbook']}")
        if p.get("dashboard"):
            lines.append(f"Dashboard: {p['dashboard']}")
        lines.append(f"Dedup key: {p['dedup_key']}")
        return "\n".join(lines)

    @staticmethod
    def _resolve_text(p: dict[str, Any]) -> str:
        return f"Resolved after {duration_text(p['duration_s'])}: {p['message']}"


def _parse_time(raw: Any) -> datetime | None:
    if not raw:
        return None
    text = str(raw)
    # Jira writes 2026-11-26T12:00:00.000+0000
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, fmt).astimezone(UTC)
        except ValueError:
            continue
    return None


def _classify(exc: JIRAError) -> TransportError:
    status = exc.status_code
    detail = _errors(exc)
    if status is None or status >= 500:
        return TransportError(f"jira unavailable: HTTP {status} {detail}".rstrip())
    if status == 429:
        after = None
        if exc.response is not None:
            try:
                after = float(exc.response.headers.get("Retry-After", ""))
            except ValueError:
                after = None
        return TransportError("jira rate limited (429)", retry_after=after)
    return TransportError(f"jira rejected the request: HTTP {status} {detail}".rstrip(),
                          permanent=True)


def _errors(exc: JIRAError) -> str:
    resp = exc.response
    if resp is None:
        return str(exc.text or "")
    try:
        body = resp.json()
    except ValueError:
        return ""
    parts = list(body.get("errorMessages") or [])
    parts += [f"{k}: {v}" for k, v in (body.get("errors") or {}).items()]
    return "; ".join(parts)

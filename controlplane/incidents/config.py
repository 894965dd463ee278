"""Config models for incidents, notifiers and static silences.

They are fields of :class:`controlplane.config.ControlPlaneConfig` (``incidents``,
``notifiers``, ``silences``), so a mistake in them stops start-up with FILE:LINE errors.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from controlplane.durations import Duration
from controlplane.severity import SEVERITY_RANK as SEVERITY_RANK
from controlplane.severity import Severity as Severity

# Public (C), private/group (G) and DM (D) conversation ids. Names are refused: the
# idempotency lookup (conversations.history) accepts only ids, so a name would make every
# retried root message fail with channel_not_found.
SLACK_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")


def slack_channel_id(v: str) -> str:
    if not SLACK_CHANNEL_ID.fullmatch(v):
        raise ValueError(f"slack channel {v!r} must be a channel ID like C0123ABCD (channel "
                         "details → bottom of the About tab), not a name")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouteMatch(_Model):
    """Which incidents a route takes: every given label must match; severity in the list."""

    labels: dict[str, str] = Field(default_factory=dict)
    severity: list[Severity] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)


class SlackRoute(_Model):
    match: RouteMatch = Field(default_factory=RouteMatch)
    channel: str = Field(min_length=1)

    _channel_id = field_validator("channel")(slack_channel_id)


class SlackConfig(_Model):
    enabled: bool = True
    token: SecretStr
    base_url: str = "https://slack.com/api/"
    channel: str = Field(min_length=1, description="default channel when no route matches")
    routes: list[SlackRoute] = Field(default_factory=list)
    repeat_interval: Duration = 4 * 3600.0
    signing_secret: SecretStr | None = None
    timeout: Duration = 10.0

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


class JiraConfig(_Model):
    enabled: bool = True
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


class NotifiersConfig(_Model):
    slack: SlackConfig | None = None
    jira: JiraConfig | None = None


class OutboxConfig(_Model):
    poll_interval: Duration = 1.0
    backoff_initial: Duration = 2.0
    backoff_max: Duration = 300.0
    max_attempts: int = Field(default=0, ge=0, description="0 = retry transient errors forever")


class IncidentsConfig(_Model):
    enabled: bool = True
    dashboard_url: str = Field(default="", description="public base URL of the dashboard")
    tick_interval: Duration = 15.0
    coalesce_updates: bool = Field(default=False, description=(
        "an unsent message update is replaced by a newer one (only the current message "
        "goes out after an outage); off: every update is delivered, in order"))
    update_interval: Duration = Field(default=0.0, ge=0, description=(
        "hold a message update until this long after the previous one was sent (newer "
        "ones replace it meanwhile; implies coalesce_updates); 0 = send each at once"))
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)


class SilenceMatchers(_Model):
    check: str | None = None
    env: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class SilenceConfig(_Model):
    """A silence or maintenance window; one-off (starts/ends) or recurring (cron + duration)."""

    matchers: SilenceMatchers
    comment: str = Field(min_length=1)
    author: str = "config"
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    cron: str | None = None
    duration: Duration | None = None

    @model_validator(mode="after")
    def _shape(self) -> SilenceConfig:
        from controlplane.incidents.silences import validate_window

        validate_window(self.starts_at, self.ends_at, self.cron, self.duration)
        return self

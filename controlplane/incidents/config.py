"""Config models for incidents and static silences.

They are fields of :class:`controlplane.config.ControlPlaneConfig` (``incidents``,
``silences``), so a mistake in them stops start-up with FILE:LINE errors. Each channel's
settings (``notifiers.<channel>``) are that channel's own model (controlplane/notifiers/).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controlplane.durations import Duration
from controlplane.severity import SEVERITY_RANK as SEVERITY_RANK
from controlplane.severity import Severity as Severity


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


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

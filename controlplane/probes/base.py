"""The probe contract: every check kind is one module with one Probe subclass.

A probe gets its validated config once and is asked to ``check()`` on every run.
It returns an :class:`Outcome`; :meth:`Probe.execute` turns that into a
:class:`~controlplane.results.Result`, times it, and records a crash as ``error``
so a broken probe never takes the scheduler down.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controlplane.deadline import DeadlineExceeded
from controlplane.durations import Duration
from controlplane.probes.inbox import SmsInbox
from controlplane.redact import redact
from controlplane.results import Result, Status, Step, utcnow
from controlplane.severity import Severity as Severity  # re-exported: kinds import it here

if TYPE_CHECKING:
    from controlplane.backups.config import DrConfig
    from controlplane.metrics import Metrics
    from controlplane.store import Store

log = logging.getLogger(__name__)

class CheckConfig(BaseModel):
    """Fields every check has; each kind subclasses it with its own fields."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=120)
    kind: str
    env: str = ""
    name: str = ""
    description: str = ""
    enabled: bool = True
    interval: Duration = 60.0
    timeout: Duration = 10.0
    failure_threshold: int = Field(default=2, ge=1)
    success_threshold: int = Field(default=1, ge=1)
    severity: Severity = "major"
    notify_on_degraded: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    runbook: str | None = None

    @field_validator("runbook")
    @classmethod
    def _runbook_link(cls, v: str | None) -> str | None:
        # Rendered as a link on the dashboard. An id must name a runbook (checked with the
        # runbook files, controlplane/runbooks/config.py); a URL must be a plain http(s)
        # one: no quotes, spaces or angle brackets to break out of the href.
        if v is None or not v.lower().startswith(("http://", "https://")) or \
                re.fullmatch(r"https?://[^\s<>\"'`]+", v):
            return v
        raise ValueError("must be a runbook id (e.g. restore-postgres) or an http(s) URL")


class CheckDefaults(BaseModel):
    """The config's ``defaults:`` section: values for checks that do not set them."""

    model_config = ConfigDict(extra="forbid")

    interval: Duration = 60.0
    timeout: Duration = 10.0
    failure_threshold: int = Field(default=2, ge=1)
    success_threshold: int = Field(default=1, ge=1)


def with_defaults(model: type[CheckConfig], fields: dict[str, Any],
                  defaults: CheckDefaults) -> dict[str, Any]:
    """``fields`` completed from the global ``defaults`` where the check is silent.

    Precedence: the check's own value, then its kind's own default (a kind declares one by
    redeclaring the field, as ``backup`` does with ``failure_threshold = 1``), then the
    global default. A global default never overwrites a kind's: one stored state must be
    judged by one threshold, whoever builds the check."""
    own = kind_defaults(model)
    filled = {k: v for k, v in defaults.model_dump().items() if k not in own}
    return {**filled, **fields}


def kind_defaults(model: type[CheckConfig]) -> set[str]:
    """The defaultable fields a kind's config class (or a parent below CheckConfig)
    redeclares with its own default."""
    own: set[str] = set()
    for cls in model.__mro__:
        if cls is CheckConfig or not issubclass(cls, CheckConfig):
            break
        own |= set(vars(cls).get("__annotations__", {}))
    return own & set(CheckDefaults.model_fields)


ConfigT = TypeVar("ConfigT", bound=CheckConfig)


@dataclass
class Outcome:
    """What a probe found; the base class adds identity and timing."""

    status: Status
    message: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)


@dataclass
class Services:
    """The running control plane's collaborators that probes and components share.

    Typed fields, not a string-keyed bag: a probe that needs one says which, and mypy checks
    it. ``None`` means "not in this process" (an ad-hoc ``controlplane probe`` run has no
    store); a probe that needs it raises :class:`ProbeError` saying where to run it.
    """

    store: Store | None = None
    """The control plane's own database (results, incidents, the backup catalog)."""
    dr: DrConfig | None = None
    """RTO/RPO targets, for the ``dr`` checks."""
    sms_inbox: SmsInbox = field(default_factory=SmsInbox)
    """SMS Twilio's inbound webhook accepted; the ID-card probe waits on it."""


@dataclass
class ProbeContext:
    """What the running control plane lends to probes (environments, shared services)."""

    environments: dict[str, Any] = field(default_factory=dict)
    services: Services = field(default_factory=Services)


class ProbeError(Exception):
    """The probe could not judge the target (bad input, crashed dependency): status error."""


class Probe(ABC, Generic[ConfigT]):
    kind: ClassVar[str]
    config_model: ClassVar[type[CheckConfig]]

    def __init__(self, config: ConfigT, context: ProbeContext | None = None) -> None:
        self.config = config
        self.context = context or ProbeContext()

    @abstractmethod
    def check(self) -> Outcome:
        """Probe the target once, within ``self.config.timeout`` seconds."""

    def close(self) -> None:
        """Release clients held across runs."""

    def execute(self) -> Result:
        started = utcnow()
        t0 = time.monotonic()
        try:
            outcome = self.check()
        except (ProbeError, DeadlineExceeded) as exc:
            outcome = Outcome(Status.ERROR, str(exc))
        except Exception as exc:
            log.exception("probe crashed check=%s kind=%s", self.config.id, self.kind)
            outcome = Outcome(Status.ERROR, f"probe crashed: {type(exc).__name__}: {exc}")
        return Result(
            check=self.config.id,
            kind=self.kind,
            env=self.config.env,
            status=outcome.status,
            started_at=started,
            duration_s=round(time.monotonic() - t0, 6),
            # One place for every kind: a credential in a URL's query (``?token=``,
            # ``&sig=``) or a DSN never reaches the store, the API, pages or logs.
            message=redact(outcome.message),
            metrics=outcome.metrics,
            details=_redacted(outcome.details) if self.redact_details else outcome.details,
            steps=[st.model_copy(update={"message": redact(st.message)})
                   for st in outcome.steps],
        )

    @classmethod
    def export_metrics(cls, result: Result, metrics: Metrics) -> None:
        """Set this kind's own metrics (beyond the check_* family) from a result."""

    # -- ad-hoc use from `controlplane probe KIND TARGET ...` -------------------------------

    redact_details: ClassVar[bool] = True
    """False only for kinds whose details hold nothing but names and numbers read from the
    target (and are big enough for the walk to cost: 10,000 lag rows)."""

    cli_name: ClassVar[str | None] = None
    """Name under `controlplane probe`; None means the kind is not offered ad hoc."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this kind's flags to its `controlplane probe` sub-command."""

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> CheckConfig:
        raise NotImplementedError(f"{cls.kind} cannot be run ad hoc")


def _redacted(value: Any) -> Any:
    """``value`` with credentials hidden; the same object when there is nothing to hide.

    Hot for big results (10,000 lag rows): :func:`redact` runs a rule's expression only
    when one of its hints occurs, returns the same string when nothing is hidden, and
    containers are copied only where something changed."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        for k, v in value.items():
            if _redacted(v) is not v:
                return {k: _redacted(v) for k, v in value.items()}
        return value
    if isinstance(value, list):
        for v in value:
            if _redacted(v) is not v:
                return [_redacted(v) for v in value]
        return value
    return value

"""Shared pieces of the data-tier kinds: findings that add up to one Outcome, freshness rules.

A data-service probe asks several questions in one run (can I log in, how many connections,
how old is the newest row); each answer is one step, each problem one finding, and the
worst finding leads the message while all of them stay in ``details.problems``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controlplane.deadline import Deadline as Deadline
from controlplane.durations import Duration
from controlplane.probes.base import Outcome, ProbeError
from controlplane.results import Status, Step

if TYPE_CHECKING:
    from controlplane.probes.tlsconn import Handshake

Handshaker = Callable[[str, int, "str | None", "Deadline"], "Handshake"]


def known_finding_ids(valid: Collection[str]) -> Callable[[list[str]], list[str]]:
    """A validator for ``failing_findings``/``ignore_findings``: every id must be in ``valid``."""
    def check(values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in valid]
        if unknown:
            raise ValueError(f"unknown finding id(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(valid)}")
        return values
    return check


class Findings:
    """Steps and problems of one run."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.problems: list[tuple[Status, str]] = []

    def add(self, name: str, status: Status = Status.OK, message: str = "",
            duration_s: float = 0.0) -> None:
        self.steps.append(Step(name=name, status=status, duration_s=round(duration_s, 6),
                               message=message))
        if status != Status.OK:
            self.problems.append((status, message))

    def outcome(self, ok_message: str, metrics: dict[str, float | None],
                details: dict[str, Any]) -> Outcome:
        details = {**details, "problems": [m for _, m in self.problems]}
        if self.problems:
            # the most severe problem leads; the first of equal rank wins (max keeps it)
            status, message = max(self.problems, key=lambda p: p[0].rank)
            more = len(self.problems) - 1
            if more:
                message += f" (and {more} more problem{'s' if more > 1 else ''})"
            return Outcome(status, message, metrics, details, self.steps)
        return Outcome(Status.OK, ok_message, metrics, details, self.steps)

    def failed(self, name: str, message: str, status: Status = Status.FAILING,
               duration_s: float = 0.0) -> Outcome:
        """The run stops here: one failed step ends it."""
        self.add(name, status, message, duration_s)
        return self.outcome("", {}, {})


class FreshnessRule(BaseModel):
    """``max(column)`` of ``table`` must be newer than ``max_age``: a stalled ingest."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
                       description="table or schema.table")
    column: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="a time column")
    max_age: Duration
    status: Status = Status.FAILING

    @field_validator("status")
    @classmethod
    def _status(cls, v: Status) -> Status:
        if v not in (Status.DEGRADED, Status.FAILING):
            raise ValueError("status must be degraded or failing")
        return v

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


def age_seconds(newest: datetime, now: datetime | None = None) -> float:
    """Seconds since ``newest``; a naive time is taken as UTC (ClickHouse DateTime, timestamp)."""
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - newest).total_seconds()


def judge_freshness(findings: Findings, rule: FreshnessRule, newest: datetime | None,
                    duration_s: float) -> float | None:
    """Add the rule's step; the age in seconds (None for an empty table)."""
    step = f"freshness {rule.name}"
    if newest is None:
        findings.add(step, rule.status, f"{rule.table} has no rows (freshness of "
                     f"{rule.column} cannot be judged)", duration_s)
        return None
    age = round(age_seconds(newest), 3)
    if age > rule.max_age:
        findings.add(step, rule.status, f"{rule.table}: newest {rule.column} is "
                     f"{_human(age)} old, over the bound of {_human(rule.max_age)}", duration_s)
    else:
        findings.add(step, Status.OK, f"newest row {_human(max(age, 0.0))} old", duration_s)
    return age


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


class TlsRules(BaseModel):
    """The TLS probe's rules (chain, name, version, expiry) for a service's TLS listener."""

    model_config = ConfigDict(extra="forbid")

    ca_file: str | None = Field(default=None, description="PEM bundle to trust; default: the "
                                "system trust store")
    servername: str | None = Field(default=None, description="SNI and expected name; "
                                   "default: the host")
    verify_hostname: bool = True
    warn_days: float = Field(default=21, ge=0)
    crit_days: float = Field(default=7, ge=0)
    min_version: str = Field(default="1.2", pattern=r"^1\.[0-3]$")

    @field_validator("min_version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        # YAML reads `min_version: 1.2` as a float
        return f"{v:.1f}" if isinstance(v, float) else v


def judge_tls(found: Findings, host: str, port: int, rules: TlsRules, deadline: Deadline,
              metrics: dict[str, float | None], details: dict[str, Any],
              handshaker: Handshaker | None = None) -> bool:
    """One handshake judged exactly as a `tls` check would; False if the listener fails it.

    Certificate expiry within warn_days only degrades; the run goes on. ``handshaker``
    replaces the direct TLS connect (SMTP's STARTTLS)."""
    from controlplane.probes import tls as tls_kind  # the `tls` kind's own judge
    from controlplane.probes.tlsconn import Unreachable, handshake, load_trust

    cfg = tls_kind.TlsCheckConfig(
        id="tls-rules", target=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        servername=rules.servername, ca_file=rules.ca_file,
        verify_hostname=rules.verify_hostname, warn_days=rules.warn_days,
        crit_days=rules.crit_days, min_version=rules.min_version)
    store = load_trust(rules.ca_file)
    try:
        hs = (handshaker or handshake)(host, port, cfg.expected_name,
                                       Deadline(deadline.budget()))
    except Unreachable as exc:
        found.add(exc.stage, Status.FAILING, str(exc))
        return False
    except TimeoutError:
        raise ProbeError(f"{host}:{port}: no TLS handshake within {deadline.timeout:g}s") \
            from None
    judged = tls_kind.judge(cfg, hs, store)
    for key in ("days_left", "earliest_not_after", "handshake_s"):
        metrics[f"tls_{key}" if key != "handshake_s" else key] = judged.metrics.get(key)
    details["tls"] = {k: judged.details[k] for k in ("subject", "issuer", "not_after",
                                                     "tls_version")}
    found.add("tls", judged.status, "" if judged.status == Status.OK else judged.message,
              hs.handshake_s)
    return judged.status in (Status.OK, Status.DEGRADED)


_REASONS = {"Connection refused": "connection refused",
            "Name or service not known": "cannot resolve the host",
            "Temporary failure in name resolution": "cannot resolve the host",
            "No address associated with hostname": "cannot resolve the host",
            "CERTIFICATE_VERIFY_FAILED": "TLS certificate not trusted (certificate verify "
                                         "failed)",
            "doesn't match": "TLS certificate is not valid for the host",
            "timed out": "timed out"}


def connection_reason(exc: BaseException) -> str:
    """A short reason for an HTTP client's connection error (requests/urllib3 nest them)."""
    text = str(exc)
    for marker, reason in _REASONS.items():
        if marker in text:
            return reason
    return text[:200]

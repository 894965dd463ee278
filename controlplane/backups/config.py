"""Config sections ``blob``, ``backups`` and ``dr`` (added to ControlPlaneConfig)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from controlplane.durations import Duration
from controlplane.k8s.client import ClusterConnection
from controlplane.kafka.client import KafkaSecurity
from controlplane.severity import Severity

_NAME = r"^[a-z0-9][a-z0-9-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


_DOW = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def cron_trigger(expr: str) -> Any:
    """An APScheduler CronTrigger (UTC) for a standard 5-field crontab line.

    APScheduler 3 numbers weekdays from Monday = 0; crontab from Sunday = 0 (and 7), so
    numeric weekdays are translated to names first.
    """
    import re

    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields; got {len(fields)}, expected 5")
    head, sep, step = fields[4].partition("/")
    head = re.sub(r"\d+", lambda m: _DOW[int(m.group()) % 7], head)
    fields[4] = head + sep + step
    return CronTrigger.from_crontab(" ".join(fields), timezone="UTC")


def _valid_cron(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        cron_trigger(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a cron expression (5 fields, e.g. '0 2 * * *'): "
                         f"{exc}") from None
    return value


def _valid_dsn(value: SecretStr | None) -> SecretStr | None:
    """A DSN libpq can parse; the error never quotes it (it may hold a password)."""
    if value is not None:
        from controlplane.backups.postgres import PgError, parse_dsn

        try:
            parse_dsn(value.get_secret_value())
        except PgError as exc:
            raise ValueError(str(exc)) from None
    return value


class BlobConfig(_Model):
    """Where backups go: Azure Blob (or Azurite), or a local folder behind the same interface."""

    backend: Literal["azure", "local"] = "local"
    connection_string: SecretStr | None = None
    account_url: str | None = None
    container: str = "controlplane-backups"
    path: str = "backups"
    """Folder for the local backend (relative to the working directory)."""
    block_size: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=100 * 1024 * 1024)

    @model_validator(mode="after")
    def _azure_needs_credentials(self) -> BlobConfig:
        if self.backend == "azure" and self.connection_string is None and not self.account_url:
            raise ValueError("the azure backend needs connection_string (or account_url with "
                             "a managed identity); use backend: local for a folder")
        return self


class RetentionConfig(_Model):
    keep_last: int = Field(default=7, ge=1)
    daily_days: int = Field(default=14, ge=0)
    weekly_weeks: int = Field(default=8, ge=0)
    prune_after_backup: bool = True
    """Apply these rules after each complete backup (else only `controlplane backup prune`)."""


class SqlAssertion(_Model):
    """A query run against the restored scratch database; its first cell must equal expect."""

    name: str
    sql: str
    expect: str | int | float | bool | None = None


class DrillConfig(_Model):
    schedule: str | None = None
    """Cron expression (UTC) for scheduled drills; None means on demand only."""
    server_dsn: SecretStr | None = None
    """Admin DSN of the server where scratch databases are created (default: the source)."""
    tablespace: str | None = None
    """Tablespace for scratch databases (e.g. on a dedicated volume)."""
    assertions: list[SqlAssertion] = Field(default_factory=list)
    timeout: Duration = 6 * 3600.0
    """A drill still running after this long is stopped (pg_restore killed) and fails."""
    bootstrap: str | None = None
    """kafka-metadata only: an EMPTY Kafka cluster the recovery drill restores into."""
    namespace: str = "controlplane-drill"
    """kubernetes-secrets only: the namespace the drill restores into (and empties after)."""

    _cron = field_validator("schedule")(_valid_cron)
    _dsn = field_validator("server_dsn")(_valid_dsn)


class BackupComponentConfig(_Model, KafkaSecurity):
    """One backup component. A kafka-metadata one also takes the kafka_* checks' TLS and
    SASL fields (``tls``, ``ca_file``, ``sasl_mechanism``, ...: KafkaSecurity), used for
    its cluster and for its recovery drill's cluster."""

    kind: Literal["postgres", "kafka-metadata", "kubernetes-secrets"] = "postgres"
    """A member of the backup-kind registry (controlplane/backups/base.py)."""
    env: str = "production"
    dsn: SecretStr | None = None
    """postgres: the database to back up."""
    bootstrap: str | None = None
    """kafka-metadata: host:port[,host:port...] of the cluster whose metadata is saved."""
    cluster: ClusterConnection | None = None
    """kubernetes-secrets: the cluster whose Secrets are saved."""
    namespaces: list[str] = Field(default_factory=list)
    """kubernetes-secrets: the namespaces whose Secrets are saved."""
    include_service_account_tokens: bool = False
    """kubernetes-secrets: also save service-account token Secrets (left out by default)."""
    include_helm_releases: bool = False
    """kubernetes-secrets: also save Helm release records (left out by default)."""
    schedule: str | None = None
    """Cron expression (UTC) for scheduled backups; None means on demand only."""
    recipients: list[str] = Field(min_length=1)
    """age X25519 public keys (age1...) the backup is encrypted to."""
    identity_file: str | None = None
    """age private key file used by verify and drills; never logged or shown."""
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    drill: DrillConfig = Field(default_factory=DrillConfig)
    timeout: Duration = 6 * 3600.0
    """pg_dump is stopped (and the backup fails) after this long."""
    severity: Severity = "critical"
    """Severity of incidents from failed backups and drills of this component."""

    _cron = field_validator("schedule")(_valid_cron)
    _dsn = field_validator("dsn")(_valid_dsn)

    @model_validator(mode="after")
    def _source_for_kind(self) -> BackupComponentConfig:
        if self.kind == "postgres" and self.dsn is None:
            raise ValueError("you must specify dsn (the database to back up) for a postgres "
                             "backup component")
        if self.kind == "kafka-metadata" and not self.bootstrap:
            raise ValueError("you must specify bootstrap (host:port of the Kafka cluster) for "
                             "a kafka-metadata backup component")
        # Fields at their defaults are no settings: a dumped config (model_dump) has them all.
        given = sorted(f for f, info in KafkaSecurity.model_fields.items()
                       if getattr(self, f) != info.default)
        if self.kind != "kafka-metadata" and given:
            raise ValueError(f"{', '.join(given)}: Kafka TLS/SASL settings apply to "
                             "kafka-metadata components only; remove them")
        if self.kind == "kubernetes-secrets" and (self.cluster is None or not self.namespaces):
            raise ValueError("you must specify cluster (how to reach the Kubernetes API) and "
                             "namespaces (whose Secrets are saved) for a kubernetes-secrets "
                             "backup component")
        return self

    def source_dsn(self) -> str:
        """The postgres source DSN (validated present for that kind)."""
        if self.dsn is None:
            raise ValueError(f"backup component of kind {self.kind} has no dsn")
        return self.dsn.get_secret_value()

    @field_validator("recipients")
    @classmethod
    def _age_recipients(cls, value: list[str]) -> list[str]:
        for r in value:
            if not r.startswith("age1"):
                raise ValueError(f"{r!r} is not an age X25519 recipient; it starts with age1 "
                                 "(see `age-keygen -y key.txt`)")
        return value


class BackupsConfig(_Model):
    components: dict[str, BackupComponentConfig] = Field(default_factory=dict)
    lock_stale_after: Duration = 600.0
    """A running backup whose heartbeat is older than this is taken to be dead."""

    @field_validator("components")
    @classmethod
    def _names(cls, value: dict[str, BackupComponentConfig]) -> dict[str, BackupComponentConfig]:
        import re

        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"component name {name!r} must be lower-case letters, digits "
                                 "and dashes")
        return value


class DrTarget(_Model):
    rto: Duration
    rpo: Duration
    description: str = ""
    backup_component: str | None = None
    """The backups component whose backups and drills measure this DR component."""


def default_dr_components() -> dict[str, DrTarget]:
    """Platform defaults; a config entry with the same name replaces one."""
    return {
        "postgres": DrTarget(rto=3600, rpo=86400, backup_component="postgres",
                             description="Managed Postgres (halotasksapidb), logical backups"),
        "kubernetes-secrets": DrTarget(rto=3600, rpo=86400,
                                       backup_component="kubernetes-secrets",
                                       description="voice360-env and other Secrets"),
        "kafka": DrTarget(rto=4 * 3600, rpo=3600, backup_component="kafka-metadata",
                          description="Single KRaft broker, no replication"),
        "cluster-rebuild": DrTarget(rto=4 * 3600, rpo=86400,
                                    description="Full AKS cluster rebuild (~4 h by hand)"),
    }


class DrConfig(_Model):
    components: dict[str, DrTarget] = Field(default_factory=dict)
    at_risk_ratio: float = Field(default=0.8, gt=0, lt=1)
    """A measure above this share of its target is at risk (within 20 % of it)."""
    evaluate_interval: Duration = 300.0
    defaults: bool = True
    """Include the platform's default components."""

    def targets(self) -> dict[str, DrTarget]:
        base = default_dr_components() if self.defaults else {}
        return {**base, **self.components}

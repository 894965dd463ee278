"""Configuration models and the loader: every object validates and fills its defaults here.

``controlplane.yaml`` holds environments, store, web, scheduler, telemetry and defaults;
checks live in ``checks/*.yaml`` (globs relative to the main file). An invalid config
raises :class:`ConfigError` listing every problem as ``FILE:LINE: field.path: message``.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from controlplane.backups.config import BackupsConfig, BlobConfig, DrConfig
from controlplane.durations import Duration
from controlplane.incidents.config import IncidentsConfig, SilenceConfig
from controlplane.notifiers import validate_channels
from controlplane.notifiers.base import ChannelConfig
from controlplane.oncall.config import OncallConfig
from controlplane.probes import probe_class, valid_kinds
from controlplane.probes.base import CheckConfig, CheckDefaults, with_defaults
from controlplane.runbooks.config import RunbookConfig, check_runbook_links, load_runbooks
from controlplane.yamlsource import ConfigError, Located, Path_, Problem, load_located

__all__ = ["ConfigError", "ControlPlaneConfig", "load_config"]

DEFAULT_CONFIG_FILE = "controlplane.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnvironmentConfig(_Model):
    """One deployment environment of the platform and its public hostnames by role."""

    label: str = ""
    hosts: dict[str, str] = Field(default_factory=dict)
    public_ip: str | None = None

    def host(self, role: str) -> str:
        try:
            return self.hosts[role]
        except KeyError:
            raise KeyError(f"environment has no host for role {role!r}") from None


_SQLALCHEMY_URL = re.compile(r"""
    (?P<name>[\w\+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/\?]+)\]|(?P<ipv4host>[^/:\?]+))?(?::(?P<port>[^/\?]*))?)?
    (?:/(?P<database>[^\?]*))?
    (?:\?(?P<query>.*))?
    """, re.X)
"""sqlalchemy.engine.url's own pattern (2.x): validating a config must not import SQLAlchemy,
a third of `controlplane smoke`'s start-up (bench/startup); tests/test_config_dsn.py holds
the two equal on valid and broken URLs."""


def sqlalchemy_url_problem(v: str) -> bool:
    """True when SQLAlchemy's make_url would refuse ``v`` (no match, or a port not a number)."""
    m = _SQLALCHEMY_URL.match(v)
    if m is None:
        return True
    port = m.group("port")
    if port is not None:  # "db:/x" too: SQLAlchemy reads the empty port as a number
        try:
            int(port)
        except ValueError:
            return True
    return False


def _valid_store_dsn(v: str) -> str:
    """A URL SQLAlchemy reads as written; errors never quote it (it may hold a password)."""
    scheme, sep, rest = v.partition("://")
    if not sep or not scheme:
        raise ValueError("must be a database URL such as sqlite:///controlplane.db or "
                         "postgresql://USER:PASSWORD@HOST:5432/DB")
    if not scheme.startswith("sqlite"):
        netloc = rest.split("/", 1)[0].split("?", 1)[0]
        userinfo = netloc.rpartition("@")[0]
        if netloc.count("@") > 1 or userinfo.count(":") > 1 or ("@" in rest and not userinfo):
            raise ValueError("the user or password holds '@', ':' or '/': percent-encode them "
                             "(@ as %40, : as %3A, / as %2F), or pass the password as "
                             "?password=… / PGPASSWORD")
    if sqlalchemy_url_problem(v):
        raise ValueError("is not a database URL SQLAlchemy can read; write it like "
                         "postgresql://USER:PASSWORD@HOST:5432/DB")
    return v


class StoreConfig(_Model):
    dsn: str = "sqlite:///controlplane.db"
    raw_retention: Duration = 14 * 86400.0
    aggregate_retention: Duration = 400 * 86400.0
    standby_retry: Duration = Field(default=5.0, gt=0, description=(
        "PostgreSQL store shared by several instances: how often a standby tries to become "
        "active, and the active one checks it still is"))
    max_write_age: Duration = Field(default=600.0, gt=0, description=(
        "/readyz fails when the active instance has stored nothing for this long"))

    _dsn = field_validator("dsn")(_valid_store_dsn)


class WebConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    admin_token: SecretStr | None = None
    public_url: str = ""
    header_timeout: Duration = Field(default=20.0, gt=0, le=600, description=(
        "total time a request's line and headers may take; a slower sender is cut off"))
    body_timeout: Duration = Field(default=60.0, gt=0, le=3600, description=(
        "total time a request's body may take once its headers are in"))


class SchedulerConfig(_Model):
    max_concurrency: int = Field(default=64, ge=1)
    jitter: float = Field(default=0.1, ge=0, le=1)
    grace_period: Duration = 30.0
    tick: Duration = Field(default=0.5, ge=0, le=10, description=(
        "runs due within one tick start together (at most a tenth of a check's interval "
        "apart): fewer wake-ups and warm caches cost less CPU per run; 0 starts each run "
        "at its own moment"))


class TelemetryConfig(_Model):
    service_name: str = "controlplane"
    otlp_endpoint: str | None = None
    sentry_dsn: SecretStr | None = None


Notifiers = Annotated[dict[str, ChannelConfig], BeforeValidator(validate_channels)]
"""``notifiers:``: channel name -> that channel's own config model (the registry's)."""


class ControlPlaneConfig(_Model):
    environments: dict[str, EnvironmentConfig] = Field(default_factory=dict, validate_default=True)
    store: StoreConfig = Field(default_factory=StoreConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    defaults: CheckDefaults = Field(default_factory=CheckDefaults)
    check_files: list[str] = Field(default_factory=lambda: ["checks/*.yaml"])
    checks: list[CheckConfig] = Field(default_factory=list)
    source: str = ""
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    notifiers: Notifiers = Field(default_factory=dict)
    silences: list[SilenceConfig] = Field(default_factory=list)
    blob: BlobConfig = Field(default_factory=BlobConfig)
    backups: BackupsConfig = Field(default_factory=BackupsConfig)
    dr: DrConfig = Field(default_factory=DrConfig)
    oncall: OncallConfig = Field(default_factory=OncallConfig)
    runbook_files: list[str] = Field(default_factory=lambda: ["runbooks/*.yaml"])
    runbooks: list[RunbookConfig] = Field(default_factory=list)

    _builtin: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _add_builtin_checks(self) -> ControlPlaneConfig:
        """``checks`` is the one catalog: the YAML checks, then the features' built-in ones
        (controlplane/features.py), built here so every way of making a config has them."""
        from controlplane import features

        builtins = features.builtin_checks(self)
        have = {c.id: c for c in self.checks}
        for check_id, (feature, check) in builtins.items():
            if check_id not in have:
                self.checks.append(check)
            elif have[check_id] != check:
                raise ValueError(builtin_message(check_id, feature))
        self._builtin = {check_id: feature for check_id, (feature, _) in builtins.items()}
        return self

    @model_validator(mode="after")
    def _oncall_channels(self) -> ControlPlaneConfig:
        """Escalation steps page through channels configured under ``notifiers``."""
        self.oncall.check_channels(set(self.notifiers))
        return self

    def builtin_feature(self, check_id: str) -> str | None:
        """The feature that builds check ``check_id``; None for a check from YAML."""
        return self._builtin.get(check_id)

    @field_validator("environments")
    @classmethod
    def _some_environment(cls, v: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
        if not v:
            raise ValueError("you must define at least one environment")
        return v

    def runbook(self, runbook_id: str) -> RunbookConfig:
        for r in self.runbooks:
            if r.id == runbook_id:
                return r
        raise KeyError(runbook_id)

    def check(self, check_id: str) -> CheckConfig:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)


def load_config(path: str | None = None) -> ControlPlaneConfig:
    """Load and validate the main file and its check files; raise ConfigError on any problem."""
    path = path or os.environ.get("CONTROLPLANE_CONFIG") or DEFAULT_CONFIG_FILE
    main = load_located(path)
    data = main.data if main.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([main.problem((), "the top level must be a mapping of sections")])
    problems: list[Problem] = []
    inline_checks = data.pop("checks", None) or []
    if data.pop("runbooks", None) is not None:
        problems.append(main.problem(("runbooks",), "runbooks live in their own files, one "
                                     "per file (runbook_files, default runbooks/*.yaml)"))
    cfg = _validate_main(main, data, problems)
    base = os.path.dirname(os.path.abspath(path))
    sources: list[tuple[Located, Path_, Any]] = []
    if not isinstance(inline_checks, list):
        problems.append(main.problem(("checks",), "must be a list of checks"))
    else:
        sources += [(main, ("checks", i), c) for i, c in enumerate(inline_checks)]
    patterns = cfg.check_files if cfg else data.get("check_files", ["checks/*.yaml"])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        patterns = []  # an invalid check_files is already a problem of the main file
    for file in _expand(base, patterns):
        sources += _check_entries(file, problems)
    defaults = cfg.defaults if cfg else CheckDefaults()
    envs = set(cfg.environments) if cfg else set()
    builtin = {c.id: cfg.builtin_feature(c.id) or "" for c in cfg.checks} if cfg else {}
    checks = _validate_checks(sources, defaults, envs, builtin, problems)
    runbooks = load_runbooks(base, cfg.runbook_files if cfg else ["runbooks/*.yaml"], problems)
    check_runbook_links(sources, runbooks, problems, list(cfg.dr.targets()) if cfg else None)
    if cfg is not None:
        problems += _cross_references(main, cfg, checks, envs)
    if problems:
        raise ConfigError(problems)
    assert cfg is not None
    cfg.checks = checks + cfg.checks  # the YAML checks, then the built-in ones
    cfg.runbooks = runbooks
    cfg.source = os.path.abspath(path)
    return cfg


def _cross_references(main: Located, cfg: ControlPlaneConfig, checks: list[CheckConfig],
                      envs: set[str]) -> list[Problem]:
    """Names one section uses that another must define: silenced checks, backup envs."""
    from controlplane.incidents.silences import known_check_ids, unknown_check

    check_ids = known_check_ids(cfg) | {c.id for c in checks}
    out: list[Problem] = []
    for i, silence in enumerate(cfg.silences):
        problem = unknown_check(silence.matchers.check, check_ids)
        if problem:
            out.append(main.problem(("silences", i, "matchers", "check"), problem))
    for name, comp in cfg.backups.components.items():
        if comp.env not in envs:
            out.append(main.problem(("backups", "components", name, "env"),
                                    f"unknown environment {comp.env!r}; use one of: "
                                    f"{', '.join(sorted(envs))}"))
    return out


def _validate_main(
    main: Located, data: dict[str, Any], problems: list[Problem]
) -> ControlPlaneConfig | None:
    try:
        return ControlPlaneConfig.model_validate(data)
    except ValidationError as exc:
        problems += _problems(main, (), exc)
        return None


def _expand(base: str, patterns: list[str]) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        files += sorted(glob.glob(full))
    return files


def _check_entries(file: str, problems: list[Problem]) -> list[tuple[Located, Path_, Any]]:
    try:
        doc = load_located(file)
    except ConfigError as exc:
        problems += exc.problems
        return []
    data = doc.data
    if data is None:
        return []
    if isinstance(data, dict) and isinstance(data.get("checks"), list):
        return [(doc, ("checks", i), c) for i, c in enumerate(data["checks"])]
    problems.append(doc.problem((), "a check file must hold `checks:` with a list of checks"))
    return []


def _validate_checks(
    sources: list[tuple[Located, Path_, Any]],
    defaults: CheckDefaults,
    envs: set[str],
    builtin: dict[str, str],
    problems: list[Problem],
) -> list[CheckConfig]:
    checks: list[CheckConfig] = []
    seen: dict[str, tuple[Located, Path_]] = {}
    for doc, path, raw in sources:
        check = _validate_check(doc, path, raw, defaults, problems)
        if check is None:
            continue
        if check.id in builtin:
            problems.append(doc.problem(("id",), builtin_message(check.id, builtin[check.id]),
                                        path))
            continue
        if check.env and envs and check.env not in envs:
            problems.append(doc.problem(("env",), f"unknown environment {check.env!r}; "
                                        f"use one of: {', '.join(sorted(envs))}", path))
        if check.id in seen:
            other_doc, other_path = seen[check.id]
            first = f"{other_doc.file}:{other_doc.line_of(other_path)}"
            problems.append(doc.problem(("id",), f"duplicate check id {check.id!r}, also "
                                        f"defined at {first}; ids must be unique", path))
            continue
        seen[check.id] = (doc, path)
        checks.append(check)
    return checks


def builtin_message(check_id: str, feature: str) -> str:
    return (f"check {check_id!r} is built in (the {feature} feature makes it from its own "
            "config section) and is already on the status page, in the API and on the "
            "scheduler; remove it from here (a kind's thresholds come from its kind, its "
            "severity from its component)")


def _validate_check(
    doc: Located, path: Path_, raw: Any, defaults: CheckDefaults, problems: list[Problem]
) -> CheckConfig | None:
    if not isinstance(raw, dict):
        problems.append(doc.problem((), "each check must be a mapping with id and kind", path))
        return None
    kind = raw.get("kind")
    if kind is None:
        problems.append(doc.problem((), "you must specify kind; valid kinds are: "
                                    + ", ".join(valid_kinds()), path))
        return None
    if kind not in valid_kinds():
        problems.append(doc.problem(("kind",), f"unknown check kind {kind!r}; valid kinds are: "
                                    + ", ".join(valid_kinds()), path))
        return None
    model = probe_class(kind).config_model
    try:
        return model.model_validate(with_defaults(model, raw, defaults))
    except ValidationError as exc:
        problems += _problems(doc, path, exc)
        return None


def _problems(doc: Located, prefix: Path_, exc: ValidationError) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        out.append(doc.problem(loc, _message(err), prefix))
    return out


PATTERN_HINTS = {
    r"^[a-z0-9][a-z0-9._-]*$": "is not a valid id: use lowercase letters, digits, '.', '_' "
                               "and '-', starting with a letter or digit (e.g. "
                               "tls-bic-sky-prod)",
    r"^[A-Z][A-Z0-9_]*$": "is not a Jira project key: use its capital letters, as in the "
                          "issue keys (OPS for OPS-123)",
    r"^(AC[0-9a-fA-F]{32})?$": "is not a Twilio account SID: AC followed by 32 hex digits "
                               "(Twilio console, Account info)",
    r"^[0-9a-fA-F.:\[\]]+$": "is not a nameserver address: write IP or IP:PORT "
                              "([IPv6]:PORT), e.g. 10.0.0.10:53",
}
"""Instructions for the fields checked by a regular expression."""


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "missing":
        return "is required; add it"
    if kind == "extra_forbidden":
        return "unknown field; check its spelling or remove it"
    if kind == "string_pattern_mismatch":
        pattern = str((err.get("ctx") or {}).get("pattern", ""))
        hint = PATTERN_HINTS.get(pattern, f"must match the pattern {pattern}")
        return f"{err.get('input')!r} {hint}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")

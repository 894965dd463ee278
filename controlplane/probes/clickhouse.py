"""`clickhouse` checks over the HTTP(S) interface: ping, round trip, schema, freshness, growth.

One run: ``GET /ping``; ``SELECT 1`` timed; the configured databases and tables exist
(``system.databases``, ``system.tables``); for each freshness rule ``max(column)`` of the
table is newer than its bound (a stalled ingest); for each growth rule the row count grew
by at least ``min_rows`` since the previous run. Every query carries ``max_execution_time``
so the server stops what the run's timeout would abandon.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from controlplane.lazyimport import lazy_module
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.findings import (
    Deadline,
    Findings,
    FreshnessRule,
    connection_reason,
    judge_freshness,
)
from controlplane.results import Status

if TYPE_CHECKING:
    import requests
else:  # requests loads when a probe runs, not when a config validates
    requests = lazy_module("requests")

log = logging.getLogger(__name__)

_TABLE = r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$"
_AUTH_CODES = ("Code: 192,", "Code: 193,", "Code: 516,")  # unknown user, wrong password


class GrowthRule(BaseModel):
    """``count()`` of ``table`` must grow by ``min_rows`` between two runs."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(pattern=_TABLE, description="database.table")
    min_rows: int = Field(default=1, ge=1)
    status: Literal["degraded", "failing"] = "degraded"


class ClickHouseCheckConfig(CheckConfig):
    kind: Literal["clickhouse"] = "clickhouse"
    url: str = Field(pattern=r"^https?://", description="HTTP(S) interface, e.g. "
                     "https://host:8443")
    user: str = "default"
    password: SecretStr = SecretStr("")
    ca_file: str | None = Field(default=None, description="PEM bundle; default: certifi's")
    max_select_s: float | None = Field(default=None, gt=0, description="a slower SELECT 1: "
                                       "degraded")
    databases: list[str] = Field(default_factory=list)
    tables: list[str] = Field(default_factory=list, description="database.table names")
    freshness: list[FreshnessRule] = Field(default_factory=list)
    growth: list[GrowthRule] = Field(default_factory=list)


class ClickHouseProbe(Probe[ClickHouseCheckConfig]):
    kind = "clickhouse"
    config_model = ClickHouseCheckConfig

    def __init__(self, config: ClickHouseCheckConfig, context: Any = None) -> None:
        super().__init__(config, context)
        self._last_rows: dict[str, int] = {}

    def check(self) -> Outcome:
        c = self.config
        deadline = Deadline(c.timeout)
        found = Findings()
        metrics: dict[str, float | None] = {}
        details: dict[str, Any] = {"url": c.url}
        session = requests.Session()
        session.auth = (c.user, c.password.get_secret_value())
        try:
            return self._run(session, deadline, found, metrics, details)
        except _Refused as exc:
            found.add(exc.step, Status.FAILING, str(exc))
            return found.outcome("", metrics, details)
        finally:
            session.close()

    def _run(self, session: requests.Session, deadline: Deadline, found: Findings,
             metrics: dict[str, float | None], details: dict[str, Any]) -> Outcome:
        c = self.config
        t0 = time.monotonic()
        ping = self._get(session, "/ping", deadline, "ping")
        if ping.content.strip() != b"Ok.":
            raise _Refused("ping", f"{c.url}/ping answered {ping.content[:80]!r}, not Ok.")
        found.add("ping", duration_s=time.monotonic() - t0)
        t0 = time.monotonic()
        rows = self._query(session, "SELECT 1, version() AS v", deadline, "select 1")
        metrics["select_s"] = round(time.monotonic() - t0, 6)
        details["version"] = rows[0]["v"]
        if c.max_select_s is not None and (metrics["select_s"] or 0) > c.max_select_s:
            found.add("select 1", Status.DEGRADED, f"SELECT 1 took {metrics['select_s']:.3f}s,"
                      f" over {c.max_select_s:g}s", metrics["select_s"] or 0)
        else:
            found.add("select 1", duration_s=metrics["select_s"] or 0)
        self._schema(session, deadline, found)
        for rule in c.freshness:
            t1 = time.monotonic()
            row = self._query(session, f"SELECT toUnixTimestamp(toDateTime(max({rule.column}))) "
                              f"AS newest, count() AS n FROM {rule.table}", deadline,
                              f"freshness {rule.name}")[0]
            newest = datetime.fromtimestamp(int(row["newest"]), UTC) if int(row["n"]) else None
            metrics[f"freshness_age_s:{rule.name}"] = judge_freshness(
                found, rule, newest, time.monotonic() - t1)
        for growth in c.growth:
            self._growth(session, growth, deadline, found, metrics)
        ok = f"{c.url}: ClickHouse {details['version']}, SELECT 1 in " \
             f"{(metrics['select_s'] or 0) * 1000:.1f} ms"
        return found.outcome(ok, metrics, details)

    def _schema(self, session: requests.Session, deadline: Deadline, found: Findings) -> None:
        c = self.config
        if not (c.databases or c.tables):
            return
        t0 = time.monotonic()
        have_db = {r["name"] for r in self._query(
            session, "SELECT name FROM system.databases", deadline, "schema")}
        have_tables = {f"{r['database']}.{r['name']}" for r in self._query(
            session, "SELECT database, name FROM system.tables", deadline, "schema")}
        missing = [f"database {d}" for d in c.databases if d not in have_db]
        missing += [f"table {t}" for t in c.tables if t not in have_tables]
        if missing:
            found.add("schema", Status.FAILING, f"missing: {', '.join(missing)}",
                      time.monotonic() - t0)
        else:
            found.add("schema", message=f"{len(c.databases)} database(s), {len(c.tables)} "
                      "table(s) present", duration_s=time.monotonic() - t0)

    def _growth(self, session: requests.Session, rule: GrowthRule, deadline: Deadline,
                found: Findings, metrics: dict[str, float | None]) -> None:
        rows = int(self._query(session, f"SELECT count() AS n FROM {rule.table}", deadline,
                               f"growth {rule.table}")[0]["n"])
        before = self._last_rows.get(rule.table)
        self._last_rows[rule.table] = rows
        metrics[f"rows:{rule.table}"] = rows
        step = f"growth {rule.table}"
        if before is None:
            found.add(step, message=f"{rows} rows (first run: growth not judged)")
        elif rows - before < rule.min_rows:
            found.add(step, Status(rule.status), f"{rule.table} grew by {rows - before} rows "
                      f"since the last run, expected at least {rule.min_rows}")
        else:
            found.add(step, message=f"+{rows - before} rows")

    def _query(self, session: requests.Session, sql: str, deadline: Deadline,
               step: str) -> list[dict[str, Any]]:
        left = deadline.budget()
        resp = self._send(session, "POST", "/", deadline, step,
                          params={"max_execution_time": max(1, int(left)),
                                  "output_format_json_quote_64bit_integers": 0},
                          data=f"{sql} FORMAT JSON".encode())
        data: list[dict[str, Any]] = resp.json()["data"]
        return data

    def _get(self, session: requests.Session, path: str, deadline: Deadline,
             step: str) -> requests.Response:
        return self._send(session, "GET", path, deadline, step)

    def _send(self, session: requests.Session, method: str, path: str, deadline: Deadline,
              step: str, **kw: Any) -> requests.Response:
        c = self.config
        try:
            # verify per request: a session's verify loses to REQUESTS_CA_BUNDLE
            resp = session.request(method, f"{c.url.rstrip('/')}{path}",
                                   verify=c.ca_file or True, timeout=deadline.budget(),
                                   allow_redirects=False, **kw)
        except requests.Timeout:
            raise ProbeError(f"{c.url}: no answer within {c.timeout:g}s ({step})") from None
        except requests.RequestException as exc:
            raise _Refused(step, f"{c.url}: {connection_reason(exc)}") from None
        if resp.status_code == 200:
            return resp
        text = resp.content.decode(errors="replace").strip()
        if resp.status_code in (401, 403) or text.startswith(_AUTH_CODES):
            raise _Refused(step, f"{c.url}: authentication failed for user {c.user!r} "
                           "(wrong user or password)")
        raise _Refused(step, f"{c.url}: {step} failed: HTTP {resp.status_code}: "
                       f"{_exception_text(text)}")


class _Refused(Exception):
    """The server is unreachable or refused a request: failing."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


def _exception_text(text: str) -> str:
    """``Code: 60, e.displayText() = DB::Exception: Table x doesn't exist., e.what() = ...``
    -> ``Code: 60: Table x doesn't exist.``"""
    if "e.displayText() = " in text:
        code = text.split(",", 1)[0]
        body = text.split("e.displayText() = ", 1)[1].split(", e.what()", 1)[0]
        return f"{code}: {body.removeprefix('DB::Exception: ')}"
    return text.splitlines()[0][:300] if text else "(empty answer)"

"""`postgres` checks: login (TLS modes), round trip, connections, stuck transactions, freshness.

One connection per run, autocommit, with ``statement_timeout`` set to what is left of the
run's timeout so a slow server gives ``error`` ("timed out") instead of a hung worker.
What a run asks, in order: connect + ``SELECT 1``; connections used against
``max_connections``; transactions older than ``max_transaction_age``; sessions idle in a
transaction longer than ``max_idle_in_transaction``; the database size; replicas and their
replay lag (on a primary with ``expect_replicas``); ``max(column)`` of each freshness table.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, model_validator

from controlplane.durations import Duration
from controlplane.lazyimport import lazy_module
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.findings import Deadline, Findings, FreshnessRule, judge_freshness
from controlplane.results import Status

if TYPE_CHECKING:
    import psycopg
else:  # psycopg loads when a probe runs, not when a config validates
    psycopg = lazy_module("psycopg")

log = logging.getLogger(__name__)

SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]

_ACTIVITY = """
SELECT pid, usename, datname, application_name, state,
       extract(epoch FROM now() - xact_start)::float8 AS xact_age,
       extract(epoch FROM now() - state_change)::float8 AS state_age
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""
_REPLICAS = """
SELECT application_name, client_addr::text, state,
       extract(epoch FROM replay_lag)::float8 AS replay_lag
FROM pg_stat_replication
"""


class PostgresCheckConfig(CheckConfig):
    kind: Literal["postgres"] = "postgres"
    host: str
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = "postgres"
    user: str
    password: SecretStr = SecretStr("")
    sslmode: SslMode = "verify-full"
    ca_file: str | None = Field(default=None, description="PEM bundle for verify-ca/verify-full;"
                                " default: the system trust store")
    connections_warn: float = Field(default=0.8, gt=0, le=1,
                                    description="share of max_connections: degraded")
    connections_crit: float = Field(default=0.95, gt=0, le=1,
                                    description="share of max_connections: failing")
    max_transaction_age: Duration = 300.0
    max_idle_in_transaction: Duration = 60.0
    expect_replicas: int | None = Field(default=None, ge=0)
    max_replication_lag: Duration = 30.0
    freshness: list[FreshnessRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _thresholds(self) -> PostgresCheckConfig:
        if self.connections_warn > self.connections_crit:
            raise ValueError(f"connections_warn ({self.connections_warn:g}) must not exceed "
                             f"connections_crit ({self.connections_crit:g})")
        return self

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"


class PostgresProbe(Probe[PostgresCheckConfig]):
    kind = "postgres"
    config_model = PostgresCheckConfig

    def check(self) -> Outcome:
        c = self.config
        deadline = Deadline(c.timeout)
        found = Findings()
        t0 = time.monotonic()
        try:
            conn = self._connect(deadline)
        except _Refused as exc:
            return found.failed("connect", str(exc), duration_s=time.monotonic() - t0)
        try:
            return self._inspect(conn, deadline, found, time.monotonic() - t0)
        except psycopg.errors.QueryCanceled:
            raise ProbeError(f"{c.target}: timed out after {c.timeout:g}s "
                             "(a query did not finish)") from None
        except psycopg.OperationalError as exc:
            raise ProbeError(f"{c.target}: connection lost: {_first_line(exc)}") from None
        finally:
            conn.close()

    def _connect(self, deadline: Deadline) -> psycopg.Connection[Any]:
        c = self.config
        left = deadline.budget()
        params: dict[str, Any] = {
            "host": c.host, "port": c.port, "dbname": c.database, "user": c.user,
            "password": c.password.get_secret_value(), "sslmode": c.sslmode,
            # libpq rounds connect_timeout to whole seconds, at least 2
            "connect_timeout": max(2, math.ceil(left)),
            "application_name": "controlplane",
            "options": f"-c statement_timeout={max(1, int(left * 1000))}",
        }
        if c.ca_file:
            params["sslrootcert"] = c.ca_file
        elif c.sslmode in ("verify-ca", "verify-full"):
            params["sslrootcert"] = "system"
        try:
            return psycopg.connect(autocommit=True, **params)
        except psycopg.OperationalError as exc:
            text = str(exc)
            if "timeout expired" in text:
                raise ProbeError(f"{c.target}: no answer within {c.timeout:g}s "
                                 "(connect timed out)") from None
            raise _Refused(self._reason(text)) from None

    def _reason(self, text: str) -> str:
        """One line naming the failure; the password never appears (libpq never prints it,
        and it is cut out here in case a server echoes it)."""
        c = self.config
        low = text.lower()
        if "could not translate host name" in low or "name or service not known" in low:
            reason = f"cannot resolve {c.host}"
        elif "password authentication failed" in low or "no password supplied" in low:
            reason = f"authentication failed for user {c.user!r} (wrong user or password)"
        elif "certificate verify failed" in low or "root certificate file" in low:
            reason = f"TLS certificate not trusted: {_ssl_detail(text)}"
        elif "server certificate for" in low and "does not match" in low:
            reason = f"TLS certificate is not valid for {c.host}"
        elif "connection refused" in low:
            reason = f"cannot connect to {c.host}:{c.port}: connection refused"
        elif "does not exist" in low:
            reason = _first_line(text).split("FATAL:", 1)[-1].strip()
        else:
            reason = f"cannot connect to {c.host}:{c.port}: {_first_line(text)}"
        secret = c.password.get_secret_value()
        return reason.replace(secret, "***") if secret else reason

    def _inspect(self, conn: psycopg.Connection[Any], deadline: Deadline, found: Findings,
                 connect_s: float) -> Outcome:
        c = self.config
        metrics: dict[str, float | None] = {"connect_s": round(connect_s, 6)}
        details: dict[str, Any] = {"target": c.target}
        tls = _tls_version(conn)
        found.add("connect", duration_s=connect_s, message=tls or "no TLS")
        t0 = time.monotonic()
        conn.execute("SELECT 1")
        metrics["select_s"] = round(time.monotonic() - t0, 6)
        found.add("select 1", duration_s=metrics["select_s"] or 0.0)
        details["server_version"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        details["tls"] = tls
        self._connections(conn, found, metrics, details)
        self._database_size(conn, metrics)
        if c.expect_replicas is not None:
            self._replicas(conn, found, metrics, details)
        for rule in c.freshness:
            deadline.budget()
            t1 = time.monotonic()
            row = conn.execute(f'SELECT max({_ident(rule.column)}) FROM '
                               f'{_ident(rule.table)}').fetchone()
            age = judge_freshness(found, rule, row[0] if row else None, time.monotonic() - t1)
            metrics[f"freshness_age_s:{rule.name}"] = age
        ok = (f"{c.target}: SELECT 1 in {(metrics['select_s'] or 0) * 1000:.1f} ms, "
              f"{metrics['connections']:.0f}/{metrics['max_connections']:.0f} connections")
        return found.outcome(ok, metrics, details)

    def _connections(self, conn: psycopg.Connection[Any], found: Findings,
                     metrics: dict[str, float | None], details: dict[str, Any]) -> None:
        c = self.config
        max_conn = int(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
        rows = conn.execute(_ACTIVITY).fetchall()
        used = len(rows) + 1  # plus this probe's own session
        ratio = used / max_conn
        metrics.update(connections=used, max_connections=max_conn,
                       connections_ratio=round(ratio, 4))
        msg = f"{used} of {max_conn} connections used ({ratio:.0%})"
        if ratio >= c.connections_crit:
            found.add("connections", Status.FAILING, f"{msg}, at or over {c.connections_crit:.0%}")
        elif ratio >= c.connections_warn:
            found.add("connections", Status.DEGRADED, f"{msg}, at or over {c.connections_warn:.0%}")
        else:
            found.add("connections", message=msg)
        long_tx = [r for r in rows if r[5] is not None and r[5] > c.max_transaction_age]
        idle_tx = [r for r in rows if r[4] and r[4].startswith("idle in transaction")
                   and r[6] is not None and r[6] > c.max_idle_in_transaction]
        metrics["longest_transaction_s"] = round(max((r[5] or 0.0 for r in rows), default=0.0), 3)
        metrics["long_transactions"] = len(long_tx)
        metrics["idle_in_transaction"] = len(idle_tx)
        details["long_transactions"] = [_session(r) for r in long_tx]
        details["idle_in_transaction"] = [_session(r) for r in idle_tx]
        if long_tx:
            oldest = max(long_tx, key=lambda r: r[5])
            found.add("long transactions", Status.DEGRADED,
                      f"{len(long_tx)} transaction(s) open longer than "
                      f"{c.max_transaction_age:g}s; oldest {oldest[5]:.0f}s "
                      f"(pid {oldest[0]}, user {oldest[1]}, {oldest[4]})")
        else:
            found.add("long transactions")
        if idle_tx:
            oldest = max(idle_tx, key=lambda r: r[6])
            found.add("idle in transaction", Status.DEGRADED,
                      f"{len(idle_tx)} session(s) idle in a transaction longer than "
                      f"{c.max_idle_in_transaction:g}s; longest {oldest[6]:.0f}s "
                      f"(pid {oldest[0]}, user {oldest[1]})")
        else:
            found.add("idle in transaction")

    def _database_size(self, conn: psycopg.Connection[Any],
                       metrics: dict[str, float | None]) -> None:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        metrics["database_size_bytes"] = float(row[0]) if row else None

    def _replicas(self, conn: psycopg.Connection[Any], found: Findings,
                  metrics: dict[str, float | None], details: dict[str, Any]) -> None:
        c = self.config
        rows = conn.execute(_REPLICAS).fetchall()
        details["replicas"] = [{"name": r[0], "address": r[1], "state": r[2],
                                "replay_lag_s": r[3]} for r in rows]
        streaming = [r for r in rows if r[2] == "streaming"]
        lag = max((r[3] or 0.0 for r in streaming), default=None)
        metrics["replicas"] = len(streaming)
        metrics["replication_lag_s"] = None if lag is None else round(lag, 3)
        want = c.expect_replicas or 0
        if len(streaming) < want:
            found.add("replication", Status.FAILING,
                      f"{len(streaming)} streaming replica(s), expected {want}")
        elif lag is not None and lag > c.max_replication_lag:
            found.add("replication", Status.DEGRADED,
                      f"replication lag {lag:.1f}s, over {c.max_replication_lag:g}s")
        else:
            found.add("replication", message=f"{len(streaming)} streaming replica(s)")


class _Refused(Exception):
    """The server could not be reached or refused the login: status failing."""


def _session(row: tuple[Any, ...]) -> dict[str, Any]:
    # No query text: it may carry literals (tokens, personal data) the redaction cannot know.
    return {"pid": row[0], "user": row[1], "database": row[2], "application": row[3],
            "state": row[4], "transaction_age_s": None if row[5] is None else round(row[5], 3),
            "state_age_s": None if row[6] is None else round(row[6], 3)}


def _ident(name: str) -> str:
    """A validated identifier (FreshnessRule's pattern) quoted per part."""
    return ".".join(f'"{part}"' for part in name.split("."))


def _tls_version(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                       ).fetchone()
    return str(row[1]) if row and row[0] else None


def _first_line(exc: BaseException | str) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _ssl_detail(text: str) -> str:
    for line in text.splitlines():
        if "certificate" in line:
            return line.split("failed:", 1)[-1].strip()
    return _first_line(text)

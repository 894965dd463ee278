"""The postgres probe against a real PostgreSQL (Debian's) with TLS on and 20 connection slots."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from controlplane.probes.postgres import PostgresCheckConfig, PostgresProbe
from controlplane.results import Result, Status
from tests.services.certs import CertFactory
from tests.services.common import free_port
from tests.services.postgres import BINDIR, PASSWORD, PgServer, start_pg_server

pytestmark = pytest.mark.postgres

MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def tls_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgServer, Path]]:
    """A server for this module: TLS with a test CA, max_connections 20; yields it + CA file."""
    certs = CertFactory(tmp_path_factory.mktemp("pgcerts"))
    files = certs.server(["localhost"])
    server = start_pg_server()
    for src, name in ((files.cert_file, "server.crt"), (files.key_file, "server.key")):
        dst = os.path.join(server.datadir, name)
        shutil.copy(src, dst)
        os.chmod(dst, 0o600)
        if os.geteuid() == 0:
            shutil.chown(dst, "postgres", "postgres")
    with open(os.path.join(server.datadir, "postgresql.conf"), "a") as f:
        f.write(f"ssl = on\nmax_connections = {MAX_CONNECTIONS}\n"
                "superuser_reserved_connections = 1\n")
    server.stop()
    server.start()
    yield server, files.ca_file
    server.destroy()


def probe(server: PgServer, ca: Path, **fields: Any) -> Result:
    base: dict[str, Any] = {"id": "pg-test", "host": "localhost", "port": server.port,
                            "user": "postgres", "password": PASSWORD, "ca_file": str(ca),
                            "timeout": 5}
    return PostgresProbe(PostgresCheckConfig(**{**base, **fields})).execute()


def steps(result: Result) -> dict[str, Status]:
    return {s.name: s.status for s in result.steps}


def test_healthy_server_is_ok_over_verified_tls(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    result = probe(server, ca)
    assert result.status == Status.OK, result.message
    assert result.message.startswith(f"localhost:{server.port}/postgres: SELECT 1 in ")
    assert result.message.endswith(f"/{MAX_CONNECTIONS} connections")
    assert result.details["tls"] == "TLSv1.3"
    assert result.metrics["max_connections"] == MAX_CONNECTIONS
    assert (result.metrics["database_size_bytes"] or 0) > 1_000_000
    assert steps(result) == {"connect": Status.OK, "select 1": Status.OK,
                             "connections": Status.OK, "long transactions": Status.OK,
                             "idle in transaction": Status.OK}
    assert result.details["problems"] == []


def test_untrusted_certificate_fails(tls_pg: tuple[PgServer, Path],
                                     certs: CertFactory) -> None:
    server, _ = tls_pg
    other_ca = certs.self_signed().ca_file
    result = probe(server, other_ca)
    assert result.status == Status.FAILING
    assert result.message.startswith("TLS certificate not trusted: ")
    assert "certificate verify failed" in result.message


def test_name_not_in_certificate_fails_under_verify_full(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    # the certificate names only localhost
    result = probe(server, ca, host="127.0.0.1")
    assert result.status == Status.FAILING
    assert result.message == "TLS certificate is not valid for 127.0.0.1"


def test_wrong_password_fails_without_showing_it(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    result = probe(server, ca, password="hunter2-wrong")
    assert result.status == Status.FAILING
    assert result.message == "authentication failed for user 'postgres' (wrong user or password)"
    assert "hunter2" not in result.model_dump_json()


def test_server_down_fails_with_connection_refused(tls_pg: tuple[PgServer, Path]) -> None:
    _, ca = tls_pg
    port = free_port()
    result = PostgresProbe(PostgresCheckConfig(
        id="pg-down", host="127.0.0.1", port=port, user="postgres", password=PASSWORD,
        ca_file=str(ca), timeout=5)).execute()
    assert result.status == Status.FAILING
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_unresolvable_host_fails_naming_it(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    result = probe(server, ca, host="no-such-db.invalid")
    assert result.status == Status.FAILING
    assert result.message == "cannot resolve no-such-db.invalid"


def test_server_that_never_answers_is_an_error_within_the_timeout() -> None:
    # The kernel completes the TCP connect from the backlog; nothing ever answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        result = PostgresProbe(PostgresCheckConfig(
            id="pg-silent", host="127.0.0.1", port=port, user="postgres",
            password=PASSWORD, timeout=2)).execute()
    assert time.monotonic() - t0 < 5
    assert result.status == Status.ERROR
    assert result.message == f"127.0.0.1:{port}/postgres: no answer within 2s " \
                             "(connect timed out)"


def test_slow_query_is_an_error_not_a_hang(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    server.execute("CREATE TABLE IF NOT EXISTS slow_view_src (ts timestamptz)")
    server.execute("CREATE OR REPLACE VIEW slow_table AS SELECT ts FROM slow_view_src, "
                   "pg_sleep(10) AS s")
    t0 = time.monotonic()
    result = probe(server, ca, timeout=2,
                   freshness=[{"table": "slow_table", "column": "ts", "max_age": "1h"}])
    assert time.monotonic() - t0 < 4
    assert result.status == Status.ERROR
    assert result.message == (f"localhost:{server.port}/postgres: timed out after 2s "
                              "(a query did not finish)")


def _hold(server: PgServer, sql: str, ready: threading.Event, stop: threading.Event) -> None:
    with psycopg.connect(server.dsn()) as conn:
        conn.execute(sql)  # type: ignore[arg-type]
        ready.set()
        stop.wait(30)
        conn.rollback()


def test_idle_in_transaction_session_is_degraded(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    ready, stop = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=(server, "SELECT 1", ready, stop))
    holder.start()
    try:
        assert ready.wait(10)
        time.sleep(1.5)
        result = probe(server, ca, max_transaction_age=1, max_idle_in_transaction=1)
    finally:
        stop.set()
        holder.join()
    assert result.status == Status.DEGRADED
    assert result.metrics["idle_in_transaction"] == 1
    assert result.metrics["long_transactions"] == 1
    assert steps(result)["idle in transaction"] == Status.DEGRADED
    assert result.message.startswith("1 transaction(s) open longer than 1s; oldest ")
    assert result.message.endswith(", user postgres, idle in transaction) (and 1 more problem)")
    assert result.details["problems"][1].startswith(
        "1 session(s) idle in a transaction longer than 1s; longest ")
    session = result.details["idle_in_transaction"][0]
    assert set(session) == {"pid", "user", "database", "application", "state",
                            "transaction_age_s", "state_age_s"}


def test_transaction_running_a_long_query_is_degraded_but_not_idle(
        tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg

    def run() -> None:
        with psycopg.connect(server.dsn()) as conn:
            conn.execute("SELECT pg_sleep(4)")

    worker = threading.Thread(target=run)
    worker.start()
    try:
        time.sleep(2)
        result = probe(server, ca, max_transaction_age=1, max_idle_in_transaction=1)
    finally:
        worker.join()
    assert result.status == Status.DEGRADED
    assert result.metrics["long_transactions"] == 1
    assert result.metrics["idle_in_transaction"] == 0
    assert (result.metrics["longest_transaction_s"] or 0) >= 1.5
    assert result.message.endswith(", user postgres, active)")


def test_connection_flood_degrades_then_fails(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    flood: list[psycopg.Connection[Any]] = []
    try:
        # 16 + the probe = 17 of 20 (85%): degraded at the default 80%
        flood = [psycopg.connect(server.dsn()) for _ in range(16)]
        result = probe(server, ca)
        assert result.status == Status.DEGRADED
        assert result.message == f"17 of {MAX_CONNECTIONS} connections used (85%), at or over 80%"
        flood += [psycopg.connect(server.dsn()) for _ in range(2)]
        result = probe(server, ca)
        assert result.status == Status.FAILING
        assert result.message == f"19 of {MAX_CONNECTIONS} connections used (95%), at or over 95%"
        assert result.metrics["connections_ratio"] == 0.95
    finally:
        for conn in flood:
            conn.close()


def test_stale_table_fails_and_fresh_table_is_ok(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    server.execute("DROP TABLE IF EXISTS calls; CREATE TABLE calls (created_at timestamptz)")
    server.execute("INSERT INTO calls VALUES (now() - interval '2 hours')")
    rule = {"table": "calls", "column": "created_at", "max_age": "30m"}
    result = probe(server, ca, freshness=[rule])
    assert result.status == Status.FAILING
    assert result.message == "calls: newest created_at is 2.0h old, over the bound of 30m"
    age = result.metrics["freshness_age_s:calls.created_at"]
    assert age is not None and 7200 <= age < 7260
    server.execute("INSERT INTO calls VALUES (now())")
    result = probe(server, ca, freshness=[rule])
    assert result.status == Status.OK
    assert steps(result)["freshness calls.created_at"] == Status.OK


def test_empty_table_fails_freshness(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    server.execute("DROP TABLE IF EXISTS empty_t; CREATE TABLE empty_t (ts timestamp)")
    result = probe(server, ca, freshness=[{"table": "public.empty_t", "column": "ts",
                                           "max_age": "1m", "status": "degraded"}])
    assert result.status == Status.DEGRADED
    assert result.message == "public.empty_t has no rows (freshness of ts cannot be judged)"


def test_missing_replica_fails(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    result = probe(server, ca, expect_replicas=1)
    assert result.status == Status.FAILING
    assert result.message == "0 streaming replica(s), expected 1"
    assert result.metrics["replicas"] == 0
    assert result.metrics["replication_lag_s"] is None


def test_sslmode_disable_connects_without_tls(tls_pg: tuple[PgServer, Path]) -> None:
    server, ca = tls_pg
    result = probe(server, ca, sslmode="disable")
    assert result.status == Status.OK
    assert result.details["tls"] is None
    assert result.steps[0].message == "no TLS"


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match=r"connections_warn \(0.9\) must not exceed "
                                         r"connections_crit \(0.5\)"):
        PostgresCheckConfig(id="x", host="h", user="u", connections_warn=0.9,
                            connections_crit=0.5)


@pytest.fixture
def primary_with_replica() -> Iterator[tuple[PgServer, PgServer]]:
    """A primary and a streaming standby made with pg_basebackup -R (Debian's binaries)."""
    primary = start_pg_server()
    # a directory of its own the postgres user can enter (pytest's tmp_path is root's 0700)
    replica = PgServer(tempfile.mkdtemp(prefix="cp-pg-replica-"), free_port())
    os.chmod(replica.root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(replica.root, "postgres", "postgres")
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    base = [f"{BINDIR}/pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
            "-U", "postgres", "-D", replica.datadir, "-R", "-X", "stream"]
    cmd = ["runuser", "-u", "postgres", "--", "env", f"PGPASSWORD={PASSWORD}", *base] \
        if os.geteuid() == 0 else base
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    replica.start()
    try:
        yield primary, replica
    finally:
        replica.destroy()
        primary.destroy()


def test_streaming_replica_is_counted_and_a_missing_second_one_fails(
        primary_with_replica: tuple[PgServer, PgServer]) -> None:
    primary, _ = primary_with_replica

    def run(expect: int) -> Result:
        return PostgresProbe(PostgresCheckConfig(
            id="pg-primary", host="127.0.0.1", port=primary.port, user="postgres",
            password=PASSWORD, sslmode="disable", expect_replicas=expect,
            max_replication_lag=30, timeout=5)).execute()

    deadline = time.monotonic() + 30
    while (result := run(1)).status != Status.OK:
        assert time.monotonic() < deadline, result.message
        time.sleep(0.5)
    assert result.metrics["replicas"] == 1
    assert steps(result)["replication"] == Status.OK
    assert [r["state"] for r in result.details["replicas"]] == ["streaming"]
    two = run(2)
    assert two.status == Status.FAILING
    assert two.message == "1 streaming replica(s), expected 2"

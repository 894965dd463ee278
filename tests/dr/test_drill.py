"""Each drill step that can fail says so, by name, with a message that says what to do."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from controlplane.backups import catalog
from controlplane.incidents.model import IncidentRow
from controlplane.results import Status, utcnow
from tests.backups.conftest import ROWS_T, Env, MakeEnv, check_state, fill_source
from tests.services.common import free_port, run_cli
from tests.services.postgres import PgServer


def _drill_row(env: Env) -> catalog.DrillRow:
    with env.store.session() as s:
        return catalog.drills(s, "app")[0]


def test_drill_without_a_complete_backup_fails_at_pick_from_the_cli(make_env: MakeEnv) -> None:
    env = make_env("postgresql://u@127.0.0.1:1/none")
    run = run_cli("drill", "run", "app", "--config", env.config_file(), "--quiet")
    assert run.returncode == 1
    assert run.stdout.splitlines()[0] == (
        "FAILING  drill-app  drill of app failed at pick: no complete backup of app to drill; "
        "run `controlplane backup run app` first")
    # No drill.server_dsn: the CLI says loudly where the drill would restore.
    assert ("drills of app restore into scratch databases ON THE SOURCE SERVER (the "
            "production database's server): set backups.components.app.drill.server_dsn to "
            "an admin DSN of a separate Postgres server (see docs/dr.md)") in run.stderr
    drill = _drill_row(env)
    assert (drill.status, drill.failed_step, drill.backup_id) == ("failed", "pick", "")
    with env.store.session() as s:
        incidents = s.query(IncidentRow).filter_by(check_id="drill-app").all()
        assert [(i.state, i.kind) for i in incidents] == [("open", "drill")]


def test_drill_without_an_identity_file_fails_at_verify_and_restores_nothing(
        make_env: MakeEnv) -> None:
    env = make_env("postgresql://u@127.0.0.1:1/none")
    env.backups.components["app"].identity_file = None
    with env.store.session() as s:
        s.add(catalog.BackupRow(id="app-production-1", component="app", env="production",
                                status="complete", started_at=utcnow(),
                                manifest={"blob": "app/production/app-production-1.dump.age"}))
    result = env.ops.run_drill("app")
    assert result.status == Status.FAILING
    assert result.message == (
        "drill of app failed at verify: backups.components.app.identity_file is not set; "
        "drills need the age private key to decrypt")
    assert [s.name for s in result.steps] == ["pick", "verify"]
    assert (_drill_row(env).failed_step, _drill_row(env).backup_id) == (
        "verify", "app-production-1")
    assert env.incident_for("drill-app").result is result


@pytest.mark.postgres
def test_unreachable_scratch_server_fails_the_drill_at_create_scratch(
        make_env: MakeEnv, source_dsn: str) -> None:
    port = free_port()  # nothing listens there
    env = make_env(source_dsn, drill={
        "server_dsn": f"postgresql://admin:scratch-secret@127.0.0.1:{port}/postgres"})
    assert env.ops.run_backup("app").status == Status.OK
    result = env.ops.run_drill("app")
    assert result.status == Status.FAILING
    assert result.message.startswith("drill of app failed at create-scratch: cannot connect to "
                                     f"Postgres: connection failed: connection to server at "
                                     f"\"127.0.0.1\", port {port} failed: "), result.message
    assert "scratch-secret" not in result.model_dump_json()
    assert [s.name for s in result.steps] == ["pick", "verify", "create-scratch"]
    assert env.incident_for("drill-app").result is result
    assert check_state(env.store, "drill-app") == "failing"


@pytest.mark.postgres
def test_restored_row_counts_that_differ_from_the_manifest_fail_the_drill_at_check(
        make_env: MakeEnv, source_dsn: str, pg_server: PgServer) -> None:
    env = make_env(source_dsn)
    backup_id = env.ops.run_backup("app").details["backup_id"]
    with env.store.session() as s:  # the manifest promised one row more than the dump holds
        row = s.get(catalog.BackupRow, backup_id)
        assert row is not None
        row.manifest = {**row.manifest, "row_counts": {**row.manifest["row_counts"],
                                                       "public.calls": ROWS_T + 1}}
    result = env.ops.run_drill("app")
    assert result.status == Status.FAILING
    assert result.message == (f"drill of app failed at check: restored data does not match: "
                              f"public.calls: {ROWS_T} rows, manifest says {ROWS_T + 1}")
    assert [s.name for s in result.steps] == ["pick", "verify", "create-scratch", "restore",
                                              "check", "drop-scratch"]
    assert result.steps[-1].status == Status.OK
    with psycopg.connect(pg_server.dsn()) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'cp_drill_%'")
        assert left.fetchall() == []
    with env.store.session() as s:
        backup = s.get(catalog.BackupRow, backup_id)
        assert backup is not None and backup.verified_at is None  # not proven
    assert env.incident_for("drill-app").result is result


def _databases(pg: PgServer, prefix: str = "cp_drill_") -> list[str]:
    with psycopg.connect(pg.dsn()) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) "
                            "ORDER BY 1", (prefix,)).fetchall()
        return [str(r[0]) for r in rows]


HUNG_INDEX_SQL = """
CREATE TABLE calls (id int);
INSERT INTO calls VALUES (1);
CREATE FUNCTION slow_key(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN RETURN x; END $$;
CREATE INDEX calls_slow_key ON calls (slow_key(id));
-- From now on the function sleeps an hour: pg_restore's CREATE INDEX hangs on it.
CREATE OR REPLACE FUNCTION slow_key(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN PERFORM pg_sleep(3600); RETURN x; END $$;
"""


@pytest.mark.postgres
def test_hung_pg_restore_is_stopped_at_the_drill_timeout_and_the_drill_fails(
        make_env: MakeEnv, pg_server: PgServer) -> None:
    db = f"hung_{uuid.uuid4().hex[:8]}"
    pg_server.createdb(db)
    pg_server.execute(HUNG_INDEX_SQL, db)
    env = make_env(pg_server.dsn(db), drill={"timeout": "10s"})
    assert env.ops.run_backup("app").status == Status.OK
    result = env.ops.run_drill("app")
    assert result.status == Status.FAILING
    assert result.message == (
        "drill of app failed at restore: drill did not finish within 10s "
        "(backups.components.app.drill.timeout); pg_restore was stopped")
    assert [(s.name, s.status) for s in result.steps] == [
        ("pick", Status.OK), ("verify", Status.OK), ("create-scratch", Status.OK),
        ("restore", Status.FAILING), ("drop-scratch", Status.OK)]
    assert result.steps[3].message == ("drill did not finish within 10s (backups.components."
                                       "app.drill.timeout); pg_restore was stopped")
    drill = _drill_row(env)
    assert (drill.status, drill.failed_step) == ("failed", "restore")
    assert drill.scratch_db not in _databases(pg_server)
    assert env.incident_for("drill-app").result is result


@pytest.mark.postgres
def test_check_query_stuck_past_the_drill_timeout_is_cancelled_and_the_drill_fails(
        make_env: MakeEnv, pg_server: PgServer) -> None:
    db = f"src_{uuid.uuid4().hex[:8]}"
    env = make_env(fill_source(pg_server, db, rows=10), drill={
        "timeout": "10s",
        "assertions": [{"name": "stuck", "sql": "SELECT pg_sleep(3600) IS NOT NULL"}]})
    assert env.ops.run_backup("app").status == Status.OK
    result = env.ops.run_drill("app")
    assert result.status == Status.FAILING
    assert result.message == (
        "drill of app failed at check: drill did not finish within 10s "
        "(backups.components.app.drill.timeout); the check query was stopped")
    assert [s.name for s in result.steps] == ["pick", "verify", "create-scratch", "restore",
                                              "check", "drop-scratch"]
    assert result.steps[-1].status == Status.OK
    drill = _drill_row(env)
    assert (drill.status, drill.failed_step) == ("failed", "check")
    assert drill.scratch_db not in _databases(pg_server)

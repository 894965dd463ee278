"""Each drill step that can fail says so, by name, with a message that says what to do."""

from __future__ import annotations

import psycopg
import pytest

from controlplane.backups import catalog
from controlplane.incidents.model import IncidentRow
from controlplane.results import Status, utcnow
from tests.backups.conftest import ROWS_T, Env, MakeEnv, check_state
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

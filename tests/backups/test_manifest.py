"""The manifest blob must stay the one written at backup time: its sha256 is in the catalog,
and verify, restore and drills compare the stored manifest with it."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import MetaData, text

from controlplane.backups import catalog
from controlplane.results import Status
from controlplane.store import Store
from tests.backups.conftest import ROWS_T, Env, MakeEnv
from tests.services.azurite import Azurite
from tests.services.common import run_cli
from tests.services.postgres import PgServer

pytestmark = [pytest.mark.postgres, pytest.mark.azurite]


def _tamper_row_count(env: Env, manifest_name: str) -> None:
    """What an attacker hiding lost rows would do: edit a count, keep the JSON valid."""
    data = env.blob.get_bytes(manifest_name)
    before = f'"public.calls": {ROWS_T}'.encode()
    assert before in data
    env.blob.put_bytes(manifest_name, data.replace(before, f'"public.calls": {ROWS_T + 1}'
                                                          .encode()))


def _changed(name: str, got: bytes, want: str) -> str:
    return (f"manifest {name} does not match the catalog (sha256 "
            f"{hashlib.sha256(got).hexdigest()[:16]}…, the catalog recorded {want[:16]}…): it "
            "was changed after the backup; do not restore from it")


def _status(env: Env, backup_id: str) -> str:
    with env.store.session() as s:
        row = s.get(catalog.BackupRow, backup_id)
        assert row is not None
        return row.status


def test_backup_records_the_manifest_sha256_that_backup_list_json_shows(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    env = make_env(source_dsn, azurite)
    result = env.ops.run_backup("app")
    backup_id = result.details["backup_id"]
    manifest_name = f"app/production/{backup_id}.manifest.json"
    stored = hashlib.sha256(env.blob.get_bytes(manifest_name)).hexdigest()
    assert result.details["manifest_sha256"] == stored
    listed = run_cli("backup", "list", "--json", "--config", env.config_file())
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["manifest_blob"], row["manifest_sha256"]) == (manifest_name, stored)
    verified = run_cli("backup", "verify", backup_id, "--config", env.config_file(), "--quiet")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.rstrip().endswith(
        f"; manifest sha256 {stored} matches the catalog"), verified.stdout


def test_tampered_manifest_blob_fails_the_drill_and_marks_the_backup_corrupt(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite, pg_server: PgServer) -> None:
    env = make_env(source_dsn, azurite)
    backup = env.ops.run_backup("app")
    backup_id, want = backup.details["backup_id"], str(backup.details["manifest_sha256"])
    name = f"app/production/{backup_id}.manifest.json"
    _tamper_row_count(env, name)
    result = env.ops.run_drill("app")
    assert result.status == Status.FAILING
    assert result.message == ("drill of app failed at verify: "
                              + _changed(name, env.blob.get_bytes(name), want)
                              + "; nothing was restored")
    assert [s.name for s in result.steps] == ["pick", "verify"]
    with psycopg.connect(pg_server.dsn()) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'cp_drill_%'")
        assert left.fetchall() == []
    assert _status(env, backup_id) == "corrupt"
    assert env.incident_for("drill-app").result is result


def test_tampered_manifest_blob_fails_verify_and_restore_while_an_untouched_one_verifies(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite, pg_server: PgServer) -> None:
    env = make_env(source_dsn, azurite)
    first = env.ops.run_backup("app").details
    second = env.ops.run_backup("app").details
    cfg = env.config_file()
    name = f"app/production/{first['backup_id']}.manifest.json"
    _tamper_row_count(env, name)
    message = _changed(name, env.blob.get_bytes(name), str(first["manifest_sha256"]))
    target = pg_server.createdb(f"mf_{uuid.uuid4().hex[:8]}")
    rest = run_cli("restore", "postgres", first["backup_id"], "--into", target, "--config",
                   cfg, "--quiet")
    assert (rest.returncode, rest.stdout.strip()) == (1, f"FAILING  {first['backup_id']}  "
                                                         f"{message}")
    with psycopg.connect(target) as conn:  # nothing was restored
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                            ).fetchone() == (0,)
    ver = run_cli("backup", "verify", first["backup_id"], "--config", cfg, "--quiet")
    assert (ver.returncode, ver.stdout.strip()) == (1, f"FAILING  {first['backup_id']}  "
                                                       f"{message}")
    assert _status(env, first["backup_id"]) == "corrupt"
    good = run_cli("backup", "verify", second["backup_id"], "--config", cfg, "--quiet")
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.rstrip().endswith(
        f"; manifest sha256 {second['manifest_sha256']} matches the catalog")
    assert _status(env, second["backup_id"]) == "complete"


def test_missing_manifest_blob_fails_verify_without_calling_the_backup_corrupt(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    env = make_env(source_dsn, azurite)
    backup_id = env.ops.run_backup("app").details["backup_id"]
    name = f"app/production/{backup_id}.manifest.json"
    assert env.blob.delete(name)
    ver = run_cli("backup", "verify", backup_id, "--config", env.config_file(), "--quiet")
    assert (ver.returncode, ver.stdout.strip()) == (1, (
        f"FAILING  {backup_id}  manifest {name} cannot be read (download of {name} failed: "
        "not found); restore from another backup, or check the storage"))
    assert _status(env, backup_id) == "complete"


PRE_MIGRATION_TABLES = {"backup_locks", "backups", "check_state", "drills", "incidents",
                        "notification_pauses", "results", "results_hourly", "silences",
                        "incident_events", "notification_outbox"}
"""The tables of the last release before migrations (tests/store/pre_alembic)."""


def _drop_manifest_sha256(store_dsn: str) -> None:
    """Make the store look like one created before the column existed (by a release before
    migrations, so without their version table either)."""
    store = Store(store_dsn)
    try:
        # Tables later revisions made did not exist then either (newest first: foreign keys).
        later = MetaData()
        later.reflect(store.engine)
        with store.engine.begin() as conn:
            for table in reversed(later.sorted_tables):
                if table.name not in PRE_MIGRATION_TABLES | {"alembic_version"}:
                    table.drop(conn)
            conn.execute(text("ALTER TABLE backups DROP COLUMN manifest_sha256"))
            conn.execute(text("DROP TABLE alembic_version"))
    finally:
        store.close()


def _columns(store: Store) -> list[str]:
    from sqlalchemy import inspect

    return [c["name"] for c in inspect(store.engine).get_columns("backups")]


def test_store_created_before_manifest_sha256_gains_the_column_on_postgres(
        pg_server: PgServer) -> None:
    dsn = pg_server.createdb(f"store_{uuid.uuid4().hex[:8]}")
    _drop_manifest_sha256(dsn)
    store = Store(dsn)
    try:
        assert "manifest_sha256" in _columns(store)
    finally:
        store.close()
    Store(dsn).close()  # opening an upgraded store again changes nothing


def test_backup_from_before_manifest_sha256_is_checked_by_manifest_content(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    """An SQLite store from before the column: upgraded on open; its old backups have no
    recorded sha256, so the manifest blob is compared with the catalog's copy by content."""
    env = make_env(source_dsn, azurite)
    backup_id = env.ops.run_backup("app").details["backup_id"]
    with env.store.session() as s:
        manifest: dict[str, Any] = dict(s.get(catalog.BackupRow, backup_id).manifest)  # type: ignore[union-attr]
    env.store.close()
    _drop_manifest_sha256(env.store_dsn)
    upgraded = Store(env.store_dsn)
    try:
        assert "manifest_sha256" in _columns(upgraded)
        with upgraded.session() as s:
            row = s.get(catalog.BackupRow, backup_id)
            assert row is not None
            assert (row.status, row.manifest_sha256, row.manifest) == ("complete", None,
                                                                      manifest)
    finally:
        upgraded.close()
    cfg = env.config_file()
    ok = run_cli("backup", "verify", backup_id, "--config", cfg, "--quiet")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.rstrip().endswith("; manifest content matches the catalog (no sha256 "
                                       "recorded for this older backup)")
    name = f"app/production/{backup_id}.manifest.json"
    _tamper_row_count(env, name)
    bad = run_cli("backup", "verify", backup_id, "--config", cfg, "--quiet")
    assert (bad.returncode, bad.stdout.strip()) == (1, (
        f"FAILING  {backup_id}  manifest {name} does not match the catalog (its content "
        "differs from the catalog's copy; no sha256 was recorded for this older backup): it "
        "was changed after the backup; do not restore from it"))

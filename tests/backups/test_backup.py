"""Backups end to end against real Postgres and real Azurite."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from controlplane.backups import catalog
from controlplane.results import Status, iso
from tests.backups.conftest import ROWS_T, ROWS_U, MakeEnv, check_state, fill_source
from tests.services.azurite import KEY, Azurite
from tests.services.common import run_cli
from tests.services.postgres import PASSWORD, PgServer

pytestmark = [pytest.mark.postgres, pytest.mark.azurite]

EXPECTED_COUNTS = {"public.calls": ROWS_T, "billing.invoices": ROWS_U, "public.empty_table": 0}


def _row(env: Any, backup_id: str) -> catalog.BackupRow:
    with env.store.session() as s:
        row = s.get(catalog.BackupRow, backup_id)
        assert row is not None
        return row


def test_backup_uploads_encrypted_blob_and_manifest_with_snapshot_row_counts(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    env = make_env(source_dsn, azurite)
    result = env.ops.run_backup("app")
    assert result.status == Status.OK, result.message
    backup_id = result.details["backup_id"]
    row = _row(env, backup_id)
    assert row.status == "complete"
    names = {b.name: b.size for b in env.blob.list()}
    assert set(names) == {row.blob_name, row.manifest_name}
    assert row.blob_name == f"app/production/{backup_id}.dump.age"
    assert backup_id.startswith("app-production-") and backup_id.endswith("Z")
    manifest = json.loads(env.blob.get_bytes(row.manifest_name))
    assert manifest == row.manifest
    assert manifest["row_counts"] == EXPECTED_COUNTS
    assert manifest["database"] == source_dsn.rsplit("/", 1)[1]
    assert manifest["encrypted_bytes"] == names[row.blob_name] == row.size_bytes
    assert manifest["pg_dump_version"].startswith("pg_dump (PostgreSQL) ")
    assert manifest["server_version"].startswith("15.")
    assert manifest["sha256"] == row.sha256 and len(row.sha256 or "") == 64
    assert env.blob.get_bytes(row.blob_name).startswith(b"age-encryption.org/v1\n")
    assert PASSWORD not in json.dumps(manifest) and PASSWORD not in result.model_dump_json()
    assert [s.name for s in result.steps] == ["lock", "snapshot", "dump+upload", "manifest"]
    assert check_state(env.store, "backup-app") == "ok"
    assert manifest["started_at"] == iso(catalog.aware(row.started_at))
    assert 0 < manifest["duration_s"] <= (row.duration_s or 0)
    assert manifest["plain_bytes"] > 0 and manifest["format"] == "custom"
    assert _gauges(env) == {
        "controlplane_backup_size_bytes": float(row.size_bytes or 0),
        "controlplane_backup_duration_seconds": row.duration_s,
        "controlplane_backup_last_success_timestamp_seconds":
            catalog.aware(row.finished_at).timestamp()}  # type: ignore[arg-type]


def _gauges(env: Any) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = env.ops.pipeline.metrics.render().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text)
            if f.name.startswith("controlplane_backup_") for s in f.samples
            if s.labels == {"component": "app"}}


def test_backup_streams_blocks_while_pg_dump_runs_and_commits_only_at_the_end(
        make_env: MakeEnv, pg_server: PgServer, azurite: Azurite) -> None:
    from azure.storage.blob import ContainerClient

    source = fill_source(pg_server, f"st_{uuid.uuid4().hex[:8]}", rows=300000)
    block = 64 * 1024
    env = make_env(source, azurite, block_size=block)
    container = ContainerClient.from_connection_string(azurite.connection_string,
                                                       env.blob_cfg.container)
    mid: dict[str, Any] = {}

    def look(phase: str, count: int) -> None:
        # Once 2 MiB have left pg_dump: blocks are staged, nothing is committed yet.
        if phase == "dump" and count >= 2 * 1024 * 1024 and not mid:
            mid["committed"] = [b.name for b in container.list_blobs()]
            (name,) = [b.name for b in container.list_blobs(include=["uncommittedblobs"])]
            mid["staged"] = len(container.get_blob_client(name).get_block_list("uncommitted")[1])

    result = env.ops.run_backup("app", progress=look)
    assert result.status == Status.OK, result.message
    row = _row(env, result.details["backup_id"])
    assert mid["committed"] == []
    # 2 MiB of age output is 31 full blocks; at most 3 are queued or in flight.
    assert mid["staged"] >= 28, mid
    assert row.manifest["plain_bytes"] > 3 * 2 * 1024 * 1024  # the dump was far from done
    committed, uncommitted = container.get_blob_client(row.blob_name).get_block_list("all")
    size = row.size_bytes or 0
    assert [b.size for b in committed] == [block] * (size // block) + (
        [size % block] if size % block else [])
    assert uncommitted == []


def test_manifest_row_counts_come_from_the_snapshot_pg_dump_reads(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    """Rows committed while the backup runs are in neither the dump nor the counts."""
    env = make_env(source_dsn, azurite)
    box: list[Any] = []
    with psycopg.connect(source_dsn) as blocker, psycopg.connect(source_dsn,
                                                                 autocommit=True) as watch:
        blocker.execute("LOCK TABLE calls, billing.invoices IN ACCESS EXCLUSIVE MODE")
        first = threading.Thread(target=lambda: box.append(env.ops.run_backup("app")))
        first.start()
        deadline = time.monotonic() + 120
        # pg_dump waits on our lock: its snapshot (and the counts') is already taken.
        while watch.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                            " 'pg_dump' AND wait_event_type = 'Lock' AND datname = "
                            "current_database()").fetchone() != (1,):
            assert time.monotonic() < deadline, "pg_dump never waited on the lock"
            time.sleep(0.1)
        blocker.execute("INSERT INTO calls SELECT g, 'late', '' FROM generate_series("
                        f"{ROWS_T + 1}, {ROWS_T + 500}) g")
        blocker.execute("DELETE FROM billing.invoices WHERE id = 1")
        blocker.commit()
        first.join(300)
        assert watch.execute("SELECT count(*) FROM calls").fetchone() == (ROWS_T + 500,)
    assert box and box[0].status == Status.OK, box
    assert _row(env, box[0].details["backup_id"]).manifest["row_counts"] == EXPECTED_COUNTS
    drill = env.ops.run_drill("app")  # the restored data has exactly those counts
    assert drill.status == Status.OK, drill.message
    assert drill.steps[4].message == "3 tables match the manifest, 0 assertions hold"


def test_restore_by_hand_with_curl_age_cli_and_pg_restore(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite, pg_server: PgServer,
        tmp_path: Any) -> None:
    """Exactly the steps of "Restore by hand" (README and docs/backups.md)."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    from tests.services.azurite import ACCOUNT

    env = make_env(source_dsn, azurite)
    backup_id = env.ops.run_backup("app").details["backup_id"]
    row = _row(env, backup_id)

    def url(name: str) -> str:
        sas = generate_blob_sas(ACCOUNT, env.blob_cfg.container, name, account_key=KEY,
                                permission=BlobSasPermissions(read=True),
                                expiry=datetime.now(UTC) + timedelta(hours=1))
        return f"http://127.0.0.1:{azurite.port}/{ACCOUNT}/{env.blob_cfg.container}/" \
               f"{name}?{sas}"

    enc, dump = tmp_path / "backup.dump.age", tmp_path / "backup.dump"
    man = tmp_path / "backup.manifest.json"
    subprocess.run(["curl", "-fsS", "-o", str(enc), url(row.blob_name)], check=True)
    subprocess.run(["curl", "-fsS", "-o", str(man), url(row.manifest_name)], check=True)
    # Check: the manifest against the catalog, then the dump against the manifest.
    listed = run_cli("backup", "list", "--json", "--config", env.config_file())
    (catalog_row,) = json.loads(listed.stdout)
    sums = subprocess.run(["sha256sum", str(man), str(enc)], check=True, capture_output=True,
                          text=True).stdout.split()
    manifest = json.loads(man.read_text())
    assert (sums[0], sums[2]) == (catalog_row["manifest_sha256"], manifest["sha256"])
    subprocess.run(["age", "-d", "-i", env.key.path, "-o", str(dump), str(enc)], check=True)
    target = pg_server.createdb(f"byhand_{backup_id[-8:-1]}")
    subprocess.run(["pg_restore", "--no-owner", "-d", target, str(dump)], check=True)
    with psycopg.connect(target) as conn:
        got = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
               for t in EXPECTED_COUNTS}
    assert got == manifest["row_counts"] == EXPECTED_COUNTS


def test_drill_restores_into_scratch_database_verifies_and_drops_it(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite, pg_server: PgServer) -> None:
    env = make_env(source_dsn, azurite, drill={"assertions": [
        {"name": "invoice total", "sql": "SELECT sum(amount) FROM billing.invoices",
         "expect": "60.75"},
        {"name": "callers present", "sql": "SELECT count(*) > 0 FROM calls"}]})
    backup_id = env.ops.run_backup("app").details["backup_id"]
    result = env.ops.run_drill("app")
    assert result.status == Status.OK, result.message
    assert result.message.startswith(f"drill of app passed: {backup_id} restored and verified")
    assert [s.name for s in result.steps] == ["pick", "verify", "create-scratch", "restore",
                                              "check", "drop-scratch"]
    assert result.steps[4].message == "3 tables match the manifest, 2 assertions hold"
    assert _row(env, backup_id).verified_at is not None
    with psycopg.connect(pg_server.dsn()) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'cp_drill_%'")
        assert left.fetchall() == []
    with env.store.session() as s:
        drill = catalog.drills(s, "app")[0]
        assert drill.status == "passed" and drill.duration_s and drill.restore_s
    from controlplane.dr.tracker import evaluate

    (pg,) = evaluate(env.store, env.ops.dr)
    assert (pg.rpo_status, pg.rto_status, pg.status) == ("met", "met", "met")
    assert pg.rto_s == drill.duration_s


def test_drill_fails_when_an_sql_assertion_does_not_hold(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    env = make_env(source_dsn, azurite, drill={"assertions": [
        {"name": "invoice total", "sql": "SELECT sum(amount) FROM billing.invoices",
         "expect": "99"}]})
    env.ops.run_backup("app")
    result = env.ops.run_drill("app")
    assert result.status == Status.FAILING
    assert result.message == ("drill of app failed at check: restored data does not match: "
                              "assertion 'invoice total' returned Decimal('60.75'), "
                              "expected '99'")
    assert env.incident_for("drill-app").result is result


def test_cli_backup_run_list_verify_restore_and_drill(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite, pg_server: PgServer) -> None:
    env = make_env(source_dsn, azurite)
    cfg = env.config_file()
    for action in ("backup", "drill"):
        unknown = run_cli(action, "run", "nope", "--config", cfg)
        assert (unknown.returncode, unknown.stderr.strip()) == (
            2, "controlplane: no backup component 'nope'; configured: app")
    run = run_cli("--log-level", "DEBUG", "backup", "run", "app", "--config", cfg,
                  timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("OK  backup-app  backup app-production-")
    # progress: phase, bytes so far and rate, e.g. "dump          1.2 MiB  3.4 MiB/s"
    assert re.search(r"^\r?dump +\d+(\.\d)? (B|KiB|MiB) +\d+(\.\d)? (B|KiB|MiB|GiB)/s",
                     run.stderr.replace("\r", "\n"), re.M), run.stderr
    assert "backup complete component=app" in run.stderr  # logs are on, and hold no secret
    assert PASSWORD not in run.stdout + run.stderr
    assert str(env.key.identity) not in run.stdout + run.stderr
    assert KEY not in run.stdout + run.stderr  # the storage account key, even at DEBUG
    with env.store.session() as s:
        backup_id = catalog.backups(s, "app")[0].id
    listed = run_cli("backup", "list", "--config", cfg)
    assert listed.returncode == 0 and backup_id in listed.stdout and "complete" in listed.stdout
    as_json = json.loads(run_cli("backup", "list", "app", "--json", "--config", cfg).stdout)
    assert [b["id"] for b in as_json] == [backup_id]
    ver = run_cli("backup", "verify", backup_id, "--config", cfg)
    assert ver.returncode == 0, ver.stdout + ver.stderr
    assert ver.stdout.startswith(f"OK  {backup_id}  sha256 {as_json[0]['sha256']} matches")
    target = pg_server.createdb(f"cli_{backup_id[-8:-1]}")
    rest = run_cli("restore", "postgres", backup_id, "--into", target, "--config", cfg)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert rest.stdout.startswith(f"OK  {backup_id} restored into {target.rsplit('/', 1)[1]}")
    again = run_cli("restore", "postgres", backup_id, "--into", target, "--config", cfg)
    assert again.returncode == 2
    assert "target database is not empty (3 tables, e.g. billing.invoices); restore into an " \
           "empty database, or pass --force" in again.stderr
    forced = run_cli("restore", "postgres", backup_id, "--into", target, "--force",
                     "--config", cfg)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM calls").fetchone() == (ROWS_T,)
    drill = run_cli("--log-level", "DEBUG", "drill", "run", "app", "--config", cfg,
                    timeout=300)
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert PASSWORD not in drill.stdout + drill.stderr
    assert str(env.key.identity) not in drill.stdout + drill.stderr
    assert drill.stdout.startswith("OK  drill-app  drill of app passed")


def test_backup_to_local_folder_backend_restores(
        make_env: MakeEnv, source_dsn: str) -> None:
    env = make_env(source_dsn)
    result = env.ops.run_backup("app")
    assert result.status == Status.OK, result.message
    assert env.ops.run_drill("app").status == Status.OK
    assert [b.name.rsplit(".", 2)[-2:] for b in env.blob.list()] == [["dump", "age"],
                                                                      ["manifest", "json"]]

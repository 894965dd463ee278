"""Faults: each ends with a failed record, an incident (failing transition) and no
complete-but-bad backup."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from pyrage import x25519

from controlplane.backups import catalog
from controlplane.incidents.model import IncidentRow
from controlplane.results import Status, utcnow
from tests.backups.conftest import Env, MakeEnv, check_state, fill_source
from tests.services.azurite import Azurite
from tests.services.common import run_cli
from tests.services.postgres import PgServer

pytestmark = [pytest.mark.postgres, pytest.mark.azurite]


def _once_after(threshold: int, action: Callable[[], None]) -> Callable[[str, int], None]:
    fired: list[bool] = []

    def progress(_phase: str, count: int) -> None:
        if count >= threshold and not fired:
            fired.append(True)
            action()

    return progress


def _rows(env: Env) -> list[dict[str, Any]]:
    with env.store.session() as s:
        return [r.to_dict() for r in catalog.backups(s, "app")]


def _assert_no_complete_backup(env: Env) -> None:
    assert [r["status"] for r in _rows(env)] == ["failed"]
    with env.store.session() as s:
        assert catalog.latest_complete(s, "app") is None


def test_postgres_killed_mid_dump_fails_the_backup_and_commits_nothing(
        make_env: MakeEnv, own_pg_server: PgServer, azurite: Azurite) -> None:
    source = fill_source(own_pg_server, "big", rows=200000)
    env = make_env(source, azurite, block_size=64 * 1024)
    result = env.ops.run_backup("app", progress=_once_after(256 * 1024, own_pg_server.kill))
    assert result.status == Status.FAILING
    assert result.message.startswith("backup of app failed at dump+upload: pg_dump failed "
                                     "(exit 1): "), result.message
    (row,) = _rows(env)
    assert (row["status"], row["failed_step"]) == ("failed", "dump+upload")
    assert row["error"].startswith("pg_dump failed (exit 1)")
    assert env.blob.list() == []
    _assert_no_complete_backup(env)
    assert env.incident_for("backup-app").result is result
    assert check_state(env.store, "backup-app") == "failing"


def test_azurite_stopped_mid_upload_fails_the_backup_and_leaves_no_committed_blob(
        make_env: MakeEnv, pg_server: PgServer, own_azurite: Azurite) -> None:
    source = fill_source(pg_server, f"az_{uuid.uuid4().hex[:8]}", rows=100000)
    env = make_env(source, own_azurite, block_size=64 * 1024)
    result = env.ops.run_backup("app", progress=_once_after(512 * 1024, own_azurite.stop))
    assert result.status == Status.FAILING
    blob_name = f"app/production/{result.details['backup_id']}.dump.age"
    assert result.message.startswith(
        f"backup of app failed at dump+upload: upload failed: upload of {blob_name} (block "), \
        result.message
    assert result.message.endswith("failed: blob endpoint unreachable (ServiceRequestError)")
    own_azurite.start()  # same port and data folder: what did the interrupted upload leave?
    assert env.blob.list() == []
    from azure.storage.blob import ContainerClient

    container = ContainerClient.from_connection_string(own_azurite.connection_string,
                                                       env.blob_cfg.container)
    staged = [b.name for b in container.list_blobs(include=["uncommittedblobs"])]
    assert staged == [blob_name]  # blocks were staged, never committed: invisible
    _assert_no_complete_backup(env)
    assert env.incident_for("backup-app").result is result
    with psycopg.connect(pg_server.dsn()) as conn:  # pg_dump was stopped, not left behind
        n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                         "'pg_dump'").fetchone()
        assert n == (0,)


def _drill_fails_at_verify(env: Env, pg_server: PgServer) -> Any:
    result = env.ops.run_drill("app")
    assert result.status == Status.FAILING
    assert [s.name for s in result.steps] == ["pick", "verify"]  # no scratch db, no restore
    assert result.message.endswith("; nothing was restored")
    with psycopg.connect(pg_server.dsn()) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'cp_drill_%'")
        assert left.fetchall() == []
    with env.store.session() as s:
        drill = catalog.drills(s, "app")[0]
        assert (drill.status, drill.failed_step) == ("failed", "verify")
    assert env.incident_for("drill-app").result is result
    return result


def test_wrong_age_key_fails_the_drill_at_verify_and_restores_nothing(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite, pg_server: PgServer,
        tmp_path: Any) -> None:
    env = make_env(source_dsn, azurite)
    backup_id = env.ops.run_backup("app").details["backup_id"]
    other = tmp_path / "other-key.txt"
    other.write_text(f"{x25519.Identity.generate()}\n")
    env.backups.components["app"].identity_file = str(other)
    result = _drill_fails_at_verify(env, pg_server)
    assert result.message == (
        f"drill of app failed at verify: app/production/{backup_id}.dump.age: age decryption "
        "failed: the identity file does not match any recipient of this backup (wrong key); "
        "nothing was restored")
    # The backup itself is fine: a wrong key is not a reason to distrust it.
    assert [r["status"] for r in _rows(env)] == ["complete"]
    cfg = env.config_file()
    target = pg_server.createdb(f"wk_{uuid.uuid4().hex[:8]}")
    cli = run_cli("restore", "postgres", backup_id, "--into", target, "--config", cfg)
    assert cli.returncode == 1 and "(wrong key)" in cli.stdout
    ver = run_cli("backup", "verify", backup_id, "--config", cfg, "--quiet")
    assert (ver.returncode, ver.stdout.strip()) == (1, (
        f"FAILING  {backup_id}  app/production/{backup_id}.dump.age: age decryption failed: "
        "the identity file does not match any recipient of this backup (wrong key)"))
    assert [r["status"] for r in _rows(env)] == ["complete"]
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                            ).fetchone() == (0,)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_tampered_or_truncated_blob_fails_the_drill_and_marks_the_backup_corrupt(
        damage: str, make_env: MakeEnv, source_dsn: str, azurite: Azurite,
        pg_server: PgServer) -> None:
    env = make_env(source_dsn, azurite)
    backup = env.ops.run_backup("app")
    backup_id = backup.details["backup_id"]
    name = backup.details["blob"]
    data = bytearray(env.blob.get_bytes(name))
    size = len(data)
    if damage == "flip":
        data[size // 2] ^= 0x01
    else:
        data = data[: size - 1000]
    env.blob.put_bytes(name, bytes(data))
    result = _drill_fails_at_verify(env, pg_server)
    if damage == "flip":
        assert result.message.startswith(f"drill of app failed at verify: {name} was modified: "
                                         "sha256 ")
        assert "this backup cannot be trusted (tampered or corrupted); nothing was restored" \
            in result.message
    else:
        assert result.message == (
            f"drill of app failed at verify: {name} is truncated: {size - 1000} bytes, the "
            f"manifest says {size}; this backup cannot be trusted; nothing was restored")
    (row,) = _rows(env)
    assert (row["id"], row["status"]) == (backup_id, "corrupt")
    with env.store.session() as s:
        assert catalog.latest_complete(s, "app") is None


def test_backup_verify_cli_finds_a_flipped_byte_and_the_backup_is_never_offered_again(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite, pg_server: PgServer) -> None:
    env = make_env(source_dsn, azurite)
    backup = env.ops.run_backup("app")
    backup_id, name = backup.details["backup_id"], backup.details["blob"]
    data = bytearray(env.blob.get_bytes(name))
    data[len(data) // 3] ^= 0x80
    env.blob.put_bytes(name, bytes(data))
    cfg = env.config_file()
    ver = run_cli("backup", "verify", backup_id, "--config", cfg)
    assert ver.returncode == 1
    assert ver.stdout.startswith(f"FAILING  {backup_id}  {name} was modified: sha256 ")
    assert ver.stdout.rstrip().endswith("this backup cannot be trusted (tampered or corrupted)")
    assert "verify " in ver.stderr and "/s" in ver.stderr  # progress while downloading
    (row,) = _rows(env)
    assert (row["status"], row["failed_step"]) == ("corrupt", "verify")
    again = run_cli("backup", "verify", backup_id, "--config", cfg)
    assert (again.returncode, again.stderr.strip()) == (2, (
        f"controlplane: backup '{backup_id}' is corrupt, not complete; `controlplane backup "
        "list` shows complete backups"))
    target = pg_server.createdb(f"cor_{uuid.uuid4().hex[:8]}")
    rest = run_cli("restore", "postgres", backup_id, "--into", target, "--config", cfg)
    assert rest.returncode == 2 and "is corrupt, not complete" in rest.stderr
    unknown = run_cli("backup", "verify", "app-production-nope", "--config", cfg)
    assert (unknown.returncode, unknown.stderr.strip()) == (2, (
        "controlplane: backup 'app-production-nope' is unknown, not complete; "
        "`controlplane backup list` shows complete backups"))


def _mount_tmpfs(size: str) -> str:
    if os.geteuid() != 0:
        pytest.skip("the disk-full test mounts a small tmpfs and needs root")
    path = tempfile.mkdtemp(prefix="cp-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                   check=True)
    subprocess.run(["chown", "postgres:postgres", path], check=True)
    return path


def test_disk_full_on_the_scratch_database_fails_the_drill_at_restore_and_drops_it(
        make_env: MakeEnv, pg_server: PgServer, azurite: Azurite,
        own_pg_server: PgServer) -> None:
    """The scratch server's tablespace sits on a 10 MiB tmpfs: an empty database fits
    (~7.5 MiB), the ~17 MiB table does not, so writes fail with ENOSPC (SQLSTATE 53100)."""
    source_dsn = fill_source(pg_server, f"full_{uuid.uuid4().hex[:8]}", rows=100000)
    mount = _mount_tmpfs("10m")
    try:
        own_pg_server.execute(f"CREATE TABLESPACE tiny LOCATION '{mount}'")
        env = make_env(source_dsn, azurite, drill={
            "server_dsn": own_pg_server.dsn(), "tablespace": "tiny"})
        env.ops.run_backup("app")
        result = env.ops.run_drill("app")
        assert result.status == Status.FAILING
        assert [s.name for s in result.steps] == ["pick", "verify", "create-scratch",
                                                  "restore", "drop-scratch"]
        assert result.message.startswith("drill of app failed at restore: pg_restore failed")
        assert "No space left on device" in result.message, result.message
        assert result.steps[-1].status == Status.OK  # the scratch database was dropped
        with psycopg.connect(own_pg_server.dsn()) as conn:
            left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE "
                                "'cp_drill_%'").fetchall()
            assert left == []
        assert env.incident_for("drill-app").result is result
        with env.store.session() as s:
            drill = catalog.drills(s, "app")[0]
            assert (drill.status, drill.failed_step) == ("failed", "restore")
            assert catalog.latest_complete(s, "app") is not None  # the backup is not to blame
        from controlplane.dr.tracker import evaluate

        (pg,) = evaluate(env.store, env.ops.dr)
        assert (pg.rto_status, pg.status) == ("breached", "breached")
    finally:
        own_pg_server.execute("DROP TABLESPACE IF EXISTS tiny")
        subprocess.run(["umount", mount], check=False)
        os.rmdir(mount)


def test_overlapping_backup_of_one_component_is_refused_across_processes(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    env = make_env(source_dsn, azurite)
    cfg = env.config_file()
    box: list[Any] = []
    # Hold a table lock so the first backup's pg_dump waits, mid-run, holding our lock.
    with psycopg.connect(source_dsn) as blocker:
        blocker.execute("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
        first = threading.Thread(target=lambda: box.append(env.ops.run_backup("app")))
        first.start()
        deadline = time.monotonic() + 120
        while True:
            with env.store.session() as s:
                if s.get(catalog.BackupLockRow, "app") is not None:
                    break
            assert time.monotonic() < deadline, "first backup never took the lock"
            time.sleep(0.1)
        second = run_cli("backup", "run", "app", "--config", cfg, "--quiet")
        blocker.rollback()
    first.join(300)
    assert second.returncode == 1
    assert "backup of app failed at lock: backup app-production-" in second.stdout
    assert "is already running (holder " in second.stdout
    assert second.stdout.rstrip().endswith("this run was refused")
    assert box and box[0].status == Status.OK, box
    rows = _rows(env)
    assert sorted(r["status"] for r in rows) == ["complete", "failed"]
    refused = next(r for r in rows if r["status"] == "failed")
    assert refused["failed_step"] == "lock"
    assert {b.name for b in env.blob.list()} == {box[0].details["blob"],
                                                 box[0].details["blob"].replace(
                                                     ".dump.age", ".manifest.json")}
    from controlplane.store.results import history

    with env.store.session() as s:
        statuses = [r.status for r in history(s, "backup-app")]
        incidents = s.query(IncidentRow).filter_by(check_id="backup-app").all()
    assert sorted(statuses) == [Status.FAILING, Status.OK]
    # The refused run (its own process, with incidents wired) opened an incident like any
    # failure; the completed run then moved the check back to ok.
    assert [i.kind for i in incidents] == ["backup"]
    assert incidents[0].message.startswith("backup of app failed at lock: backup ")
    assert check_state(env.store, "backup-app") == "ok"


def test_dead_backup_holder_is_taken_over_and_its_run_marked_interrupted(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    from datetime import timedelta

    from controlplane.results import utcnow

    env = make_env(source_dsn, azurite)
    long_ago = utcnow() - timedelta(hours=1)
    # The dead run got as far as committing its dump, not its manifest.
    dead_blob = "app/production/app-production-dead.dump.age"
    env.blob.put_bytes(dead_blob, b"age-encryption.org/v1\n...")
    with env.store.session() as s:
        s.add(catalog.BackupRow(id="app-production-dead", component="app", env="production",
                                status="running", started_at=long_ago, blob_name=dead_blob,
                                manifest_name=dead_blob.replace(".dump.age",
                                                                ".manifest.json")))
        s.add(catalog.BackupLockRow(component="app", holder="gone:1:app-production-dead",
                                    backup_id="app-production-dead", acquired_at=long_ago,
                                    heartbeat_at=long_ago))
    result = env.ops.run_backup("app")
    assert result.status == Status.OK
    # Only the new backup's blobs remain: the dead run's committed dump was removed.
    assert sorted(b.name for b in env.blob.list()) == [
        result.details["blob"], result.details["blob"].replace(".dump.age", ".manifest.json")]
    with env.store.session() as s:
        dead = s.get(catalog.BackupRow, "app-production-dead")
        assert dead is not None
        assert (dead.status, dead.failed_step) == ("failed", "interrupted")
        assert dead.error.startswith("interrupted: no heartbeat from gone:1:app-production-dead")
        assert s.get(catalog.BackupLockRow, "app") is None


def test_control_plane_killed_mid_backup_leaves_no_backup_and_the_next_run_takes_over(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    import signal
    import sys

    from tests.services.common import ROOT

    env = make_env(source_dsn, azurite)
    cfg = env.config_file()
    with psycopg.connect(source_dsn) as blocker, psycopg.connect(source_dsn,
                                                                 autocommit=True) as watch:
        blocker.execute("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "backup", "run", "app", "--config", cfg,
             "--quiet"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while watch.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                            " 'pg_dump' AND wait_event_type = 'Lock' AND datname = "
                            "current_database()").fetchone() != (1,):
            assert time.monotonic() < deadline and proc.poll() is None, "pg_dump never started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)  # mid-backup: no cleanup code runs
        proc.wait(60)
        blocker.rollback()  # the orphaned pg_dump now writes to a dead pipe and exits
        while watch.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                            " 'pg_dump' AND datname = current_database()").fetchone() != (0,):
            assert time.monotonic() < deadline, "the orphaned pg_dump did not exit"
            time.sleep(0.1)
    (dead,) = _rows(env)
    assert dead["status"] == "running"  # never complete
    with env.store.session() as s:
        assert catalog.latest_complete(s, "app") is None
    assert env.blob.list() == []
    env.backups.lock_stale_after = 1.0
    while True:  # until the dead holder's heartbeat is older than lock_stale_after
        with env.store.session() as s:
            lock = s.get(catalog.BackupLockRow, "app")
            assert lock is not None
            if (utcnow() - catalog.aware(lock.heartbeat_at)).total_seconds() > 1.5:
                break
        time.sleep(0.2)
    result = env.ops.run_backup("app")
    assert result.status == Status.OK, result.message
    rows = {r["id"]: r for r in _rows(env)}
    assert (rows[dead["id"]]["status"], rows[dead["id"]]["failed_step"]) == (
        "failed", "interrupted")
    assert rows[dead["id"]]["error"].startswith("interrupted: no heartbeat from ")
    assert {b.name for b in env.blob.list()} == {
        result.details["blob"], result.details["blob"].replace(".dump.age", ".manifest.json")}


def test_backup_stuck_past_its_timeout_is_stopped_and_fails(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    env = make_env(source_dsn, azurite)
    env.backups.components["app"].timeout = 2.0
    with psycopg.connect(source_dsn) as blocker:
        blocker.execute("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
        result = env.ops.run_backup("app")
        blocker.rollback()
    assert result.status == Status.FAILING
    assert result.message == ("backup of app failed at dump+upload: pg_dump did not finish "
                              "within 2s (backups.components timeout) and was stopped")
    assert env.blob.list() == []
    _assert_no_complete_backup(env)
    assert env.incident_for("backup-app").result is result


def test_snapshot_closed_while_its_row_counts_run_cancels_them_instead_of_aborting(
        source_dsn: str) -> None:
    """A backup failing mid-dump closes the snapshot while the counts may still run on its
    connection: that must cancel them, not abort the process (libpq is not thread-safe)."""
    from controlplane.backups import postgres

    snap = postgres.Snapshot.open(source_dsn)
    with psycopg.connect(source_dsn) as blocker, psycopg.connect(source_dsn,
                                                                 autocommit=True) as watch:
        blocker.execute("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
        snap.count_in_background()
        deadline = time.monotonic() + 120
        while watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                            "'Lock' AND query LIKE 'SELECT count(*) FROM %calls%'"
                            ).fetchone() != (1,):
            assert time.monotonic() < deadline, "the row counts never reached calls"
            time.sleep(0.1)
        snap.close()
        blocker.rollback()
    assert snap._thread is not None and not snap._thread.is_alive()
    assert snap.conn.closed
    assert "canceling statement due to user request" in str(snap.error)
    with pytest.raises(postgres.PgError) as failed:
        snap.wait_counts()
    assert str(failed.value) == "counting rows failed: canceling statement due to user request"

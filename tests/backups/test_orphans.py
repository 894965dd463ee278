"""Orphan blobs (no complete or running backup refers to them) are swept by retention once
older than the backup timeout; younger ones may be uploads in progress and stay."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timedelta

import pytest

from controlplane.backups import catalog, orphans
from controlplane.backups.blob import AzureBlobStore, BlobInfo
from controlplane.backups.config import BlobConfig
from controlplane.backups.service import BackupJob
from controlplane.backups.streams import human_bytes
from controlplane.results import Status, utcnow
from tests.backups.conftest import Env, MakeEnv
from tests.services.azurite import Azurite
from tests.services.common import run_cli

P = "app/production/"


def _put(env: Env, name: str, age: timedelta | None = None) -> None:
    """A 10-byte blob; on the local backend its mtime is set ``age`` in the past."""
    env.blob.put_bytes(name, b"x" * 10)
    if age is not None:
        t = time.time() - age.total_seconds()
        os.utime(os.path.join(env.blob_cfg.path, name), (t, t))


def _row(env: Env, backup_id: str, status: str, names: list[str]) -> None:
    started = utcnow() - timedelta(hours=8)
    with env.store.session() as s:
        s.add(catalog.BackupRow(id=backup_id, component="app", env="production",
                                status=status, started_at=started, finished_at=started,
                                blob_name=names[0],
                                manifest_name=names[1] if len(names) > 1 else "",
                                size_bytes=10))


def _seed_local(env: Env) -> None:
    old, young = timedelta(hours=7), timedelta(hours=3)
    kept = [P + "app-production-00.dump.age", P + "app-production-00.manifest.json"]
    corrupt = [P + "app-production-corrupt.dump.age", P + "app-production-corrupt.manifest.json"]
    for name in kept + corrupt:
        _put(env, name, old)
    _row(env, "app-production-00", "complete", kept)
    _row(env, "app-production-corrupt", "corrupt", corrupt)
    # Manifest upload failed after the dump was committed, and the cleanup delete failed.
    _put(env, P + "app-production-failed.dump.age", old)
    _row(env, "app-production-failed", "failed",
         [P + "app-production-failed.dump.age", P + "app-production-failed.manifest.json"])
    _put(env, P + "app-production-running.dump.age", old)  # its backup is still running
    _row(env, "app-production-running", "running",
         [P + "app-production-running.dump.age", P + "app-production-running.manifest.json"])
    _put(env, P + "app-production-lost.dump.age", old)  # no catalog row at all
    _put(env, P + "app-production-fresh.dump.age", young)  # maybe an upload in progress
    _put(env, "app/staging/app-staging-0.dump.age", old)  # another environment's prefix
    _put(env, P + "README.txt", old)  # not a backup blob


def test_prune_sweeps_orphan_blobs_older_than_the_backup_timeout_and_dry_run_lists_them(
        make_env: MakeEnv) -> None:
    env = make_env("postgresql://u@127.0.0.1:1/none")
    _seed_local(env)
    cfg = env.config_file()
    before = sorted(b.name for b in env.blob.list())
    dry = run_cli("backup", "prune", "--dry-run", "--config", cfg)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[1:] == [
        "would delete 0 of 1 complete backups",
        f"would delete {P}app-production-corrupt.dump.age  10 B  backup "
        "app-production-corrupt is corrupt; 7h old",
        f"would delete {P}app-production-corrupt.manifest.json  10 B  backup "
        "app-production-corrupt is corrupt; 7h old",
        f"would delete {P}app-production-failed.dump.age  10 B  backup app-production-failed "
        "is failed; 7h old",
        f"keep         {P}app-production-fresh.dump.age  10 B  no catalog row refers to it; "
        "3h old, younger than 6h (the backup timeout): may be an upload in progress, kept",
        f"would delete {P}app-production-lost.dump.age  10 B  no catalog row refers to it; "
        "7h old",
        "would delete 4 of 5 orphan blobs (no complete or running backup refers to them)"]
    assert sorted(b.name for b in env.blob.list()) == before
    real = run_cli("--log-level", "INFO", "backup", "prune", "--config", cfg)
    assert real.returncode == 0, real.stderr
    assert real.stdout.splitlines()[-1] == ("deleting 4 of 5 orphan blobs (no complete or "
                                            "running backup refers to them)")
    assert (f"orphan blob deleted component=app name={P}app-production-lost.dump.age "
            "bytes=10 reason='no catalog row refers to it; 7h old'") in real.stderr
    assert f"not a backup blob, left alone name={P}README.txt; move it out of {P}" \
        in real.stderr
    assert sorted(b.name for b in env.blob.list()) == [
        P + "README.txt", P + "app-production-00.dump.age",
        P + "app-production-00.manifest.json", P + "app-production-fresh.dump.age",
        P + "app-production-running.dump.age", "app/staging/app-staging-0.dump.age"]
    with env.store.session() as s:
        rows = {r.id: (r.status, r.pruned_at is not None) for r in catalog.backups(s, "app")}
    assert rows == {"app-production-00": ("complete", False),
                    "app-production-corrupt": ("corrupt", True),
                    "app-production-failed": ("failed", True),
                    "app-production-running": ("running", False)}
    again = run_cli("backup", "prune", "--config", cfg)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == ("deleting 0 of 1 orphan blobs (no complete or "
                                             "running backup refers to them)")


@pytest.mark.postgres
def test_retention_after_a_backup_sweeps_old_orphans_and_keeps_young_ones(
        make_env: MakeEnv, source_dsn: str) -> None:
    env = make_env(source_dsn)
    _put(env, P + "app-production-lost.dump.age", timedelta(hours=7))
    _put(env, P + "app-production-fresh.dump.age", timedelta(hours=3))
    result = env.ops.run_backup("app")
    assert result.status == Status.OK, result.message
    assert sorted(b.name for b in env.blob.list()) == sorted([
        result.details["blob"], result.details["blob"].replace(".dump.age", ".manifest.json"),
        P + "app-production-fresh.dump.age"])


def _modified(env: Env, name: str) -> datetime:
    (info,) = [b for b in env.blob.list(name) if b.name == name]
    assert info.modified is not None
    return info.modified


@pytest.mark.postgres
@pytest.mark.azurite
def test_orphans_on_azurite_are_judged_by_the_servers_time_and_deleted_when_old_enough(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    env = make_env(source_dsn, azurite)
    first = env.ops.run_backup("app").details
    data = bytearray(env.blob.get_bytes(first["blob"]))
    data[len(data) // 2] ^= 0x01
    env.blob.put_bytes(first["blob"], bytes(data))
    assert env.ops.run_drill("app").status == Status.FAILING  # the backup is now corrupt
    lost = P + "app-production-lost.dump.age"  # a dump whose manifest never followed
    env.blob.put_bytes(lost, b"age-encryption.org/v1\n...")
    second = env.ops.run_backup("app").details
    # The sweep after that backup found the corrupt backup's blobs and the lost dump, all
    # younger than the 6 h backup timeout: nothing was deleted.
    first_manifest = first["blob"].replace(".dump.age", ".manifest.json")
    second_manifest = second["blob"].replace(".dump.age", ".manifest.json")
    assert sorted(b.name for b in env.blob.list()) == sorted([
        first["blob"], first_manifest, lost, second["blob"], second_manifest])
    oldest = max(_modified(env, n) for n in (first["blob"], first_manifest, lost))
    fresh = P + "app-production-fresh.dump.age"
    while True:  # Azurite's times have whole seconds: write until fresh is visibly newer
        env.blob.put_bytes(fresh, b"age-encryption.org/v1\n...")
        if _modified(env, fresh) > oldest:
            break
        time.sleep(0.3)
    timeout = env.backups.components["app"].timeout
    found, errors = orphans.find(env.store, env.blob, env.backups.components,
                                 now=oldest + timedelta(seconds=timeout))
    assert errors == []
    corrupt = f"backup {first['backup_id']} is corrupt"
    assert sorted((o.name, o.delete, o.reason) for o in found) == sorted([
        (first["blob"], True, corrupt), (first_manifest, True, corrupt),
        (fresh, False, "no catalog row refers to it"),
        (lost, True, "no catalog row refers to it")])
    assert orphans.delete(env.store, env.blob, found) == []
    assert sorted(b.name for b in env.blob.list()) == sorted([
        fresh, second["blob"], second_manifest])
    with env.store.session() as s:
        row = s.get(catalog.BackupRow, first["backup_id"])
        assert row is not None and (row.status, row.pruned_at is not None) == ("corrupt", True)


class _StopsAzuriteBeforeTheManifest(AzureBlobStore):
    """The real Azure backend; Azurite is stopped just as the manifest upload begins."""

    def __init__(self, cfg: BlobConfig, azurite: Azurite) -> None:
        super().__init__(cfg)
        self.azurite = azurite

    def put_bytes(self, name: str, data: bytes) -> None:
        if name.endswith(".manifest.json"):
            self.azurite.stop()
        super().put_bytes(name, data)


@pytest.mark.postgres
@pytest.mark.azurite
def test_dump_left_by_a_failed_manifest_upload_and_cleanup_is_swept_by_prune(
        make_env: MakeEnv, source_dsn: str, own_azurite: Azurite) -> None:
    env = make_env(source_dsn, own_azurite)
    blob = _StopsAzuriteBeforeTheManifest(env.blob_cfg, own_azurite)
    outcome = BackupJob("app", env.backups, env.store, blob).run()
    backup_id = outcome.backup_id
    dump, manifest = f"{P}{backup_id}.dump.age", f"{P}{backup_id}.manifest.json"
    assert outcome.result.message == (
        f"backup of app failed at manifest: manifest upload failed: upload of {manifest} "
        "failed: blob endpoint unreachable (ServiceRequestError)")
    own_azurite.start()  # same port and data: the dump's cleanup delete failed too
    assert [b.name for b in env.blob.list()] == [dump]
    env.backups.components["app"].timeout = 1.0  # the sweep's safety age
    while (utcnow() - _modified(env, dump)).total_seconds() < 2:
        time.sleep(0.2)
    cfg = env.config_file()
    dry = run_cli("backup", "prune", "--dry-run", "--config", cfg)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "would delete 0 of 0 complete backups"
    size = human_bytes(env.blob.list()[0].size)
    want = re.escape(f"would delete {dump}  {size}  backup {backup_id} is failed; ")
    assert re.fullmatch(want + r"\d+s old", lines[1]), lines[1]
    assert lines[2:] == ["would delete 1 of 1 orphan blobs (no complete or running backup "
                         "refers to them)"]
    real = run_cli("backup", "prune", "--config", cfg)
    assert real.returncode == 0, real.stderr
    assert env.blob.list() == []
    with env.store.session() as s:
        row = s.get(catalog.BackupRow, backup_id)
        assert row is not None
        assert (row.status, row.failed_step, row.pruned_at is not None) == (
            "failed", "manifest", True)


@pytest.mark.azurite
def test_prune_with_the_blob_endpoint_down_reports_that_orphans_could_not_be_listed(
        make_env: MakeEnv, own_azurite: Azurite) -> None:
    env = make_env("postgresql://u@127.0.0.1:1/none", own_azurite)
    env.blob.put_bytes(P + "app-production-lost.dump.age", b"x")
    own_azurite.stop()
    dry = run_cli("backup", "prune", "--dry-run", "--config", env.config_file())
    assert dry.returncode == 1
    assert dry.stderr.strip().splitlines()[-1] == (
        "controlplane: app: cannot look for orphan blobs under app/production/: listing blobs "
        "failed: blob endpoint unreachable (ServiceRequestError)")


def test_blob_listing_reports_when_each_blob_was_written(make_env: MakeEnv) -> None:
    env = make_env("postgresql://u@127.0.0.1:1/none")
    _put(env, P + "a.dump.age", timedelta(hours=2))
    (info,) = env.blob.list(P)
    assert isinstance(info, BlobInfo) and info.modified is not None
    age = (utcnow() - info.modified).total_seconds()
    assert 7200 <= age < 7200 + 600

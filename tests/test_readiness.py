"""/readyz tells the truth about the store: a full disk, a read-only file system and a
database deleted under the process make it fail, and results that could not be written
are retried, counted and reported, never silently dropped.

The database lives on its own small tmpfs (mounted for the test, as root), so the disk can
really fill up and really turn read-only."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.results import Result, Status
from controlplane.store.db import StoreUnavailable
from controlplane.web import create_app

pytestmark = pytest.mark.usefixtures("scripted_kind")

CONFIG = """
environments: {production: {}}
store: {dsn: "sqlite:///%(db)s", max_write_age: 600}
check_files: []
incidents: {enabled: false}
checks:
  - {id: tls-prod, kind: scripted, env: production, interval: 1h}
"""


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture
def rt(disk: Path, tmp_path: Path) -> Iterator[Runtime]:
    path = tmp_path / "controlplane.yaml"
    path.write_text(CONFIG % {"db": disk / "cp.db"})
    runtime = build_runtime(load_config(str(path)))
    runtime.start()
    yield runtime
    runtime.stop(0)


@pytest.fixture
def client(rt: Runtime) -> FlaskClient:
    return create_app(rt).test_client()


def _write(rt: Runtime, size: int = 0) -> None:
    """One result through the pipeline, as a scheduled run delivers it; ``size`` bytes of
    details make the write need fresh disk space."""
    check = rt.config.check("tls-prod")
    rt.pipeline.process(Result(check=check.id, kind=check.kind, env=check.env,
                               status=Status.OK, details={"pad": "x" * size}), check)


def _metric(client: FlaskClient, line_start: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    [line] = [ln for ln in text.splitlines() if ln.startswith(line_start)]
    return float(line.rsplit(" ", 1)[1])


def _ready(client: FlaskClient) -> tuple[int, Any]:
    resp = client.get("/readyz")
    return resp.status_code, resp.get_json()


def test_a_full_disk_fails_readiness_and_counts_the_lost_result(
        rt: Runtime, client: FlaskClient, disk: Path) -> None:
    _write(rt)
    assert _ready(client)[0] == 200
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:  # fill every free block (no buffer to flush)
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    _write(rt, size=2 * 1024 * 1024)
    status, body = _ready(client)
    assert status == 503
    assert body["store"] is True  # SELECT 1 still answers: that alone is not readiness
    assert body["store_writes"] is False
    assert body["problems"] == ["the newest store write failed: database or disk is full"]
    assert _metric(client, 'controlplane_store_errors_total ') == 3.0
    assert _metric(client, 'controlplane_results_unstored_total{check="tls-prod"}') == 1.0
    filler.unlink()
    _write(rt)
    assert _ready(client)[0] == 200


def test_a_store_on_a_read_only_file_system_refuses_to_start(tmp_path: Path,
                                                              disk: Path) -> None:
    # A file system turns read-only under a running process only with no file open for
    # writing (the kernel refuses the remount while SQLite holds the file); what an
    # operator meets is the restart on the read-only volume: refused, never "ready".
    path = tmp_path / "controlplane.yaml"
    path.write_text(CONFIG % {"db": disk / "cp.db"})
    cfg = load_config(str(path))
    build_runtime(cfg).stop(0)  # the database exists, with its tables
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    try:
        with pytest.raises(StoreUnavailable) as err:
            build_runtime(cfg)
        assert str(err.value) == (
            f"cannot open the store sqlite:///{disk / 'cp.db'}: unable to open database file; "
            "check store.dsn and that the database is up")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)


def test_a_database_deleted_under_the_process_fails_readiness(
        rt: Runtime, client: FlaskClient, disk: Path) -> None:
    _write(rt)
    assert _ready(client)[0] == 200
    for name in os.listdir(disk):
        os.unlink(disk / name)
    _write(rt)  # SQLite keeps writing into the unlinked file: nobody will read it again
    status, body = _ready(client)
    assert status == 503
    assert body["problems"] == [
        f"the SQLite file {disk / 'cp.db'} was deleted; writes go nowhere (restart to "
        "recreate it)"]


def test_no_successful_write_for_longer_than_the_limit_fails_readiness(
        rt: Runtime, client: FlaskClient) -> None:
    _write(rt)
    health = rt.pipeline.write_health
    health.last_ok = time.monotonic() - 3 * 3600 + 5  # within three intervals of 1h
    assert _ready(client)[0] == 200
    health.last_ok = time.monotonic() - 4 * 3600  # as if the last write was 4 h ago
    status, body = _ready(client)
    assert status == 503
    [problem] = body["problems"]
    # The limit is store.max_write_age or three intervals of the most frequent check.
    assert problem == ("the last successful store write was 14400s ago (limit "
                       "store.max_write_age 10800s)")


def test_a_dead_outbox_worker_fails_readiness(tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(CONFIG.replace("incidents: {enabled: false}\n", "")
                    % {"db": tmp_path / "cp.db"})
    runtime = build_runtime(load_config(str(path)))
    runtime.start()
    try:
        client = create_app(runtime).test_client()
        assert _ready(client)[0] == 200
        worker: Any = runtime.component("incidents").worker  # type: ignore[union-attr]
        worker.stop()  # its threads end as a crash would end them
        status, body = _ready(client)
        assert (status, body["outbox"]) == (503, False)
        assert body["problems"] == [
            "an outbox worker thread has died; notifications are not sent"]
    finally:
        runtime.stop(0)


@pytest.fixture
def ext4_disk(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A small ext4 file system on a loop device, mounted errors=remount-ro (as production
    volumes are): (mount point, its name under /sys/fs/ext4)."""
    image, mnt = tmp_path / "disk.img", tmp_path / "ext4"
    mnt.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(mnt)], check=True)
    device = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mnt)], check=True,
                            capture_output=True, text=True).stdout.strip()
    yield mnt, os.path.basename(device)
    subprocess.run(["umount", "-l", str(mnt)], check=True)  # -o loop: the device goes too


def test_a_file_system_turning_read_only_under_the_running_process_fails_readiness(
        ext4_disk: tuple[Path, str], tmp_path: Path) -> None:
    # The real fault, not a permission trick: ext4 meets an error and remounts itself
    # read-only (errors=remount-ro) while SQLite holds the database open; the kernel's own
    # test hook raises that error. A plain `mount -o remount,ro` is refused (EBUSY) while a
    # file is open for writing, which is why this goes through ext4's error path.
    mnt, name = ext4_disk
    path = tmp_path / "controlplane.yaml"
    path.write_text(CONFIG % {"db": mnt / "cp.db"})
    rt = build_runtime(load_config(str(path)))
    rt.start()
    try:
        client = create_app(rt).test_client()
        _write(rt)
        assert _ready(client)[0] == 200
        Path(f"/sys/fs/ext4/{name}/trigger_fs_error").write_text("test: disk failing\n")
        assert " ro," in _mount_options(mnt) or "emergency_ro" in _mount_options(mnt)
        _write(rt)
        status, body = _ready(client)
        assert status == 503
        assert body["store"] is True  # reads still answer
        assert body["store_writes"] is False
        assert body["problems"] == ["the newest store write failed: disk I/O error"]
        # three attempts, each counted; the result itself counted as not stored
        assert _metric(client, "controlplane_store_errors_total ") == 3.0
        assert _metric(client, 'controlplane_results_unstored_total{check="tls-prod"}') == 1.0
        _write(rt)  # every further result is counted too, never dropped silently
        assert _metric(client, 'controlplane_results_unstored_total{check="tls-prod"}') == 2.0
        assert _ready(client)[0] == 503
    finally:
        rt.stop(0)


def _mount_options(mnt: Path) -> str:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(mnt):
            return f" {fields[3]},"
    raise AssertionError(f"{mnt} is not mounted")

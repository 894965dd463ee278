"""The backups component schedules backups and drills by cron, DR evaluation by interval."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from controlplane.app import build_runtime
from controlplane.backups import catalog
from controlplane.backups.service import BackupJob
from controlplane.config import ConfigError, ControlPlaneConfig, load_config
from controlplane.dr.component import BackupsComponent
from controlplane.results import Status
from controlplane.store import Store
from controlplane.store.results import history
from controlplane.web import create_app
from tests.backups.conftest import MakeEnv, fill_source
from tests.services.azurite import Azurite
from tests.services.common import ROOT, free_port, run_cli
from tests.services.postgres import PgServer

RECIPIENT = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"


def test_backups_and_drills_run_on_the_main_scheduler_beside_the_built_in_checks(
        tmp_path: Path) -> None:
    cfg = ControlPlaneConfig.model_validate({
        "environments": {"production": {}},
        "store": {"dsn": f"sqlite:///{tmp_path / 'cp.db'}"},
        "blob": {"backend": "local", "path": str(tmp_path / "blobs")},
        "backups": {"components": {"app": {
            "dsn": "postgresql://u:p@127.0.0.1:1/app", "recipients": [RECIPIENT],
            "schedule": "15 2 * * *", "drill": {"schedule": "0 5 * * 0"}}}},
        "dr": {"evaluate_interval": "5m"}})
    rt = build_runtime(cfg)
    comp = rt.component("backups")
    assert isinstance(comp, BackupsComponent)
    comp.start()
    rt.scheduler.start()
    try:
        assert dict(comp.jobs()).keys() == {"run-backup-app", "run-drill-app"}
        jobs = dict(rt.scheduler.jobs())
        assert sorted(jobs) == [
            "backup-app", "dr-cluster-rebuild", "dr-kafka", "dr-kubernetes-secrets",
            "dr-postgres", "drill-app", "run-backup-app", "run-drill-app"]
        assert jobs["run-backup-app"].startswith("cron[month='*', day='*', day_of_week='*', "
                                                 "hour='2', minute='15'")
        assert "day_of_week='sun'" in jobs["run-drill-app"] and "hour='5'" in jobs["run-drill-app"]
        # DR evaluation is the built-in dr-* checks, every dr.evaluate_interval.
        assert jobs["dr-postgres"] == "interval[0:05:00]"
        assert jobs["backup-app"] == "interval[0:05:00]"
    finally:
        rt.stop(0)


def test_bad_cron_and_bad_recipient_are_config_errors_with_file_and_line(
        tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(
        "environments:\n  production: {}\n"
        "check_files: []\n"
        "backups:\n  components:\n    app:\n"
        "      dsn: postgresql://u@h/app\n"
        "      recipients: [ssh-ed25519 AAAA]\n"
        "      schedule: every night\n")
    with pytest.raises(ConfigError) as exc:
        load_config(str(path))
    lines = str(exc.value).splitlines()
    assert lines[0].startswith(f"{path}:8: backups.components.app.recipients: 'ssh-ed25519 "
                               "AAAA' is not an age X25519 recipient")
    assert lines[1].startswith(f"{path}:9: backups.components.app.schedule: 'every night' is "
                               "not a cron expression (5 fields, e.g. '0 2 * * *')")


def _gauges(client: FlaskClient) -> dict[str, float]:
    """backup_* samples for component app from /metrics, by metric name."""
    text = client.get("/metrics").get_data(as_text=True)
    return {s.name: s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name.startswith("controlplane_backup_") and s.labels == {"component": "app"}}


def _expected(store: Store, backup_id: str) -> dict[str, float]:
    with store.session() as s:
        row = s.get(catalog.BackupRow, backup_id)
        assert row is not None and row.finished_at is not None
        assert row.size_bytes is not None and row.duration_s is not None
        return {"controlplane_backup_last_success_timestamp_seconds":
                catalog.aware(row.finished_at).timestamp(),
                "controlplane_backup_size_bytes": float(row.size_bytes),
                "controlplane_backup_duration_seconds": row.duration_s}


@pytest.mark.postgres
@pytest.mark.azurite
def test_backup_gauges_come_from_the_catalog_after_a_restart_and_for_backups_run_elsewhere(
        make_env: MakeEnv, source_dsn: str, azurite: Azurite) -> None:
    env = make_env(source_dsn, azurite)
    cfg_path = env.config_file()
    run = run_cli("backup", "run", "app", "--config", cfg_path, "--quiet", timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    with env.store.session() as s:
        first = catalog.backups(s, "app")[0].id
    # A fresh server on the same store: it ran no backup itself.
    rt = build_runtime(load_config(cfg_path))
    comp = rt.component("backups")
    assert isinstance(comp, BackupsComponent)
    comp.start()
    try:
        client = create_app(rt).test_client()
        assert _gauges(client) == _expected(env.store, first)
        # A backup by another process (its own store connection) shows at the next
        # DR evaluation.
        other = Store(env.store_dsn)
        try:
            outcome = BackupJob("app", env.backups, other, env.blob).run()
        finally:
            other.close()
        assert outcome.result.status == Status.OK
        assert _gauges(client) == _expected(env.store, first)
        comp.ops.evaluate_dr()
        assert _gauges(client) == _expected(env.store, outcome.backup_id)
    finally:
        rt.stop(0)


def test_start_up_warns_once_per_component_whose_drills_restore_onto_the_source_server(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = ControlPlaneConfig.model_validate({
        "environments": {"production": {}},
        "store": {"dsn": f"sqlite:///{tmp_path / 'cp.db'}"},
        "blob": {"backend": "local", "path": str(tmp_path / "blobs")},
        "backups": {"components": {
            "app": {"dsn": "postgresql://u:p@127.0.0.1:1/app", "recipients": [RECIPIENT]},
            "billing": {"dsn": "postgresql://u:p@127.0.0.1:1/billing",
                        "recipients": [RECIPIENT],
                        "drill": {"server_dsn": "postgresql://u:p@127.0.0.1:1/postgres"}}}}})
    rt = build_runtime(cfg)
    comp = rt.component("backups")
    assert comp is not None
    with caplog.at_level(logging.WARNING, logger="controlplane.dr.component"):
        comp.start()
    rt.stop(0)
    warnings = [r.getMessage() for r in caplog.records if "SOURCE SERVER" in r.getMessage()]
    assert warnings == [
        "drills of app restore into scratch databases ON THE SOURCE SERVER (the production "
        "database's server): set backups.components.app.drill.server_dsn to an admin DSN of a "
        "separate Postgres server (see docs/dr.md)"]


@pytest.mark.postgres
def test_sigterm_during_a_scheduled_backup_lets_it_finish_within_the_grace_period(
        make_env: MakeEnv, pg_server: PgServer, tmp_path: Path) -> None:
    # Big enough that the backup is still running when the signal comes.
    env = make_env(fill_source(pg_server, f"big_{uuid.uuid4().hex[:8]}", rows=400_000))
    port = free_port()
    cfg_path = env.config_file({
        "web": {"host": "127.0.0.1", "port": port},
        "scheduler": {"grace_period": "120s"},
        "backups": {"components": {"app": {
            **yaml.safe_load(Path(env.config_file()).read_text())["backups"]["components"]["app"],
            "schedule": "* * * * *"}}}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlplane", "run", "--config", cfg_path], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        # The cron fires at the next whole minute (or the one after, if that backup was
        # over before we looked).
        deadline = time.monotonic() + 150
        running: str | None = None
        while running is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            with env.store.session() as s:
                rows = catalog.backups(s, "app", limit=1)
                if rows and rows[0].status == catalog.RUNNING:
                    running = rows[0].id
            time.sleep(0.02)
        assert running is not None, "no scheduled backup seen running"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "abandoned" not in err
    with env.store.session() as s:
        row = s.get(catalog.BackupRow, running)
        assert row is not None and row.status == catalog.COMPLETE
        results = history(s, "backup-app")
    # The backup's own result was stored before the store closed.
    assert [r.status for r in results if r.message.startswith(f"backup {running} complete")] \
        == [Status.OK]
    assert out.strip().endswith("controlplane: stopped")

"""The backups component schedules backups and drills by cron, DR evaluation by interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.app import build_runtime
from controlplane.config import ConfigError, ControlPlaneConfig, load_config
from controlplane.dr.component import BackupsComponent

RECIPIENT = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"


def test_component_schedules_cron_backups_drills_and_dr_evaluation(tmp_path: Path) -> None:
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
    try:
        jobs = dict(comp.jobs())
        assert sorted(jobs) == ["backup-app", "dr-evaluate", "drill-app"]
        assert jobs["backup-app"].startswith("cron[month='*', day='*', day_of_week='*', "
                                             "hour='2', minute='15'")
        assert "day_of_week='sun'" in jobs["drill-app"] and "hour='5'" in jobs["drill-app"]
        assert jobs["dr-evaluate"] == "interval[0:05:00]"
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

"""DSNs hold passwords: a malformed one is reported without quoting any part of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.backups import catalog
from controlplane.backups.postgres import BAD_DSN, PgError, connect
from controlplane.config import ConfigError, load_config
from controlplane.results import utcnow
from tests.backups.conftest import MakeEnv
from tests.services.common import run_cli

# libpq's own parse error would say: missing "=" after "hunter2-tail" in connection info
BAD = "host=127.0.0.1 user=app password=hunter2 hunter2-tail"


def test_malformed_dsn_in_config_is_a_file_line_error_that_does_not_quote_it(
        tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(
        "environments:\n  production: {}\ncheck_files: []\n"
        "backups:\n  components:\n    app:\n"
        f"      dsn: {BAD}\n"
        "      recipients: [age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq]\n")
    with pytest.raises(ConfigError) as exc:
        load_config(str(path))
    assert str(exc.value) == f"{path}:7: backups.components.app.dsn: {BAD_DSN}"
    assert "hunter2" not in str(exc.value)


def test_connecting_with_a_malformed_dsn_does_not_quote_it() -> None:
    with pytest.raises(PgError) as exc:
        connect(BAD)
    assert str(exc.value) == BAD_DSN


def test_restore_into_a_malformed_dsn_exits_2_without_quoting_it(make_env: MakeEnv) -> None:
    env = make_env("postgresql://u@127.0.0.1:1/none")
    with env.store.session() as s:
        s.add(catalog.BackupRow(id="app-production-1", component="app", env="production",
                                status="complete", started_at=utcnow(),
                                manifest={"blob": "app/production/app-production-1.dump.age"}))
    run = run_cli("restore", "postgres", "app-production-1", "--into", BAD, "--config",
                  env.config_file())
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == f"controlplane: {BAD_DSN}"
    assert "hunter2" not in run.stdout + run.stderr

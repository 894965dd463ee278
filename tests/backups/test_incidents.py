"""A failed backup run from the CLI opens an incident through the same path as any check."""

from __future__ import annotations

from controlplane.incidents.model import IncidentRow
from tests.backups.conftest import MakeEnv
from tests.services.common import free_port, run_cli


def test_failed_backup_from_cli_opens_a_critical_incident_without_the_password(
        make_env: MakeEnv) -> None:
    port = free_port()  # nothing listens there
    env = make_env(f"postgresql://app:hunter2-secret@127.0.0.1:{port}/app")
    run = run_cli("backup", "run", "app", "--config", env.config_file(), "--quiet")
    assert run.returncode == 1
    assert run.stdout.startswith("FAILING  backup-app  backup of app failed at snapshot: "
                                 "cannot connect to Postgres: ")
    assert "hunter2-secret" not in run.stdout + run.stderr
    with env.store.session() as s:
        incidents = s.query(IncidentRow).filter_by(check_id="backup-app").all()
        assert [(i.state, i.severity, i.kind) for i in incidents] == [
            ("open", "critical", "backup")]
        assert incidents[0].message == run.stdout.split("  ", 2)[2].splitlines()[0]
        assert "hunter2-secret" not in incidents[0].message

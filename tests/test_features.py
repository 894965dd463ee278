"""Features plug in their tables, components and built-in checks; one catalog of checks."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from controlplane.app import build_runtime
from controlplane.backups import catalog
from controlplane.config import ConfigError, load_config
from controlplane.dr.component import ops_for
from controlplane.features import FEATURES, Feature, builtin_check_sources
from controlplane.probes.base import CheckConfig
from controlplane.results import Status, utcnow
from controlplane.store.results import CheckStateRow, history
from controlplane.web import create_app

RECIPIENT = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"


def write_config(tmp: Path, checks: str = "checks: []\n") -> Path:
    (tmp / "checks").mkdir(exist_ok=True)
    (tmp / "checks" / "a.yaml").write_text(checks)
    path = tmp / "controlplane.yaml"
    path.write_text(
        "environments:\n  production: {}\n"
        f"store:\n  dsn: sqlite:///{tmp / 'cp.db'}\n"
        f"blob:\n  backend: local\n  path: {tmp / 'blobs'}\n"
        "defaults:\n  failure_threshold: 3\n  interval: 2m\n"
        "backups:\n  components:\n    app:\n"
        "      dsn: postgresql://u:p@127.0.0.1:1/app\n"
        f"      recipients: [{RECIPIENT}]\n"
        "dr:\n  defaults: false\n  evaluate_interval: 10m\n"
        "  components:\n    app: {rto: 1h, rpo: 1d, backup_component: app}\n")
    return path


def test_built_in_checks_join_the_yaml_checks_in_one_catalog(tmp_path: Path) -> None:
    cfg = load_config(str(write_config(tmp_path, "checks:\n  - id: tcp-db\n    kind: tcp\n"
                                                 "    target: 127.0.0.1:5432\n")))
    assert [(c.id, c.kind, cfg.builtin_feature(c.id)) for c in cfg.checks] == [
        ("tcp-db", "tcp", None), ("backup-app", "backup", "backups"),
        ("drill-app", "drill", "backups"), ("dr-app", "dr", "backups")]
    # The kind's own defaults win over the defaults section; the rest come from it.
    backup, dr = cfg.check("backup-app"), cfg.check("dr-app")
    assert (backup.failure_threshold, backup.severity, backup.interval) == (1, "critical", 300.0)
    assert (dr.failure_threshold, dr.severity, dr.interval) == (1, "major", 600.0)
    assert cfg.check("tcp-db").failure_threshold == 3


def test_a_yaml_check_repeating_a_built_in_one_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "checks:\n  - id: backup-app\n    kind: backup\n"
                                  "    component: app\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path}/checks/a.yaml:2: checks.0.id: check 'backup-app' is built in (the backups "
        "feature makes it from its own config section) and is already on the status page, in "
        "the API and on the scheduler; remove it from here (a kind's thresholds come from its "
        "kind, its severity from its component)"]


def test_one_stored_state_is_judged_by_one_threshold_everywhere(tmp_path: Path) -> None:
    rt = build_runtime(load_config(str(write_config(tmp_path))))
    try:
        ops = ops_for(rt)
        check = rt.config.check("backup-app")
        # The scheduler, the backup jobs and the web read the same check object.
        assert rt.scheduler.runners["backup-app"].check is check
        assert ops.check("backup-app") is check
        assert check.failure_threshold == 1
        # A failed backup judged through the job: failing at once (threshold 1, not 3).
        result = ops.run_backup("app")
        assert result.status == Status.FAILING
        assert state(rt, "backup-app") == ("failing", 1)
        # The scheduled re-reading of the catalog judges the same state the same way.
        with rt.store.session() as s:
            s.add(catalog.BackupRow(id="app-2", component="app", status=catalog.COMPLETE,
                                    started_at=utcnow(), finished_at=utcnow(),
                                    duration_s=1.0, size_bytes=10))
        assert rt.scheduler.run_now("backup-app").status == Status.OK
        assert state(rt, "backup-app") == ("ok", 0)
        with rt.store.session() as s:
            s.add(catalog.BackupRow(id="app-3", component="app", status=catalog.FAILED,
                                    started_at=utcnow(), failed_step="snapshot", error="gone"))
        assert rt.scheduler.run_now("backup-app").status == Status.FAILING
        assert state(rt, "backup-app") == ("failing", 1)
        with rt.store.session() as s:
            assert [r.status for r in history(s, "backup-app")] == [
                Status.FAILING, Status.OK, Status.FAILING]
        client = create_app(rt).test_client()
        api = client.get("/api/v1/checks/backup-app").get_json()
        assert (api["state"], api["failure_threshold"], api["builtin"]) == ("failing", 1,
                                                                            "backups")
        checks = client.get("/api/v1/checks").get_json()["checks"]
        # dr-app was evaluated after the backup: never measured yet is degraded.
        assert {c["id"]: c["state"] for c in checks} == {
            "backup-app": "failing", "drill-app": "unknown", "dr-app": "degraded"}
        assert 'href="/checks/backup-app"' in client.get("/").get_data(as_text=True)
    finally:
        rt.stop(0)


def state(rt: object, check_id: str) -> tuple[str, int]:
    from controlplane.app import Runtime

    assert isinstance(rt, Runtime)
    with rt.store.session() as s:
        row = s.get(CheckStateRow, check_id)
        assert row is not None
        return row.state, row.fail_streak


def test_check_list_and_run_include_the_built_in_checks(tmp_path: Path) -> None:
    from tests.services.common import run_cli

    path = str(write_config(tmp_path))
    listed = run_cli("check", "list", "--config", path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "ID          KIND           ENV         INTERVAL",
        "backup-app  backup         production  300s  (built in: backups)",
        "drill-app   drill          production  300s  (built in: backups)",
        "dr-app      dr                         600s  (built in: backups)"]
    # A built-in check run by hand reads the control plane's own store.
    ran = run_cli("check", "run", "backup-app", "--json", "--config", path)
    assert ran.returncode == 0, ran.stderr
    assert '"message": "no backup of app yet"' in ran.stdout
    assert '"status": "degraded"' in ran.stdout


@pytest.mark.parametrize("feature", FEATURES, ids=lambda f: f.name)
def test_every_feature_names_what_it_contributes_by_paths_that_resolve(
        feature: Feature, tmp_path: Path) -> None:
    from controlplane.store.db import Base

    for module in feature.tables:
        mod = importlib.import_module(module)
        declared = {t.name for t in Base.metadata.tables.values()
                    if any(getattr(v, "__table__", None) is t for v in vars(mod).values())}
        assert declared, f"{module} declares no table"
    if feature.component:
        assert callable(importlib.import_module(feature.component).create)
    sources = dict(builtin_check_sources())
    if feature.builtin_checks:
        checks = sources[feature.name](load_config(str(write_config(tmp_path))))
        assert checks and all(isinstance(c, CheckConfig) for c in checks)
    else:
        assert feature.name not in sources

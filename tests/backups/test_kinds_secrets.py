"""The kubernetes-secrets backup kind end to end through the CLI: `backup run`, `drill run`,
then the platform's ``kubernetes-secrets`` DR component is measured (test bed + Azurite)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from controlplane.app import build_runtime
from controlplane.backups import catalog
from controlplane.backups.config import DrConfig
from controlplane.config import ControlPlaneConfig
from controlplane.dr.component import BackupsComponent
from controlplane.dr.tracker import evaluate
from controlplane.k8s.testbed import KubeCluster
from controlplane.results import Status, utcnow
from controlplane.store import Store
from tests.backups.conftest import AgeKey
from tests.backups.k8s_env import COMPONENT, make_secrets_env
from tests.backups.kafka_env import stores
from tests.k8s.objects import Admin
from tests.services.azurite import Azurite
from tests.services.common import run_cli

__all__ = ["stores"]

RECIPIENT = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"


@pytest.mark.kube
@pytest.mark.azurite
def test_cli_backup_and_drill_give_the_dr_component_a_measured_rpo_and_rto(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kube_cluster: KubeCluster,
        stores: list[Store]) -> None:
    env = make_secrets_env(tmp_path, age_key, azurite, kube_cluster, stores)
    cfg = env.config_file()
    before = evaluate(env.store, DrConfig())
    assert [(c.rpo_s, c.rto_s) for c in before if c.component == COMPONENT] == [(None, None)]

    backup = run_cli("backup", "run", COMPONENT, "--config", cfg, timeout=300)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert re.fullmatch(r"OK  backup-kubernetes-secrets  backup kubernetes-secrets-production-"
                        r"\d{8}T\d{9}Z complete: \d+ bytes in \d+\.\ds, 2 secrets from 1 "
                        r"namespace\(s\)", backup.stdout.splitlines()[0])
    assert "  secrets = 2.0" in backup.stdout.splitlines()
    assert "pw-7" not in backup.stdout + backup.stderr
    assert backup.stderr.splitlines()[-1].startswith("upload ")  # progress on stderr
    drill = run_cli("drill", "run", COMPONENT, "--config", cfg, timeout=300)
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert re.search(r"passed: kubernetes-secrets-production-\d{8}T\d{9}Z restored into "
                     r"controlplane-drill-[0-9a-f]{8} \(2 secrets, every value compared\)",
                     drill.stdout), drill.stdout

    with env.store.session() as s:
        (row,) = catalog.backups(s, COMPONENT)
        (d,) = catalog.drills(s, COMPONENT)
        assert (row.status, d.status, d.backup_id) == ("complete", "passed", row.id)
        started = catalog.aware(row.started_at)
    # Deleted (without a namespace controller in this cluster it stays Terminating).
    scratch = Admin(kube_cluster).core.read_namespace(d.scratch_db)
    assert scratch.metadata.deletion_timestamp is not None
    (status,) = [c for c in evaluate(env.store, DrConfig()) if c.component == COMPONENT]
    assert status.rto_s == d.duration_s and status.rto_s is not None and status.rto_s > 0
    assert status.rpo_s is not None and 0 < status.rpo_s <= (
        utcnow() - started + timedelta(seconds=1)).total_seconds()
    assert (status.rto_status, status.rpo_status) == ("met", "met")


@pytest.mark.kube
@pytest.mark.azurite
def test_retention_after_a_backup_prunes_the_older_secrets_backup_and_its_blobs(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kube_cluster: KubeCluster,
        stores: list[Store]) -> None:
    env = make_secrets_env(tmp_path, age_key, azurite, kube_cluster, stores,
                           retention={"keep_last": 1, "daily_days": 0, "weekly_weeks": 0})
    first = env.ops.run_backup(COMPONENT)
    second = env.ops.run_backup(COMPONENT)

    assert (first.status, second.status) == (Status.OK, Status.OK)
    with env.store.session() as s:
        rows = {r.id: r.status for r in catalog.backups(s, COMPONENT, limit=10)}
    assert rows == {str(first.details["backup_id"]): "pruned",
                    str(second.details["backup_id"]): "complete"}
    left = sorted(i.name for i in env.blob.list(f"{COMPONENT}/production/"))
    assert left == [f"{COMPONENT}/production/{second.details['backup_id']}{suffix}"
                    for suffix in (".json.age", ".manifest.json")]


def test_secrets_backups_and_drills_are_scheduled_by_cron(tmp_path: Path) -> None:
    cfg = ControlPlaneConfig.model_validate({
        "environments": {"production": {}},
        "store": {"dsn": f"sqlite:///{tmp_path / 'cp.db'}"},
        "blob": {"backend": "local", "path": str(tmp_path / "blobs")},
        "backups": {"components": {COMPONENT: {
            "kind": "kubernetes-secrets", "cluster": {"in_cluster": True},
            "namespaces": ["360voice-prod"], "recipients": [RECIPIENT],
            "schedule": "0 */6 * * *", "drill": {"schedule": "30 4 * * *"}}}}})
    rt = build_runtime(cfg)
    comp = rt.component("backups")
    assert isinstance(comp, BackupsComponent)
    comp.start()
    rt.scheduler.start()
    try:
        jobs = dict(comp.jobs())
        assert jobs.keys() == {f"run-backup-{COMPONENT}", f"run-drill-{COMPONENT}"}
        assert "hour='*/6', minute='0'" in jobs[f"run-backup-{COMPONENT}"]
        assert "hour='4', minute='30'" in jobs[f"run-drill-{COMPONENT}"]
    finally:
        rt.stop(0)


def test_drill_without_identity_file_fails_at_load_naming_the_setting(tmp_path: Path) -> None:
    from controlplane.backups.blob import LocalBlobStore
    from controlplane.backups.config import BackupsConfig
    from controlplane.dr.component import BackupOps
    from controlplane.metrics import Metrics
    from controlplane.pipeline import Pipeline

    backups = BackupsConfig.model_validate({"components": {COMPONENT: {
        "kind": "kubernetes-secrets", "cluster": {"in_cluster": True},
        "namespaces": ["360voice-prod"], "recipients": [RECIPIENT]}}})
    store = Store(f"sqlite:///{tmp_path / 'cp.db'}")
    try:
        ops = BackupOps(backups, DrConfig(), store, LocalBlobStore(str(tmp_path / "b")),
                        Pipeline(store, Metrics()))
        result = ops.run_drill(COMPONENT)
    finally:
        store.close()
    assert result.status == Status.FAILING
    assert result.message == ("drill of kubernetes-secrets failed at load: backups.components."
                              "kubernetes-secrets.identity_file is not set; drills need the "
                              "age private key to decrypt")

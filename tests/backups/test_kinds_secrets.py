"""The kubernetes-secrets backup kind end to end through the CLI: `backup run`, `drill run`,
then the platform's ``kubernetes-secrets`` DR component is measured (test bed + Azurite)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from controlplane.backups import catalog
from controlplane.backups.config import DrConfig
from controlplane.dr.tracker import evaluate
from controlplane.k8s.testbed import KubeCluster
from controlplane.results import utcnow
from controlplane.store import Store
from tests.backups.conftest import AgeKey
from tests.backups.k8s_env import COMPONENT, make_secrets_env
from tests.backups.kafka_env import stores
from tests.k8s.objects import Admin
from tests.services.azurite import Azurite
from tests.services.common import run_cli

__all__ = ["stores"]

pytestmark = [pytest.mark.kube, pytest.mark.azurite]


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
    assert "passed: 2 secrets restored and compared" in drill.stdout

    assert Admin(kube_cluster).core.list_namespaced_secret(env.drill).items == []
    with env.store.session() as s:
        (row,) = catalog.backups(s, COMPONENT)
        (d,) = catalog.drills(s, COMPONENT)
        assert (row.status, d.status, d.backup_id) == ("complete", "passed", row.id)
        started = catalog.aware(row.started_at)
    (status,) = [c for c in evaluate(env.store, DrConfig()) if c.component == COMPONENT]
    assert status.rto_s == d.duration_s and status.rto_s is not None and status.rto_s > 0
    assert status.rpo_s is not None and 0 < status.rpo_s <= (
        utcnow() - started + timedelta(seconds=1)).total_seconds()
    assert (status.rto_status, status.rpo_status) == ("met", "met")

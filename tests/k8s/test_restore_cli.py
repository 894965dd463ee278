"""`controlplane restore secrets` as an operator runs it, against the test-bed cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pyrage import x25519

from controlplane.backups.blob import LocalBlobStore
from controlplane.backups.k8s_secrets import SecretsBackup, SecretsBackupConfig
from controlplane.k8s.testbed import KubeCluster
from controlplane.results import Status
from controlplane.store import Store
from tests.k8s.objects import Admin, secret, wait_for
from tests.services.common import ROOT, run_cli
from tests.services.kube import grant, new_namespace, product_connection

pytestmark = pytest.mark.kube


class Setup:
    def __init__(self, cluster: KubeCluster, tmp: Path, secrets: int = 2,
                 component: str = "kubernetes-secrets") -> None:
        self.cluster, self.tmp = cluster, tmp
        self.admin = Admin(cluster)
        self.source = new_namespace(cluster, "prod")
        grant(cluster, self.source, "controlplane-secrets-read")
        for i in range(secrets):
            self.admin.apply(self.source, secret(f"app-{i:03d}-env", {"A": f"a{i}", "B": "b"}))
        ident = x25519.Identity.generate()
        self.key = tmp / "key.txt"
        self.key.write_text(f"{ident}\n")
        os.chmod(self.key, 0o600)
        self.config = tmp / "controlplane.yaml"
        conn = product_connection(cluster)
        self.config.write_text(
            "environments:\n  production:\n    hosts: {voice360: 360voice.techhalo.ai}\n"
            f"store:\n  dsn: sqlite:///{tmp}/cp.db\n"
            f"blob:\n  backend: local\n  path: {tmp}/blobs\ncheck_files: []\n"
            + ("" if component == "kubernetes-secrets" else
               f"backups:\n  components:\n    {component}:\n      kind: kubernetes-secrets\n"
               f"      cluster: {{api_server: '{conn.api_server}', token_file: "
               f"'{conn.token_file}', ca_file: '{conn.ca_file}'}}\n"
               f"      namespaces: [{self.source}]\n"
               f"      recipients: ['{ident.to_public()}']\n"))
        cfg = SecretsBackupConfig(cluster=conn, namespaces=[self.source],
                                  recipients=[str(ident.to_public())])
        store = Store(f"sqlite:///{tmp}/cp.db")
        result = SecretsBackup(cfg, store, LocalBlobStore(f"{tmp}/blobs"),
                               component=component).run()
        assert result.status == Status.OK, result.message
        self.backup_id = str(result.details["backup_id"])
        self.target = new_namespace(cluster, "restore")
        grant(cluster, self.target, "controlplane-secrets-restore")
        self.kubeconfig = cluster.kubeconfig("controlplane")

    def args(self, *extra: str) -> list[str]:
        return ["restore", "secrets", self.backup_id, "--namespace-map",
                f"{self.source}:{self.target}", "--identity", str(self.key), "--kubeconfig",
                self.kubeconfig, "--config", str(self.config), *extra]


def test_dry_run_then_apply_prints_the_same_plan(kube_cluster: KubeCluster,
                                                 tmp_path: Path) -> None:
    s = Setup(kube_cluster, tmp_path)
    s.admin.apply(s.target, secret("app-001-env", {"A": "changed", "B": "b"}))

    dry = run_cli(*s.args("--dry-run", "--overwrite"))
    applied = run_cli(*s.args("--overwrite", "--json"))
    after = run_cli(*s.args("--dry-run"))

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [f"create {s.target}/app-000-env",
                                       f"update {s.target}/app-001-env (keys: A)"]
    doc = json.loads(applied.stdout)
    assert [(a["action"], a["keys"]) for a in doc["actions"]] == [("done", []), ("done", ["A"])]
    assert after.stdout.splitlines() == [f"unchanged {s.target}/app-000-env",
                                         f"unchanged {s.target}/app-001-env"]


def test_only_and_missing_namespace(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    s = Setup(kube_cluster, tmp_path)

    only = run_cli(*s.args("--dry-run", "--only", f"{s.source}/app-001-env"))
    missing = run_cli("restore", "secrets", s.backup_id, "--namespace-map",
                      f"{s.source}:nowhere", "--identity", str(s.key), "--kubeconfig",
                      s.kubeconfig, "--config", str(s.config))

    assert only.stdout.splitlines() == [f"create {s.target}/app-001-env"]
    assert missing.returncode == 1
    assert missing.stdout.splitlines()[0] == ("error nowhere/app-000-env (namespace nowhere "
                                              "does not exist; use --create-namespace)")


def test_unknown_backup_is_refused(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    s = Setup(kube_cluster, tmp_path, secrets=1)
    s.backup_id = "kubernetes-secrets-production-19700101T000000000Z"
    out = run_cli(*s.args("--dry-run"))
    assert out.returncode == 2
    assert out.stderr == ("controlplane: no kubernetes-secrets backup "
                          "'kubernetes-secrets-production-19700101T000000000Z' in the catalog; "
                          "kubernetes-secrets components: kubernetes-secrets (see `controlplane "
                          "backup list NAME`)\n")


def test_backup_of_a_differently_named_component_is_found_and_unknown_ids_list_components(
        kube_cluster: KubeCluster, tmp_path: Path) -> None:
    s = Setup(kube_cluster, tmp_path, secrets=1, component="cluster-secrets")
    assert s.backup_id.startswith("cluster-secrets-production-")

    found = run_cli(*s.args("--dry-run", "--json"))
    s.backup_id = "cluster-secrets-production-19700101T000000000Z"
    unknown = run_cli(*s.args("--dry-run"))

    assert found.returncode == 0, found.stderr
    doc = json.loads(found.stdout)
    assert (doc["component"], [a["line"] for a in doc["actions"]]) == (
        "cluster-secrets", [f"create {s.target}/app-000-env"])
    assert unknown.returncode == 2
    assert unknown.stderr == ("controlplane: no kubernetes-secrets backup "
                              "'cluster-secrets-production-19700101T000000000Z' in the catalog; "
                              "kubernetes-secrets components: cluster-secrets (see "
                              "`controlplane backup list NAME`)\n")


def test_apply_is_recorded_per_secret_and_a_dry_run_records_nothing(
        kube_cluster: KubeCluster, tmp_path: Path) -> None:
    s = Setup(kube_cluster, tmp_path, secrets=3)
    s.admin.apply(s.target, secret("app-001-env", {"A": "changed", "B": "b"}),
                  secret("app-002-env", {"A": "a2", "B": "b"}))
    history = ["restore", "history", "--config", str(s.config)]

    dry = run_cli(*s.args("--dry-run", "--overwrite"))
    after_dry = run_cli(*history, "--json")
    applied = run_cli(*s.args("--overwrite"))
    listed = run_cli(*history)
    doc = json.loads(run_cli(*history, "--json", "--backup", s.backup_id).stdout)

    assert dry.returncode == 0 and json.loads(after_dry.stdout) == {"restores": []}
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines()[-1] == ("recorded as restore #1 (`controlplane restore "
                                               "history`)")
    (r,) = doc["restores"]
    assert (r["id"], r["backup_id"], r["component"], r["status"]) == (
        1, s.backup_id, "kubernetes-secrets", "applied")
    assert r["options"] == {"namespace_map": {s.source: s.target}, "only": [],
                            "overwrite": True, "create_namespace": False}
    assert [(a["target"], a["action"], a["keys"]) for a in r["actions"]] == [
        (f"{s.target}/app-000-env", "done", []), (f"{s.target}/app-001-env", "done", ["A"]),
        (f"{s.target}/app-002-env", "unchanged", [])]
    assert r["counts"] == {"done": 2, "unchanged": 1}
    assert r["cluster"] == kube_cluster.server
    lines = listed.stdout.splitlines()
    assert re.fullmatch(rf"#1 \S+ applied: {s.backup_id} \(kubernetes-secrets\) into "
                        rf"{re.escape(kube_cluster.server)} by \S+@\S+: 2 done, 1 unchanged",
                        lines[0]), lines[0]
    assert lines[1:] == [f"  done {s.target}/app-000-env from {s.source}/app-000-env",
                         f"  done {s.target}/app-001-env (keys: A) from {s.source}/app-001-env",
                         f"  unchanged {s.target}/app-002-env"]
    assert "changed" not in json.dumps(doc).replace("unchanged", "")  # no values


def test_kill_9_mid_restore_then_rerun_converges(kube_cluster: KubeCluster,
                                                 tmp_path: Path) -> None:
    s = Setup(kube_cluster, tmp_path, secrets=300)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "controlplane", *s.args()], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(s.admin.core.list_namespaced_secret(s.target).items) >= 20, 60,
             "the restore to be under way")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    half = len(s.admin.core.list_namespaced_secret(s.target).items)

    rerun = run_cli(*s.args("--json"))

    verbs = [a["action"] for a in json.loads(rerun.stdout)["actions"]]
    assert 20 <= half < 300
    assert rerun.returncode == 0, rerun.stderr
    assert (verbs.count("unchanged"), verbs.count("done")) == (half, 300 - half)
    assert len(s.admin.core.list_namespaced_secret(s.target).items) == 300

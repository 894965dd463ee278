"""Kubernetes actions and the secrets-restore runbook on the test-bed cluster, as the
least-privileged product user (deploy/rbac/controlplane-rbac.yaml)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyrage import x25519

from controlplane.backups.k8s_secrets import SecretsBackup, SecretsBackupConfig
from controlplane.k8s.testbed import KubeCluster
from controlplane.runbooks import runs
from controlplane.runbooks.base import Services
from controlplane.runbooks.plan import plan
from tests.k8s.objects import Admin, secret
from tests.runbooks.conftest import MakeSite, Site
from tests.services.kube import PRODUCT_USER, grant, new_namespace, product_connection

pytestmark = pytest.mark.kube

ROOT = Path(__file__).resolve().parents[2]
VALUES = {"DATABASE_URL": "postgresql://app:pw-9f2@db/app", "TWILIO_TOKEN": "tw-0123456789"}


def _runbook(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "runbooks" / f"{name}.yaml").read_text())
    return doc


def _cluster_check(cluster: KubeCluster, ns: str) -> dict[str, Any]:
    conn = product_connection(cluster).model_dump(exclude_none=True)
    return {"id": "kw", "kind": "k8s_workload", "cluster": conn, "namespace": ns,
            "enabled": False}


def test_secrets_restore_plans_asks_applies_and_verifies_hashes(
        make_site: MakeSite, kube_cluster: KubeCluster, tmp_path: Path) -> None:
    ns = new_namespace(kube_cluster, "prod")
    grant(kube_cluster, ns, "controlplane-secrets-read")
    grant(kube_cluster, ns, "controlplane-secrets-restore")
    admin = Admin(kube_cluster)
    admin.apply(ns, secret("voice360-env", VALUES, labels={"app": "voice360"}),
                secret("halo-task-manager-api-env", {"JWT_KEY": "k-1"}))
    ident = x25519.Identity.generate()
    key = tmp_path / "key.txt"
    key.write_text(f"{ident}\n")
    os.chmod(key, 0o600)
    site = make_site([_runbook("secrets-restore")],
                     extra={"blob": {"backend": "local", "path": str(tmp_path / "blobs")}},
                     checks=[_cluster_check(kube_cluster, ns)])
    cfg = SecretsBackupConfig(cluster=product_connection(kube_cluster), namespaces=[ns],
                              recipients=[str(ident.to_public())], identity_file=str(key))
    result = SecretsBackup(cfg, site.runtime.store, Services(site.runtime).backup_ops().blob).run()
    assert result.status.value == "ok", result.message
    backup_id = str(result.details["backup_id"])
    admin.core.delete_namespaced_secret("voice360-env", ns)  # lost
    params = {"backup_id": backup_id, "cluster_check": "kw", "identity_file": str(key)}

    lines = plan(site.runtime, site.config.runbook("secrets-restore"), params)
    assert f"       create {ns}/voice360-env" in lines
    assert f"       unchanged {ns}/halo-task-manager-api-env" in lines

    run_id = site.start("secrets-restore", params)
    run = site.wait(run_id, ("waiting_approval", "failed"), timeout=60)
    assert run["status"] == "waiting_approval", run
    assert run["steps"][0]["outputs"]["actions"] == [f"unchanged {ns}/halo-task-manager-api-env",
                                                     f"create {ns}/voice360-env"]
    names = [x.metadata.name for x in admin.core.list_namespaced_secret(ns).items]
    assert "voice360-env" not in names  # the plan wrote nothing
    runs.decide(site.runtime.store, run_id, True, "dr-lead", "api")
    run = site.wait(run_id, timeout=60)
    assert run["status"] == "succeeded", run
    assert run["steps"][2]["message"] == (f"1 of 2 Secrets written from {backup_id}; every "
                                          "value's sha256 matches the manifest")
    got = admin.core.read_namespaced_secret("voice360-env", ns)
    assert sorted(got.data) == ["DATABASE_URL", "TWILIO_TOKEN"]
    assert "pw-9f2" not in str(run) and "tw-0123" not in str(run)


def grant_operate(cluster: KubeCluster, ns: str) -> None:
    """Bind the repo's controlplane-runbooks-operate role in ``ns``; wait until it holds."""
    from kubernetes import client

    rbac: Any = client.RbacAuthorizationV1Api(cluster.api_client())
    rbac.create_namespaced_role_binding(ns, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "operate", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "controlplane-runbooks-operate"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": PRODUCT_USER}]})
    authz: Any = client.AuthorizationV1Api(cluster.api_client())
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": PRODUCT_USER, "groups": ["system:authenticated"],
                       "resourceAttributes": {"namespace": ns, "verb": "patch", "group": "apps",
                                              "resource": "deployments",
                                              "subresource": "scale"}}}
    deadline = time.monotonic() + 30
    while not authz.create_subject_access_review(review).status.allowed:
        assert time.monotonic() < deadline, "the operate role never took effect"
        time.sleep(0.05)


def _site_for_deployment(make_site: MakeSite, cluster: KubeCluster, ns: str) -> Site:
    steps = [
        {"id": "scale", "action": "k8s.scale", "args": {
            "cluster_check": "kw", "namespace": ns, "deployment": "api", "replicas": 3}},
        {"id": "restart", "action": "k8s.rollout_restart", "args": {
            "cluster_check": "kw", "namespace": ns, "deployment": "api"}},
        {"id": "status", "action": "k8s.rollout_status", "args": {
            "cluster_check": "kw", "namespace": ns, "deployment": "api", "deadline": "90s"}},
    ]
    return make_site([{"id": "roll", "title": "Roll", "owner": "ops", "steps": steps}],
                     checks=[_cluster_check(cluster, ns)])


def test_scale_restart_and_wait_for_the_rollout(make_site: MakeSite,
                                                kube_workers: KubeCluster) -> None:
    from tests.k8s.objects import container, deployment

    ns = new_namespace(kube_workers, "roll")
    grant_operate(kube_workers, ns)
    admin = Admin(kube_workers)
    admin.apply(ns, deployment("api", [container("api", "voice360:1")], replicas=1))
    admin.wait_ready(ns, "api", 1)
    site = _site_for_deployment(make_site, kube_workers, ns)
    lines = plan(site.runtime, site.config.runbook("roll"), {})
    assert f"     scale deployment {ns}/api from 1 to 3 replicas" in lines
    run = site.wait(site.start("roll"), timeout=120)
    assert run["status"] == "succeeded", run
    assert run["steps"][0]["outputs"] == {"previous_replicas": 1, "replicas": 3}
    assert run["steps"][2]["message"].startswith(f"{ns}/api: 3 of 3 replicas updated and "
                                                 "available after ")
    d = admin.apps.read_namespaced_deployment("api", ns)
    assert "kubectl.kubernetes.io/restartedAt" in d.spec.template.metadata.annotations
    admin.wait_ready(ns, "api", 3)


def test_without_the_rbac_verb_the_step_fails_naming_it(make_site: MakeSite,
                                                        kube_cluster: KubeCluster) -> None:
    from tests.k8s.objects import container, deployment

    ns = new_namespace(kube_cluster, "norbac")
    grant(kube_cluster, ns, "controlplane-secrets-read")  # no deployments rights
    Admin(kube_cluster).apply(ns, deployment("api", [container("api", "voice360:1")]))
    site = _site_for_deployment(make_site, kube_cluster, ns)
    run = site.wait(site.start("roll"), timeout=60)
    assert run["status"] == "failed"
    assert "deployments" in run["message"] and "rbac" in run["message"].lower(), run["message"]


def _bind_cluster_wide(cluster: KubeCluster, role: str) -> None:
    from kubernetes import client

    rbac: Any = client.RbacAuthorizationV1Api(cluster.api_client())
    rbac.create_cluster_role_binding({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{role}-{time.time_ns()}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": PRODUCT_USER}]})
    authz: Any = client.AuthorizationV1Api(cluster.api_client())
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": PRODUCT_USER, "groups": ["system:authenticated"],
                       "resourceAttributes": {"verb": "create", "resource": "namespaces"}}}
    deadline = time.monotonic() + 30
    while not authz.create_subject_access_review(review).status.allowed:
        assert time.monotonic() < deadline, f"{role} never took effect"
        time.sleep(0.05)


def test_cluster_rebuild_from_nothing_is_measured(make_site: MakeSite,
                                                 kube_workers: KubeCluster,
                                                 tmp_path: Path) -> None:
    from controlplane.dr import tracker
    from controlplane.k8s.seed import SECRETS
    from controlplane.manifest import store as manifests

    source = new_namespace(kube_workers, "prod")
    grant(kube_workers, source, "controlplane-secrets-read")
    admin = Admin(kube_workers)
    admin.apply(source, *(secret(name, data) for name, data in SECRETS.items()))
    ident = x25519.Identity.generate()
    key = tmp_path / "key.txt"
    key.write_text(f"{ident}\n")
    os.chmod(key, 0o600)
    shutil.copytree(ROOT / "deploy" / "platform", tmp_path / "deploy" / "platform")
    site = make_site([_runbook("cluster-rebuild")],
                     extra={"blob": {"backend": "local", "path": str(tmp_path / "blobs")}},
                     checks=[_cluster_check(kube_workers, source)])
    cfg = SecretsBackupConfig(cluster=product_connection(kube_workers), namespaces=[source],
                              recipients=[str(ident.to_public())], identity_file=str(key))
    blob = Services(site.runtime).backup_ops().blob
    assert SecretsBackup(cfg, site.runtime.store, blob).run().status.value == "ok"
    images = {"voice360": "acr.example/voice360:0.1.31-r141",
              "bic-agent": "acr.example/bic-agent:0.1.27-r121",
              "halo-task-manager-api": "acr.example/halo-task-manager-api:1.4.0-r55"}
    manifests.record(site.runtime.store, "production",
                     {n: {"image": i} for n, i in images.items()})
    _bind_cluster_wide(kube_workers, "controlplane-rebuild")
    target = f"rebuilt-{time.time_ns() % 10**8}"

    run = site.wait(site.start("cluster-rebuild", {
        "namespace": target, "source_namespace": source, "cluster_check": "kw",
        "identity_file": str(key)}), timeout=600)
    assert run["status"] == "succeeded", (run["message"], [x["message"] for x in run["steps"]])
    assert [s["status"] for s in run["steps"]] == ["succeeded"] * 6
    for name, image in images.items():
        d = admin.apps.read_namespaced_deployment(name, target)
        assert d.spec.template.spec.containers[0].image == image
        assert (d.status.ready_replicas or 0) == d.spec.replicas
    names = {x.metadata.name for x in admin.core.list_namespaced_secret(target).items}
    assert set(SECRETS) <= names
    rt = site.runtime
    (cs,) = [c for c in tracker.evaluate(rt.store, rt.config.dr)
             if c.component == "cluster-rebuild"]
    assert cs.rto_s == run["duration_s"] and cs.rto_s < 600 and cs.rto_status == "met"

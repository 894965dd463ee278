"""The Secrets drill on the test-bed cluster, as the least-privileged product user: a scratch
namespace of its own, every value's hash compared, the namespace gone afterwards."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from pyrage import x25519

from controlplane.backups import catalog
from controlplane.backups.base import kind_of
from controlplane.backups.blob import LocalBlobStore
from controlplane.backups.config import BackupsConfig
from controlplane.k8s.testbed import KubeCluster
from controlplane.results import Result, Status
from controlplane.store import Store
from tests.k8s.objects import Admin, secret, wait_for
from tests.services.kube import enable_drills, grant, new_namespace, product_connection

pytestmark = pytest.mark.kube

SCRATCH = re.compile(r"controlplane-drill-[0-9a-f]{8}")


class Bed:
    """A source namespace with two Secrets, a backup of it under component ``name``."""

    def __init__(self, cluster: KubeCluster, tmp: Path, name: str = "cluster-secrets",
                 user: str = "controlplane") -> None:
        self.cluster, self.name = cluster, name
        self.admin = Admin(cluster)
        self.source = new_namespace(cluster, "prod")
        grant(cluster, self.source, "controlplane-secrets-read")
        self.admin.apply(self.source,
                         secret("voice360-env", {"DATABASE_URL": "postgresql://a:pw-7@db/a",
                                                 "TWILIO_TOKEN": "tw-42"}),
                         secret("halo-task-manager-api-env", {"JWT_KEY": "k-1"}))
        ident = x25519.Identity.generate()
        key = tmp / "key.txt"
        key.write_text(f"{ident}\n")
        os.chmod(key, 0o600)
        conn = product_connection(cluster)
        reader = {"api_server": conn.api_server, "token_file": conn.token_file,
                  "ca_file": conn.ca_file}
        self.backups = BackupsConfig.model_validate({"components": {name: {
            "kind": "kubernetes-secrets", "cluster": reader, "namespaces": [self.source],
            "recipients": [str(ident.to_public())], "identity_file": str(key)}}})
        self.store = Store(f"sqlite:///{tmp}/cp.db")
        self.blob = LocalBlobStore(str(tmp / "blobs"))
        outcome = kind_of("kubernetes-secrets").job(name, self.backups, self.store,
                                                    self.blob).run()
        assert outcome.result.status == Status.OK, outcome.result.message
        self.backup_id = outcome.backup_id
        if user != "controlplane":  # the drill runs with another user's token
            drill_conn = product_connection(cluster, user)
            self.backups.components[name].cluster = drill_conn

    def drill(self) -> Result:
        outcome = kind_of("kubernetes-secrets").drill(self.name, self.backups, self.store,
                                                      self.blob, on_demand=True).run()
        return outcome.result

    def namespace_gone(self, name: str) -> bool:
        return name not in {n.metadata.name for n in self.admin.core.list_namespace().items}

    def drill_namespaces(self) -> list[str]:
        return [n.metadata.name for n in self.admin.core.list_namespace().items
                if SCRATCH.fullmatch(n.metadata.name)
                and n.metadata.deletion_timestamp is None]


@pytest.fixture
def drills(kube_workers: KubeCluster) -> KubeCluster:
    """The session cluster with its namespace controller (deleted namespaces really go) and
    the product bound to deploy/rbac's drill role under its admission policy."""
    enable_drills(kube_workers)
    return kube_workers


def test_drill_restores_into_its_own_namespace_compares_and_deletes_it(
        drills: KubeCluster, tmp_path: Path) -> None:
    bed = Bed(drills, tmp_path)

    result = bed.drill()

    assert result.status == Status.OK, result.message
    ns = str(result.details["namespace"])
    assert SCRATCH.fullmatch(ns), ns
    assert [s.name for s in result.steps] == ["pick", "load", "create-namespace", "restore",
                                              "compare", "delete-namespace"]
    assert result.message.startswith(f"drill of cluster-secrets passed: {bed.backup_id} "
                                     f"restored into {ns} (2 secrets, every value compared) "
                                     "in ")
    assert result.steps[4].message == "3 values match"
    assert result.steps[5].message == f"{ns} deleted with its Secrets"
    wait_for(lambda: bed.namespace_gone(ns), 60, f"namespace {ns} to go")
    with bed.store.session() as s:
        (row,) = catalog.drills(s, "cluster-secrets")
        assert (row.status, row.backup_id, row.scratch_db) == ("passed", bed.backup_id, ns)
        assert row.duration_s == result.duration_s and row.duration_s > 0
        assert row.restore_s is not None and 0 < row.restore_s < row.duration_s
        verified = catalog.latest_complete(s, "cluster-secrets", verified=True)
        assert verified is not None and verified.id == bed.backup_id


def test_two_drills_use_two_namespaces(drills: KubeCluster, tmp_path: Path) -> None:
    bed = Bed(drills, tmp_path)
    first, second = bed.drill(), bed.drill()
    assert (first.status, second.status) == (Status.OK, Status.OK)
    assert first.details["namespace"] != second.details["namespace"]


def _tamper_policy(prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A MutatingAdmissionPolicy that changes JWT_KEY of Secrets whose name starts with
    ``prefix`` as they are created: the restore then writes what the manifest does not say."""
    name = f"tamper-{secrets.token_hex(3)}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1beta1", "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"matchConstraints": {"resourceRules": [{
            "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
            "resources": ["secrets"]}]},
            "matchConditions": [{"name": "restored-from-the-test-namespace",
                                 "expression": f"object.metadata.name.startsWith('{prefix}')"}],
            "failurePolicy": "Fail", "reinvocationPolicy": "Never",
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": (
                "has(object.data) && 'JWT_KEY' in object.data ? [JSONPatch{op: 'replace', "
                "path: '/data/JWT_KEY', value: 'dGFtcGVyZWQ='}] : []")}}]}}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1beta1",
               "kind": "MutatingAdmissionPolicyBinding", "metadata": {"name": name},
               "spec": {"policyName": name}}
    return policy, binding


def test_drill_whose_restored_values_differ_fails_at_compare_and_still_deletes_the_namespace(
        drills: KubeCluster, tmp_path: Path) -> None:
    from kubernetes import client

    bed = Bed(drills, tmp_path)
    policy, binding = _tamper_policy(f"{bed.source}.")
    custom: Any = client.CustomObjectsApi(drills.api_client())
    group, version = "admissionregistration.k8s.io", "v1beta1"
    custom.create_cluster_custom_object(group, version, "mutatingadmissionpolicies", policy)
    custom.create_cluster_custom_object(group, version, "mutatingadmissionpolicybindings",
                                        binding)
    probe_ns = new_namespace(drills, "probe")

    def tampering() -> bool:
        name = f"{bed.source}.probe-{secrets.token_hex(3)}"
        bed.admin.apply(probe_ns, secret(name, {"JWT_KEY": "k-1"}))
        got = bed.admin.core.read_namespaced_secret(name, probe_ns).data["JWT_KEY"]
        return bool(got == "dGFtcGVyZWQ=")

    try:
        wait_for(tampering, 60, "the tampering policy to take effect")
        result = bed.drill()
    finally:
        custom.delete_cluster_custom_object(group, version, "mutatingadmissionpolicybindings",
                                            binding["metadata"]["name"])
        custom.delete_cluster_custom_object(group, version, "mutatingadmissionpolicies",
                                            policy["metadata"]["name"])

    ns = str(result.details["namespace"])
    assert result.status == Status.FAILING
    assert result.message == (f"drill of cluster-secrets failed at compare: values differ "
                              f"from the manifest: {bed.source}/halo-task-manager-api-env")
    assert [(s.name, s.status) for s in result.steps][-2:] == [
        ("compare", Status.FAILING), ("delete-namespace", Status.OK)]
    wait_for(lambda: bed.namespace_gone(ns), 60, f"namespace {ns} to go")
    with bed.store.session() as s:
        (row,) = catalog.drills(s, "cluster-secrets")
        assert (row.status, row.failed_step) == ("failed", "compare")
        assert catalog.latest_complete(s, "cluster-secrets", verified=True) is None


def test_drill_without_the_drill_role_fails_at_create_namespace_and_leaves_nothing(
        drills: KubeCluster, tmp_path: Path) -> None:
    bed = Bed(drills, tmp_path, user="outsider")
    before = bed.drill_namespaces()

    result = bed.drill()

    assert result.status == Status.FAILING
    assert result.message == ("drill of cluster-secrets failed at create-namespace: 403 "
                              "Forbidden: the control plane may not list namespaces "
                              "cluster-wide; grant it in deploy/rbac/controlplane-rbac.yaml")
    assert [s.name for s in result.steps] == ["pick", "load", "create-namespace"]
    assert bed.drill_namespaces() == before


def test_drill_deletes_the_namespace_a_killed_drill_left_but_not_a_running_drills(
        drills: KubeCluster, tmp_path: Path) -> None:
    from controlplane.backups.catalog import DrillRow
    from controlplane.results import utcnow

    bed = Bed(drills, tmp_path)
    with bed.store.session() as s:
        alive = DrillRow(component="cluster-secrets", status=catalog.RUNNING,
                         started_at=utcnow(), scratch_db="controlplane-drill-a11ve000")
        s.add(alive)
        s.flush()
        alive_id = alive.id
    labels = {"app.kubernetes.io/managed-by": "controlplane",
              "controlplane.360voice.io/drill-component": "cluster-secrets"}
    killed, running = (f"controlplane-drill-{secrets.token_hex(4)}" for _ in range(2))
    for name, drill_id in ((killed, "999999"), (running, str(alive_id))):
        bed.admin.core.create_namespace({"metadata": {"name": name, "labels": {
            **labels, "controlplane.360voice.io/drill": drill_id}}})

    result = bed.drill()

    assert result.status == Status.OK, result.message
    assert result.steps[2].message == (f"{result.details['namespace']} (deleted what killed "
                                       f"drills left: {killed})")
    wait_for(lambda: bed.namespace_gone(killed), 60, f"namespace {killed} to go")
    assert bed.admin.core.read_namespace(running).metadata.deletion_timestamp is None


def test_drill_binds_the_restore_role_its_config_names(drills: KubeCluster,
                                                        tmp_path: Path) -> None:
    """The chart names its restore role after the release: the drill binds the configured
    one, and a role the product may not bind is refused and the namespace still goes."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(drills.api_client())
    role = f"cp-{secrets.token_hex(3)}-drill-restore"
    rbac.create_cluster_role({"metadata": {"name": role}, "rules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create"]}]})
    bed = Bed(drills, tmp_path)
    bed.backups.components[bed.name].drill.restore_role = role

    result = bed.drill()

    assert result.status == Status.FAILING
    assert [s.name for s in result.steps][-2:] == ["create-namespace", "delete-namespace"]
    message = result.steps[-2].message
    assert message.startswith(f"403 Forbidden while trying to bind {role} in namespace "), \
        message
    ns = str(result.details["namespace"])
    wait_for(lambda: bed.namespace_gone(ns), 60, f"namespace {ns} to go")

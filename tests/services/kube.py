"""The Kubernetes test bed (controlplane/k8s/testbed.py) as pytest fixtures.

One cluster per session: kine + kube-apiserver on loopback; tests that need pods ask for
``kube_workers`` (controller-manager, scheduler, kwok with three fake nodes in zones 1-3).
The product runs as the static-token user ``controlplane`` bound to exactly the rules of
deploy/rbac/controlplane-rbac.yaml, so a permission missing there fails a test.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from controlplane.k8s.client import ClusterConnection
from controlplane.k8s.testbed import SETUP_HINT, KubeCluster, missing_binaries
from tests.services.common import ROOT

RBAC_FILE = ROOT / "deploy" / "rbac" / "controlplane-rbac.yaml"
PRODUCT_USER = "controlplane"


def rbac_documents() -> list[dict[str, Any]]:
    with open(RBAC_FILE) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def cluster_roles() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rbac_documents() if d["kind"] == "ClusterRole"}


def drill_policy_documents() -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy (and its binding) that holds drills to their prefix."""
    return [d for d in rbac_documents()
            if d["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")]


DRILL_ROLE = "controlplane-drill-namespaces"


def enable_drills(cluster: KubeCluster, user: str = PRODUCT_USER) -> None:
    """The repo's drill role bound cluster-wide to ``user`` and the repo's admission policy
    in force (idempotent), as deploy/rbac ships them; returns once the policy refuses a
    namespace outside the drill prefix."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = cluster.api_client()
    rbac: Any = client.RbacAuthorizationV1Api(api)
    reg: Any = client.AdmissionregistrationV1Api(api)
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": f"{DRILL_ROLE}-{user}"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": DRILL_ROLE},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                             "name": user}]}
    calls = [(rbac.create_cluster_role_binding, binding)] + [
        (reg.create_validating_admission_policy if d["kind"] == "ValidatingAdmissionPolicy"
         else reg.create_validating_admission_policy_binding, d)
        for d in drill_policy_documents()]
    for create, doc in calls:
        try:
            create(doc)
        except ApiException as exc:
            if exc.status != 409:
                raise
    _wait_policy(cluster, user)


def _wait_policy(cluster: KubeCluster, user: str) -> None:
    """Both the binding (RBAC informer) and the policy (admission informer) arrive late."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    mine: Any = client.CoreV1Api(cluster.api_client(user))
    admin: Any = client.CoreV1Api(cluster.api_client())
    deadline = time.monotonic() + 60
    while True:
        name = f"not-a-drill-{secrets.token_hex(3)}"
        try:
            mine.create_namespace({"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status == 403 and "ValidatingAdmissionPolicy" in str(exc.body):
                return
        else:
            admin.delete_namespace(name)
        if time.monotonic() > deadline:
            raise AssertionError(f"the drill policy never held {user} to its prefix")
        time.sleep(0.2)


def start_cluster(workdir: str) -> KubeCluster:
    missing = missing_binaries()
    if missing:
        pytest.fail(f"Kubernetes test-bed binaries missing ({', '.join(missing)}): {SETUP_HINT}",
                    pytrace=False)
    cluster = KubeCluster(workdir).start()
    _apply_cluster_roles(cluster)
    return cluster


def _apply_cluster_roles(cluster: KubeCluster) -> None:
    """The repo's ClusterRoles as they are, and the workloads role bound cluster-wide to the
    product's user (the repo binds a ServiceAccount; the test bed has static users)."""
    from kubernetes import client

    rbac: Any = client.RbacAuthorizationV1Api(cluster.api_client())
    for doc in cluster_roles().values():
        rbac.create_cluster_role(doc)
    rbac.create_cluster_role_binding({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "controlplane-workloads-read"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "controlplane-workloads-read"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": PRODUCT_USER}]})


def grant(cluster: KubeCluster, namespace: str, role: str) -> None:
    """Bind the repo's ClusterRole ``role`` (e.g. controlplane-secrets-read) to the product's
    user in ``namespace`` only, as the repo's RoleBindings do, and wait until it holds."""
    from kubernetes import client

    rbac: Any = client.RbacAuthorizationV1Api(cluster.api_client())
    rbac.create_namespaced_role_binding(namespace, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": role, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": PRODUCT_USER}]})
    verb = cluster_roles()[role]["rules"][0]["verbs"][-1]
    _wait_allowed(cluster, namespace, verb, "secrets")


def _wait_allowed(cluster: KubeCluster, namespace: str, verb: str, resource: str) -> None:
    """RBAC changes reach the authorizer through an informer: poll SubjectAccessReview."""
    from kubernetes import client

    authz: Any = client.AuthorizationV1Api(cluster.api_client())
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": PRODUCT_USER, "groups": ["system:authenticated"],
                       "resourceAttributes": {"namespace": namespace, "verb": verb,
                                              "resource": resource}}}
    deadline = time.monotonic() + 30
    while not authz.create_subject_access_review(review).status.allowed:
        if time.monotonic() > deadline:
            raise AssertionError(f"{PRODUCT_USER} still may not {verb} {resource} in {namespace}")
        time.sleep(0.05)


def new_namespace(cluster: KubeCluster, prefix: str = "t") -> str:
    from kubernetes import client

    name = f"{prefix}-{secrets.token_hex(4)}"
    core: Any = client.CoreV1Api(cluster.api_client())
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def product_connection(cluster: KubeCluster, user: str = PRODUCT_USER) -> ClusterConnection:
    """How the product reaches the test bed: API server URL + token file + CA."""
    return ClusterConnection(api_server=cluster.server, token_file=cluster.token_file(user),
                             ca_file=cluster.ca_file)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    """kine + kube-apiserver for the whole session (no nodes, no controllers)."""
    cluster = start_cluster(tempfile.mkdtemp(prefix="cp-kube-"))
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def kube_workers(kube_cluster: KubeCluster) -> KubeCluster:
    """The session cluster with controller-manager, scheduler and three kwok nodes."""
    kube_cluster.start_workers()
    return kube_cluster


@pytest.fixture
def kube_ns(kube_cluster: KubeCluster) -> str:
    """A fresh namespace for one test (left behind: without controllers it would only
    sit in Terminating; the session's cluster is thrown away at the end)."""
    return new_namespace(kube_cluster)


@pytest.fixture
def kube_grant(kube_cluster: KubeCluster) -> Callable[[str, str], None]:
    return lambda namespace, role: grant(kube_cluster, namespace, role)


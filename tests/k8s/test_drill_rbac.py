"""deploy/rbac's drill role and its ValidatingAdmissionPolicy, applied as shipped: the
product's token may create and delete ``controlplane-drill-*`` namespaces and bind the
restore role inside them, and nothing else of the kind; an admin is never restricted."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controlplane.k8s.testbed import KubeCluster
from tests.services.kube import PRODUCT_USER, enable_drills, new_namespace

pytestmark = pytest.mark.kube


def _binding(namespace: str, role: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": role, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": PRODUCT_USER}]}


def _refusal(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(ApiException) as info:
        call(*args)
    import json

    return int(info.value.status), str(json.loads(info.value.body)["message"])


@pytest.fixture
def product(kube_cluster: KubeCluster) -> tuple[Any, Any]:
    enable_drills(kube_cluster)
    api = kube_cluster.api_client(PRODUCT_USER)
    return client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)


def test_product_creates_binds_in_and_deletes_a_drill_namespace(
        kube_cluster: KubeCluster, product: tuple[Any, Any]) -> None:
    core, rbac = product
    name = f"controlplane-drill-{secrets.token_hex(4)}"

    core.create_namespace({"metadata": {"name": name}})
    rbac.create_namespaced_role_binding(name, _binding(name, "controlplane-secrets-restore"))
    core.delete_namespace(name)

    admin: Any = client.CoreV1Api(kube_cluster.api_client())
    assert admin.read_namespace(name).metadata.deletion_timestamp is not None


def test_product_may_not_create_or_delete_other_namespaces(
        kube_cluster: KubeCluster, product: tuple[Any, Any]) -> None:
    core, _ = product
    other = f"prod-{secrets.token_hex(4)}"
    existing = new_namespace(kube_cluster, "keep")

    created = _refusal(core.create_namespace, {"metadata": {"name": other}})
    deleted = _refusal(core.delete_namespace, existing)

    policy = ("ValidatingAdmissionPolicy 'controlplane-drill-namespaces' with binding "
              "'controlplane-drill-namespaces' denied request: ")
    assert created == (403, f"namespaces \"{other}\" is forbidden: {policy}the control plane "
                            "may only create and delete drill namespaces "
                            f"(controlplane-drill-*), not {other}")
    assert deleted == (403, f"namespaces \"{existing}\" is forbidden: {policy}the control "
                            "plane may only create and delete drill namespaces "
                            f"(controlplane-drill-*), not {existing}")
    admin: Any = client.CoreV1Api(kube_cluster.api_client())
    assert admin.read_namespace(existing).metadata.deletion_timestamp is None


def test_product_may_bind_only_the_restore_role_and_only_in_drill_namespaces(
        kube_cluster: KubeCluster, product: tuple[Any, Any]) -> None:
    core, rbac = product
    drill = f"controlplane-drill-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": drill}})
    other = new_namespace(kube_cluster, "prod")

    elsewhere = _refusal(rbac.create_namespaced_role_binding, other,
                         _binding(other, "controlplane-secrets-restore"))
    wider = _refusal(rbac.create_namespaced_role_binding, drill,
                     _binding(drill, "controlplane-rebuild"))

    assert elsewhere[0] == 403
    assert elsewhere[1].endswith("the control plane may only bind controlplane-secrets-restore "
                                 f"in drill namespaces (controlplane-drill-*), not in {other}")
    # RBAC itself stops this one: no `bind` on any other role (escalation check).
    assert wider[0] == 403 and "attempting to grant RBAC permissions not currently held" in \
        wider[1], wider


def test_admin_is_not_restricted_by_the_drill_policy(kube_cluster: KubeCluster,
                                                     product: tuple[Any, Any]) -> None:
    name = new_namespace(kube_cluster, "anything")
    admin: Any = client.CoreV1Api(kube_cluster.api_client())
    admin.delete_namespace(name)
    assert admin.read_namespace(name).metadata.deletion_timestamp is not None

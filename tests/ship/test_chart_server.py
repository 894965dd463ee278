"""The Helm chart accepted by a real API server: every object rendered from the default values
and the three other value sets is created with ``dry_run="All"`` on the test-bed
kube-apiserver (server-side validation, defaulting and admission, nothing stored)."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.k8s.testbed import KubeCluster
from tests.services.kube import new_namespace
from tests.ship.test_chart import VALUE_SETS, render

pytestmark = pytest.mark.kube

CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
"""prometheus-operator's custom resources: the test bed has no prometheus-operator, so the
API server has no such kinds to validate them against (tests/ship/test_chart.py and
test_alerts.py check their content; promtool checks the rules)."""


def ensure_namespace(core: Any, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:  # already there (another value set made it)
            raise


def dry_run(dyn: Any, doc: dict[str, Any], namespace: str) -> str | None:
    """None when the API server accepts the object, else its answer."""
    from kubernetes.client.exceptions import ApiException

    res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    ns = doc["metadata"].get("namespace", namespace) if res.namespaced else None
    try:
        out = res.create(body=doc, namespace=ns, dry_run="All")
    except ApiException as exc:
        return f"{exc.status} {exc.reason}: {exc.body}"
    assert out.metadata.name == doc["metadata"]["name"]
    return None


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_object_is_accepted_by_the_api_server(
        value_set: str | None, kube_cluster: KubeCluster) -> None:
    from kubernetes import client
    from kubernetes.dynamic import DynamicClient

    api = kube_cluster.api_client()
    core: Any = client.CoreV1Api(api)
    dyn = DynamicClient(api)
    release_ns = new_namespace(kube_cluster, "obs")
    docs = render(value_set, "--namespace", release_ns)
    for ns in sorted({d["metadata"]["namespace"] for d in docs
                      if d["metadata"].get("namespace")}):
        ensure_namespace(core, ns)

    checked = [d for d in docs if d["kind"] not in CRD_KINDS]
    refused = {f"{d['kind']}/{d['metadata']['name']}": answer for d in checked
               if (answer := dry_run(dyn, d, release_ns)) is not None}

    assert refused == {}
    assert {d["kind"] for d in docs} - {d["kind"] for d in checked} == (
        CRD_KINDS if value_set == "production.yaml" else set())
    assert {"ConfigMap", "Service", "Deployment"} <= {d["kind"] for d in checked}
    # Dry run: nothing was stored.
    assert client.AppsV1Api(api).list_namespaced_deployment(release_ns).items == []
    assert core.list_namespaced_config_map(release_ns, field_selector=(
        "metadata.name!=kube-root-ca.crt")).items == []

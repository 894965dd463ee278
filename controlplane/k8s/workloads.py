"""Reading workloads: Deployments and StatefulSets with their pods, nodes, HPAs and PDBs.

Everything is read as plain JSON (the ``kubernetes`` client with ``_preload_content=False``)
in one LIST per resource type, then joined here: pods to their workload by its selector,
pods to zones through their node's ``topology.kubernetes.io/zone`` label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controlplane.k8s.client import Kube

log = logging.getLogger(__name__)

ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")


@dataclass
class Snapshot:
    """One namespace (or the whole cluster, namespace None) at one moment."""

    namespace: str | None
    workloads: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    node_zones: dict[str, str] = field(default_factory=dict)
    hpas: list[dict[str, Any]] = field(default_factory=list)
    pdbs: list[dict[str, Any]] = field(default_factory=list)

    def pods_of(self, workload: dict[str, Any]) -> list[dict[str, Any]]:
        ns = workload["metadata"]["namespace"]
        selector = workload["spec"].get("selector") or {}
        return [p for p in self.pods if p["metadata"]["namespace"] == ns
                and selector_matches(selector, p["metadata"].get("labels") or {})]

    def hpas_of(self, workload: dict[str, Any]) -> list[dict[str, Any]]:
        ns, name, kind = (workload["metadata"]["namespace"], workload["metadata"]["name"],
                          workload["kind"])
        return [h for h in self.hpas if h["metadata"]["namespace"] == ns
                and h["spec"]["scaleTargetRef"].get("kind") == kind
                and h["spec"]["scaleTargetRef"].get("name") == name]

    def pdbs_of(self, workload: dict[str, Any]) -> list[dict[str, Any]]:
        ns = workload["metadata"]["namespace"]
        labels = (workload["spec"].get("template", {}).get("metadata") or {}).get("labels") or {}
        # policy/v1: a null selector matches no pod, an empty one every pod.
        return [d for d in self.pdbs if d["metadata"]["namespace"] == ns
                and d["spec"].get("selector") is not None
                and selector_matches(d["spec"]["selector"], labels)]

    def zone_of(self, pod: dict[str, Any]) -> str | None:
        node = pod["spec"].get("nodeName")
        return self.node_zones.get(node) if node else None


def read_snapshot(kube: Kube, namespace: str | None, label_selector: str = "") -> Snapshot:
    """LIST each resource once; ``namespace`` None reads every namespace."""
    apps, core = kube.apps(), kube.core()
    where = f"in namespace {namespace}" if namespace else "in all namespaces"
    sel = {"label_selector": label_selector} if label_selector else {}

    def listed(what: str, ns_fn: Any, all_fn: Any, **kw: Any) -> list[dict[str, Any]]:
        if namespace:
            doc = kube.json(f"list {what} {where}", ns_fn, namespace, **kw)
        else:
            doc = kube.json(f"list {what} {where}", all_fn, **kw)
        return list(doc.get("items") or [])

    snap = Snapshot(namespace)
    for kind, what, ns_fn, all_fn in (
            ("Deployment", "deployments", apps.list_namespaced_deployment,
             apps.list_deployment_for_all_namespaces),
            ("StatefulSet", "statefulsets", apps.list_namespaced_stateful_set,
             apps.list_stateful_set_for_all_namespaces)):
        for item in listed(what, ns_fn, all_fn, **sel):
            item["kind"] = kind  # list items carry no kind
            snap.workloads.append(item)
    snap.pods = listed("pods", core.list_namespaced_pod, core.list_pod_for_all_namespaces)
    nodes = kube.json("list nodes", core.list_node).get("items") or []
    snap.node_zones = {n["metadata"]["name"]: zone for n in nodes
                       if (zone := _zone(n["metadata"].get("labels") or {})) is not None}
    auto, policy = kube.autoscaling(), kube.policy()
    snap.hpas = listed("horizontalpodautoscalers", auto.list_namespaced_horizontal_pod_autoscaler,
                       auto.list_horizontal_pod_autoscaler_for_all_namespaces)
    snap.pdbs = listed("poddisruptionbudgets", policy.list_namespaced_pod_disruption_budget,
                       policy.list_pod_disruption_budget_for_all_namespaces)
    return snap


def _zone(labels: dict[str, str]) -> str | None:
    return next((labels[k] for k in ZONE_LABELS if k in labels), None)


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against labels; empty matches all."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference; tag None when there is none.

    ``registry:5000/app`` has no tag: a colon before the last slash is a port."""
    ref, _, digest = image.partition("@")
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:], digest or None
    return ref, None, digest or None


def image_digest(image_id: str | None) -> str | None:
    """``sha256:…`` from a container status imageID (``docker-pullable://r@sha256:…``)."""
    if not image_id or "sha256:" not in image_id:
        return None
    return "sha256:" + image_id.rsplit("sha256:", 1)[1]

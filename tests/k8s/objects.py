"""Builders and waits for Kubernetes objects the tests create (as the admin user)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from controlplane.k8s.testbed import KubeCluster

ZONE = "topology.kubernetes.io/zone"


def container(name: str, image: str, *, port: int = 8000, liveness: str | None = "/",
              readiness: str | None = "/", resources: bool = True,
              env_secret: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image, "ports": [{"containerPort": port}]}
    if liveness:
        c["livenessProbe"] = {"httpGet": {"path": liveness, "port": port}}
    if readiness:
        c["readinessProbe"] = {"httpGet": {"path": readiness, "port": port}}
    if resources:
        c["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"},
                          "limits": {"cpu": "500m", "memory": "256Mi"}}
    if env_secret:
        c["envFrom"] = [{"secretRef": {"name": env_secret}}]
    return c


def deployment(name: str, containers: list[dict[str, Any]], *, replicas: int = 1,
               spread: str | None = None, node_zone: str | None = None,
               progress_deadline: int | None = None) -> dict[str, Any]:
    """spread: None, "topology" (spread constraint) or "anti-affinity" (required, on zone)."""
    labels = {"app": name}
    pod: dict[str, Any] = {"containers": containers}
    if spread == "topology":
        pod["topologySpreadConstraints"] = [{
            "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": labels}}]
    elif spread == "anti-affinity":
        pod["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": ZONE, "labelSelector": {"matchLabels": labels}}]}}
    if node_zone:
        pod["nodeSelector"] = {ZONE: node_zone}
    spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": labels},
                            "template": {"metadata": {"labels": labels}, "spec": pod}}
    if progress_deadline is not None:
        spec["progressDeadlineSeconds"] = progress_deadline
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels}, "spec": spec}


def pdb(name: str, app: str, **budget: Any) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, **budget}}


def hpa(name: str, target: str, lo: int, hi: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": target},
                     "minReplicas": lo, "maxReplicas": hi,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization",
                                                   "averageUtilization": 70}}}]}}


def secret(name: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    import base64

    return {"apiVersion": "v1", "kind": "Secret", "type": meta.pop("type", "Opaque"),
            "metadata": {"name": name, **meta},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


class Admin:
    """The admin user's clients for one cluster."""

    def __init__(self, cluster: KubeCluster) -> None:
        from kubernetes import client

        api = cluster.api_client()
        self.core: Any = client.CoreV1Api(api)
        self.apps: Any = client.AppsV1Api(api)
        self.auto: Any = client.AutoscalingV2Api(api)
        self.policy: Any = client.PolicyV1Api(api)

    def apply(self, ns: str, *objs: dict[str, Any]) -> None:
        for o in objs:
            kind = o["kind"]
            if kind == "Deployment":
                self.apps.create_namespaced_deployment(ns, o)
            elif kind == "PodDisruptionBudget":
                self.policy.create_namespaced_pod_disruption_budget(ns, o)
            elif kind == "HorizontalPodAutoscaler":
                self.auto.create_namespaced_horizontal_pod_autoscaler(ns, o)
            elif kind == "Secret":
                self.core.create_namespaced_secret(ns, o)
            else:
                raise ValueError(kind)

    def pods(self, ns: str, app: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(ns, label_selector=f"app={app}").items)

    def wait_ready(self, ns: str, name: str, replicas: int, timeout: float = 90) -> None:
        def ready() -> bool:
            d = self.apps.read_namespaced_deployment(name, ns)
            pods = [p for p in self.pods(ns, name) if p.status.phase == "Running"]
            return (d.status.ready_replicas or 0) == replicas and len(pods) == replicas
        wait_for(ready, timeout, f"deployment {ns}/{name} {replicas} ready")

    def zones(self, ns: str, app: str) -> list[str]:
        nodes = {n.metadata.name: n.metadata.labels[ZONE] for n in self.core.list_node().items}
        return sorted(nodes[p.spec.node_name] for p in self.pods(ns, app) if p.spec.node_name)


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)

"""What an environment runs now: per service, its Deployment's image (with the digest pod
status reports) and its Helm release's deployed revision.

Helm 3 keeps each release revision in a Secret ``sh.helm.release.v1.<name>.v<rev>`` labelled
``owner=helm, name=<name>, version=<rev>, status=deployed|superseded|…``; only the labels are
read (the release body is never decoded).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from controlplane.k8s.client import Kube, KubeError
from controlplane.k8s.workloads import image_digest, selector_matches, split_image


class ServiceRef(BaseModel):
    """Where one service lives in the cluster."""

    model_config = ConfigDict(extra="forbid")

    deployment: str
    container: str | None = None
    """the container whose image is the service's (default: the first)"""
    helm_release: str | None = None


# The platform's three services (seed: platform-architecture.txt), production names.
DEFAULT_SERVICES: dict[str, ServiceRef] = {
    "voice360": ServiceRef(deployment="voice360", helm_release="voice360-prod"),
    "bic-agent": ServiceRef(deployment="bic-agent",
                            helm_release="bic-agent-taskmanager-voice360-prod"),
    "halo-task-manager-api": ServiceRef(deployment="halo-task-manager-api",
                                        helm_release="halo-task-manager-api-prod"),
}


def read_manifest(kube: Kube, namespace: str, services: dict[str, ServiceRef],
                  ) -> dict[str, Any]:
    """service name -> {image, repository, tag, digest, helm_release, helm_revision, ...};
    a service whose Deployment is missing gets ``{"missing": true}``."""
    apps, core = kube.apps(), kube.core()
    where = f"in namespace {namespace}"
    deployments = {d["metadata"]["name"]: d for d in kube.json(
        f"list deployments {where}", apps.list_namespaced_deployment, namespace)["items"]}
    pods = kube.json(f"list pods {where}", core.list_namespaced_pod, namespace)["items"]
    revisions = _helm_revisions(kube, namespace) if any(
        s.helm_release for s in services.values()) else {}
    out: dict[str, Any] = {}
    for name, ref in services.items():
        d = deployments.get(ref.deployment)
        if d is None:
            out[name] = {"deployment": ref.deployment, "missing": True}
            continue
        out[name] = _service(d, pods, ref, revisions)
    return out


def _service(d: dict[str, Any], pods: list[dict[str, Any]], ref: ServiceRef,
             revisions: dict[str, int]) -> dict[str, Any]:
    containers = (d["spec"]["template"].get("spec") or {}).get("containers") or []
    c = next((c for c in containers if c.get("name") == ref.container), None) \
        if ref.container else (containers[0] if containers else None)
    if c is None:
        raise KubeError(f"Deployment {d['metadata']['name']} has no container "
                        f"{ref.container or '(none)'}; fix services.*.container")
    image = str(c.get("image") or "")
    repo, tag, digest = split_image(image)
    if digest is None:
        digest = _running_digest(d, pods, str(c.get("name")), image)
    return {"deployment": d["metadata"]["name"], "container": c.get("name"), "image": image,
            "repository": repo, "tag": tag, "digest": digest,
            "helm_release": ref.helm_release,
            "helm_revision": revisions.get(ref.helm_release) if ref.helm_release else None}


def _running_digest(d: dict[str, Any], pods: list[dict[str, Any]], container: str,
                    image: str) -> str | None:
    """The digest the kubelet resolved, from a running pod of this Deployment with the same
    image (pods of an older ReplicaSet may still run the previous one)."""
    selector = d["spec"].get("selector") or {}
    for p in pods:
        if not selector_matches(selector, p["metadata"].get("labels") or {}):
            continue
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") == container and cs.get("image") == image:
                found = image_digest(cs.get("imageID"))
                if found:
                    return found
    return None


def _helm_revisions(kube: Kube, namespace: str) -> dict[str, int]:
    """Release name -> its deployed revision."""
    doc = kube.json(f"list secrets in namespace {namespace}", kube.core().list_namespaced_secret,
                    namespace, label_selector="owner=helm,status=deployed")
    out: dict[str, int] = {}
    for item in doc.get("items") or []:
        labels = item["metadata"].get("labels") or {}
        try:
            rev = int(labels.get("version", ""))
        except ValueError:
            continue
        name = labels.get("name", "")
        out[name] = max(rev, out.get(name, 0))
    return out

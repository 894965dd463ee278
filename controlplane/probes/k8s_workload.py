"""`k8s_workload`: are a namespace's Deployments and StatefulSets running, and could they
survive a node drain or a zone outage?

Per workload: ready vs desired replicas, restarts in the last ``restart_window``, a stuck
rollout (condition Progressing=False), images with tag and digest, and the zones its pods
actually run in. Then the platform's P4 posture as findings named after Polaris' reliability
checks (controlplane/k8s/posture.py). Findings are degraded by default; ids listed in
``failing_findings`` fail, ids in ``ignore_findings`` are dropped.

Status: failing when a workload has no ready replica, its rollout is stuck, or a failing
finding exists; degraded when some replicas are not ready, restarts reach
``restart_threshold``, or any finding is left; otherwise ok. An API error (403 names the
missing verb and resource) is ``error``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from controlplane.durations import Duration
from controlplane.k8s.client import ClusterConnection, Kube, KubeError
from controlplane.k8s.posture import FINDING_IDS, findings, resource_name
from controlplane.k8s.workloads import (
    Snapshot,
    image_digest,
    parse_time,
    pod_ready,
    read_snapshot,
    split_image,
)
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.findings import known_finding_ids
from controlplane.results import Status, worst


class K8sWorkloadConfig(CheckConfig):
    kind: Literal["k8s_workload"] = "k8s_workload"
    cluster: ClusterConnection
    namespace: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    label_selector: str = ""
    workloads: list[str] = Field(default_factory=list,
                                 description="only these names (default: all)")
    min_replicas: int = Field(default=2, ge=1)
    restart_window: Duration = 3600.0
    restart_threshold: int = Field(default=3, ge=1)
    failing_findings: list[str] = Field(default_factory=list)
    ignore_findings: list[str] = Field(default_factory=list)

    _ids = field_validator("failing_findings", "ignore_findings")(
        known_finding_ids(FINDING_IDS))

    @model_validator(mode="after")
    def _scope(self) -> K8sWorkloadConfig:
        if not self.namespace and not self.label_selector:
            raise ValueError("you must specify namespace or label_selector (one check per "
                             "namespace or selector)")
        return self


class K8sWorkloadProbe(Probe[K8sWorkloadConfig]):
    kind = "k8s_workload"
    config_model = K8sWorkloadConfig

    def __init__(self, config: K8sWorkloadConfig, context: Any = None) -> None:
        super().__init__(config, context)
        # restartCount per (pod uid, container) over time: restarts in the window are the
        # difference to the oldest sample inside it.
        self._samples: list[tuple[float, dict[tuple[str, str], int]]] = []

    def check(self) -> Outcome:
        cfg = self.config
        try:
            with Kube(cfg.cluster, cfg.timeout) as kube:
                snap = read_snapshot(kube, cfg.namespace, cfg.label_selector)
        except KubeError as exc:
            raise ProbeError(str(exc)) from None
        items = [w for w in snap.workloads
                 if not cfg.workloads or w["metadata"]["name"] in cfg.workloads]
        restarts = self._restarts(snap, items)
        rows = [self._row(w, snap, restarts) for w in items]
        return self._verdict(rows)

    # -- one workload -------------------------------------------------------------------

    def _row(self, w: dict[str, Any], snap: Snapshot,
             restarts: dict[str, int]) -> dict[str, Any]:
        cfg = self.config
        spec, status = w["spec"], w.get("status") or {}
        pods = snap.pods_of(w)
        zones: dict[str, int] = {}
        for p in pods:
            if (p.get("status") or {}).get("phase") == "Running":
                z = snap.zone_of(p) or "unknown"
                zones[z] = zones.get(z, 0) + 1
        found = [f for f in findings(w, snap, cfg.min_replicas)
                 if f["id"] not in cfg.ignore_findings]
        for f in found:
            f["severity"] = "failing" if f["id"] in cfg.failing_findings else "degraded"
        return {
            "kind": w["kind"], "namespace": w["metadata"]["namespace"],
            "name": w["metadata"]["name"], "resource": resource_name(w),
            "desired": int(spec.get("replicas", 1)),
            "ready": int(status.get("readyReplicas") or 0),
            "updated": int(status.get("updatedReplicas") or 0),
            "pods_ready": sum(1 for p in pods if pod_ready(p)),
            "restarts": restarts.get(resource_name(w), 0),
            "rollout": _rollout(w),
            "images": _images(w, pods),
            "zones": dict(sorted(zones.items())),
            "findings": found,
        }

    def _restarts(self, snap: Snapshot, items: list[dict[str, Any]]) -> dict[str, int]:
        now = time.time()
        window = self.config.restart_window
        counts: dict[tuple[str, str], int] = {}
        owner: dict[tuple[str, str], str] = {}
        recent: set[tuple[str, str]] = set()
        for w in items:
            for p in snap.pods_of(w):
                for cs in (p.get("status") or {}).get("containerStatuses") or []:
                    key = (p["metadata"]["uid"], cs["name"])
                    counts[key] = int(cs.get("restartCount") or 0)
                    owner[key] = resource_name(w)
                    ended = parse_time(((cs.get("lastState") or {}).get("terminated") or {})
                                       .get("finishedAt"))
                    if ended is not None and now - ended.timestamp() <= window:
                        recent.add(key)
        self._samples = [s for s in self._samples if now - s[0] <= window] + [(now, counts)]
        oldest = self._samples[0][1]
        out: dict[str, int] = {}
        for key, count in counts.items():
            if key in oldest and oldest is not counts:
                n = count - oldest[key]
            else:
                # First sight of this container: its last restart inside the window is
                # one restart we know of (restartCount counts since the pod started).
                n = 1 if key in recent and count > 0 else 0
            out[owner[key]] = out.get(owner[key], 0) + max(n, 0)
        return out

    # -- verdict ------------------------------------------------------------------------

    def _verdict(self, rows: list[dict[str, Any]]) -> Outcome:
        cfg = self.config
        scope = cfg.namespace or f"selector {cfg.label_selector}"
        all_findings = [f for r in rows for f in r["findings"]]
        metrics: dict[str, float | None] = {
            "workloads": len(rows),
            "ready_workloads": sum(1 for r in rows if r["ready"] >= r["desired"]),
            "findings": len(all_findings),
            "restarts": sum(r["restarts"] for r in rows),
        }
        details = {"workloads": rows, "findings": all_findings}
        if not rows:
            return Outcome(Status.DEGRADED, f"{scope}: no Deployment or StatefulSet found",
                           metrics, details)
        problems: list[tuple[Status, str]] = []
        for r in rows:
            problems += _health(r, cfg.restart_threshold)
        failing_f = [f for f in all_findings if f["severity"] == "failing"]
        if failing_f:
            problems.append((Status.FAILING, _summary(failing_f)))
        other_f = [f for f in all_findings if f["severity"] != "failing"]
        if other_f:
            problems.append((Status.DEGRADED, _summary(other_f)))
        status = worst([s for s, _ in problems])
        head = f"{scope}: {metrics['ready_workloads']}/{len(rows)} workloads ready"
        if not problems:
            return Outcome(Status.OK, f"{head}, no posture findings", metrics, details)
        ordered = sorted(problems, key=lambda p: -p[0].rank)
        return Outcome(status, f"{head}; " + "; ".join(m for _, m in ordered), metrics,
                       details)


def _health(r: dict[str, Any], restart_threshold: int) -> list[tuple[Status, str]]:
    out: list[tuple[Status, str]] = []
    name = r["name"]
    if r["rollout"] != "ok":
        out.append((Status.FAILING, f"{name} rollout {r['rollout']}"))
    if r["desired"] > 0 and r["ready"] == 0:
        out.append((Status.FAILING, f"{name} 0/{r['desired']} ready"))
    elif r["ready"] < r["desired"]:
        out.append((Status.DEGRADED, f"{name} {r['ready']}/{r['desired']} ready"))
    if r["restarts"] >= restart_threshold:
        out.append((Status.DEGRADED, f"{name} restarted {r['restarts']} times recently"))
    return out


def _summary(found: Iterable[dict[str, Any]]) -> str:
    by_name: dict[str, list[str]] = {}
    for f in found:
        name = f["resource"].rsplit("/", 1)[1]
        ids = by_name.setdefault(name, [])
        if f["id"] not in ids:
            ids.append(f["id"])
    return "; ".join(f"{name}: {', '.join(ids)}" for name, ids in by_name.items())


def _rollout(w: dict[str, Any]) -> str:
    for c in (w.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("status") == "False":
            return f"stuck ({c.get('reason') or 'Progressing=False'})"
    return "ok"


def _images(w: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    digests: dict[str, str] = {}
    for p in pods:
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            d = image_digest(cs.get("imageID"))
            if d:
                digests.setdefault(cs["name"], d)
    out = []
    for c in (w["spec"].get("template", {}).get("spec") or {}).get("containers") or []:
        repo, tag, digest = split_image(str(c.get("image") or ""))
        out.append({"container": c.get("name"), "image": c.get("image"), "repository": repo,
                    "tag": tag, "digest": digest or digests.get(str(c.get("name")))})
    return out

"""Reliability posture of one workload: findings named after Fairwinds Polaris' checks.

Each rule looks at the workload as the API returns it (and the pods, HPAs, PDBs and zones
that belong to it) and returns findings with the resource, why it matters and how to fix
it. Ids are Polaris' where Polaris has the check; ``podsInSingleZone``,
``missingHorizontalPodAutoscaler`` and ``envFromPlainSecret`` are ours, in its style.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from controlplane.k8s.workloads import Snapshot, split_image

ZONE_KEYS = {"topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone"}


@dataclass(frozen=True)
class Rule:
    why: str
    fix: str


RULES: dict[str, Rule] = {
    "deploymentMissingReplicas": Rule(
        "one replica means every restart, node drain or zone outage is downtime",
        "set spec.replicas (or the HPA's minReplicas) to 2 or more"),
    "missingPodDisruptionBudget": Rule(
        "without a PodDisruptionBudget a node drain or cluster upgrade may evict every "
        "replica at once",
        "add a PodDisruptionBudget selecting the pods with maxUnavailable: 1"),
    "pdbDisruptionsIsZero": Rule(
        "a budget that allows zero disruptions blocks node drains and AKS upgrades",
        "use maxUnavailable: 1 (or minAvailable below the replica count)"),
    "topologySpreadConstraint": Rule(
        "nothing keeps the replicas apart: the scheduler may put them all in one zone",
        "add a topologySpreadConstraint on topology.kubernetes.io/zone (or pod "
        "anti-affinity on that key)"),
    "podsInSingleZone": Rule(
        "every running replica is in one availability zone: a zone outage takes the "
        "service down",
        "spread the pods across zones (topology spread or anti-affinity) and run the node "
        "pool in zones 1, 2 and 3"),
    "missingHorizontalPodAutoscaler": Rule(
        "load spikes cannot add replicas",
        "add a HorizontalPodAutoscaler with minReplicas >= 2 and maxReplicas above it"),
    "hpaMinAvailability": Rule(
        "the autoscaler may scale down to one replica",
        "set the HPA's minReplicas to 2 or more"),
    "hpaMaxAvailability": Rule(
        "minReplicas equals maxReplicas: the autoscaler can never scale",
        "raise the HPA's maxReplicas above minReplicas"),
    "livenessProbeMissing": Rule(
        "a hung container is never restarted",
        "add a livenessProbe (e.g. httpGet on the health path)"),
    "readinessProbeMissing": Rule(
        "traffic reaches containers before they can serve, and during rollouts",
        "add a readinessProbe"),
    "cpuRequestsMissing": Rule(
        "the scheduler cannot place the pod by its CPU needs", "set resources.requests.cpu"),
    "memoryRequestsMissing": Rule(
        "the scheduler cannot place the pod by its memory needs; first to be evicted",
        "set resources.requests.memory"),
    "cpuLimitsMissing": Rule(
        "one busy container can starve its neighbours on the node", "set resources.limits.cpu"),
    "memoryLimitsMissing": Rule(
        "a leak can exhaust the node's memory and take other pods with it",
        "set resources.limits.memory"),
    "tagNotSpecified": Rule(
        "an image without a tag, or tagged latest, is not reproducible: a restart may run "
        "other code", "pin an immutable tag (X.Y.Z-r<RUN>) or a digest"),
    "envFromPlainSecret": Rule(
        "credentials come from a plain Kubernetes Secret, exported by hand (no Key Vault, "
        "no rotation)",
        "move the values to Azure Key Vault (Secrets Store CSI driver) or at least back the "
        "Secret up encrypted (controlplane backup run kubernetes-secrets)"),
}

FINDING_IDS = tuple(RULES)


def resource_name(workload: dict[str, Any]) -> str:
    m = workload["metadata"]
    return f"{workload['kind']}/{m['namespace']}/{m['name']}"


def findings(workload: dict[str, Any], snap: Snapshot, min_replicas: int = 2,
             ) -> list[dict[str, Any]]:
    """Every finding for one workload, workload-level rules first, then per container."""
    out: list[tuple[str, str, str | None]] = []  # (id, detail, container)
    spec = workload["spec"]
    replicas = int(spec.get("replicas", 1))
    hpas = snap.hpas_of(workload)
    floor = max([replicas] + [int(h["spec"].get("minReplicas", 1)) for h in hpas])
    if floor < min_replicas:
        out.append(("deploymentMissingReplicas", f"{replicas} replica(s)", None))
    out += _pdb_findings(snap.pdbs_of(workload), replicas)
    pod_spec = spec.get("template", {}).get("spec") or {}
    if not _spread_on_zone(pod_spec):
        out.append(("topologySpreadConstraint", "no zone spread or anti-affinity", None))
    zones = Counter(z for p in snap.pods_of(workload)
                    if (p.get("status") or {}).get("phase") == "Running"
                    and (z := snap.zone_of(p)) is not None)
    if sum(zones.values()) >= 2 and len(zones) == 1:
        zone, n = zones.most_common(1)[0]
        out.append(("podsInSingleZone", f"all {n} running pods in zone {zone}", None))
    out += _hpa_findings(hpas)
    for c in pod_spec.get("containers") or []:
        out += [(fid, detail, c.get("name")) for fid, detail in _container_findings(c)]
    return [_finding(fid, resource_name(workload), detail, container)
            for fid, detail, container in out]


def _finding(fid: str, resource: str, detail: str, container: str | None) -> dict[str, Any]:
    rule = RULES[fid]
    row: dict[str, Any] = {"id": fid, "resource": resource, "detail": detail,
                           "why": rule.why, "fix": rule.fix}
    if container:
        row["container"] = container
    return row


def _pdb_findings(pdbs: list[dict[str, Any]], replicas: int) -> list[tuple[str, str, None]]:
    if not pdbs:
        return [("missingPodDisruptionBudget", "no PodDisruptionBudget selects the pods", None)]
    out: list[tuple[str, str, None]] = []
    for pdb in pdbs:
        s = pdb["spec"]
        name = pdb["metadata"]["name"]
        max_u, min_a = s.get("maxUnavailable"), s.get("minAvailable")
        zero = max_u in (0, "0", "0%") or min_a == "100%" or (
            isinstance(min_a, int) and min_a >= replicas)
        if zero:
            rule = f"maxUnavailable {max_u}" if max_u is not None else f"minAvailable {min_a}"
            out.append(("pdbDisruptionsIsZero", f"{name}: {rule} with {replicas} replica(s)",
                        None))
    return out


def _spread_on_zone(pod_spec: dict[str, Any]) -> bool:
    if any(t.get("topologyKey") in ZONE_KEYS
           for t in pod_spec.get("topologySpreadConstraints") or []):
        return True
    anti = (pod_spec.get("affinity") or {}).get("podAntiAffinity") or {}
    terms = list(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    terms += [w.get("podAffinityTerm") or {}
              for w in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    return any(t.get("topologyKey") in ZONE_KEYS for t in terms)


def _hpa_findings(hpas: list[dict[str, Any]]) -> list[tuple[str, str, None]]:
    if not hpas:
        return [("missingHorizontalPodAutoscaler", "no HorizontalPodAutoscaler targets it", None)]
    out: list[tuple[str, str, None]] = []
    for h in hpas:
        lo, hi = int(h["spec"].get("minReplicas", 1)), int(h["spec"]["maxReplicas"])
        name = h["metadata"]["name"]
        if lo < 2:
            out.append(("hpaMinAvailability", f"{name}: minReplicas {lo}", None))
        if lo >= hi:
            out.append(("hpaMaxAvailability", f"{name}: minReplicas {lo} = maxReplicas {hi}",
                        None))
    return out


def _container_findings(c: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not c.get("livenessProbe"):
        out.append(("livenessProbeMissing", "no livenessProbe"))
    if not c.get("readinessProbe"):
        out.append(("readinessProbeMissing", "no readinessProbe"))
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for what in ("cpu", "memory"):
            if what not in (res.get(kind) or {}):
                out.append((f"{what}{kind.capitalize()}Missing", f"no {kind}.{what}"))
    image = str(c.get("image") or "")
    _, tag, digest = split_image(image)
    if digest is None and (tag is None or tag == "latest"):
        out.append(("tagNotSpecified", f"image {image or '(none)'}"))
    secrets = sorted({e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env") or []
                      if (e.get("valueFrom") or {}).get("secretKeyRef")}
                     | {e["secretRef"]["name"] for e in c.get("envFrom") or []
                        if e.get("secretRef")})
    if secrets:
        out.append(("envFromPlainSecret", f"environment from Secret {', '.join(secrets)}"))
    return out

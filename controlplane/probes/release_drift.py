"""`release_drift`: does an environment run what was built once and promoted?

Each run reads the environment's release manifest (controlplane/manifest/reader.py: images
with digests, Helm revisions of voice360, bic-agent and halo-task-manager-api) and records
it in the store when it changed (`controlplane manifest show|history|diff` read them). Then:

- failing: a service runs an image listed in ``bad_images`` (with the reason);
- failing: a service runs an image that ``promoted_from``'s environment never ran (the
  platform promises "build once, promote many"), or a rebuild of a tag main ran;
- degraded: the combination of the services' images was never recorded together in
  ``combination_from``'s environment (the three repos ship without a joint manifest);
- degraded: a service's Deployment is missing.

A check with neither ``promoted_from`` nor ``combination_from`` only records (e.g. for
main's and release's environments, whose history the production check compares against).
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controlplane.k8s.client import ClusterConnection, Kube, KubeError
from controlplane.manifest import compare
from controlplane.manifest import store as manifests
from controlplane.manifest.reader import DEFAULT_SERVICES, ServiceRef, read_manifest
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.results import Status, worst


class BadImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str = Field(description="tag or shell pattern, e.g. 0.1.27-r121")
    service: str | None = Field(default=None, description="only for this service")
    reason: str


class ReleaseDriftConfig(CheckConfig):
    kind: Literal["release_drift"] = "release_drift"
    cluster: ClusterConnection
    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    services: dict[str, ServiceRef] = Field(default_factory=lambda: dict(DEFAULT_SERVICES))
    promoted_from: str | None = Field(
        default=None, description="environment whose images this one must have run (main)")
    combination_from: str | None = Field(
        default=None, description="environment where the combination must have been seen")
    bad_images: list[BadImage] = Field(default_factory=list)


class ReleaseDriftProbe(Probe[ReleaseDriftConfig]):
    kind = "release_drift"
    config_model = ReleaseDriftConfig

    def check(self) -> Outcome:
        cfg = self.config
        if not cfg.env:
            raise ProbeError("release_drift needs env (the environment this namespace is)")
        store = self.context.services.store
        if store is None:
            raise ProbeError("release_drift records manifests in the store; run it inside "
                             "the control plane (`controlplane run`)")
        try:
            with Kube(cfg.cluster, cfg.timeout) as kube:
                services = read_manifest(kube, cfg.namespace, cfg.services)
        except KubeError as exc:
            raise ProbeError(str(exc)) from None
        current, new = manifests.record(store, cfg.env, services, source=cfg.id)
        problems = self._bad(services) + self._missing(services)
        if cfg.promoted_from:
            problems += self._promotion(services, manifests.all_of(store, cfg.promoted_from))
        if cfg.combination_from:
            problems += self._combination(services, manifests.all_of(store, cfg.combination_from))
        listing = ", ".join(f"{n} {compare.label(s)}" for n, s in services.items())
        details = {"manifest": current, "recorded": new,
                   "problems": [{"status": s.value, "message": m} for s, m in problems]}
        metrics: dict[str, float | None] = {"services": len(services),
                                            "problems": len(problems)}
        if not problems:
            return Outcome(Status.OK, f"{cfg.env} runs {listing}", metrics, details)
        ordered = sorted(problems, key=lambda p: -p[0].rank)
        return Outcome(worst([s for s, _ in problems]), "; ".join(m for _, m in ordered),
                       metrics, details)

    def _bad(self, services: dict[str, Any]) -> list[tuple[Status, str]]:
        out = []
        for name, svc in services.items():
            for bad in self.config.bad_images:
                if bad.service not in (None, name) or not svc.get("tag"):
                    continue
                if fnmatch.fnmatchcase(str(svc["tag"]), bad.tag):
                    out.append((Status.FAILING, f"{self.config.env} runs {name} "
                                f"{compare.label(svc)}, a known bad image: {bad.reason}"))
        return out

    def _missing(self, services: dict[str, Any]) -> list[tuple[Status, str]]:
        return [(Status.DEGRADED, f"{name}: Deployment {svc['deployment']} not found in "
                 f"{self.config.namespace}") for name, svc in services.items()
                if svc.get("missing")]

    def _promotion(self, services: dict[str, Any],
                   history: list[dict[str, Any]]) -> list[tuple[Status, str]]:
        ref = self.config.promoted_from
        if not history:
            return [(Status.DEGRADED, f"no manifest of {ref} recorded yet; cannot tell whether "
                     f"{self.config.env}'s images were promoted from it")]
        out = []
        for name, svc in services.items():
            if svc.get("missing"):
                continue
            ran = compare.ran_before(svc, name, history)
            if ran is None:
                out.append((Status.FAILING, f"{name} {compare.label(svc)} was rebuilt: {ref} "
                            "ran that tag with another digest (build once, promote many)"))
            elif not ran:
                out.append((Status.FAILING, f"{name} {compare.label(svc)} never ran in {ref} "
                            "(build once, promote many)"))
        return out

    def _combination(self, services: dict[str, Any],
                     history: list[dict[str, Any]]) -> list[tuple[Status, str]]:
        present = {n: s for n, s in services.items() if not s.get("missing")}
        if compare.seen_together(present, history):
            return []
        combo = ", ".join(f"{n} {compare.label(s)}" for n, s in present.items())
        return [(Status.DEGRADED, f"this combination was never released together in "
                 f"{self.config.combination_from}: {combo}")]


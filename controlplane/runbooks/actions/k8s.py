"""``k8s.scale``, ``k8s.rollout_restart``, ``k8s.rollout_status``: Deployments through the
Kubernetes client of controlplane/k8s (its errors name the missing RBAC verb)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import Field, model_validator

from controlplane.durations import Duration
from controlplane.k8s.client import ClusterConnection
from controlplane.results import iso, utcnow
from controlplane.runbooks.base import (
    Action,
    ActionArgs,
    ActionFailed,
    ActionResult,
    Services,
    StepContext,
)


class ClusterArgs(ActionArgs):
    cluster: ClusterConnection | None = Field(default=None, description=(
        "how to reach the API (kubeconfig, in_cluster or api_server + token_file), as a "
        "check's cluster block"))
    cluster_check: str | None = Field(default=None, description=(
        "a configured check whose cluster block to use"))

    @model_validator(mode="after")
    def _one(self) -> ClusterArgs:
        if self.cluster is not None and self.cluster_check is not None:
            raise ValueError("give cluster or cluster_check, not both")
        return self


def connection(services: Services, a: ClusterArgs) -> ClusterConnection:
    """The cluster to talk to: the step's own block, a check's, or the kubernetes-secrets
    backups component's."""
    if a.cluster is not None:
        return a.cluster
    if a.cluster_check:
        try:
            found = getattr(services.config.check(a.cluster_check), "cluster", None)
        except KeyError:
            found = None
        if not isinstance(found, ClusterConnection):
            raise ActionFailed(f"check {a.cluster_check!r} is not a configured check with a "
                               "cluster block")
        return found
    comp = services.config.backups.components.get("kubernetes-secrets")
    found = getattr(comp, "cluster", None)
    if not isinstance(found, ClusterConnection):
        raise ActionFailed("no cluster: you must specify cluster or cluster_check (or "
                           "configure backups.components.kubernetes-secrets.cluster)")
    return found


def kube(services: Services, a: ClusterArgs, timeout: float) -> Any:
    from controlplane.k8s.client import Kube, KubeError

    try:
        return Kube(connection(services, a), max(1.0, min(timeout, 30.0)))
    except KubeError as exc:
        raise ActionFailed(str(exc)) from None


class DeploymentArgs(ClusterArgs):
    namespace: str = Field(min_length=1)
    deployment: str = Field(min_length=1)


class ScaleArgs(DeploymentArgs):
    replicas: int = Field(ge=0)


def _read(k: Any, a: DeploymentArgs) -> dict[str, Any]:
    from controlplane.k8s.client import KubeError

    try:
        doc: dict[str, Any] = k.json(f"get deployment {a.namespace}/{a.deployment}",
                                     k.apps().read_namespaced_deployment, a.deployment,
                                     a.namespace)
    except KubeError as exc:
        raise ActionFailed(str(exc)) from None
    return doc


def _guard(fn: Any, *args: Any) -> Any:
    from controlplane.k8s.client import KubeError

    try:
        return fn(*args)
    except KubeError as exc:
        raise ActionFailed(str(exc)) from None


class K8sScale(Action[ScaleArgs]):
    name = "k8s.scale"
    args_model = ScaleArgs
    summary = "set a Deployment's replicas (the previous count is an output, for rollback)"
    default_timeout = 120.0
    example_args: ClassVar[dict[str, object]] = {"namespace": "voice360",
                                                 "deployment": "voice360-api", "replicas": 2}

    def plan(self) -> list[str]:
        a = self.args
        try:
            with kube(self.services, a, 10) as k:
                now = _read(k, a)["spec"].get("replicas", 1)
        except ActionFailed as exc:
            return [f"would fail: {exc.message}"]
        return [f"scale deployment {a.namespace}/{a.deployment} from {now} to {a.replicas} "
                "replicas" + (" (no change)" if now == a.replicas else "")]

    def run(self, ctx: StepContext) -> ActionResult:
        a = self.args
        with kube(self.services, a, ctx.remaining()) as k:
            before = _read(k, a)["spec"].get("replicas", 1)
            _guard(k.call, f"scale deployment {a.namespace}/{a.deployment}",
                   k.apps().patch_namespaced_deployment_scale, a.deployment, a.namespace,
                   {"spec": {"replicas": a.replicas}})
        return ActionResult(f"{a.namespace}/{a.deployment} scaled from {before} to "
                            f"{a.replicas}", {"previous_replicas": before,
                                              "replicas": a.replicas})


class K8sRolloutRestart(Action[DeploymentArgs]):
    name = "k8s.rollout_restart"
    args_model = DeploymentArgs
    summary = "restart a Deployment's pods (kubectl rollout restart)"
    default_timeout = 120.0
    example_args: ClassVar[dict[str, object]] = {"namespace": "voice360",
                                                 "deployment": "voice360-api"}

    def plan(self) -> list[str]:
        a = self.args
        return [f"set kubectl.kubernetes.io/restartedAt on deployment {a.namespace}/"
                f"{a.deployment}'s pod template: its pods are replaced by a rolling update"]

    def run(self, ctx: StepContext) -> ActionResult:
        a = self.args
        at = iso(utcnow())
        patch = {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": at}}}}}
        with kube(self.services, a, ctx.remaining()) as k:
            _guard(k.call, f"restart deployment {a.namespace}/{a.deployment}",
                   k.apps().patch_namespaced_deployment, a.deployment, a.namespace, patch)
        return ActionResult(f"{a.namespace}/{a.deployment} restarted at {at}",
                            {"restarted_at": at})


class StatusArgs(DeploymentArgs):
    deadline: Duration = Field(default=600.0, gt=0)
    interval: Duration = Field(default=2.0, gt=0)


def rollout_state(doc: dict[str, Any]) -> tuple[bool, str]:
    """(done, what is left) as `kubectl rollout status` judges a Deployment."""
    spec, st = doc.get("spec") or {}, doc.get("status") or {}
    want = int(spec.get("replicas", 1))
    gen, seen = doc["metadata"].get("generation", 0), st.get("observedGeneration", 0)
    updated, ready = int(st.get("updatedReplicas") or 0), int(st.get("readyReplicas") or 0)
    available, total = int(st.get("availableReplicas") or 0), int(st.get("replicas") or 0)
    if seen < gen:
        return False, "waiting for the controller to see the new spec"
    if updated < want:
        return False, f"{updated} of {want} updated replicas"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < updated or ready < want:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{want} of {want} replicas updated and available"


class K8sRolloutStatus(Action[StatusArgs]):
    name = "k8s.rollout_status"
    args_model = StatusArgs
    summary = "wait until a Deployment's rollout is complete (kubectl rollout status)"
    resumable: ClassVar[bool] = True
    default_timeout = 900.0
    example_args: ClassVar[dict[str, object]] = {"namespace": "voice360",
                                                 "deployment": "voice360-api"}

    def plan(self) -> list[str]:
        a = self.args
        return [f"every {a.interval:g}s read deployment {a.namespace}/{a.deployment} until "
                f"every replica is updated and available; fail after {a.deadline:g}s"]

    def run(self, ctx: StepContext) -> ActionResult:
        a = self.args
        t0 = time.monotonic()
        with kube(self.services, a, ctx.remaining()) as k:
            while True:
                done, why = rollout_state(_read(k, a))
                waited = round(time.monotonic() - t0, 3)
                ctx.progress(state=why)
                if done:
                    return ActionResult(f"{a.namespace}/{a.deployment}: {why} after "
                                        f"{waited:g}s", {"waited_s": waited})
                left = a.deadline - waited
                if left <= 0 or not ctx.sleep(min(a.interval, left)):
                    raise ActionFailed(f"{a.namespace}/{a.deployment} not rolled out after "
                                       f"{waited:g}s: {why}", {"waited_s": waited})


class ApplyArgs(ClusterArgs):
    files: list[str] = Field(default_factory=list, description=(
        "YAML manifests (paths relative to the main config file), applied in order"))
    namespace: str | None = Field(default=None, description="for objects that name none")
    images: dict[str, str] = Field(default_factory=dict, description=(
        "container name -> image, set on every Deployment"))
    release_env: str | None = Field(default=None, description=(
        "take each Deployment's image from this environment's newest release manifest "
        "(service name = Deployment name)"))
    create_namespace: bool = Field(default=False, description="create `namespace` first")


def _images(services: Services, a: ApplyArgs) -> dict[str, str]:
    images = dict(a.images)
    if a.release_env:
        from controlplane.manifest import store as manifests

        release = manifests.latest(services.store, a.release_env)
        if release is None:
            raise ActionFailed(f"no release manifest recorded for {a.release_env!r}; "
                               "`controlplane manifest show` lists them")
        for name, svc in (release.get("services") or {}).items():
            if isinstance(svc, dict) and svc.get("image"):
                images.setdefault(name, str(svc["image"]))
    return images


def _documents(services: Services, a: ApplyArgs) -> list[dict[str, Any]]:
    import os

    import yaml

    base = os.path.dirname(services.config.source or ".")
    docs: list[dict[str, Any]] = []
    for f in a.files:
        path = f if os.path.isabs(f) else os.path.join(base, f)
        try:
            with open(path, encoding="utf-8") as fh:
                docs += [d for d in yaml.safe_load_all(fh) if d]
        except (OSError, yaml.YAMLError) as exc:
            raise ActionFailed(f"cannot read manifest {f}: {exc}") from None
    for d in docs:
        if a.namespace and not d.get("metadata", {}).get("namespace") and \
                d.get("kind") not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            d.setdefault("metadata", {})["namespace"] = a.namespace
    images = _images(services, a)
    for d in docs:
        if images and d.get("kind") == "Deployment":
            for c in d["spec"]["template"]["spec"].get("containers", []):
                if c.get("name") in images:
                    c["image"] = images[c["name"]]
    if a.create_namespace and a.namespace:
        docs.insert(0, {"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": a.namespace}})
    return docs


def _apply(k: Any, doc: dict[str, Any], dry_run: bool) -> str:
    from kubernetes.dynamic import DynamicClient

    from controlplane.k8s.client import describe_error

    m = doc["metadata"]
    what = f"{doc['kind']} {m.get('namespace', '') + '/' if m.get('namespace') else ''}" \
           f"{m['name']}"
    try:
        res = DynamicClient(k.api).resources.get(api_version=doc["apiVersion"],
                                                 kind=doc["kind"])
        kw: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        res.server_side_apply(body=doc, name=m["name"], namespace=m.get("namespace"),
                              field_manager="controlplane", force_conflicts=True, **kw)
    except Exception as exc:
        raise ActionFailed(str(describe_error(exc, f"apply {what}", k.server))) from None
    return what


class K8sApply(Action[ApplyArgs]):
    name = "k8s.apply"
    args_model = ApplyArgs
    summary = "server-side apply of stored manifests (dry-run: the API server's own dry run)"
    resumable: ClassVar[bool] = True  # apply is declarative: applying twice is harmless
    default_timeout = 300.0
    example_args: ClassVar[dict[str, object]] = {"files": ["deploy/voice360.yaml"]}

    def plan(self) -> list[str]:
        try:
            docs = _documents(self.services, self.args)
            with kube(self.services, self.args, 30) as k:
                done = [_apply(k, d, dry_run=True) for d in docs]
        except ActionFailed as exc:
            return [f"would fail: {exc.message}"]
        return [f"server-side apply {len(done)} objects (the API server accepted a dry run):",
                *(f"  {w}" for w in done)]

    def run(self, ctx: StepContext) -> ActionResult:
        docs = _documents(self.services, self.args)
        applied = []
        with kube(self.services, self.args, ctx.remaining()) as k:
            for d in docs:
                applied.append(_apply(k, d, dry_run=False))
                ctx.progress(applied=len(applied), of=len(docs))
        return ActionResult(f"applied {len(applied)} objects", {"applied": applied})

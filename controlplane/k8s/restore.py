"""Restoring Secrets: plan (the dry-run), apply exactly the plan, and the drill.

A plan reads the target Secrets (one LIST per namespace) and decides ``create``,
``update (keys: …)``, ``unchanged`` or ``skip (exists; use --overwrite)``; it keeps the
resourceVersion it saw.
Apply writes only what the plan says, an update as a replace guarded by that
resourceVersion: if the Secret changed since the plan the API answers 409 and the Secret is
reported as a conflict to re-plan, never overwritten blind. Re-running a restore that was
killed half-way converges: what was written is now ``unchanged``.
Key names appear in plans; values never do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from controlplane.k8s.client import Kube, KubeError

log = logging.getLogger(__name__)


@dataclass
class Action:
    namespace: str
    name: str
    source: str
    verb: str  # create | update | unchanged | skip | missing-namespace | conflict | done
    keys: list[str] = field(default_factory=list)
    resource_version: str | None = None
    secret: dict[str, Any] = field(default_factory=dict, repr=False)
    create_namespace: bool = False

    @property
    def target(self) -> str:
        return f"{self.namespace}/{self.name}"

    def line(self) -> str:
        if self.verb == "update":
            return f"update {self.target} (keys: {', '.join(self.keys)})"
        if self.verb == "skip":
            return f"skip {self.target} (exists; use --overwrite)"
        if self.verb == "missing-namespace":
            return (f"error {self.target} (namespace {self.namespace} does not exist; use "
                    "--create-namespace)")
        if self.verb == "conflict":
            return f"conflict {self.target} (changed since the plan; run again to re-plan)"
        return f"{self.verb} {self.target}"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "source": self.source, "action": self.verb,
                "keys": self.keys, "line": self.line()}


def select(items: list[dict[str, Any]], only: list[str]) -> list[dict[str, Any]]:
    if not only:
        return items
    wanted = set(only)
    return [i for i in items
            if f"{i['metadata']['namespace']}/{i['metadata']['name']}" in wanted]


def retarget(item: dict[str, Any], namespace_map: dict[str, str],
             rename: bool = False) -> dict[str, Any]:
    """The Secret as it is written: namespace mapped (the drill also prefixes the name with
    its source namespace so Secrets of several namespaces fit in one)."""
    m = item["metadata"]
    ns = namespace_map.get(m["namespace"], m["namespace"])
    name = f"{m['namespace']}.{m['name']}"[:253] if rename else m["name"]
    return {**item, "metadata": {**m, "namespace": ns, "name": name}}


def plan(kube: Kube, items: list[dict[str, Any]], namespace_map: dict[str, str],
         overwrite: bool = False, create_namespace: bool = False,
         rename: bool = False) -> list[Action]:
    """One LIST per target namespace (not one GET per Secret: 2,000 Secrets plan in one
    request), then a decision per Secret."""
    core = kube.core()
    present: dict[str, dict[str, dict[str, Any]] | None] = {}
    out = []
    for item in items:
        want = retarget(item, namespace_map, rename)
        ns, name = want["metadata"]["namespace"], want["metadata"]["name"]
        source = f"{item['metadata']['namespace']}/{item['metadata']['name']}"
        if ns not in present:
            present[ns] = _secrets_in(kube, core, ns)
        have = present[ns]
        if have is None:
            verb = "create" if create_namespace else "missing-namespace"
            out.append(Action(ns, name, source, verb, secret=want,
                              create_namespace=create_namespace))
            continue
        out.append(_decide(ns, name, source, want, have.get(name), overwrite))
    return out


def _secrets_in(kube: Kube, core: Any, ns: str) -> dict[str, dict[str, Any]] | None:
    """The namespace's Secrets by name; None when the namespace does not exist."""
    if not _exists(kube, f"get namespace {ns}", core.read_namespace, ns):
        return None
    doc = kube.json(f"list secrets in namespace {ns}", core.list_namespaced_secret, ns)
    return {s["metadata"]["name"]: s for s in doc.get("items") or []}


def _decide(ns: str, name: str, source: str, want: dict[str, Any], have: dict[str, Any] | None,
            overwrite: bool) -> Action:
    if have is None:
        return Action(ns, name, source, "create", secret=want)
    rv = have["metadata"].get("resourceVersion")
    a, b = want.get("data") or {}, have.get("data") or {}
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    same_meta = (want.get("type") == have.get("type")
                 and (want["metadata"].get("labels") or {}) == (have["metadata"].get("labels")
                                                                 or {}))
    if not keys and same_meta:
        return Action(ns, name, source, "unchanged", resource_version=rv, secret=want)
    if not overwrite:
        return Action(ns, name, source, "skip", keys, rv, want)
    return Action(ns, name, source, "update", keys, rv, want)


def _exists(kube: Kube, what: str, fn: Any, *args: Any) -> bool:
    try:
        kube.json(what, fn, *args)
        return True
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise


def apply(kube: Kube, actions: list[Action], out: list[Action] | None = None) -> list[Action]:
    """Write what the plan says; each action comes back as done, conflict or as it was.

    ``out`` (when given) collects the actions as they finish, so a caller still knows what
    was written when the API fails part-way (the KubeError propagates)."""
    core = kube.core()
    made: set[str] = set()
    if out is None:
        out = []
    for a in actions:
        if a.verb not in ("create", "update"):
            out.append(a)
            continue
        if a.create_namespace and a.namespace not in made:
            _create_namespace(kube, core, a.namespace)
            made.add(a.namespace)
        try:
            if a.verb == "create":
                kube.call(f"create secret {a.target}", core.create_namespaced_secret,
                          a.namespace, a.secret)
            else:
                body = {**a.secret, "metadata": {**a.secret["metadata"],
                                                 "resourceVersion": a.resource_version}}
                kube.call(f"update secret {a.target}", core.replace_namespaced_secret,
                          a.name, a.namespace, body)
        except KubeError as exc:
            if exc.status == 409:  # created or changed by someone else since the plan
                log.warning("restore conflict target=%s verb=%s", a.target, a.verb)
                out.append(Action(a.namespace, a.name, a.source, "conflict", a.keys))
                continue
            raise
        log.info("restored secret target=%s verb=%s keys=%d", a.target, a.verb, len(a.keys))
        out.append(Action(a.namespace, a.name, a.source, "done", a.keys, secret=a.secret))
    return out


def _create_namespace(kube: Kube, core: Any, ns: str) -> None:
    try:
        kube.call(f"create namespace {ns}", core.create_namespace,
                  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    except KubeError as exc:
        if exc.status != 409:
            raise

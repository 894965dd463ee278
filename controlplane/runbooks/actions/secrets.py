"""``restore.secrets``: Kubernetes Secrets from a backup, exactly as planned.

Its dry-run is the restore's own plan (create / update (keys) / unchanged / skip, key names
only, never a value); the run applies that plan (an update guarded by the resourceVersion
the plan saw: a Secret changed since is a conflict, never overwritten blind), then reads
every restored Secret back and compares each value's sha256 with the backup's manifest.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from controlplane.runbooks.actions.k8s import ClusterArgs, connection
from controlplane.runbooks.base import (
    Action,
    ActionFailed,
    ActionResult,
    Services,
    StepContext,
)

COMPONENT = "kubernetes-secrets"


class SecretsArgs(ClusterArgs):
    backup_id: str = Field(default="latest", description="a backup id, or latest")
    identity_file: str | None = Field(default=None, description=(
        "age key of the backup's recipient (default: backups.components."
        "kubernetes-secrets.identity_file)"))
    namespace_map: dict[str, str] = Field(default_factory=dict,
                                          description="restore namespace OLD into NEW")
    only: list[str] = Field(default_factory=list, description="namespace/name to restore")
    overwrite: bool = Field(default=False, description="update Secrets that differ")
    create_namespace: bool = False
    dry_run: bool = Field(default=False, description=(
        "only plan and record the plan (a step an approval can show)"))


def _identity(services: Services, a: SecretsArgs) -> str:
    comp = services.config.backups.components.get(COMPONENT)
    path = a.identity_file or getattr(comp, "identity_file", None)
    if not path:
        raise ActionFailed("no age key: give identity_file, or set backups.components."
                           f"{COMPONENT}.identity_file")
    return str(path)


def _backup_id(services: Services, wanted: str) -> str:
    from controlplane.backups import catalog

    if wanted != "latest":
        return wanted
    with services.store.session() as s:
        row = catalog.latest_complete(s, COMPONENT)
        if row is None:
            raise ActionFailed(f"no complete {COMPONENT} backup; run `controlplane backup run "
                               f"{COMPONENT}` first")
        return str(row.id)


class RestoreSecrets(Action[SecretsArgs]):
    name = "restore.secrets"
    args_model = SecretsArgs
    summary = "restore Kubernetes Secrets from a backup (plan, apply, verify value hashes)"
    default_timeout = 900.0
    example_args: ClassVar[dict[str, object]] = {"namespace_map": {"voice360": "voice360"}}

    def _load(self) -> tuple[str, Any, dict[str, Any], list[dict[str, Any]]]:
        from controlplane.backups.k8s_secrets import BackupRefused, load
        from controlplane.k8s import restore

        key = _identity(self.services, self.args)
        backup_id = _backup_id(self.services, self.args.backup_id)
        try:
            manifest, items = load(self.services.store, self.services.backup_ops().blob,
                                   backup_id, key)
        except BackupRefused as exc:
            raise ActionFailed(str(exc)) from None
        return backup_id, connection(self.services, self.args), manifest, \
            restore.select(items, self.args.only)

    def _plan(self, kube: Any, items: list[dict[str, Any]]) -> list[Any]:
        from controlplane.k8s import restore

        a = self.args
        return list(restore.plan(kube, items, a.namespace_map, a.overwrite, a.create_namespace))

    def planned_outputs(self) -> dict[str, Any]:
        try:
            return {"backup_id": _backup_id(self.services, self.args.backup_id)}
        except ActionFailed:
            return {}

    def plan(self) -> list[str]:
        from controlplane.k8s.client import Kube, KubeError

        try:
            backup_id, conn, _, items = self._load()
            with Kube(conn, 30) as kube:
                actions = self._plan(kube, items)
        except ActionFailed as exc:
            return [f"would fail: {exc.message}"]
        except KubeError as exc:
            return [f"would fail: {exc}"]
        return [f"restore {len(items)} Secrets of backup {backup_id} into "
                f"{conn.describe()}, then compare every value's sha256 with the "
                "manifest:", *(f"  {x.line()}" for x in actions)]

    def _record_plan(self) -> ActionResult:
        from controlplane.k8s.client import Kube, KubeError

        backup_id, conn, _, items = self._load()
        try:
            with Kube(conn, 30) as kube:
                lines = [x.line() for x in self._plan(kube, items)]
        except KubeError as exc:
            raise ActionFailed(str(exc)) from None
        return ActionResult(f"plan for {len(items)} Secrets of {backup_id}: "
                            + "; ".join(lines), {"backup_id": backup_id, "actions": lines,
                                                 "plan": "; ".join(lines)})

    def run(self, ctx: StepContext) -> ActionResult:
        from controlplane.backups.k8s_secrets import value_hash
        from controlplane.k8s import restore
        from controlplane.k8s.client import Kube, KubeError

        if self.args.dry_run:
            return self._record_plan()
        backup_id, conn, manifest, items = self._load()
        expected = {f"{e['namespace']}/{e['name']}": e["keys"] for e in manifest["secrets"]}
        try:
            with Kube(conn, max(1.0, min(30.0, ctx.remaining()))) as kube:
                actions = restore.apply(kube, self._plan(kube, items))
                ctx.progress(applied=len(actions))
                wrong = []
                for x in actions:
                    if x.verb not in ("done", "unchanged"):
                        continue
                    got = kube.json(f"get secret {x.target}",
                                    kube.core().read_namespaced_secret, x.name, x.namespace)
                    hashes = {k: value_hash(v) for k, v in sorted((got.get("data") or
                                                                  {}).items())}
                    if hashes != expected.get(x.source):
                        wrong.append(x.target)
        except KubeError as exc:
            raise ActionFailed(str(exc)) from None
        lines = [x.line() for x in actions]
        outputs = {"backup_id": backup_id, "actions": lines, "mismatches": wrong,
                   "done": sum(1 for x in actions if x.verb == "done")}
        bad = [x.line() for x in actions if x.verb in ("conflict", "missing-namespace", "skip")]
        if bad or wrong:
            raise ActionFailed("; ".join(bad + [f"{t}: value hashes differ from the manifest"
                                                 for t in wrong]), outputs)
        return ActionResult(f"{outputs['done']} of {len(actions)} Secrets written from "
                            f"{backup_id}; every value's sha256 matches the manifest", outputs)

"""Backup kind ``kubernetes-secrets``: the Secrets backup of controlplane/backups/k8s_secrets.py
and its drill, as a member of the backup-kind registry.

The component's ``backups.components.NAME`` entry (cluster, namespaces, exclusions,
recipients, identity_file, drill.namespace) becomes the Secrets backup's own config, so
``backup run``, cron, retention, ``drill run`` and the DR tracker treat it like the others.

The drill restores the newest backup into a scratch namespace it creates
(``DRILL.NAMESPACE-<8 hex>``, ``controlplane-drill-…`` by default), compares every value's
hash with the manifest and deletes the namespace whatever happened; its duration is the
measured RTO. deploy/rbac grants the namespace rights only for that prefix.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from controlplane.backups import catalog, k8s_secrets
from controlplane.backups.base import BackupJobLike, BackupKind, DrillLike
from controlplane.backups.blob import BlobStore
from controlplane.backups.catalog import BackupRow
from controlplane.backups.config import BackupComponentConfig, BackupsConfig
from controlplane.backups.k8s_secrets import (
    BackupRefused,
    SecretsBackup,
    SecretsBackupConfig,
    value_hash,
)
from controlplane.backups.service import BackupOutcome
from controlplane.backups.streams import ProgressFn
from controlplane.dr import cleanup
from controlplane.dr.drill import StepDrill
from controlplane.k8s import restore
from controlplane.k8s.client import Kube, KubeError
from controlplane.results import Status, StepFailed
from controlplane.store import Store

log = logging.getLogger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
DRILL_LABEL = "controlplane.360voice.io/drill"
COMPONENT_LABEL = "controlplane.360voice.io/drill-component"
GRANT_WAIT_S = 30.0


def secrets_config(name: str, backups: BackupsConfig) -> SecretsBackupConfig:
    if name not in backups.components:
        known = ", ".join(sorted(backups.components)) or "none configured"
        raise KeyError(f"no backup component {name!r} (configured: {known})")
    comp: BackupComponentConfig = backups.components[name]
    return SecretsBackupConfig(
        env=comp.env, cluster=comp.cluster, namespaces=comp.namespaces,
        include_service_account_tokens=comp.include_service_account_tokens,
        include_helm_releases=comp.include_helm_releases, recipients=comp.recipients,
        identity_file=comp.identity_file, drill_namespace=comp.drill.namespace,
        drill_restore_role=comp.drill.restore_role,
        timeout=min(comp.timeout, 600.0),  # per Kubernetes API request
        lock_stale_after=backups.lock_stale_after)


def secrets_components(backups: BackupsConfig) -> list[str]:
    """Names of the configured components of kind kubernetes-secrets."""
    return sorted(n for n, c in backups.components.items() if c.kind == "kubernetes-secrets")


class SecretsJob:
    def __init__(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
                 progress: ProgressFn | None) -> None:
        self.job = SecretsBackup(secrets_config(name, backups), store, blob, progress,
                                 component=name)
        self.store = store
        self.backup_id = ""

    def run(self) -> BackupOutcome:
        result = self.job.run()
        self.backup_id = self.job.backup_id
        with self.store.session() as s:
            row = s.get(BackupRow, self.backup_id)
            data = row.to_dict() if row is not None else {}
        return BackupOutcome(self.backup_id, result, data)


class SecretsDrill(StepDrill):
    """pick -> load (every hash checked) -> create-namespace -> restore -> compare ->
    delete-namespace (always, once created)."""

    def __init__(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
                 progress: ProgressFn | None = None, on_demand: bool = False) -> None:
        self.scfg = secrets_config(name, backups)
        self.kube: Kube | None = None
        self.created = False
        super().__init__(name, backups, store, blob, progress, on_demand)
        self.details = {"namespace": self.scratch}

    def scratch_name(self, row_id: int | None) -> str:
        # Unique per drill, so a namespace still Terminating never blocks the next drill.
        return f"{self.scfg.drill_namespace}-{uuid.uuid4().hex[:8]}"[:63]

    def steps(self) -> None:
        manifest, items = self._pick_and_load()
        self.kube = kube = Kube(self.scfg.cluster, self.scfg.timeout)
        with self.rec.step("create-namespace") as st:
            left = _guard(lambda: self._delete_leftovers(kube))
            _guard(lambda: self._create_namespace(kube))
            st.message = self.scratch + (f" (deleted what killed drills left: "
                                         f"{', '.join(left)})" if left else "")
        mapping = {ns: self.scratch for ns in manifest["namespaces"]}
        with self.rec.step("restore") as st:
            t = time.monotonic()
            actions = _guard(lambda: restore.apply(kube, restore.plan(
                kube, items, mapping, overwrite=True, rename=True)))
            bad = [a.line() for a in actions if a.verb not in ("done", "unchanged")]
            if bad:
                raise StepFailed("; ".join(bad))
            self.restore_s = round(time.monotonic() - t, 3)
            st.message = f"{len(actions)} secrets into {self.scratch}"
        with self.rec.step("compare") as st:
            expected = {f"{e['namespace']}/{e['name']}": e["keys"] for e in manifest["secrets"]}
            wrong = _guard(lambda: _compare(kube, actions, expected))
            if wrong:
                raise StepFailed(f"values differ from the manifest: {', '.join(wrong)}")
            st.message = f"{sum(len(k) for k in expected.values())} values match"
        self.passed_detail = (f"restored into {self.scratch} ({len(items)} secrets, every "
                              "value compared)")

    def _pick_and_load(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        identity = self.scfg.identity_file
        if not identity:  # a config mistake is named first, backup or not
            with self.rec.step("load"):
                raise StepFailed(f"backups.components.{self.name}.identity_file is not set; "
                                 "drills need the age private key to decrypt")
        self.pick_latest()
        with self.rec.step("load") as st:
            try:
                manifest, items = k8s_secrets.load(self.store, self.blob, self.backup_id,
                                                   identity, self.name)
            except BackupRefused as exc:
                raise StepFailed(str(exc)) from None
            st.message = f"{len(items)} secrets, every value's sha256 checked"
        return manifest, items

    def _delete_leftovers(self, kube: Kube) -> list[str]:
        """Scratch namespaces of this component's drills that died before deleting theirs
        (kill -9): labelled by us, owned by no running drill (one running past its timeout
        is marked failed first, as for postgres)."""
        cleanup.fail_stale_drills(self.store, self.name, self.cfg.drill.timeout)
        with self.store.session() as s:
            running = {str(r.id) for r in catalog.drills(s, self.name)
                       if r.status == catalog.RUNNING}
        doc = kube.json("list earlier drill namespaces", kube.core().list_namespace,
                        label_selector=f"{MANAGED_BY}=controlplane,{COMPONENT_LABEL}={self.name[:63]}")
        left = []
        for ns in doc.get("items") or []:
            meta = ns["metadata"]
            if meta.get("deletionTimestamp") or meta["labels"].get(DRILL_LABEL) in running:
                continue
            kube.call(f"delete namespace {meta['name']}", kube.core().delete_namespace,
                      meta["name"])
            log.warning("deleted a killed drill's namespace namespace=%s drill_id=%s",
                        meta["name"], meta["labels"].get(DRILL_LABEL))
            left.append(str(meta["name"]))
        return left

    def _create_namespace(self, kube: Kube) -> None:
        """The scratch namespace, and the restore role bound to ourselves inside it (a new
        namespace has no RoleBinding; deploy/rbac lets us bind only that role, only there)."""
        core = kube.core()
        kube.call(f"create namespace {self.scratch}", core.create_namespace,
                  {"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": self.scratch,
                                "labels": {MANAGED_BY: "controlplane",
                                           DRILL_LABEL: str(self.drill_id),
                                           COMPONENT_LABEL: self.name[:63]}}})
        self.created = True
        from kubernetes import client

        who = kube.json("read our own identity",
                        client.AuthenticationV1Api(kube.api).create_self_subject_review,
                        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        user = who["status"]["userInfo"]["username"]
        rbac = client.RbacAuthorizationV1Api(kube.api)
        role = self.scfg.drill_restore_role
        kube.call(f"bind {role} in namespace {self.scratch}",
                  rbac.create_namespaced_role_binding, self.scratch, {
                      "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                      "metadata": {"name": role, "namespace": self.scratch},
                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role},
                      "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                    "name": user}]})
        self._wait_granted(kube)

    def _wait_granted(self, kube: Kube) -> None:
        """RBAC changes reach the authorizer through an informer: ask until it says yes."""
        from kubernetes import client

        authz = client.AuthorizationV1Api(kube.api)
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"namespace": self.scratch, "verb": "create",
                                                  "resource": "secrets"}}}
        deadline = time.monotonic() + GRANT_WAIT_S
        while True:
            doc = kube.json("check our rights in the scratch namespace",
                            authz.create_self_subject_access_review, review)
            if doc.get("status", {}).get("allowed"):
                return
            if time.monotonic() > deadline:
                raise StepFailed(f"the RoleBinding of {self.scfg.drill_restore_role} in "
                                 f"{self.scratch} did not take effect within {GRANT_WAIT_S:g}s")
            time.sleep(0.1)

    def clean_up(self, status: Status, step: str) -> None:
        kube = self.kube
        if kube is None:
            return
        try:
            if self.created:
                with self.rec.step("delete-namespace") as st:
                    try:
                        kube.call(f"delete namespace {self.scratch}",
                                  kube.core().delete_namespace, self.scratch)
                        st.message = f"{self.scratch} deleted with its Secrets"
                    except KubeError as exc:
                        st.status = Status.DEGRADED
                        st.message = (f"could not delete {self.scratch}: {exc}; delete it "
                                      "by hand")
                        log.warning("drill namespace left behind namespace=%s", self.scratch)
        finally:
            kube.close()


def _guard(fn: Any) -> Any:
    try:
        return fn()
    except KubeError as exc:
        raise StepFailed(str(exc)) from None


def _compare(kube: Kube, actions: list[Any], expected: dict[str, dict[str, str]]) -> list[str]:
    wrong = []
    for a in actions:
        got = kube.json(f"get secret {a.target}", kube.core().read_namespaced_secret, a.name,
                        a.namespace)
        hashes = {k: value_hash(v) for k, v in sorted((got.get("data") or {}).items())}
        if hashes != expected.get(a.source):
            wrong.append(a.source)
    return wrong


class KubernetesSecretsKind(BackupKind):
    kind = "kubernetes-secrets"
    drill_steps = ("pick", "load", "create-namespace", "restore", "compare", "delete-namespace")

    def summary(self, manifest: dict[str, Any]) -> str:
        return k8s_secrets.summary(manifest)

    def job(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
            progress: ProgressFn | None = None) -> BackupJobLike:
        return SecretsJob(name, backups, store, blob, progress)

    def drill(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
              progress: ProgressFn | None = None, on_demand: bool = False) -> DrillLike:
        return SecretsDrill(name, backups, store, blob, progress, on_demand)

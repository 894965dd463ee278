"""Kubernetes Secrets backups: list -> serialise -> age -> blob -> manifest -> catalog.

The Secrets of the configured namespaces are written as one Kubernetes ``List`` document
(JSON: ``age -d`` then ``kubectl apply -f`` restores them by hand), with type, labels,
annotations and data kept and server-set fields (uid, resourceVersion, managedFields)
dropped. Service-account tokens and Helm release records are left out unless configured.

The manifest beside the blob names every Secret, its type, its key names with a sha256 per
value and the resourceVersion read; never a value. Loading a backup checks the catalog's
manifest hash, the blob's hash, the age authentication and every value's hash before it
hands anything to a restore, so a tampered, truncated or wrong-key backup writes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controlplane.backups import catalog
from controlplane.backups.blob import BlobError, BlobStore
from controlplane.backups.catalog import COMPLETE, FAILED, BackupLock, BackupRow
from controlplane.backups.crypto import (
    CryptoError,
    decrypt_stream,
    encrypt_stream,
    load_identities,
    parse_recipients,
)
from controlplane.backups.service import backup_check_id, backup_id_for, heartbeat
from controlplane.k8s.client import ClusterConnection, Kube, KubeError
from controlplane.results import Result, Status, Step, StepFailed, StepRecorder, iso, utcnow
from controlplane.store import Store

log = logging.getLogger(__name__)

COMPONENT = "kubernetes-secrets"
MANIFEST_VERSION = 1
SA_TOKEN = "kubernetes.io/service-account-token"
HELM_RELEASE = "helm.sh/release.v1"
ProgressFn = Any


class SecretsBackupConfig(BaseModel):
    """``backups.components.kubernetes-secrets`` (kind: kubernetes-secrets)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["kubernetes-secrets"] = "kubernetes-secrets"
    env: str = "production"
    cluster: ClusterConnection
    namespaces: list[str] = Field(min_length=1)
    include_service_account_tokens: bool = False
    include_helm_releases: bool = False
    recipients: list[str] = Field(min_length=1)
    identity_file: str | None = None
    drill_namespace: str = "controlplane-drill"
    """Drills restore into a fresh ``<drill_namespace>-<8 hex>`` namespace and delete it."""
    drill_restore_role: str = "controlplane-secrets-restore"
    """The ClusterRole a drill binds to itself inside its scratch namespace."""
    timeout: float = 600.0
    lock_stale_after: float = 600.0
    """A run's lock whose holder sent no heartbeat for this long is taken over."""

    @field_validator("recipients")
    @classmethod
    def _age(cls, value: list[str]) -> list[str]:
        for r in value:
            if not r.startswith("age1"):
                raise ValueError(f"{r!r} is not an age X25519 recipient; it starts with age1")
        return value


def blob_names(env: str, backup_id: str, component: str = COMPONENT) -> tuple[str, str]:
    base = f"{component}/{env}/{backup_id}"
    return base + ".json.age", base + ".manifest.json"


def summary(manifest: dict[str, Any]) -> str:
    return (f"{len(manifest.get('secrets', []))} secrets from "
            f"{len(manifest.get('namespaces', []))} namespace(s)")


def value_hash(b64: str) -> str:
    return hashlib.sha256(base64.b64decode(b64)).hexdigest()


# -- collect -----------------------------------------------------------------------------------


def collect(kube: Kube, cfg: SecretsBackupConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the List document, manifest entries) for the configured namespaces."""
    items: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    core = kube.core()
    for ns in cfg.namespaces:
        doc = kube.json(f"list secrets in namespace {ns}", core.list_namespaced_secret, ns)
        for s in doc.get("items") or []:
            stype = s.get("type") or "Opaque"
            if stype == SA_TOKEN and not cfg.include_service_account_tokens:
                continue
            if stype == HELM_RELEASE and not cfg.include_helm_releases:
                continue
            items.append(clean(s))
            entries.append(entry(s))
    return {"apiVersion": "v1", "kind": "List", "items": items}, entries


def clean(s: dict[str, Any]) -> dict[str, Any]:
    """The Secret as `kubectl apply` takes it back: no server-set fields."""
    m = s["metadata"]
    meta: dict[str, Any] = {"name": m["name"], "namespace": m["namespace"]}
    if m.get("labels"):
        meta["labels"] = m["labels"]
    annotations = {k: v for k, v in (m.get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}
    if annotations:
        meta["annotations"] = annotations
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                           "type": s.get("type") or "Opaque", "data": s.get("data") or {}}
    if s.get("immutable"):
        out["immutable"] = True
    return out


def entry(s: dict[str, Any]) -> dict[str, Any]:
    m = s["metadata"]
    return {"namespace": m["namespace"], "name": m["name"], "type": s.get("type") or "Opaque",
            "resource_version": m.get("resourceVersion"),
            "keys": {k: value_hash(v) for k, v in sorted((s.get("data") or {}).items())}}


# -- backup ------------------------------------------------------------------------------------


@dataclass
class SecretsBackup:
    cfg: SecretsBackupConfig
    store: Store
    blob: BlobStore
    progress: ProgressFn | None = None
    rec: StepRecorder = field(default_factory=StepRecorder)
    component: str = COMPONENT
    """The catalog's component name (``backups.components`` key)."""
    backup_id: str = ""

    def run(self) -> Result:
        started = utcnow()
        t0 = time.monotonic()
        backup_id = self.backup_id = backup_id_for(self.component, self.cfg.env, started)
        blob_name, manifest_name = blob_names(self.cfg.env, backup_id, self.component)
        with self.store.session() as s:
            s.add(BackupRow(id=backup_id, component=self.component, env=self.cfg.env,
                            status=catalog.RUNNING, started_at=started, blob_name=blob_name,
                            manifest_name=manifest_name, host=catalog.holder_id()))
        # The same per-component lock as the postgres job: a scheduled and a manual run
        # of one component never overlap (the second is refused, nothing is cataloged twice).
        lock = BackupLock(self.store, self.component, backup_id, self.cfg.lock_stale_after)
        try:
            lock.acquire_step(self.rec)
        except StepFailed as exc:
            return self._failed(backup_id, started, t0, "lock", str(exc))
        stop_beat = heartbeat(lock)
        try:
            if lock.took_over:
                self._remove_interrupted(lock.took_over)
            manifest, manifest_sha = self._steps(backup_id, blob_name, manifest_name, started)
        except StepFailed as exc:
            step = self.rec.steps[-1].name if self.rec.steps else "start"
            self._delete(blob_name)
            return self._failed(backup_id, started, t0, step, str(exc))
        except Exception as exc:  # recorded as failed, never left running
            log.exception("backup crashed component=%s", self.component)
            self._delete(blob_name)
            return self._failed(backup_id, started, t0, "crash",
                                f"{type(exc).__name__}: {exc}")
        finally:
            stop_beat.set()
            lock.release()
        duration = round(time.monotonic() - t0, 3)
        with self.store.session() as s:
            row = s.get(BackupRow, backup_id)
            assert row is not None
            row.status, row.finished_at, row.duration_s = COMPLETE, utcnow(), duration
            row.size_bytes, row.sha256 = int(manifest["encrypted_bytes"]), manifest["sha256"]
            row.manifest_sha256, row.manifest = manifest_sha, manifest
            finished = row.finished_at
        n = len(manifest["secrets"])
        log.info("backup complete component=%s backup_id=%s secrets=%d", self.component,
                 backup_id, n)
        return self._result(Status.OK, f"backup {backup_id} complete: "
                            f"{manifest['encrypted_bytes']} bytes in {duration:.1f}s, "
                            f"{summary(manifest)}",
                            started, duration, {"backup_id": backup_id, "blob": blob_name},
                            {"size_bytes": float(manifest["encrypted_bytes"]),
                             "duration_s": duration, "finished_ts": finished.timestamp(),
                             "secrets": float(n)})

    def _steps(self, backup_id: str, blob_name: str, manifest_name: str,
               started: Any) -> tuple[dict[str, Any], str]:
        with self.rec.step("list") as st:
            try:
                recipients = parse_recipients(self.cfg.recipients)
                with Kube(self.cfg.cluster, self.cfg.timeout) as kube:
                    doc, entries = collect(kube, self.cfg)
            except (KubeError, CryptoError) as exc:
                raise StepFailed(str(exc)) from None
            st.message = f"{len(entries)} secrets"
        plain = json.dumps(doc, separators=(",", ":")).encode()
        with self.rec.step("encrypt+upload") as st:
            out = io.BytesIO()
            try:
                encrypt_stream(io.BytesIO(plain), out, recipients)  # type: ignore[arg-type]
                sealed = out.getvalue()
                self._progress("upload", 0)
                self.blob.put_bytes(blob_name, sealed)
                self._progress("upload", len(sealed))
            except (CryptoError, BlobError, OSError) as exc:
                raise StepFailed(f"upload failed: {exc}") from None
            st.message = f"{len(plain)} bytes, {len(sealed)} encrypted"
        manifest: dict[str, Any] = {
            "version": MANIFEST_VERSION, "backup_id": backup_id, "component": self.component,
            "env": self.cfg.env, "kind": "kubernetes-secrets", "started_at": iso(started),
            "finished_at": iso(utcnow()), "blob": blob_name, "encryption": "age-x25519",
            "recipients": list(self.cfg.recipients),
            "sha256": hashlib.sha256(sealed).hexdigest(), "encrypted_bytes": len(sealed),
            "plain_bytes": len(plain), "namespaces": list(self.cfg.namespaces),
            "format": "kubernetes List (JSON)", "secrets": entries}
        data = json.dumps(manifest, indent=1).encode()
        with self.rec.step("manifest") as st:
            try:
                self.blob.put_bytes(manifest_name, data)
            except (BlobError, OSError) as exc:
                raise StepFailed(f"manifest upload failed: {exc}") from None
            st.message = manifest_name
        return manifest, hashlib.sha256(data).hexdigest()

    def _remove_interrupted(self, backup_id: str) -> None:
        """A dead run may have uploaded its blob before its manifest: remove what it left."""
        with self.store.session() as s:
            row = s.get(BackupRow, backup_id)
            names = [n for n in (row.blob_name, row.manifest_name) if n] if row else []
        for name in names:
            self._delete(name)

    def _progress(self, phase: str, n: int) -> None:
        if self.progress is not None:
            self.progress(phase, n)

    def _delete(self, name: str) -> None:
        try:
            self.blob.delete(name)
        except (BlobError, OSError):
            log.warning("could not delete partial blob name=%s; delete it by hand", name)

    def _failed(self, backup_id: str, started: Any, t0: float, step: str,
                error: str) -> Result:
        duration = round(time.monotonic() - t0, 3)
        with self.store.session() as s:
            row = s.get(BackupRow, backup_id)
            assert row is not None
            row.status, row.failed_step, row.error = FAILED, step, error
            row.finished_at, row.duration_s = utcnow(), duration
        log.warning("backup failed component=%s backup_id=%s step=%s error=%r", self.component,
                    backup_id, step, error)
        return self._result(Status.FAILING, f"backup of {self.component} failed at {step}: {error}",
                            started, duration, {"backup_id": backup_id, "failed_step": step}, {})

    def _result(self, status: Status, message: str, started: Any, duration: float,
                details: dict[str, Any], metrics: dict[str, float | None]) -> Result:
        return Result(check=backup_check_id(self.component), kind="backup", env=self.cfg.env,
                      status=status, started_at=started, duration_s=duration, message=message,
                      metrics=metrics, details=details,
                      steps=[Step.model_validate(st.model_dump()) for st in self.rec.steps])


# -- load (verify before any write) ------------------------------------------------------------


class BackupRefused(Exception):
    """The backup cannot be trusted; nothing was written."""


def load(store: Store, blob: BlobStore, backup_id: str, identity_file: str,
         component: str = COMPONENT) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, Secrets) of a complete backup, every hash checked."""
    with store.session() as s:
        row = s.get(BackupRow, backup_id)
        if row is None or row.component != component:
            raise BackupRefused(f"no {component} backup {backup_id!r} in the catalog "
                                f"(`controlplane backup list {component}`)")
        if row.status != COMPLETE:
            raise BackupRefused(f"backup {backup_id} is {row.status}, not complete")
        blob_name, manifest_name, want = row.blob_name, row.manifest_name, row.manifest_sha256
    try:
        data = blob.get_bytes(manifest_name)
        if hashlib.sha256(data).hexdigest() != want:
            raise BackupRefused(f"manifest of {backup_id} does not match the catalog (changed "
                                "after the backup); refusing to restore")
        manifest = json.loads(data)
        sealed = blob.get_bytes(blob_name)
    except BlobError as exc:
        raise BackupRefused(f"cannot download backup {backup_id}: {exc}") from None
    if hashlib.sha256(sealed).hexdigest() != manifest["sha256"]:
        raise BackupRefused(f"backup {backup_id} does not match its manifest's sha256 "
                            f"({len(sealed)} of {manifest['encrypted_bytes']} bytes): tampered "
                            "or truncated; refusing to restore")
    try:
        out = io.BytesIO()
        decrypt_stream(io.BytesIO(sealed), out, load_identities(identity_file))  # type: ignore[arg-type]
    except CryptoError as exc:
        raise BackupRefused(f"{exc}; refusing to restore") from None
    items = json.loads(out.getvalue())["items"]
    expected = {(e["namespace"], e["name"]): e["keys"] for e in manifest["secrets"]}
    got = {(i["metadata"]["namespace"], i["metadata"]["name"]):
           {k: value_hash(v) for k, v in sorted((i.get("data") or {}).items())} for i in items}
    if got != expected:
        raise BackupRefused(f"backup {backup_id}'s Secrets do not match the value hashes in its "
                            "manifest; refusing to restore")
    return manifest, items

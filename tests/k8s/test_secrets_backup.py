"""Secret backups and restores on the test-bed cluster, as the least-privileged user."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyrage import x25519

from controlplane.backups.blob import LocalBlobStore
from controlplane.backups.k8s_secrets import (
    BackupRefused,
    SecretsBackup,
    SecretsBackupConfig,
    load,
)
from controlplane.k8s import restore
from controlplane.k8s.client import Kube
from controlplane.k8s.testbed import KubeCluster
from controlplane.results import Status
from controlplane.store import Store
from tests.k8s.objects import Admin, secret
from tests.services.kube import grant, new_namespace, product_connection

pytestmark = pytest.mark.kube

VALUES = {"DATABASE_URL": "postgresql://app:pw-9f2@db/app", "TWILIO_TOKEN": "tw-0123456789"}


@dataclass
class Bed:
    cluster: KubeCluster
    ns: str
    store: Store
    blob: LocalBlobStore
    key: str
    recipient: str
    admin: Admin

    def cfg(self, **extra: Any) -> SecretsBackupConfig:
        return SecretsBackupConfig(cluster=product_connection(self.cluster),
                                   namespaces=[self.ns], recipients=[self.recipient],
                                   identity_file=self.key, **extra)

    def backup(self, **extra: Any) -> str:
        result = SecretsBackup(self.cfg(**extra), self.store, self.blob).run()
        assert result.status == Status.OK, result.message
        return str(result.details["backup_id"])

    def kube(self) -> Kube:
        return Kube(product_connection(self.cluster), 10)


@pytest.fixture
def bed(kube_cluster: KubeCluster, tmp_path: Path) -> Bed:
    ns = new_namespace(kube_cluster, "prod")
    grant(kube_cluster, ns, "controlplane-secrets-read")
    ident = x25519.Identity.generate()
    key = tmp_path / "key.txt"
    key.write_text(f"{ident}\n")
    os.chmod(key, 0o600)
    admin = Admin(kube_cluster)
    admin.apply(ns, secret("voice360-env", VALUES, labels={"app": "voice360"}),
                secret("halo-task-manager-api-env", {"JWT_KEY": "k-1"}),
                secret("sh.helm.release.v1.voice360-prod.v3", {"release": "H4sI"},
                       type="helm.sh/release.v1", labels={"owner": "helm"}),
                secret("default-token", {"token": "eyJ"},
                       type="kubernetes.io/service-account-token",
                       annotations={"kubernetes.io/service-account.name": "default"}))
    return Bed(kube_cluster, ns, Store(f"sqlite:///{tmp_path}/cp.db"),
               LocalBlobStore(str(tmp_path / "blobs")), str(key), str(ident.to_public()), admin)


def test_backup_keeps_app_secrets_and_manifest_holds_hashes_not_values(bed: Bed) -> None:
    backup_id = bed.backup()

    manifest, items = load(bed.store, bed.blob, backup_id, bed.key)

    assert [(e["name"], sorted(e["keys"])) for e in manifest["secrets"]] == [
        ("halo-task-manager-api-env", ["JWT_KEY"]),
        ("voice360-env", ["DATABASE_URL", "TWILIO_TOKEN"])]
    raw = bed.blob.get_bytes(f"kubernetes-secrets/production/{backup_id}.manifest.json")
    assert b"pw-9f2" not in raw and b"tw-0123" not in raw
    voice = next(i for i in items if i["metadata"]["name"] == "voice360-env")
    assert voice["metadata"] == {"name": "voice360-env", "namespace": bed.ns,
                                 "labels": {"app": "voice360"}}
    assert voice["type"] == "Opaque"


def test_helm_and_token_secrets_are_kept_when_configured(bed: Bed) -> None:
    backup_id = bed.backup(include_helm_releases=True, include_service_account_tokens=True)
    manifest, _ = load(bed.store, bed.blob, backup_id, bed.key)
    assert sorted(e["name"] for e in manifest["secrets"]) == [
        "default-token", "halo-task-manager-api-env", "sh.helm.release.v1.voice360-prod.v3",
        "voice360-env"]


def test_backup_without_read_permission_fails_naming_it(kube_cluster: KubeCluster,
                                                       bed: Bed) -> None:
    other = new_namespace(kube_cluster, "norights")
    cfg = SecretsBackupConfig(cluster=product_connection(kube_cluster), namespaces=[other],
                              recipients=[bed.recipient])
    result = SecretsBackup(cfg, bed.store, bed.blob).run()
    assert result.status == Status.FAILING
    assert result.message == (f"backup of kubernetes-secrets failed at list: 403 Forbidden: the "
                              f"control plane may not list secrets in namespace {other}; grant "
                              "it in deploy/rbac/controlplane-rbac.yaml")


def test_blob_store_gone_mid_backup_fails_with_no_complete_entry(bed: Bed,
                                                                  tmp_path: Path) -> None:
    root = tmp_path / "gone"
    store = LocalBlobStore(str(root))
    root.rmdir()
    root.write_text("not a folder")  # the mount disappeared: writes fail

    result = SecretsBackup(bed.cfg(), bed.store, store).run()

    assert result.status == Status.FAILING
    assert result.message.startswith("backup of kubernetes-secrets failed at encrypt+upload: "
                                     "upload failed: ")
    from controlplane.backups import catalog

    with bed.store.session() as s:
        rows = [r.status for r in catalog.backups(s, "kubernetes-secrets")]
    assert rows == ["failed"]


def test_tampered_truncated_and_wrong_key_backups_are_refused(bed: Bed, tmp_path: Path) -> None:
    backup_id = bed.backup()
    name = f"kubernetes-secrets/production/{backup_id}.json.age"
    good = bed.blob.get_bytes(name)
    other = tmp_path / "other.txt"
    other.write_text(f"{x25519.Identity.generate()}\n")

    with pytest.raises(BackupRefused) as wrong:
        load(bed.store, bed.blob, backup_id, str(other))
    bed.blob.put_bytes(name, good[: len(good) // 2])
    with pytest.raises(BackupRefused) as truncated:
        load(bed.store, bed.blob, backup_id, bed.key)
    bed.blob.put_bytes(name, good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(BackupRefused) as tampered:
        load(bed.store, bed.blob, backup_id, bed.key)

    assert str(wrong.value) == ("age decryption failed: the identity file does not match any "
                                "recipient of this backup (wrong key); refusing to restore")
    assert str(truncated.value).startswith(f"backup {backup_id} does not match its manifest's "
                                           "sha256 (")
    assert "tampered or truncated; refusing to restore" in str(tampered.value)


def test_dry_run_plans_create_update_unchanged_and_skip_then_apply_does_exactly_that(
        bed: Bed, kube_cluster: KubeCluster) -> None:
    backup_id = bed.backup()
    _, items = load(bed.store, bed.blob, backup_id, bed.key)
    target = new_namespace(kube_cluster, "restore")
    grant(kube_cluster, target, "controlplane-secrets-restore")
    bed.admin.apply(target, secret("voice360-env", dict(VALUES, TWILIO_TOKEN="rotated")),
                    secret("halo-task-manager-api-env", {"JWT_KEY": "k-1"}))
    mapping = {bed.ns: target}

    with bed.kube() as kube:
        skip = [a.line() for a in restore.plan(kube, items, mapping)]
        dry = restore.plan(kube, items, mapping, overwrite=True)
        done = restore.apply(kube, dry)
        again = [a.line() for a in restore.plan(kube, items, mapping, overwrite=True)]

    assert skip == [f"unchanged {target}/halo-task-manager-api-env",
                    f"skip {target}/voice360-env (exists; use --overwrite)"]
    assert [a.line() for a in dry] == [f"unchanged {target}/halo-task-manager-api-env",
                                       f"update {target}/voice360-env (keys: TWILIO_TOKEN)"]
    assert [a.verb for a in done] == ["unchanged", "done"]
    assert again == [f"unchanged {target}/halo-task-manager-api-env",
                     f"unchanged {target}/voice360-env"]
    assert "tw-0123" not in json.dumps([a.to_json() for a in dry])


def test_changed_since_the_plan_is_a_conflict_never_overwritten(
        bed: Bed, kube_cluster: KubeCluster) -> None:
    backup_id = bed.backup()
    _, items = load(bed.store, bed.blob, backup_id, bed.key)
    target = new_namespace(kube_cluster, "restore")
    grant(kube_cluster, target, "controlplane-secrets-restore")
    bed.admin.apply(target, secret("voice360-env", {"DATABASE_URL": "old"}))
    only = restore.select(items, [f"{bed.ns}/voice360-env"])

    with bed.kube() as kube:
        dry = restore.plan(kube, only, {bed.ns: target}, overwrite=True)
        bed.admin.core.patch_namespaced_secret("voice360-env", target,
                                               {"stringData": {"DATABASE_URL": "newer"}})
        done = restore.apply(kube, dry)

    assert [a.line() for a in done] == [
        f"conflict {target}/voice360-env (changed since the plan; run again to re-plan)"]
    got = bed.admin.core.read_namespaced_secret("voice360-env", target)
    assert got.data == {"DATABASE_URL": "bmV3ZXI="}  # "newer": untouched


def test_restore_into_missing_namespace_needs_create_namespace(bed: Bed) -> None:
    backup_id = bed.backup()
    _, items = load(bed.store, bed.blob, backup_id, bed.key)
    with bed.kube() as kube:
        lines = [a.line() for a in restore.plan(kube, items, {bed.ns: "does-not-exist"})]
    assert lines == [
        "error does-not-exist/halo-task-manager-api-env (namespace does-not-exist does not "
        "exist; use --create-namespace)",
        "error does-not-exist/voice360-env (namespace does-not-exist does not exist; use "
        "--create-namespace)"]


def test_restore_by_hand_with_age_and_kubectl_apply(bed: Bed, tmp_path: Path) -> None:
    """docs/kubernetes.md "Restore by hand": sha256sum, age -d, kubectl apply -f."""
    import base64

    from controlplane.k8s.testbed import kube_dir

    backup_id = bed.backup()
    base = f"kubernetes-secrets/production/{backup_id}"
    enc, man = tmp_path / "secrets.json.age", tmp_path / "secrets.manifest.json"
    enc.write_bytes(bed.blob.get_bytes(base + ".json.age"))
    man.write_bytes(bed.blob.get_bytes(base + ".manifest.json"))
    sums = subprocess.run(["sha256sum", str(man), str(enc)], check=True, capture_output=True,
                          text=True).stdout.split()
    assert sums[2] == json.loads(man.read_text())["sha256"]
    plain = tmp_path / "secrets.json"
    subprocess.run(["age", "-d", "-i", bed.key, "-o", str(plain), str(enc)], check=True)
    # The disaster: the namespace's Secrets are gone.
    for name in ("voice360-env", "halo-task-manager-api-env"):
        bed.admin.core.delete_namespaced_secret(name, bed.ns)

    kubectl = os.path.join(kube_dir(), "bin", "kubectl")
    out = subprocess.run([kubectl, "--kubeconfig", bed.cluster.kubeconfig("admin"), "apply",
                          "-f", str(plain)], check=True, capture_output=True, text=True)

    assert out.stdout.splitlines() == ["secret/halo-task-manager-api-env created",
                                       "secret/voice360-env created"]
    got = bed.admin.core.read_namespaced_secret("voice360-env", bed.ns)
    assert {k: base64.b64decode(v).decode() for k, v in got.data.items()} == VALUES


class GatedBlobStore(LocalBlobStore):
    """A local folder whose first upload waits until the test opens the gate: the backup
    holding it is mid-run, for as long as the test needs."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.reached, self.gate = threading.Event(), threading.Event()

    def put_bytes(self, name: str, data: bytes) -> None:
        self.reached.set()
        assert self.gate.wait(60), "the test never opened the gate"
        super().put_bytes(name, data)


def test_second_concurrent_run_of_a_component_is_refused_and_nothing_is_cataloged_twice(
        bed: Bed, tmp_path: Path) -> None:
    from controlplane.backups import catalog

    gated = GatedBlobStore(str(tmp_path / "blobs"))
    first: list[Any] = []
    runner = threading.Thread(target=lambda: first.append(
        SecretsBackup(bed.cfg(), bed.store, gated, component="cluster-secrets").run()))
    runner.start()
    try:
        assert gated.reached.wait(60), "the first run never reached its upload"
        second = SecretsBackup(bed.cfg(), bed.store, gated, component="cluster-secrets").run()
    finally:
        gated.gate.set()
        runner.join(60)

    assert second.status == Status.FAILING
    assert [s.name for s in second.steps] == ["lock"]
    (ok,) = first
    assert ok.status == Status.OK, ok.message
    held = re.fullmatch(
        r"backup of cluster-secrets failed at lock: backup (cluster-secrets-production-\d{8}T"
        r"\d{9}Z) of cluster-secrets is already running \(holder [^ ]+, started "
        r"[0-9TZ:.-]+\); this run was refused", second.message)
    assert held is not None and held[1] == ok.details["backup_id"]
    with bed.store.session() as s:
        rows = {r.id: (r.status, r.failed_step) for r in catalog.backups(s, "cluster-secrets")}
        assert s.get(catalog.BackupLockRow, "cluster-secrets") is None  # released
    assert rows == {ok.details["backup_id"]: ("complete", ""),
                    second.details["backup_id"]: ("failed", "lock")}
    assert sorted(p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()) == [
        f"{ok.details['backup_id']}.json.age", f"{ok.details['backup_id']}.manifest.json"]
    # Once the first is done, the next run takes the lock.
    assert SecretsBackup(bed.cfg(), bed.store, gated,
                         component="cluster-secrets").run().status == Status.OK

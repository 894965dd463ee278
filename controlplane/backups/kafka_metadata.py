"""Backup kind ``kafka-metadata``: a Kafka cluster's metadata, age-encrypted to blob storage.

Saved: topics (partitions, replication factor, configs set on the topic), cluster-wide
dynamic broker configs, every consumer group's committed offsets, ACLs where the cluster has
an authorizer. Secrets (sensitive configs, names with password/jaas/...) are stored as
``<redacted>`` and never restored. Message data is NOT saved: topics with replication factor
1 are reported unprotected on /dr (controlplane/dr/tracker.py).

The document is small (kilobytes), so it is encrypted and decrypted in memory; a restore
decrypts and checks the whole backup before it writes anything to the target cluster.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controlplane.backups import kafka_admin
from controlplane.backups.blob import BlobError, BlobStore
from controlplane.backups.crypto import (
    CryptoError,
    decrypt_stream,
    encrypt_stream,
    parse_recipients,
)
from controlplane.backups.kafka_admin import KafkaMetadataError, connection, isolated
from controlplane.backups.restore import VerificationFailed, check_manifest
from controlplane.backups.service import MANIFEST_VERSION, BackupJob, _iso
from controlplane.kafka.client import KafkaSecurity
from controlplane.results import StepFailed, utcnow

KIND = "kafka-metadata"
DEFAULT_TIMEOUT_S = 60.0
Progress = Callable[[str, int], None]
"""(phase, count) as a backup or restore goes; the runbook engine shows it live."""


def serialise(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def encrypt(plain: bytes, recipients: list[str]) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), out, parse_recipients(recipients))  # type: ignore[arg-type]
    return out.getvalue()


def summary(manifest: dict[str, Any]) -> str:
    c = manifest.get("counts", {})
    return f"{c.get('topics', 0)} topics, {c.get('groups', 0)} consumer groups"


class KafkaMetadataJob(BackupJob):
    """The backup job of a kafka-metadata component (lock, catalog, manifest as postgres)."""

    def _run_locked(self, t0: float, lock: Any) -> dict[str, object]:
        bootstrap = str(self.cfg.bootstrap)
        with self.rec.step("collect") as st:
            try:
                cluster = connection(bootstrap, self.cfg)  # its TLS and SASL settings
                doc = isolated(kafka_admin.collect, cluster, DEFAULT_TIMEOUT_S,
                               timeout=min(self.cfg.timeout, 3 * DEFAULT_TIMEOUT_S))
            except KafkaMetadataError as exc:
                raise StepFailed(str(exc)) from None
            st.message = f"{len(doc['topics'])} topics, {len(doc['groups'])} groups"
        if self.progress is not None:
            self.progress("collect", len(doc["topics"]))
        plain = serialise(doc)
        with self.rec.step("encrypt+upload") as st:
            try:
                data = encrypt(plain, self.cfg.recipients)
                self.blob.put_bytes(self.blob_name, data)
            except (CryptoError, BlobError) as exc:
                raise StepFailed(f"upload failed: {exc}") from None
            st.message = f"{len(data)} bytes uploaded"
        rf1 = sorted(n for n, t in doc["topics"].items() if int(t["replication_factor"]) < 2)
        manifest: dict[str, object] = {
            "version": MANIFEST_VERSION, "backup_id": self.backup_id, "component": self.name,
            "env": self.cfg.env, "kind": KIND, "cluster_id": doc["cluster_id"],
            "started_at": _iso(self.started), "finished_at": _iso(utcnow()),
            "duration_s": round(time.monotonic() - t0, 3), "blob": self.blob_name,
            "encryption": "age-x25519", "recipients": list(self.cfg.recipients),
            "sha256": hashlib.sha256(data).hexdigest(), "encrypted_bytes": len(data),
            "plain_bytes": len(plain), "plain_sha256": hashlib.sha256(plain).hexdigest(),
            "counts": {"topics": len(doc["topics"]), "groups": len(doc["groups"]),
                       "acls": len(doc["acls"] or [])},
            # Names only: what a restore must create, and what /dr reports as unprotected.
            "topics": {n: {"partitions": t["partitions"],
                           "replication_factor": t["replication_factor"]}
                       for n, t in doc["topics"].items()},
            "unprotected_topics": rf1, "message_data": "not saved (metadata only)"}
        self._put_manifest(manifest)
        return manifest


@dataclass
class LoadedBackup:
    manifest: dict[str, Any]
    doc: dict[str, Any]


def load(blob: BlobStore, manifest: dict[str, Any], identities: list[Any],
         manifest_name: str = "", manifest_sha256: str | None = None) -> LoadedBackup:
    """Download, check (manifest, sha256, size) and decrypt the backup, all in memory.

    Raises VerificationFailed before anything could be written: a tampered blob, a changed
    manifest and the wrong key are all refused here.
    """
    if manifest.get("kind") != KIND:
        raise VerificationFailed(f"backup {manifest.get('backup_id')} is a "
                                 f"{manifest.get('kind')} backup, not {KIND}")
    if manifest_name:
        check_manifest(blob, manifest_name, manifest, manifest_sha256)
    name = str(manifest["blob"])
    try:
        data = blob.get_bytes(name)
    except BlobError as exc:
        raise VerificationFailed(str(exc)) from None
    got = hashlib.sha256(data).hexdigest()
    if len(data) != int(manifest["encrypted_bytes"]) or got != manifest["sha256"]:
        raise VerificationFailed(f"{name} was modified: sha256 {got[:16]}… ({len(data)} bytes) "
                                 f"differs from the manifest's {str(manifest['sha256'])[:16]}… "
                                 f"({manifest['encrypted_bytes']} bytes); this backup cannot "
                                 "be trusted (tampered or corrupted)", True)
    out = io.BytesIO()
    try:
        decrypt_stream(io.BytesIO(data), out, identities)  # type: ignore[arg-type]
    except CryptoError as exc:
        raise VerificationFailed(f"{name}: {exc}", "wrong key" not in str(exc)) from None
    plain = out.getvalue()
    if hashlib.sha256(plain).hexdigest() != manifest.get("plain_sha256"):
        raise VerificationFailed(f"{name} decrypts to other content than was backed up", True)
    return LoadedBackup(manifest, json.loads(plain))


def plan(doc: dict[str, Any]) -> list[str]:
    """What a restore would create, one line each (the dry-run)."""
    lines = []
    for name, t in doc["topics"].items():
        cfg = ", ".join(f"{k}={v}" for k, v in t.get("configs", {}).items()
                        if v != kafka_admin.REDACTED)
        lines.append(f"create topic {name}: {t['partitions']} partitions, replication factor "
                     f"{t['replication_factor']}" + (f", configs {cfg}" if cfg else ""))
    for group, offsets in doc["groups"].items():
        shown = ", ".join(f"{k}={v}" for k, v in offsets.items())
        lines.append(f"commit offsets of group {group}: {shown}")
    if doc.get("acls"):
        lines.append(f"create {len(doc['acls'])} ACLs")
    return lines


def compare(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Differences between the backup and a cluster's metadata (empty: they match).
    Replication factor is compared only up to the target's broker count."""
    out = []
    for name, t in want["topics"].items():
        g = got["topics"].get(name)
        if g is None:
            out.append(f"topic {name} missing")
            continue
        rf = min(int(t["replication_factor"]), int(got["brokers"]))
        if (g["partitions"], g["replication_factor"]) != (t["partitions"], rf):
            out.append(f"topic {name}: {g['partitions']} partitions RF {g['replication_factor']}"
                       f", backup says {t['partitions']} RF {rf}")
        cfg = {k: v for k, v in t.get("configs", {}).items() if v != kafka_admin.REDACTED}
        got_cfg = {k: v for k, v in g.get("configs", {}).items() if k in cfg}
        if got_cfg != cfg:
            out.append(f"topic {name}: configs {got_cfg}, backup says {cfg}")
    for group, offsets in want["groups"].items():
        if got["groups"].get(group) != offsets:
            out.append(f"group {group}: offsets {got['groups'].get(group)}, backup says "
                       f"{offsets}")
    return out


@dataclass
class RestoreReport:
    created: dict[str, int]
    differences: list[str]
    seconds: float


def restore(loaded: LoadedBackup, bootstrap: str, timeout: float = DEFAULT_TIMEOUT_S,
            progress: Progress | None = None,
            security: KafkaSecurity | None = None) -> RestoreReport:
    """Apply a loaded (verified) backup to an empty cluster, then compare what is there.
    ``security``: the TLS/SASL settings to reach it with (the component's); None:
    plaintext."""
    t0 = time.monotonic()
    cluster = connection(bootstrap, security)
    created = isolated(kafka_admin.apply, cluster, loaded.doc, timeout,
                       timeout=timeout * 3)
    if progress is not None:
        progress("restore", int(created["topics"]))
    got = isolated(kafka_admin.collect, cluster, timeout, timeout=timeout * 2)
    if progress is not None:
        progress("check", len(got["topics"]))
    return RestoreReport(created, compare(loaded.doc, got), round(time.monotonic() - t0, 3))

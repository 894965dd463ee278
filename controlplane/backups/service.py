"""The backup job: snapshot -> pg_dump -> age -> block upload -> manifest -> catalog.

A backup is *complete* only once its manifest is written and the catalog row says so.
Any failure aborts the upload (nothing committed), deletes whatever was committed, and
leaves a ``failed`` row naming the step and the cause.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from controlplane.backups import catalog, postgres
from controlplane.backups.blob import BlobError, BlobStore, BlobWriter
from controlplane.backups.catalog import COMPLETE, FAILED, BackupLock, BackupRow
from controlplane.backups.config import BackupComponentConfig, BackupsConfig
from controlplane.backups.crypto import CryptoError, encrypt_stream, parse_recipients
from controlplane.backups.streams import CountingReader, HashingBlobWriter, ProgressFn
from controlplane.results import Result, Status, Step, StepFailed, StepRecorder, utcnow
from controlplane.sentry import capture
from controlplane.store import Store

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


def backup_id_for(component: str, env: str, at: datetime) -> str:
    return f"{component}-{env}-{at.strftime('%Y%m%dT%H%M%S')}{at.microsecond // 1000:03d}Z"


def blob_names(component: str, env: str, backup_id: str) -> tuple[str, str]:
    base = f"{component}/{env}/{backup_id}"
    return base + ".dump.age", base + ".manifest.json"


@dataclass
class BackupOutcome:
    backup_id: str
    result: Result
    row: dict[str, object]


class BackupJob:
    """One run of one component's backup."""

    def __init__(self, name: str, backups: BackupsConfig, store: Store, blob: BlobStore,
                 progress: ProgressFn | None = None) -> None:
        if name not in backups.components:
            known = ", ".join(sorted(backups.components)) or "none configured"
            raise KeyError(f"no backup component {name!r} (configured: {known})")
        self.name = name
        self.cfg: BackupComponentConfig = backups.components[name]
        self.stale_after = backups.lock_stale_after
        self.store = store
        self.blob = blob
        self.progress = progress
        self.started = utcnow()
        self.backup_id = backup_id_for(name, self.cfg.env, self.started)
        self.blob_name, self.manifest_name = blob_names(name, self.cfg.env, self.backup_id)
        self.rec = StepRecorder()
        self.details: dict[str, object] = {"backup_id": self.backup_id, "blob": self.blob_name}
        self.metrics: dict[str, float | None] = {}
        self.manifest_sha256 = ""

    def run(self) -> BackupOutcome:
        t0 = time.monotonic()
        self._insert_row()
        lock = BackupLock(self.store, self.name, self.backup_id, self.stale_after)
        try:
            lock.acquire_step(self.rec)
        except StepFailed as exc:
            return self._finish_failed("lock", str(exc), t0)
        try:
            if lock.took_over:
                self._remove_interrupted(lock.took_over)
            manifest = self._run_locked(t0, lock)
        except StepFailed as exc:
            return self._finish_failed(self.rec.steps[-1].name, str(exc), t0)
        except Exception as exc:
            # Sentry first, with the check tag; the log line's own event is then a duplicate
            # (same exception) that the SDK drops.
            capture(exc, backup_check_id(self.name), component=self.name, job="backup")
            log.exception("backup crashed check=%s component=%s", backup_check_id(self.name),
                          self.name)
            return self._finish_failed("crash", f"{type(exc).__name__}: {exc}", t0)
        finally:
            lock.release()
        return self._finish_ok(manifest, t0)

    def _insert_row(self) -> None:
        with self.store.session() as s:
            s.add(BackupRow(id=self.backup_id, component=self.name, env=self.cfg.env,
                            status=catalog.RUNNING, started_at=self.started,
                            blob_name=self.blob_name, manifest_name=self.manifest_name,
                            host=catalog.holder_id()))

    def _run_locked(self, t0: float, lock: BackupLock) -> dict[str, object]:
        dsn = self.cfg.source_dsn()
        with self.rec.step("snapshot") as st:
            try:
                recipients = parse_recipients(self.cfg.recipients)
                snap = postgres.Snapshot.open(dsn)
            except (postgres.PgError, CryptoError) as exc:
                raise StepFailed(str(exc)) from None
            st.message = f"{len(snap.tables)} tables in {snap.database}"
        stop_beat = heartbeat(lock)
        try:
            with self.rec.step("dump+upload") as st:
                sizes = self._stream(dsn, snap, recipients)
                st.message = (f"{sizes['plain_bytes']} bytes dumped, "
                              f"{sizes['encrypted_bytes']} uploaded")
            counts = snap.counts
        finally:
            stop_beat.set()
            snap.close()
        manifest: dict[str, object] = {
            "version": MANIFEST_VERSION, "backup_id": self.backup_id, "component": self.name,
            "env": self.cfg.env, "kind": "postgres", "database": snap.database,
            "started_at": _iso(self.started), "finished_at": _iso(utcnow()),
            "duration_s": round(time.monotonic() - t0, 3),
            "blob": self.blob_name, "encryption": "age-x25519",
            "recipients": list(self.cfg.recipients),
            "sha256": sizes["sha256"], "encrypted_bytes": sizes["encrypted_bytes"],
            "plain_bytes": sizes["plain_bytes"],
            "pg_dump_version": postgres.tool_version("pg_dump"),
            "server_version": snap.server_version, "format": "custom",
            "row_counts": counts, "snapshot": "repeatable read, exported to pg_dump"}
        self._put_manifest(manifest)
        return manifest

    def _put_manifest(self, manifest: dict[str, object]) -> None:
        """Upload the manifest (the backup is complete only once it is there)."""
        data = json.dumps(manifest, indent=2).encode()
        with self.rec.step("manifest") as st:
            try:
                self.blob.put_bytes(self.manifest_name, data)
            except BlobError as exc:
                self._delete_blob(self.blob_name)
                raise StepFailed(f"manifest upload failed: {exc}") from None
            st.message = self.manifest_name
        # Verify and drills compare the stored manifest's bytes with this (catalog) sha256.
        self.manifest_sha256 = hashlib.sha256(data).hexdigest()

    def _stream(self, dsn: str, snap: postgres.Snapshot,
                recipients: list[object]) -> dict[str, object]:
        try:
            dump = postgres.start_dump(dsn, snap.snapshot_id)
        except postgres.PgError as exc:
            raise StepFailed(str(exc)) from None
        snap.count_in_background()
        # A dump that outlives the timeout (e.g. stuck behind a lock) is killed and fails.
        timed_out = threading.Event()

        def stop_dump() -> None:
            timed_out.set()  # before the kill, so the reader never sees the exit first
            dump.kill()

        timer = threading.Timer(self.cfg.timeout, stop_dump)
        timer.daemon = True
        timer.start()
        try:
            return self._pipe(dump, snap, recipients, timed_out)
        finally:
            timer.cancel()

    def _pipe(self, dump: postgres.PgProcess, snap: postgres.Snapshot,
              recipients: list[object], timed_out: threading.Event) -> dict[str, object]:
        reader = CountingReader(dump.stdout, "dump", self.progress)
        try:
            writer: BlobWriter = self.blob.writer(self.blob_name)
        except BlobError as exc:
            dump.kill()
            raise StepFailed(str(exc)) from None
        except BaseException:
            dump.kill()  # never leave pg_dump (and its snapshot) behind
            raise
        out = HashingBlobWriter(writer)
        try:
            try:
                encrypt_stream(reader, out, recipients)
            except CryptoError as exc:
                cause = out.error if out.error is not None else exc
                raise StepFailed(f"upload failed: {cause}") from None
            rc = dump.wait()
            if rc != 0 and timed_out.is_set():
                raise StepFailed(f"pg_dump did not finish within {self.cfg.timeout:g}s "
                                 "(backups.components timeout) and was stopped")
            if rc != 0:
                raise StepFailed(f"pg_dump failed (exit {rc}): {dump.failure()}")
            try:
                snap.wait_counts()
            except postgres.PgError as exc:
                raise StepFailed(str(exc)) from None
            try:
                writer.commit()
            except BlobError as exc:
                raise StepFailed(f"upload failed: {exc}") from None
        except BaseException:
            dump.kill()
            writer.abort()
            raise
        return {"sha256": out.sha.hexdigest(), "encrypted_bytes": out.count,
                "plain_bytes": reader.count}

    def _remove_interrupted(self, backup_id: str) -> None:
        """A dead run may have committed its dump before its manifest: remove what it left."""
        with self.store.session() as s:
            row = s.get(BackupRow, backup_id)
            names = [n for n in (row.blob_name, row.manifest_name) if n] if row else []
        for name in names:
            self._delete_blob(name)
        log.warning("removed blobs of interrupted backup backup_id=%s blobs=%d", backup_id,
                    len(names))

    def _delete_blob(self, name: str) -> None:
        try:
            self.blob.delete(name)
        except BlobError:
            log.warning("could not delete partial blob name=%s; delete it by hand", name)

    def _finish_failed(self, step: str, error: str, t0: float) -> BackupOutcome:
        duration = round(time.monotonic() - t0, 3)
        with self.store.session() as s:
            row = s.get(BackupRow, self.backup_id)
            assert row is not None
            row.status, row.failed_step, row.error = FAILED, step, error
            row.finished_at, row.duration_s = utcnow(), duration
            data = row.to_dict()
        log.warning("backup failed component=%s backup_id=%s step=%s error=%r", self.name,
                    self.backup_id, step, error)
        self.details.update(failed_step=step)
        message = f"backup of {self.name} failed at {step}: {error}"
        return BackupOutcome(self.backup_id, self._result(Status.FAILING, message, duration),
                             data)

    def _finish_ok(self, manifest: dict[str, object], t0: float) -> BackupOutcome:
        duration = round(time.monotonic() - t0, 3)
        finished = utcnow()
        size = int(str(manifest["encrypted_bytes"]))
        with self.store.session() as s:
            row = s.get(BackupRow, self.backup_id)
            assert row is not None
            row.status, row.finished_at, row.duration_s = COMPLETE, finished, duration
            row.size_bytes, row.sha256 = size, str(manifest["sha256"])
            row.manifest_sha256 = self.manifest_sha256
            row.manifest = manifest
            data = row.to_dict()
        self.metrics.update(size_bytes=float(size), duration_s=duration,
                            finished_ts=finished.timestamp(),
                            plain_bytes=float(str(manifest["plain_bytes"])))
        self.details.update(sha256=manifest["sha256"], manifest_sha256=self.manifest_sha256,
                            **({"database": manifest["database"]} if "database" in manifest
                               else {}))
        log.info("backup complete component=%s backup_id=%s bytes=%d duration_s=%.1f",
                 self.name, self.backup_id, size, duration)
        from controlplane.backups.base import kind_of

        message = (f"backup {self.backup_id} complete: {size} bytes in {duration:.1f}s, "
                   f"{kind_of(self.cfg.kind).summary(manifest)}")
        return BackupOutcome(self.backup_id, self._result(Status.OK, message, duration), data)

    def _result(self, status: Status, message: str, duration: float) -> Result:
        return Result(check=backup_check_id(self.name), kind="backup", env=self.cfg.env,
                      status=status, started_at=self.started, duration_s=duration,
                      message=message, metrics=dict(self.metrics), details=dict(self.details),
                      steps=[Step.model_validate(st.model_dump()) for st in self.rec.steps])


def backup_check_id(component: str) -> str:
    return f"backup-{component}"


def heartbeat(lock: BackupLock, every: float = 10.0) -> threading.Event:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                lock.heartbeat()
            except Exception:
                log.warning("backup lock heartbeat failed component=%s", lock.component,
                            exc_info=True)

    threading.Thread(target=beat, name=f"lock-{lock.component}", daemon=True).start()
    return stop


def _iso(ts: datetime) -> str:
    from controlplane.results import iso

    return iso(ts)

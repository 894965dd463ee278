"""Reading a backup back: verify (sha256 + full age decryption, nothing written) and
restore (the encrypted dump staged in a temporary file and checked against the manifest,
then decrypted straight into pg_restore's stdin; the plaintext never touches disk).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, cast

from controlplane.backups import postgres
from controlplane.backups.blob import BlobError, BlobStore
from controlplane.backups.crypto import CryptoError, decrypt_stream
from controlplane.backups.streams import HashingReader, ProgressFn, SinkWriter

log = logging.getLogger(__name__)


class VerificationFailed(Exception):
    """The blob does not match its manifest or does not decrypt; nothing was restored.

    ``corrupt`` is true when the backup itself is bad (modified, truncated, undecryptable
    with the right key), false when the cause lies elsewhere (wrong key, storage down).
    """

    def __init__(self, message: str, corrupt: bool = False) -> None:
        super().__init__(message)
        self.corrupt = corrupt


class RestoreFailed(Exception):
    """pg_restore (or the target database) failed."""


@dataclass
class VerifyReport:
    sha256: str
    encrypted_bytes: int
    plain_bytes: int


def verify(blob: BlobStore, manifest: dict[str, Any], identities: list[Any],
           progress: ProgressFn | None = None) -> VerifyReport:
    """Download, hash and decrypt the whole backup; raise VerificationFailed on any mismatch."""
    name = str(manifest["blob"])
    try:
        reader = HashingReader(blob.reader(name), "verify", progress)
    except BlobError as exc:
        raise VerificationFailed(str(exc)) from None
    sink = SinkWriter(None)
    crypto_error: CryptoError | None = None
    try:
        decrypt_stream(reader, sink, identities)
    except CryptoError as exc:
        crypto_error = exc
        if reader.error is not None:
            raise VerificationFailed(str(reader.error)) from None
        _drain(reader)
    report = VerifyReport(reader.sha.hexdigest(), reader.count, sink.count)
    _compare(name, manifest, report, crypto_error)
    if crypto_error is not None:
        raise VerificationFailed(f"{name}: {crypto_error}",
                                 corrupt="wrong key" not in str(crypto_error))
    return report


def check_manifest(blob: BlobStore, name: str, manifest: dict[str, Any],
                   sha256: str | None) -> str:
    """Compare the manifest blob in storage with the catalog; say what matched.

    Verify and restore trust the catalog's copy of the manifest; a hand restore trusts the
    blob. Both must be the manifest written at backup time. Backups made before the catalog
    recorded ``sha256`` are compared by content instead.
    """
    if not name:
        raise VerificationFailed("the catalog names no manifest blob for this backup, so it "
                                 "cannot be checked; restore from another backup")
    try:
        data = blob.get_bytes(name)
    except BlobError as exc:
        raise VerificationFailed(f"manifest {name} cannot be read ({exc}); restore from "
                                 "another backup, or check the storage") from None
    got = hashlib.sha256(data).hexdigest()
    if sha256 is not None:
        if got != sha256:
            raise VerificationFailed(_manifest_changed(
                name, f"sha256 {got[:16]}…, the catalog recorded {sha256[:16]}…"), True)
        return f"manifest sha256 {got} matches the catalog"
    try:
        stored = json.loads(data)
    except ValueError:
        stored = None
    if stored != manifest:
        raise VerificationFailed(_manifest_changed(
            name, "its content differs from the catalog's copy; no sha256 was recorded for "
                  "this older backup"), True)
    return "manifest content matches the catalog (no sha256 recorded for this older backup)"


def _manifest_changed(name: str, how: str) -> str:
    return (f"manifest {name} does not match the catalog ({how}): it was changed after the "
            "backup; do not restore from it")


def _drain(reader: HashingReader) -> None:
    """Read the rest so the size and sha256 comparison can name the real problem."""
    buf = bytearray(1024 * 1024)
    try:
        while reader.readinto(buf):
            pass
    except Exception as exc:
        raise VerificationFailed(str(exc)) from None


def _compare(name: str, manifest: dict[str, Any], got: VerifyReport,
             crypto_error: CryptoError | None) -> None:
    want_size = int(manifest["encrypted_bytes"])
    if got.encrypted_bytes != want_size:
        how = "truncated" if got.encrypted_bytes < want_size else "longer than recorded"
        raise VerificationFailed(f"{name} is {how}: {got.encrypted_bytes} bytes, the manifest "
                                 f"says {want_size}; this backup cannot be trusted", True)
    if got.sha256 != manifest["sha256"]:
        raise VerificationFailed(f"{name} was modified: sha256 {got.sha256[:16]}… differs "
                                 f"from the manifest's {str(manifest['sha256'])[:16]}…; this "
                                 "backup cannot be trusted (tampered or corrupted)", True)
    if crypto_error is None and got.plain_bytes != int(manifest["plain_bytes"]):
        raise VerificationFailed(f"{name} decrypts to {got.plain_bytes} bytes, the manifest "
                                 f"says {manifest['plain_bytes']}", True)


def restore(blob: BlobStore, manifest: dict[str, Any], identities: list[Any], target_dsn: str,
            clean: bool = False, progress: ProgressFn | None = None,
            watch: Callable[[postgres.PgProcess], None] | None = None) -> int:
    """Restore the backup into pg_restore on ``target_dsn``; return plaintext bytes restored.

    The encrypted dump is first downloaded to a temporary file and its size and sha256
    compared with the manifest: a blob swapped after :func:`verify` is refused before
    pg_restore runs, so nothing is written to the target. The temporary file needs as much
    local disk as the encrypted dump (``TMPDIR`` chooses where). ``watch`` is handed the
    pg_restore process as soon as it runs (a drill's timeout kills it).
    """
    name = str(manifest["blob"])
    with tempfile.TemporaryFile(prefix="controlplane-restore-", buffering=0) as raw:
        staged = cast(io.RawIOBase, raw)
        _download_checked(blob, name, manifest, raw, progress)
        try:
            proc = postgres.start_restore(target_dsn, clean)
        except postgres.PgError as exc:
            raise RestoreFailed(str(exc)) from None
        if watch is not None:
            watch(proc)
        sink = SinkWriter(proc.stdin)
        try:
            decrypt_stream(staged, sink, identities)
        except CryptoError as exc:
            proc.kill()
            if sink.error is not None:  # pg_restore stopped reading: its error is the cause
                raise RestoreFailed(f"pg_restore failed: {proc.failure()}") from None
            raise RestoreFailed(f"{name}: {exc}") from None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        rc = proc.wait()
    if rc != 0:
        raise RestoreFailed(f"pg_restore failed (exit {rc}): {proc.failure()}")
    return sink.count


def _download_checked(blob: BlobStore, name: str, manifest: dict[str, Any], into: IO[bytes],
                      progress: ProgressFn | None) -> None:
    """Copy the blob into ``into`` and refuse it unless size and sha256 match the manifest."""
    try:
        reader = HashingReader(blob.reader(name), "download", progress)
        shutil.copyfileobj(reader, into, 1024 * 1024)
    except BlobError as exc:
        raise RestoreFailed(str(exc)) from None
    except OSError as exc:
        raise RestoreFailed(f"cannot stage {name} in a temporary file ({exc}); free disk "
                            "space or point TMPDIR elsewhere") from None
    if reader.count != int(manifest["encrypted_bytes"]) or \
            reader.sha.hexdigest() != manifest["sha256"]:
        raise RestoreFailed(f"{name} changed after verification (sha256 "
                            f"{reader.sha.hexdigest()[:16]}…, {reader.count} bytes; the "
                            f"manifest says {str(manifest['sha256'])[:16]}…, "
                            f"{manifest['encrypted_bytes']} bytes): nothing was restored; "
                            "restore from another backup")
    into.flush()
    into.seek(0)

"""Reading a backup back: verify (sha256 + full age decryption, nothing written) and
restore (decrypt straight into pg_restore's stdin). Both stream; neither stages the dump.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    """Stream the backup into pg_restore on ``target_dsn``; return plaintext bytes restored.

    Call :func:`verify` first: this pass checks the sha256 too, but only at the end.
    ``watch`` is handed the pg_restore process as soon as it runs (a drill's timeout kills it).
    """
    name = str(manifest["blob"])
    try:
        reader = HashingReader(blob.reader(name), "restore", progress)
        proc = postgres.start_restore(target_dsn, clean)
    except (BlobError, postgres.PgError) as exc:
        raise RestoreFailed(str(exc)) from None
    if watch is not None:
        watch(proc)
    sink = SinkWriter(proc.stdin)
    try:
        decrypt_stream(reader, sink, identities)
    except CryptoError as exc:
        proc.kill()
        if sink.error is not None:  # pg_restore stopped reading: its error is the cause
            raise RestoreFailed(f"pg_restore failed: {proc.failure()}") from None
        if reader.error is not None:
            raise RestoreFailed(str(reader.error)) from None
        raise RestoreFailed(f"{name}: {exc}") from None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    rc = proc.wait()
    if rc != 0:
        raise RestoreFailed(f"pg_restore failed (exit {rc}): {proc.failure()}")
    if reader.sha.hexdigest() != manifest["sha256"]:
        raise RestoreFailed(f"{name} changed between verification and restore (sha256 "
                            "mismatch); discard this restore")
    return sink.count

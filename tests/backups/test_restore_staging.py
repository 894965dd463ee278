"""Restore checks the dump it is about to restore, not only the one verify saw."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pyrage import encrypt, x25519

from controlplane.backups import postgres
from controlplane.backups.blob import LocalBlobStore
from controlplane.backups.restore import RestoreFailed, restore, verify


def test_a_blob_swapped_after_verify_is_refused_before_pg_restore_runs(tmp_path: Path) -> None:
    ident = x25519.Identity.generate()
    blob = LocalBlobStore(str(tmp_path / "blobs"))
    good = encrypt(b"PGDMP the real dump" * 100, [ident.to_public()])
    name = "postgres/production/postgres-production-20261126T020000000Z.dump.age"
    blob.put_bytes(name, good)
    manifest = {"blob": name, "sha256": hashlib.sha256(good).hexdigest(),
                "encrypted_bytes": len(good), "plain_bytes": len(b"PGDMP the real dump") * 100}
    verify(blob, manifest, [ident])  # passes: the blob is the one the manifest names
    swapped = encrypt(b"PGDMP an attacker's dump" * 100, [ident.to_public()])
    blob.put_bytes(name, swapped[:len(good)].ljust(len(good), b"\0"))
    started: list[postgres.PgProcess] = []
    with pytest.raises(RestoreFailed) as err:
        # The target does not even exist: reaching pg_restore would fail differently.
        restore(blob, manifest, [ident], "postgresql://nobody@127.0.0.1:1/none",
                watch=started.append)
    assert started == []
    assert "changed after verification" in str(err.value)
    assert "nothing was restored" in str(err.value)


def test_a_truncated_blob_is_refused_before_pg_restore_runs(tmp_path: Path) -> None:
    ident = x25519.Identity.generate()
    blob = LocalBlobStore(str(tmp_path / "blobs"))
    data = encrypt(b"PGDMP" * 1000, [ident.to_public()])
    blob.put_bytes("x.dump.age", data[:100])
    manifest = {"blob": "x.dump.age", "sha256": hashlib.sha256(data).hexdigest(),
                "encrypted_bytes": len(data), "plain_bytes": 5000}
    started: list[postgres.PgProcess] = []
    with pytest.raises(RestoreFailed, match="100 bytes"):
        restore(blob, manifest, [ident], "postgresql://nobody@127.0.0.1:1/none",
                watch=started.append)
    assert started == []

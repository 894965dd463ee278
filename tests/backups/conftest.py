"""Fixtures for backup tests: an age key, a source database, a wired BackupOps."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyrage import x25519

from controlplane.backups.blob import BlobStore, open_blob_store
from controlplane.backups.config import BackupsConfig, BlobConfig, DrConfig
from controlplane.dr.component import BackupOps
from controlplane.evaluator import Transition
from controlplane.metrics import Metrics
from controlplane.pipeline import Pipeline
from controlplane.store import Store
from tests.services.azurite import Azurite
from tests.services.postgres import PgServer

ROWS_T, ROWS_U = 20000, 3


@dataclass
class AgeKey:
    path: str
    recipient: str
    identity: Any


@pytest.fixture
def age_key(tmp_path: Path) -> AgeKey:
    ident = x25519.Identity.generate()
    path = tmp_path / "key.txt"
    path.write_text(f"# created for a test\n{ident}\n")
    os.chmod(path, 0o600)
    return AgeKey(str(path), str(ident.to_public()), ident)


def fill_source(pg: PgServer, db: str, rows: int = ROWS_T) -> str:
    dsn = pg.createdb(db)
    pg.execute(
        "CREATE TABLE calls (id bigint PRIMARY KEY, caller text, payload text);"
        f"INSERT INTO calls SELECT g, 'caller-' || g, repeat(md5(g::text), 4) "
        f"FROM generate_series(1, {rows}) g;"
        "CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int, amount numeric);"
        "INSERT INTO billing.invoices VALUES (1, 10.5), (2, 20), (3, 30.25);"
        "CREATE TABLE empty_table (x int);", db)
    return dsn


@pytest.fixture
def source_dsn(pg_server: PgServer) -> str:
    return fill_source(pg_server, f"src_{uuid.uuid4().hex[:8]}")


@dataclass
class Env:
    ops: BackupOps
    store: Store
    blob: BlobStore
    backups: BackupsConfig
    key: AgeKey
    blob_cfg: BlobConfig
    store_dsn: str
    tmp: Path
    transitions: list[Transition]

    def incident_for(self, check_id: str) -> Transition:
        """The transition to failing that the pipeline raised for ``check_id``."""
        found = [t for t in self.transitions if t.check.id == check_id and t.new.value ==
                 "failing"]
        assert found, f"no failing transition for {check_id}: {self.transitions}"
        return found[-1]

    def config_file(self, extra: dict[str, Any] | None = None) -> str:
        """A controlplane.yaml equivalent to this environment (for CLI tests)."""
        doc: dict[str, Any] = {
            "environments": {"production": {"label": "Production"}},
            "store": {"dsn": self.store_dsn},
            "check_files": [],
            "blob": _plain(self.blob_cfg.model_dump(mode="python")),
            "backups": _plain(self.backups.model_dump(mode="python")),
            "dr": {"defaults": False, "components": {"postgres": {
                "rto": 3600, "rpo": 86400, "backup_component": "app"}}},
            **(extra or {}),
        }
        path = self.tmp / "controlplane.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)


def _plain(value: Any) -> Any:
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


MakeEnv = Callable[..., Env]


@pytest.fixture
def make_env(tmp_path: Path, age_key: AgeKey) -> Iterator[MakeEnv]:
    stores: list[Store] = []

    def make(source: str, azurite: Azurite | None = None, block_size: int = 256 * 1024,
             drill: dict[str, Any] | None = None) -> Env:
        if azurite is not None:
            blob_cfg = BlobConfig(backend="azure", connection_string=azurite.connection_string,
                                  container=f"t{uuid.uuid4().hex[:12]}", block_size=block_size)
        else:
            blob_cfg = BlobConfig(backend="local", path=str(tmp_path / "blobs"),
                                  block_size=block_size)
        backups = BackupsConfig.model_validate({"components": {"app": {
            "dsn": source, "recipients": [age_key.recipient], "identity_file": age_key.path,
            "drill": drill or {}}}})
        store_dsn = f"sqlite:///{tmp_path / 'cp.db'}"
        store = Store(store_dsn)
        stores.append(store)
        dr = DrConfig.model_validate({"defaults": False, "components": {
            "postgres": {"rto": 3600, "rpo": 86400, "backup_component": "app"}}})
        blob = open_blob_store(blob_cfg)
        pipeline = Pipeline(store, Metrics())
        transitions: list[Transition] = []
        pipeline.on_transition(transitions.append)
        ops = BackupOps(backups, dr, store, blob, pipeline)
        return Env(ops, store, blob, backups, age_key, blob_cfg, store_dsn, tmp_path,
                   transitions)

    yield make
    for s in stores:
        s.close()


def check_state(store: Store, check_id: str) -> str:
    from controlplane.store.results import CheckStateRow

    with store.session() as s:
        row = s.get(CheckStateRow, check_id)
        return row.state if row else "none"

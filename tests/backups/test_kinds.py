"""The backup-kind contract, run over every registered member (controlplane/backups/base.py):
a complete backup has the common manifest, verifies with the shared verify, is summarised
by its kind, and its drill passes with the kind's own steps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from controlplane.backups import catalog
from controlplane.backups.base import MEMBERS, BackupKind, all_kinds, kind_of
from controlplane.backups.config import BackupComponentConfig
from controlplane.backups.crypto import load_identities
from controlplane.backups.restore import verify
from controlplane.dr.component import BackupOps
from controlplane.results import Status
from controlplane.store import Store
from tests.backups.conftest import AgeKey, MakeEnv
from tests.backups.k8s_env import make_secrets_env
from tests.backups.kafka_env import COMPONENT, fill, make_kafka_env, stores

__all__ = ["stores"]

COMMON = {"version", "backup_id", "component", "env", "kind", "blob", "encryption",
          "recipients", "sha256", "encrypted_bytes", "plain_bytes", "started_at",
          "finished_at"}


def test_every_config_kind_is_a_registered_member() -> None:
    literal = BackupComponentConfig.model_fields["kind"].annotation
    assert set(literal.__args__) == set(MEMBERS)  # type: ignore[union-attr]
    assert [k.kind for k in all_kinds()] == list(MEMBERS)
    with pytest.raises(KeyError, match="no backup kind 'mysql'; known: kafka-metadata, "
                                       "kubernetes-secrets, postgres"):
        kind_of("mysql")


def _source(kind: str, request: pytest.FixtureRequest, tmp_path: Path, age_key: AgeKey,
            stores: list[Store]) -> tuple[BackupOps, Store, str]:
    azurite = request.getfixturevalue("azurite")
    if kind == "postgres":
        make_env: MakeEnv = request.getfixturevalue("make_env")
        env = make_env(request.getfixturevalue("source_dsn"), azurite)
        return env.ops, env.store, "app"
    if kind == "kubernetes-secrets":
        senv = make_secrets_env(tmp_path, age_key, azurite,
                                request.getfixturevalue("kube_cluster"), stores)
        return senv.ops, senv.store, "kubernetes-secrets"
    kafka1 = request.getfixturevalue("kafka1")
    target = request.getfixturevalue("kafka_disposable")
    kenv = make_kafka_env(tmp_path, age_key, azurite, kafka1, target.bootstrap, stores)
    fill(kafka1, kenv)
    return kenv.ops, kenv.store, COMPONENT


@pytest.mark.postgres
@pytest.mark.kafka
@pytest.mark.azurite
@pytest.mark.kube
@pytest.mark.parametrize("kind", list(MEMBERS))
def test_kind_backs_up_verifies_summarises_and_drills(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path, age_key: AgeKey,
        stores: list[Store]) -> None:
    member: BackupKind = kind_of(kind)
    ops, store, name = _source(kind, request, tmp_path, age_key, stores)
    result = ops.run_backup(name)
    assert result.status == Status.OK, result.message
    with store.session() as s:
        row = catalog.backups(s, name)[0]
        manifest: dict[str, Any] = dict(row.manifest)
    assert set(manifest) >= COMMON and manifest["kind"] == kind
    assert result.message.endswith(member.summary(manifest))
    report = verify(ops.blob, manifest, load_identities(age_key.path))
    assert (report.sha256, report.plain_bytes) == (manifest["sha256"], manifest["plain_bytes"])
    drill = ops.run_drill(name)
    assert drill.status == Status.OK, drill.message
    assert tuple(s.name for s in drill.steps) == member.drill_steps


@pytest.mark.parametrize(("fields", "message"), [
    ({"kind": "kafka-metadata"}, "you must specify bootstrap (host:port of the Kafka cluster) "
                                 "for a kafka-metadata backup component"),
    ({"kind": "postgres"}, "you must specify dsn (the database to back up) for a postgres "
                           "backup component"),
    ({"kind": "kubernetes-secrets"}, "you must specify cluster (how to reach the Kubernetes "
                                     "API) and namespaces (whose Secrets are saved) for a "
                                     "kubernetes-secrets backup component"),
])
def test_component_without_its_kind_source_is_refused(fields: dict[str, str],
                                                      message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(message)):
        BackupComponentConfig.model_validate({**fields, "recipients": ["age1x"]})


def test_drill_namespace_prefix_that_cannot_start_a_namespace_name_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(
            "'Drills_NS' cannot start a namespace name: you must use at most 54 lowercase "
            "letters, digits and '-', starting and ending with a letter or digit")):
        BackupComponentConfig.model_validate({
            "kind": "kubernetes-secrets", "recipients": ["age1x"], "namespaces": ["a"],
            "cluster": {"in_cluster": True}, "drill": {"namespace": "Drills_NS"}})

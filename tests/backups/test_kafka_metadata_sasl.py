"""kafka-metadata backups, restores and recovery drills through a TLS + SASL listener
(the kafka_tls tests' fixture, like the platform's :9094), configured with the kafka_*
checks' fields: tls, ca_file, sasl_mechanism, sasl_username, sasl_password_env."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from controlplane.backups import catalog
from controlplane.results import Status
from controlplane.store import Store
from tests.backups.conftest import AgeKey
from tests.backups.kafka_env import COMPONENT, KafkaEnv, make_kafka_env, stores
from tests.services.azurite import Azurite
from tests.services.kafka_sasl import PASSWORD, USER, SaslKafka

pytestmark = [pytest.mark.kafka, pytest.mark.azurite]
__all__ = ["stores"]

PASSWORD_ENV = "CP_TEST_KAFKA_BACKUP_PASSWORD"


def _security(k: SaslKafka, mechanism: str = "SCRAM-SHA-512") -> dict[str, Any]:
    assert k.tls is not None
    return {"bootstrap": k.external, "tls": True, "ca_file": str(k.tls.ca_file),
            "sasl_mechanism": mechanism, "sasl_username": USER,
            "sasl_password_env": PASSWORD_ENV}


def _env(tmp_path: Path, age_key: AgeKey, azurite: Azurite, k: SaslKafka,
         stores: list[Store], mechanism: str = "SCRAM-SHA-512") -> KafkaEnv:
    return make_kafka_env(tmp_path, age_key, azurite, k, target=k.external, stores=stores,
                          component=_security(k, mechanism))


def _gone(k: SaslKafka, topic: str) -> None:
    end = time.monotonic() + 60
    while topic in k.topic_names():
        assert time.monotonic() < end, f"topic {topic} still there"
        time.sleep(0.5)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_backup_and_recovery_drill_go_through_the_tls_sasl_listener(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka_sasl: SaslKafka,
        stores: list[Store], monkeypatch: pytest.MonkeyPatch, mechanism: str) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    env = _env(tmp_path, age_key, azurite, kafka_sasl, stores, mechanism)
    kafka_sasl.create_topic(env.topic, 2, 1, config={"retention.ms": "3600000"})
    kafka_sasl.produce(env.topic, {0: 3, 1: 2})
    kafka_sasl.commit(env.group, {(env.topic, 0): 2, (env.topic, 1): 1})
    try:
        backup_id, manifest = env.backup()
        doc = json.loads(env.decrypted(manifest))
        assert doc["topics"][env.topic] == {"partitions": 2, "replication_factor": 1,
                                            "configs": {"retention.ms": "3600000"}}
        assert doc["groups"][env.group] == {f"{env.topic}:0": 2, f"{env.topic}:1": 1}
        # An empty cluster to recover into: the same one, its topic and group removed.
        kafka_sasl.delete_group(env.group)
        kafka_sasl.delete_topic(env.topic)
        _gone(kafka_sasl, env.topic)
        result = env.ops.run_drill(COMPONENT)
        assert result.status == Status.OK, result.message
        with env.store.session() as s:
            (drill,) = catalog.drills(s, COMPONENT)
            steps = {st["name"]: st for st in drill.steps}
        assert drill.backup_id == backup_id
        assert steps["restore"]["message"].endswith(
            f"groups restored into {kafka_sasl.external}")
        assert steps["check"]["message"] == ("topics, configs and committed offsets match "
                                             "the backup")
        assert steps["clean"]["message"] == "restored topics and groups deleted"
    finally:
        if env.topic in kafka_sasl.topic_names():
            kafka_sasl.delete_topic(env.topic)
            _gone(kafka_sasl, env.topic)


def test_a_wrong_password_fails_the_backup_without_showing_it(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka_sasl: SaslKafka,
        stores: list[Store], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password-42")
    env = _env(tmp_path, age_key, azurite, kafka_sasl, stores)
    result = env.ops.run_backup(COMPONENT)
    assert result.status == Status.FAILING
    assert result.message.startswith(f"backup of {COMPONENT} failed at collect: ")
    # The client's own error says why the request failed, not only "transport failure".
    assert (f"(client: sasl_ssl://{kafka_sasl.external}/bootstrap: SASL authentication "
            "error: Authentication failed during authentication due to invalid credentials "
            "with SASL mechanism SCRAM-SHA-512") in result.message
    assert "not-the-password-42" not in result.message
    with env.store.session() as s:
        (row,) = catalog.backups(s, COMPONENT)
        assert row.status == catalog.FAILED


def test_an_unset_password_variable_says_which_one(
        tmp_path: Path, age_key: AgeKey, azurite: Azurite, kafka_sasl: SaslKafka,
        stores: list[Store], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    env = _env(tmp_path, age_key, azurite, kafka_sasl, stores)
    result = env.ops.run_backup(COMPONENT)
    assert result.status == Status.FAILING
    assert f"environment variable {PASSWORD_ENV} (the SASL password) is not set; export it " \
           "before starting" in result.message


def test_tls_and_sasl_fields_belong_to_kafka_metadata_components_only() -> None:
    from pydantic import ValidationError

    from controlplane.backups.config import BackupsConfig

    with pytest.raises(ValidationError) as err:
        BackupsConfig.model_validate({"components": {"db": {
            "kind": "postgres", "dsn": "postgresql://u@h/db", "recipients": ["age1xyz"],
            "tls": True}}})
    assert ("tls: Kafka TLS/SASL settings apply to kafka-metadata components only; "
            "remove them") in str(err.value)
    # Written out with every default (a dumped config), a postgres component still loads.
    BackupsConfig.model_validate({"components": {"db": {
        "kind": "postgres", "dsn": "postgresql://u@h/db", "recipients": ["age1xyz"],
        "tls": False, "verify_hostname": True, "sasl_mechanism": None}}})

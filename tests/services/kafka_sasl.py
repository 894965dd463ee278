"""A 1-node Kafka with an external-style TLS + SASL listener, like the platform's :9094.

Extends tests/services/kafka.py's cluster with two SASL_SSL listeners (PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512), a test CA's certificate for ``localhost``:

- ``EXTERNAL`` advertised as ``localhost:PORT``, where it listens (the healthy case);
- ``MISADVERTISED`` listening on one port and advertising a port nothing listens on (the
  platform's common failure: the advertised host or port is wrong, so clients bootstrap
  and then cannot reach the broker).

SCRAM credentials are created after start through the admin API (KRaft supports it since
Kafka 3.5), from the fixtures' admin child.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.services.certs import CertFactory
from tests.services.common import free_port
from tests.services.kafka import _CLUSTERS, KafkaCluster, KafkaNode
from tests.services.kafka_admin import WORKER

USER = "monitor"
PASSWORD = "s3cret-kafka-pass"
MECHANISMS = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"


@dataclass
class SaslKafka(KafkaCluster):
    external_port: int = 0
    misadvertised_port: int = 0
    dead_port: int = 0
    extra_users: dict[str, str] = field(default_factory=dict)

    @property
    def external(self) -> str:
        return f"localhost:{self.external_port}"

    @property
    def misadvertised(self) -> str:
        return f"localhost:{self.misadvertised_port}"

    def _properties(self, node: KafkaNode, voters: str) -> str:
        props = dict(line.split("=", 1) for line in
                     super()._properties(node, voters).splitlines() if line)
        self.external_port = self.external_port or free_port()
        self.misadvertised_port = self.misadvertised_port or free_port()
        self.dead_port = self.dead_port or free_port()
        props["listeners"] += (f",EXTERNAL://127.0.0.1:{self.external_port}"
                               f",MISADVERTISED://127.0.0.1:{self.misadvertised_port}")
        props["advertised.listeners"] += (f",EXTERNAL://localhost:{self.external_port}"
                                          f",MISADVERTISED://localhost:{self.dead_port}")
        props["listener.security.protocol.map"] += ",EXTERNAL:SASL_SSL,MISADVERTISED:SASL_SSL"
        users = {USER: PASSWORD, **self.extra_users}
        plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                 + " ".join(f'user_{u}="{p}"' for u, p in users.items()) + ";")
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        for listener in ("external", "misadvertised"):
            props[f"listener.name.{listener}.sasl.enabled.mechanisms"] = MECHANISMS
            props[f"listener.name.{listener}.plain.sasl.jaas.config"] = plain
            for mech in ("scram-sha-256", "scram-sha-512"):
                props[f"listener.name.{listener}.{mech}.sasl.jaas.config"] = scram
        return "".join(f"{k}={v}\n" for k, v in props.items())


def add_scram_user(bootstrap: str, user: str, password: str) -> None:
    """Runs in the admin child: SCRAM-SHA-256 and -512 credentials for ``user``."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    # one mechanism per request: a user may not be altered twice in one
    for mech in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
        upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(mech, 4096),
                                              password.encode())
        for future in admin.alter_user_scram_credentials([upsert]).values():
            try:
                future.result(30)
            except Exception as exc:  # a librdkafka error does not pickle back to pytest
                raise RuntimeError(f"SCRAM credential for {user}: {exc}") from None


@pytest.fixture(scope="session")
def kafka_sasl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslKafka]:
    base = tmp_path_factory.mktemp("kafka-sasl")
    files = CertFactory(base / "certs").server(["localhost"])
    cluster = SaslKafka(base, 1, tls=files)
    _CLUSTERS.append(cluster)
    try:
        cluster.setup()
        cluster.start()
        WORKER.call(add_scram_user, cluster.bootstrap, USER, PASSWORD)
        yield cluster
    finally:
        cluster.stop()
        _CLUSTERS.remove(cluster)
        shutil.rmtree(base, ignore_errors=True)

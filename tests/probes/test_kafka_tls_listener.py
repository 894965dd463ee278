"""The kafka_tls probe against a real Kafka 3.9 with TLS + SASL listeners (tests/services)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from controlplane.probes.kafka_tls import KafkaTlsConfig, KafkaTlsProbe
from controlplane.results import Result, Status
from tests.services.certs import CertFactory
from tests.services.common import free_port
from tests.services.kafka_sasl import PASSWORD, USER, SaslKafka

pytestmark = pytest.mark.kafka


def probe(k: SaslKafka, bootstrap: str | None = None, **fields: Any) -> Result:
    assert k.tls is not None
    base: dict[str, Any] = {"id": "kafka-ext", "bootstrap": bootstrap or k.external,
                            "tls_rules": {"ca_file": str(k.tls.ca_file)},
                            "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": USER,
                            "sasl_password": PASSWORD, "timeout": 10}
    return KafkaTlsProbe(KafkaTlsConfig(**{**base, **fields})).execute()


def steps(result: Result) -> dict[str, Status]:
    return {s.name: s.status for s in result.steps}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_external_listener_is_ok_with_each_mechanism(kafka_sasl: SaslKafka,
                                                     mechanism: str) -> None:
    result = probe(kafka_sasl, sasl_mechanism=mechanism,
                   expect_advertised=[kafka_sasl.external], expect_ips=["127.0.0.1"])
    assert result.status == Status.OK, result.message
    assert result.message == (f"{kafka_sasl.external}: TLS trusted, logged in as {USER} "
                              f"({mechanism}), 1 broker(s) reachable at their advertised "
                              "address")
    assert steps(result) == {"tls": Status.OK, "metadata": Status.OK,
                             "advertised": Status.OK, "advertised metadata": Status.OK}
    assert result.details["advertised"] == [kafka_sasl.external]
    assert (result.metrics["tls_days_left"] or 0) > 80


def test_wrong_password_fails_without_showing_it(kafka_sasl: SaslKafka) -> None:
    result = probe(kafka_sasl, sasl_password="hunter2-wrong")
    assert result.status == Status.FAILING
    assert result.message == (f"{kafka_sasl.external}: SASL authentication failed for user "
                              f"'{USER}' (SCRAM-SHA-512): wrong user or password")
    assert "hunter2" not in result.model_dump_json()


def test_misadvertised_port_fails_after_bootstrap(kafka_sasl: SaslKafka) -> None:
    result = probe(kafka_sasl, kafka_sasl.misadvertised)
    assert result.status == Status.FAILING
    assert result.message == (f"broker 1 advertises localhost:{kafka_sasl.dead_port}, which is "
                              "unreachable (connection refused): clients bootstrap, then fail")
    assert steps(result)["metadata"] == Status.OK


def test_advertised_host_resolving_elsewhere_fails(kafka_sasl: SaslKafka) -> None:
    result = probe(kafka_sasl, expect_ips=["4.156.62.101"])
    assert result.status == Status.FAILING
    assert result.message == ("broker 1 advertises localhost, which resolves to 127.0.0.1, "
                              "not 4.156.62.101")


def test_unexpected_advertised_address_fails(kafka_sasl: SaslKafka) -> None:
    result = probe(kafka_sasl, expect_advertised=["kafka-prod-new.techhalo.ai:9094"])
    assert result.status == Status.FAILING
    assert result.message == (f"brokers advertise {kafka_sasl.external}, expected "
                              "kafka-prod-new.techhalo.ai:9094")


def test_untrusted_certificate_fails(kafka_sasl: SaslKafka, certs: CertFactory) -> None:
    result = probe(kafka_sasl, tls_rules={"ca_file": str(certs.self_signed().ca_file)})
    assert result.status == Status.FAILING
    assert result.message.startswith("certificate verify failed: unable to get local issuer")
    assert steps(result) == {"tls": Status.FAILING}


def test_server_down_fails(kafka_sasl: SaslKafka) -> None:
    port = free_port()
    result = probe(kafka_sasl, f"127.0.0.1:{port}")
    assert result.status == Status.FAILING
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_unresolvable_bootstrap_fails(kafka_sasl: SaslKafka) -> None:
    result = probe(kafka_sasl, "no-such-kafka.invalid:9094")
    assert result.status == Status.FAILING
    assert result.message.startswith("cannot resolve no-such-kafka.invalid")


def test_silent_listener_is_an_error_within_the_timeout(kafka_sasl: SaslKafka) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        result = probe(kafka_sasl, f"127.0.0.1:{port}", timeout=2)
    assert time.monotonic() - t0 < 5
    assert result.status == Status.ERROR
    assert result.message == f"127.0.0.1:{port}: no TLS handshake within 2s"

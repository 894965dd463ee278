"""`kafka_tls` checks: Kafka's external listener as an outside client meets it.

One run: the listener's TLS judged by the `tls` kind's rules; a SASL (PLAIN/SCRAM) login
and a metadata request through the bootstrap address; then every broker's **advertised**
address (what clients are told to connect to after bootstrap) is resolved, compared with
what is expected, and used for a second login + metadata request. The common failure of
an external listener is exactly there: bootstrap works, the advertised host resolves to
the wrong IP or names the wrong port, and every real client fails after its first request.

The client runs in this process: it only makes metadata requests, which do not hit the
librdkafka abort the kafka_lag child guards against (controlplane/kafka/child.py).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.findings import Deadline, Findings, TlsRules, judge_tls
from controlplane.probes.tlsconn import split_target
from controlplane.results import Status

log = logging.getLogger(__name__)

Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaTlsConfig(CheckConfig):
    kind: Literal["kafka_tls"] = "kafka_tls"
    bootstrap: str = Field(description="HOST:PORT of the external listener")
    tls_rules: TlsRules = Field(default_factory=TlsRules)
    sasl_mechanism: Mechanism | None = None
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    expect_advertised: list[str] = Field(default_factory=list, description="HOST:PORT each "
                                         "broker must advertise; empty: not compared")
    expect_ips: list[str] = Field(default_factory=list, description="IPs the advertised "
                                  "hosts must resolve to, e.g. the load balancer's")

    @field_validator("bootstrap")
    @classmethod
    def _target(cls, v: str) -> str:
        split_target(v)
        return v.strip()

    @model_validator(mode="after")
    def _sasl(self) -> KafkaTlsConfig:
        if self.sasl_mechanism and not self.sasl_username:
            raise ValueError("sasl_mechanism needs sasl_username (and sasl_password)")
        return self


class KafkaTlsProbe(Probe[KafkaTlsConfig]):
    kind = "kafka_tls"
    config_model = KafkaTlsConfig

    def check(self) -> Outcome:
        c = self.config
        host, port = split_target(c.bootstrap)
        deadline = Deadline(c.timeout)
        found = Findings()
        metrics: dict[str, float | None] = {}
        details: dict[str, Any] = {"bootstrap": c.bootstrap}
        if not judge_tls(found, host, port, c.tls_rules, deadline, metrics, details):
            return found.outcome("", metrics, details)
        t0 = time.monotonic()
        brokers = self._metadata(c.bootstrap, deadline, found, "metadata")
        if brokers is None:
            return found.outcome("", metrics, details)
        metrics["metadata_s"] = round(time.monotonic() - t0, 6)
        metrics["brokers"] = len(brokers)
        details["advertised"] = [f"{h}:{p}" for h, p in brokers.values()]
        found.add("metadata", message=f"{len(brokers)} broker(s) via {c.bootstrap}",
                  duration_s=metrics["metadata_s"] or 0)
        if self._advertised(brokers, found, details, deadline):
            advertised = ",".join(details["advertised"])
            t1 = time.monotonic()
            if self._metadata(advertised, deadline, found, "advertised metadata") is not None:
                metrics["advertised_metadata_s"] = round(time.monotonic() - t1, 6)
                found.add("advertised metadata", message=f"via {advertised}",
                          duration_s=metrics["advertised_metadata_s"] or 0)
        who = f" as {c.sasl_username} ({c.sasl_mechanism})" if c.sasl_mechanism else ""
        ok = f"{c.bootstrap}: TLS trusted, logged in{who}, {len(brokers)} broker(s) " \
             f"reachable at their advertised address"
        return found.outcome(ok, metrics, details)

    def _conf(self, bootstrap: str, deadline: Deadline, errors: list[Any]) -> dict[str, Any]:
        c = self.config
        left_ms = max(1000, int(deadline.budget() * 1000))
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap, "client.id": f"controlplane-{c.id}",
            "security.protocol": "SASL_SSL" if c.sasl_mechanism else "SSL",
            "socket.timeout.ms": left_ms, "socket.connection.setup.timeout.ms": left_ms,
            "ssl.endpoint.identification.algorithm":
                "https" if c.tls_rules.verify_hostname else "none",
            "error_cb": errors.append, "log_level": 0, "reconnect.backoff.max.ms": 1000}
        if c.tls_rules.ca_file:
            conf["ssl.ca.location"] = c.tls_rules.ca_file
        if c.sasl_mechanism:
            conf.update({"sasl.mechanism": c.sasl_mechanism, "sasl.username": c.sasl_username,
                         "sasl.password": c.sasl_password.get_secret_value()})
        return conf

    def _metadata(self, bootstrap: str, deadline: Deadline, found: Findings,
                  step: str) -> dict[int, tuple[str, int]] | None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient

        c = self.config
        errors: list[Any] = []
        admin = AdminClient(self._conf(bootstrap, deadline, errors))
        t0 = time.monotonic()
        try:
            md = admin.list_topics(timeout=deadline.budget())
        except KafkaException as exc:
            admin.poll(0.2)  # error_cb runs from poll(): collect what the connects reported
            codes = {e.code() for e in [*errors, exc.args[0]] if isinstance(e, KafkaError)}
            if KafkaError._AUTHENTICATION in codes:
                found.add(step, Status.FAILING, f"{bootstrap}: SASL authentication failed "
                          f"for user {c.sasl_username!r} ({c.sasl_mechanism}): wrong user or "
                          "password", time.monotonic() - t0)
                return None
            if KafkaError._TIMED_OUT in codes and not (codes - {KafkaError._TIMED_OUT}):
                raise ProbeError(f"{bootstrap}: no metadata within {c.timeout:g}s") from None
            reason = "; ".join(sorted({_reason(e) for e in errors})) or _reason(exc.args[0])
            found.add(step, Status.FAILING, f"{bootstrap}: no metadata: {reason}",
                      time.monotonic() - t0)
            return None
        return {b.id: (str(b.host), int(b.port)) for b in md.brokers.values()}

    def _advertised(self, brokers: dict[int, tuple[str, int]], found: Findings,
                    details: dict[str, Any], deadline: Deadline) -> bool:
        c = self.config
        problems = 0
        shown = sorted(details["advertised"])
        if c.expect_advertised and shown != sorted(c.expect_advertised):
            found.add("advertised", Status.FAILING, f"brokers advertise {', '.join(shown)}, "
                      f"expected {', '.join(sorted(c.expect_advertised))}")
            problems += 1
        details["advertised_ips"] = {}
        for broker_id, (host, port) in sorted(brokers.items()):
            try:
                ips = sorted({str(a[4][0]) for a in socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM)})
            except socket.gaierror:
                found.add("advertised", Status.FAILING, f"broker {broker_id} advertises "
                          f"{host}:{port}, which does not resolve: clients bootstrap, "
                          "then fail")
                problems += 1
                continue
            details["advertised_ips"][f"{host}:{port}"] = ips
            if c.expect_ips and not set(ips) & set(c.expect_ips):
                found.add("advertised", Status.FAILING, f"broker {broker_id} advertises "
                          f"{host}, which resolves to {', '.join(ips)}, not "
                          f"{', '.join(c.expect_ips)}")
                problems += 1
                continue
            reason = _tcp(host, port, deadline)
            if reason:
                found.add("advertised", Status.FAILING, f"broker {broker_id} advertises "
                          f"{host}:{port}, which is unreachable ({reason}): clients "
                          "bootstrap, then fail")
                problems += 1
        if not problems:
            found.add("advertised", message=", ".join(shown))
        return problems == 0


def _tcp(host: str, port: int, deadline: Deadline) -> str | None:
    try:
        socket.create_connection((host, port), timeout=deadline.budget()).close()
    except TimeoutError:
        return "connect timed out"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return None


def _reason(err: Any) -> str:
    text = err.str() if hasattr(err, "str") else str(err)
    # librdkafka prefixes the broker's name and a counter: keep what follows
    for marker in ("SSL handshake failed: ", "Connect to ", "Failed to resolve "):
        if marker in text:
            return marker.strip(": ") + ": " + text.split(marker, 1)[1][:160] \
                if marker.endswith(": ") else text[text.index(marker):][:200]
    return text[:200]

"""Connection settings shared by the kafka_* checks and the librdkafka configuration they map to.

Every call into the AdminClient gets an explicit timeout derived from one
:class:`Deadline`, so a check never waits past its own ``timeout``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controlplane.deadline import Deadline as Deadline
from controlplane.probes.base import CheckConfig, ProbeError

log = logging.getLogger(__name__)
rdkafka_log = logging.getLogger("controlplane.kafka.rdkafka")

T = TypeVar("T")
GRACE_S = 0.5

PLATFORM_TOPICS = ["turn_resolution.v1", "call_trace.v1"]
PLATFORM_DLQS = ["turn_resolution.v1.dlq", "call_trace.v1.dlq"]


class KafkaSecurity(BaseModel):
    """TLS and SASL of a Kafka client: the kafka_* checks' fields, taken as they are by
    kafka-metadata backup components (controlplane/backups/config.py)."""

    model_config = ConfigDict(extra="forbid")

    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_hostname: bool = True
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_env: str | None = Field(
        default=None, description="name of the environment variable holding the password")

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSecurity:
        if self.sasl_mechanism and not (self.sasl_username and self.sasl_password_env):
            raise ValueError("sasl_mechanism needs sasl_username and sasl_password_env")
        return self


class KafkaCheckConfig(CheckConfig, KafkaSecurity):
    """How to reach a Kafka cluster (shared by kafka_lag, kafka_cluster, kafka_canary)."""

    bootstrap: str = Field(min_length=1, description="host:port[,host:port...]")
    isolate_client: bool = Field(
        default=True, description="run the Kafka client in a child process, so a librdkafka "
                                  "abort cannot stop the control plane (see kafka/child.py)")

    @field_validator("bootstrap")
    @classmethod
    def _host_ports(cls, v: str) -> str:
        return bootstrap_list(v)


def bootstrap_list(v: str) -> str:
    """``host:port[,host:port...]``, or a ValueError saying what is wrong."""
    for part in v.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bootstrap entry {part.strip()!r} must be host:port, "
                             "e.g. kafka.kafka.svc:9092")
    return v


class KafkaUnavailable(Exception):
    """The cluster could not be reached or did not answer in time."""


class KafkaProblem(Exception):
    """The cluster answered, and the answer is a failure (the message says which)."""


REQUEST_FLOOR_S = 0.2
"""The least timeout a request gets, so one made at the deadline can still fail cleanly."""


def request_deadline(seconds: float) -> Deadline:
    """The run's Deadline with the Kafka floor and grace (controlplane/deadline.py)."""
    return Deadline(seconds, floor=REQUEST_FLOOR_S, grace=GRACE_S)


class _QuietLog:
    """librdkafka's log lines at DEBUG: a broker that is down makes it log every reconnect
    at ERROR, and the check's result already says so once, with the reason."""

    def log(self, level: int, msg: str, *args: Any) -> None:
        rdkafka_log.debug(msg, *args)


class ErrorTrap:
    """Keeps the last error librdkafka reported (delivered by the clients' poll()), so a
    timeout can say why: "Connection refused", "certificate verify failed", ..."""

    def __init__(self) -> None:
        self.last: str | None = None

    def __call__(self, err: Any) -> None:
        self.last = err.str() if hasattr(err, "str") else str(err)
        log.debug("kafka client error error=%r", self.last)

    def take(self) -> str | None:
        last, self.last = self.last, None
        return last


def client_config(cfg: KafkaCheckConfig, timeout: float,
                  trap: ErrorTrap | None = None) -> dict[str, Any]:
    """librdkafka settings for one of our clients; never logs the password."""
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap,
        "client.id": f"controlplane-{cfg.id}",
        "socket.timeout.ms": max(1000, int(timeout * 1000)),
        "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
        "reconnect.backoff.max.ms": 2000,
        "logger": _QuietLog(),
        "log.connection.close": False,
        "allow.auto.create.topics": False,  # a check must never create what it looks at
    }
    if trap is not None:
        conf["error_cb"] = trap
    conf.update(security_config(cfg))
    return conf


def security_config(cfg: KafkaSecurity) -> dict[str, Any]:
    """librdkafka's TLS and SASL settings for ``cfg`` (the password read from its
    environment variable now); the checks' clients and the metadata backups' share it."""
    protocol = ("SASL_" if cfg.sasl_mechanism else "") + ("SSL" if cfg.tls else "PLAINTEXT")
    conf: dict[str, Any] = {"security.protocol": protocol}
    if cfg.tls:
        if cfg.ca_file:
            conf["ssl.ca.location"] = cfg.ca_file
        if cfg.cert_file:
            conf["ssl.certificate.location"] = cfg.cert_file
        if cfg.key_file:
            conf["ssl.key.location"] = cfg.key_file
        conf["ssl.endpoint.identification.algorithm"] = "https" if cfg.verify_hostname else "none"
    if cfg.sasl_mechanism:
        password = os.environ.get(cfg.sasl_password_env or "")
        if password is None:
            raise ProbeError(f"environment variable {cfg.sasl_password_env} (the SASL "
                             "password) is not set; export it before starting")
        conf.update({"sasl.mechanism": cfg.sasl_mechanism,
                     "sasl.username": cfg.sasl_username, "sasl.password": password})
    return conf


def wait(future: Future[T], deadline: Deadline, what: str) -> T:
    """The future's result within the deadline; KafkaUnavailable on timeout or transport error."""
    try:
        return future.result(timeout=deadline.wait_s())
    except FutureTimeout:
        raise KafkaUnavailable(f"{what}: no answer within the check's timeout") from None
    except Exception as exc:
        raise KafkaUnavailable(f"{what}: {describe(exc)}") from exc


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (process-wide, nestable across threads).

    A lag run makes some 50,000 short-lived objects while the check keeps 20,000 long-lived
    ones (windows and time tables); the collections this triggers cost 10-25 ms a run and
    find nothing, since those objects are freed by reference counting. The block is short
    (tens of milliseconds), so other threads lose nothing by waiting for the next collection.
    Only the CPU-bound part of a run is paused, never a wait on the network. A process
    forked (plain fork) inside a pause would start with collection off; the Kafka client
    processes come from the fork server, which never pauses.
    """
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def describe(exc: BaseException) -> str:
    """One readable line for a librdkafka error."""
    err = exc.args[0] if exc.args else None
    if err is not None and hasattr(err, "str") and hasattr(err, "name"):
        return f"{err.str()} ({err.name()})"
    return f"{type(exc).__name__}: {exc}"


def unreachable_message(bootstrap: str, reason: str, client_error: str | None = None) -> str:
    why = f"{reason} (client: {client_error})" if client_error else reason
    return (f"cannot reach Kafka at {bootstrap}: {why}; check the address and port, "
            "the TLS settings and that the brokers are running")


def tls_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection flags every `controlplane probe kafka-*` command takes."""
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca-file", help="CA bundle for the brokers' certificates (implies "
                        "--tls)")


def tls_values(args: argparse.Namespace) -> dict[str, Any]:
    return {"tls": bool(args.tls or args.ca_file), "ca_file": args.ca_file}

"""`tls` checks: chain and hostname verification, expiry with thresholds, version, issuer.

One handshake per run (see :mod:`controlplane.probes.tlsconn`); an expired or untrusted
chain is still described in full. ``earliest_not_after`` is the earliest not_after of EVERY
certificate the server presented, like blackbox_exporter's
``probe_ssl_earliest_cert_expiry``, and days left are counted to it.
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from controlplane.deadline import Deadline
from controlplane.probes.base import CheckConfig, Outcome, Probe
from controlplane.probes.tlsconn import (
    EndpointConfig,
    Handshake,
    Unreachable,
    adhoc_id,
    handshake,
    hostname_problem,
    load_trust,
    sans,
    split_target,
    usage_problem,
    verify_chain,
)
from controlplane.results import Status, Step

if TYPE_CHECKING:  # cryptography and pyOpenSSL load when a probe runs (tlsconn)
    from cryptography import x509
    from OpenSSL import crypto

    from controlplane.metrics import Metrics
    from controlplane.results import Result

log = logging.getLogger(__name__)

MinVersion = Literal["1.0", "1.1", "1.2", "1.3"]
# OpenSSL's protocol names -> our short version names
VERSION_NAMES = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}


# -- configuration --------------------------------------------------------------------------

class TlsCheckConfig(EndpointConfig):
    kind: Literal["tls"] = "tls"
    warn_days: float = Field(default=21, ge=0)
    crit_days: float = Field(default=7, ge=0)
    min_version: MinVersion = "1.2"
    expected_issuer: str | None = Field(default=None, description="substring of the leaf "
                                        "issuer, e.g. Let's Encrypt")

    @field_validator("min_version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        # YAML reads `min_version: 1.2` as a float
        if isinstance(v, float):
            return f"{v:.1f}"
        return v

    @model_validator(mode="after")
    def _thresholds(self) -> TlsCheckConfig:
        if self.crit_days > self.warn_days:
            raise ValueError(f"crit_days ({self.crit_days:g}) must not exceed warn_days "
                             f"({self.warn_days:g})")
        return self

    @property
    def expected_name(self) -> str:
        return self.servername or self.host


# -- the probe ------------------------------------------------------------------------------

class TlsProbe(Probe[TlsCheckConfig]):
    kind = "tls"
    config_model = TlsCheckConfig
    cli_name = "tls"

    def check(self) -> Outcome:
        c = self.config
        store = load_trust(c.ca_file)
        deadline = Deadline(c.timeout)
        try:
            hs = handshake(c.host, c.port, c.expected_name, deadline)
        except Unreachable as exc:
            return Outcome(Status.FAILING, str(exc), steps=[Step(
                name=exc.stage, status=Status.FAILING, message=str(exc))])
        except TimeoutError:
            msg = f"{c.target}: no TLS handshake within {c.timeout:g}s"
            return Outcome(Status.FAILING, msg, steps=[Step(
                name="handshake", status=Status.FAILING, message=msg)])
        outcome = judge(c, hs, store)
        log.debug("tls judged check=%s target=%s status=%s version=%s earliest_not_after=%s",
                  c.id, c.target, outcome.status.value, hs.version,
                  outcome.metrics.get("earliest_not_after"))
        return outcome

    @classmethod
    def export_metrics(cls, result: Result, metrics: Metrics) -> None:
        earliest = result.metrics.get("earliest_not_after")
        if earliest is not None:
            metrics.tls_not_after.labels(result.check).set(earliest)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="HOST:PORT")
        parser.add_argument("--servername", help="SNI name and the name the certificate "
                            "must carry (default: HOST)")
        parser.add_argument("--ca-file", help="PEM bundle of trusted CAs (default: system)")
        parser.add_argument("--warn-days", type=float, default=21.0,
                            help="degraded at or under this many days left (default 21)")
        parser.add_argument("--crit-days", type=float, default=7.0,
                            help="failing at or under this many days left (default 7)")
        parser.add_argument("--min-version", default="1.2", choices=["1.0", "1.1", "1.2", "1.3"],
                            help="lowest acceptable negotiated TLS version (default 1.2)")
        parser.add_argument("--expected-issuer", help="substring the leaf issuer must contain")
        parser.add_argument("--no-verify-hostname", action="store_true",
                            help="do not match the name against the certificate")
        parser.add_argument("--timeout", default="10s", metavar="S",
                            help="a duration, e.g. 10s or 1m (default 10s)")

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> CheckConfig:
        split_target(args.target)  # a plain message on bad input, before pydantic's
        return TlsCheckConfig(
            id=adhoc_id("tls", args.target), target=args.target, servername=args.servername,
            ca_file=args.ca_file, warn_days=args.warn_days, crit_days=args.crit_days,
            min_version=args.min_version, expected_issuer=args.expected_issuer,
            verify_hostname=not args.no_verify_hostname, timeout=args.timeout)


def judge(c: TlsCheckConfig, hs: Handshake, store: crypto.X509Store) -> Outcome:
    """Status, message, metrics and details from one handshake."""
    leaf = hs.chain[0]
    now = time.time()
    earliest_cert = min(hs.chain, key=lambda cert: cert.not_valid_after_utc)
    earliest = int(earliest_cert.not_valid_after_utc.timestamp())
    days_left = round((earliest - now) / 86400, 4)
    steps = [Step(name="handshake", status=Status.OK, duration_s=round(hs.handshake_s, 6),
                  message=f"{hs.version} {hs.cipher}")]
    checks: list[tuple[str, Status, str | None]] = [
        ("verify chain", Status.FAILING, verify_chain(hs, store) or usage_problem(leaf)),
        ("hostname", Status.FAILING,
         hostname_problem(leaf, c.expected_name) if c.verify_hostname else None),
        ("min version", Status.FAILING, _version_problem(hs.version, c.min_version)),
        ("issuer", Status.FAILING, _issuer_problem(leaf, c.expected_issuer)),
        *_expiry_check(c, earliest_cert, days_left),
    ]
    problems: list[tuple[Status, str]] = []
    for name, status, problem in checks:
        steps.append(Step(name=name, status=status if problem else Status.OK,
                          message=problem or ""))
        if problem:
            problems.append((status, problem))
    metrics: dict[str, float | None] = {
        "not_after": int(leaf.not_valid_after_utc.timestamp()),
        "earliest_not_after": earliest,
        "days_left": days_left,
        "handshake_s": round(hs.handshake_s, 6),
        "connect_s": round(hs.connect_s, 6),
    }
    details = _details(c, hs, [p for _, p in problems])
    if problems:
        # the most severe problem leads; all of them are in details.problems
        status, message = max(problems, key=lambda p: p[0].rank)
        return Outcome(status, message, metrics, details, steps)
    message = (f"{c.expected_name}: {hs.version}, chain trusted, {days_left:.1f} days left "
               f"({earliest_cert.subject.rfc4514_string()} expires {_date(earliest_cert)})")
    return Outcome(Status.OK, message, metrics, details, steps)


def _version_problem(version: str, minimum: str) -> str | None:
    short = VERSION_NAMES.get(version)
    if short is None:
        return f"server negotiated {version}, below the minimum TLS {minimum}"
    if float(short) < float(minimum):
        return f"server negotiated TLS {short}, below the minimum TLS {minimum}"
    return None


def _issuer_problem(leaf: x509.Certificate, expected: str | None) -> str | None:
    issuer = leaf.issuer.rfc4514_string()
    if expected and expected.lower() not in issuer.lower():
        return f"leaf issuer {issuer!r} does not contain {expected!r}"
    return None


def _expiry_check(c: TlsCheckConfig, cert: x509.Certificate,
                  days_left: float) -> list[tuple[str, Status, str | None]]:
    subject = cert.subject.rfc4514_string()
    if days_left <= 0:
        return [("expiry", Status.FAILING,
                 f"certificate {subject} expired {-days_left:.1f} days ago ({_date(cert)})")]
    if days_left <= c.crit_days:
        return [("expiry", Status.FAILING,
                 f"certificate {subject} expires in {days_left:.1f} days ({_date(cert)}), "
                 f"within the critical threshold of {c.crit_days:g} days")]
    if days_left <= c.warn_days:
        return [("expiry", Status.DEGRADED,
                 f"certificate {subject} expires in {days_left:.1f} days ({_date(cert)}), "
                 f"within the warning threshold of {c.warn_days:g} days")]
    return [("expiry", Status.OK, None)]


def _date(cert: x509.Certificate) -> str:
    return _iso(cert.not_valid_after_utc)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _details(c: TlsCheckConfig, hs: Handshake, problems: list[str]) -> dict[str, Any]:
    leaf = hs.chain[0]
    return {
        "target": c.target,
        "servername": c.expected_name,
        "subject": leaf.subject.rfc4514_string(),
        "issuer": leaf.issuer.rfc4514_string(),
        "sans": sans(leaf),
        "serial": format(leaf.serial_number, "X"),
        "not_before": _iso(leaf.not_valid_before_utc),
        "not_after": _iso(leaf.not_valid_after_utc),
        "tls_version": hs.version,
        "cipher": hs.cipher,
        "chain": [{"subject": cert.subject.rfc4514_string(),
                   "issuer": cert.issuer.rfc4514_string(),
                   "not_after": _iso(cert.not_valid_after_utc)} for cert in hs.chain],
        "problems": problems,
    }

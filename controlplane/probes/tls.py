"""`tls` checks: chain and hostname verification, expiry with thresholds, version, issuer.

One handshake per run. The handshake itself does not verify (it accepts any certificate)
so that an expired or untrusted chain is still described in full; verification is then
done on the chain the server presented, against the configured CA file or the system trust
store, and the hostname is matched against the leaf's subjectAltNames (never the CN, as
browsers and Go do). ``earliest_not_after`` is the earliest not_after of EVERY certificate
the server presented, like blackbox_exporter's ``probe_ssl_earliest_cert_expiry``.

pyOpenSSL is used for the handshake because Python 3.11's ssl module cannot return the
chain the server presented, only the leaf.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import select
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL, crypto
from pydantic import Field, field_validator, model_validator

from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.results import Status, Step

if TYPE_CHECKING:
    from controlplane.metrics import Metrics
    from controlplane.results import Result

log = logging.getLogger(__name__)

MinVersion = Literal["1.0", "1.1", "1.2", "1.3"]
# OpenSSL's protocol names -> our short version names
VERSION_NAMES = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}


# -- target parsing, shared with tcp --------------------------------------------------------

def split_target(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); ValueError saying how to write it."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or (":" in host and not _is_ip(host)):
        raise ValueError(f"target {value!r} must be HOST:PORT, e.g. example.com:443 "
                         "or [2001:db8::1]:443")
    try:
        ascii_name(host)
    except ValueError as exc:
        raise ValueError(f"target {value!r}: {exc}") from None
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"target {value!r}: port must be between 1 and 65535")
    return host, port


def ascii_name(name: str) -> str:
    """A host name in the ASCII (IDNA) form certificates and SNI carry; ValueError if invalid."""
    if _is_ip(name):
        return name
    try:
        return name.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{name!r} is not a valid host name") from None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def adhoc_id(kind: str, target: str) -> str:
    """A valid check id for an ad-hoc probe of ``target``."""
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in target.lower())
    return f"{kind}-{safe.strip('-.')}"[:120]


# -- configuration --------------------------------------------------------------------------

class TlsCheckConfig(CheckConfig):
    kind: Literal["tls"] = "tls"
    target: str = Field(description="HOST:PORT to connect to")
    servername: str | None = Field(default=None, description="SNI and expected name; "
                                   "default: the target's host")
    ca_file: str | None = Field(default=None, description="PEM bundle to trust; "
                                "default: the system trust store")
    verify_hostname: bool = True
    warn_days: float = Field(default=21, ge=0)
    crit_days: float = Field(default=7, ge=0)
    min_version: MinVersion = "1.2"
    expected_issuer: str | None = Field(default=None, description="substring of the leaf "
                                        "issuer, e.g. Let's Encrypt")

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_target(v)
        return v.strip()

    @field_validator("servername")
    @classmethod
    def _servername(cls, v: str | None) -> str | None:
        return None if v is None else ascii_name(v)

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
    def host(self) -> str:
        return split_target(self.target)[0]

    @property
    def port(self) -> int:
        return split_target(self.target)[1]

    @property
    def expected_name(self) -> str:
        return self.servername or self.host


# -- connection and handshake, shared with tcp ----------------------------------------------

class Unreachable(Exception):
    """The target could not be reached or spoke no TLS: status failing, not error."""

    def __init__(self, message: str, stage: str = "handshake") -> None:
        super().__init__(message)
        self.stage = stage  # the step that failed: connect or handshake


@dataclass
class Handshake:
    connect_s: float
    handshake_s: float
    version: str
    cipher: str
    chain: list[x509.Certificate]


def connect(host: str, port: int, deadline: float) -> tuple[socket.socket, float]:
    """A connected TCP socket and the connect time; Unreachable with the reason."""
    t0 = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=_left(deadline))
    except socket.gaierror as exc:
        raise Unreachable(f"cannot resolve {host}: {exc.strerror}", "connect") from None
    except TimeoutError:
        raise Unreachable(f"cannot connect to {host}:{port}: timed out", "connect") from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise Unreachable(f"cannot connect to {host}:{port}: {reason}", "connect") from None
    return sock, time.monotonic() - t0


def handshake(host: str, port: int, servername: str | None, deadline: float) -> Handshake:
    """Connect and complete a TLS handshake without judging the certificate."""
    sock, connect_s = connect(host, port, deadline)
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    # Accept every version and cipher so an old server is described, then judged by
    # min_version, instead of failing with an opaque "no protocols available".
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    ctx.set_verify(SSL.VERIFY_NONE)
    conn = SSL.Connection(ctx, sock)
    if servername and not _is_ip(servername):  # RFC 6066: SNI carries names only
        conn.set_tlsext_host_name(ascii_name(servername).encode("ascii"))
    conn.set_connect_state()
    sock.setblocking(False)
    t0 = time.monotonic()
    try:
        _drive_handshake(conn, sock, deadline)
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        result = Handshake(connect_s=connect_s, handshake_s=time.monotonic() - t0,
                           version=conn.get_protocol_version_name(),
                           cipher=conn.get_cipher_name() or "", chain=list(chain))
    except SSL.Error as exc:
        raise Unreachable(f"TLS handshake with {host}:{port} failed: {_ssl_reason(exc)}") from None
    except TimeoutError:
        raise  # the caller knows the configured timeout and says so
    except OSError as exc:
        raise Unreachable(f"TLS handshake with {host}:{port} failed: "
                          f"{exc.strerror or exc}") from None
    finally:
        _close(conn, sock)
    if not result.chain:
        raise Unreachable(f"TLS handshake with {host}:{port}: the server sent no certificate")
    return result


def _drive_handshake(conn: SSL.Connection, sock: socket.socket, deadline: float) -> None:
    while True:
        try:
            conn.do_handshake()
            return
        except SSL.WantReadError:
            ready = select.select([sock], [], [], _left(deadline))[0]
        except SSL.WantWriteError:
            ready = select.select([], [sock], [], _left(deadline))[1]
        if not ready:
            raise TimeoutError("timed out during the TLS handshake")


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _close(conn: SSL.Connection, sock: socket.socket) -> None:
    # the server may already be gone; closing the socket is all that matters
    with contextlib.suppress(SSL.Error, OSError):
        conn.shutdown()
    sock.close()


def _ssl_reason(exc: SSL.Error) -> str:
    if isinstance(exc, SSL.SysCallError):
        return "connection closed by the server"
    # pyOpenSSL errors carry [(lib, func, reason), ...]
    parts = [str(e[-1]) for e in (exc.args[0] if exc.args and isinstance(exc.args[0], list)
                                  else []) if isinstance(e, tuple)]
    return "; ".join(parts) or str(exc)


# -- judging the presented chain ------------------------------------------------------------

def load_trust(ca_file: str | None) -> crypto.X509Store:
    """The trust store; ProbeError (status error) when it cannot be read."""
    store = crypto.X509Store()
    if ca_file:
        if not os.path.isfile(ca_file):
            raise ProbeError(f"ca_file {ca_file} does not exist; give a PEM bundle of trusted CAs")
        try:
            store.load_locations(ca_file)
        except crypto.Error:
            raise ProbeError(f"ca_file {ca_file} holds no readable PEM certificate") from None
        return store
    # The OpenSSL linked into pyOpenSSL's wheel may look elsewhere; use the system's paths.
    paths = ssl.get_default_verify_paths()
    if not (paths.cafile or paths.capath):
        raise ProbeError("no system CA bundle found; install ca-certificates or set ca_file")
    store.load_locations(paths.cafile, paths.capath)
    return store


def verify_chain(chain: list[x509.Certificate], store: crypto.X509Store) -> str | None:
    """None if the presented chain leads to a trusted root, else OpenSSL's reason."""
    leaf, *rest = (crypto.X509.from_cryptography(c) for c in chain)
    try:
        crypto.X509StoreContext(store, leaf, rest).verify_certificate()
    except crypto.X509StoreContextError as exc:
        depth = exc.errors[1] if len(exc.errors) > 1 else "?"
        subject = exc.certificate.to_cryptography().subject.rfc4514_string()
        return f"certificate verify failed: {exc} (depth {depth}: {subject})"
    return None


_EKU_NAMES = {ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
              ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
              ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
              ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
              ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning"}


def usage_problem(leaf: x509.Certificate) -> str | None:
    """None unless the leaf's extended key usage excludes TLS servers (as Go rejects it)."""
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None  # no restriction
    allowed = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if allowed & set(usages):
        return None
    names = ", ".join(_EKU_NAMES.get(u, u.dotted_string) for u in usages)
    return f"certificate {leaf.subject.rfc4514_string()} is not for TLS servers " \
           f"(extended key usage: {names})"


def sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*ext.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))]


def hostname_problem(cert: x509.Certificate, name: str) -> str | None:
    """None if ``name`` matches a subjectAltName of the leaf (RFC 6125, no CN fallback)."""
    names = sans(cert)
    if _is_ip(name):
        ok = ipaddress.ip_address(name) in {ipaddress.ip_address(n) for n in names if _is_ip(n)}
    else:
        want = ascii_name(name)
        ok = any(_dns_match(p.lower().rstrip("."), want) for p in names if not _is_ip(p))
    if ok:
        return None
    listed = ", ".join(names) if names else "none (no subjectAltName)"
    return f"certificate is not valid for {name}; its names are: {listed}"


def _dns_match(pattern: str, name: str) -> bool:
    if pattern == name:
        return True
    # a wildcard stands for exactly one whole left-most label
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        label, _, rest = name.partition(".")
        return bool(label) and rest == pattern[2:]
    return False


# -- the probe ------------------------------------------------------------------------------

class TlsProbe(Probe[TlsCheckConfig]):
    kind = "tls"
    config_model = TlsCheckConfig
    cli_name = "tls"

    def check(self) -> Outcome:
        c = self.config
        store = load_trust(c.ca_file)
        deadline = time.monotonic() + c.timeout
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
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")

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
        ("verify chain", Status.FAILING, verify_chain(hs.chain, store) or usage_problem(leaf)),
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

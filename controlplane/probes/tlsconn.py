"""TLS plumbing shared by the `tls` and `tcp` kinds: targets, one handshake, chain checks.

The handshake accepts any certificate and any version from TLS 1.0 up, so that a broken
server is described in full; the chain the server presented is then verified separately
(OpenSSL, against a CA file or the system store), the leaf's extended key usage checked,
and the name matched against its subjectAltNames (never the CN, as browsers and Go do).

pyOpenSSL does the handshake because Python 3.11's ssl module cannot return the chain the
server presented, only the leaf.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import select
import socket
import ssl
import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from controlplane.deadline import Deadline
from controlplane.probes.base import CheckConfig, ProbeError

if TYPE_CHECKING:  # cryptography and pyOpenSSL (~0.2 s) load when a probe connects, so
    # loading the config (and `controlplane smoke`) does not pay for them
    from cryptography import x509
    from OpenSSL import SSL, crypto

# -- targets and names -----------------------------------------------------------------------

def split_target(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); ValueError saying how to write it."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or (":" in host and not is_ip(host)):
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
    if is_ip(name):
        return name
    try:
        return name.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{name!r} is not a valid host name") from None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def adhoc_id(kind: str, target: str) -> str:
    """A valid check id for an ad-hoc probe of ``target``."""
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in target.lower())
    return f"{kind}-{safe.strip('-.')}"[:120]


# -- connection and handshake -------------------------------------------------------------

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
    presented: list[crypto.X509]
    """The same chain as OpenSSL holds it, for :func:`verify_chain` (converting one form
    into the other per run cost a DER round trip per certificate)."""


def connect(host: str, port: int, deadline: Deadline) -> tuple[socket.socket, float]:
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


def handshake(host: str, port: int, servername: str | None, deadline: Deadline) -> Handshake:
    """Connect and complete a TLS handshake without judging the certificate."""
    sock, connect_s = connect(host, port, deadline)
    return handshake_on(sock, host, port, servername, deadline, connect_s)


def handshake_on(sock: socket.socket, host: str, port: int, servername: str | None,
                 deadline: Deadline, connect_s: float) -> Handshake:
    """Complete a TLS handshake on the connected ``sock`` (closed on return): after a
    direct connect, or after a plain-text preamble such as SMTP's STARTTLS."""
    from OpenSSL import SSL

    conn = SSL.Connection(_client_context(), sock)
    if servername and not is_ip(servername):  # RFC 6066: SNI carries names only
        conn.set_tlsext_host_name(ascii_name(servername).encode("ascii"))
    conn.set_connect_state()
    sock.setblocking(False)
    t0 = time.monotonic()
    try:
        drive_handshake(conn, sock, deadline)
        presented = conn.get_peer_cert_chain() or []
        result = Handshake(connect_s=connect_s, handshake_s=time.monotonic() - t0,
                           version=conn.get_protocol_version_name(),
                           cipher=conn.get_cipher_name() or "",
                           chain=[c.to_cryptography() for c in presented],
                           presented=list(presented))
    except SSL.Error as exc:
        raise Unreachable(f"TLS handshake with {host}:{port} failed: {ssl_reason(exc)}") from None
    except TimeoutError:
        raise  # the caller knows the configured timeout and says so
    except OSError as exc:
        raise Unreachable(f"TLS handshake with {host}:{port} failed: "
                          f"{exc.strerror or exc}") from None
    finally:
        close_tls(conn, sock)
    if not result.chain:
        raise Unreachable(f"TLS handshake with {host}:{port}: the server sent no certificate")
    return result


@functools.cache
def _client_context() -> SSL.Context:
    """The one client context every probe handshake uses. Building it (SSL_CTX_new) costs
    about as much CPU as the handshake itself; it holds no per-target state (SNI is set on
    each connection, nothing is verified during the handshake), and OpenSSL lets
    connections on many threads share a configured context."""
    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    # Accept every version and cipher so an old server is described, then judged by
    # min_version, instead of failing with an opaque "no protocols available".
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    ctx.set_verify(SSL.VERIFY_NONE)
    # no session cache: each run is a full handshake, as a first-time client's would be
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx


def drive_handshake(conn: SSL.Connection, sock: socket.socket, deadline: Deadline) -> None:
    from OpenSSL import SSL

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


def _left(deadline: Deadline) -> float:
    left = deadline.remaining()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def close_tls(conn: SSL.Connection, sock: socket.socket) -> None:
    from OpenSSL import SSL

    # the server may already be gone; closing the socket is all that matters
    with contextlib.suppress(SSL.Error, OSError):
        conn.shutdown()
    sock.close()


def ssl_reason(exc: SSL.Error) -> str:
    from OpenSSL import SSL

    if isinstance(exc, SSL.SysCallError):
        return "connection closed by the server"
    # pyOpenSSL errors carry [(lib, func, reason), ...]
    parts = [str(e[-1]) for e in (exc.args[0] if exc.args and isinstance(exc.args[0], list)
                                  else []) if isinstance(e, tuple)]
    return "; ".join(parts) or str(exc)


# -- judging the presented chain ------------------------------------------------------------

def load_trust(ca_file: str | None) -> crypto.X509Store:
    """The trust store; ProbeError (status error) when it cannot be read.

    Loaded once per file version and shared: parsing a bundle (the system's holds ~150
    CAs) on every run cost more CPU than the handshake. A changed file (new mtime or size)
    is read again on the next run; OpenSSL stores are safe to verify against from many
    threads."""
    if ca_file:
        try:
            st = os.stat(ca_file)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise ProbeError(f"ca_file {ca_file} does not exist; give a PEM bundle of trusted CAs")
        return _trust_store(ca_file, None, st.st_mtime_ns, st.st_size)
    # The OpenSSL linked into pyOpenSSL's wheel may look elsewhere; use the system's paths.
    paths = ssl.get_default_verify_paths()
    if not (paths.cafile or paths.capath):
        raise ProbeError("no system CA bundle found; install ca-certificates or set ca_file")
    try:  # an updated system bundle is read again too
        st = os.stat(paths.cafile) if paths.cafile else None
    except OSError:
        st = None
    return _trust_store(paths.cafile, paths.capath, st.st_mtime_ns if st else 0,
                        st.st_size if st else 0)


@functools.lru_cache(maxsize=64)
def _trust_store(cafile: str | None, capath: str | None, _mtime_ns: int,
                 _size: int) -> crypto.X509Store:
    from OpenSSL import crypto

    store = crypto.X509Store()
    try:
        store.load_locations(cafile, capath)
    except crypto.Error:
        where = f"ca_file {cafile}" if cafile else f"the system CA directory {capath}"
        raise ProbeError(f"{where} holds no readable PEM certificate") from None
    return store


def verify_chain(hs: Handshake, store: crypto.X509Store) -> str | None:
    """None if the presented chain leads to a trusted root, else OpenSSL's reason."""
    from OpenSSL import crypto

    leaf, *rest = hs.presented
    try:
        crypto.X509StoreContext(store, leaf, rest).verify_certificate()
    except crypto.X509StoreContextError as exc:
        depth = exc.errors[1] if len(exc.errors) > 1 else "?"
        subject = exc.certificate.to_cryptography().subject.rfc4514_string()
        return f"certificate verify failed: {exc} (depth {depth}: {subject})"
    return None


def usage_problem(leaf: x509.Certificate) -> str | None:
    """None unless the leaf's extended key usage excludes TLS servers (as Go rejects it)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    eku_names = {ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
                 ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
                 ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
                 ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
                 ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning"}
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None  # no restriction
    allowed = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if allowed & set(usages):
        return None
    names = ", ".join(eku_names.get(u, u.dotted_string) for u in usages)
    return f"certificate {leaf.subject.rfc4514_string()} is not for TLS servers " \
           f"(extended key usage: {names})"


def sans(cert: x509.Certificate) -> list[str]:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*ext.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))]


def hostname_problem(cert: x509.Certificate, name: str) -> str | None:
    """None if ``name`` matches a subjectAltName of the leaf (RFC 6125, no CN fallback)."""
    names = sans(cert)
    if is_ip(name):
        ok = ipaddress.ip_address(name) in {ipaddress.ip_address(n) for n in names if is_ip(n)}
    else:
        want = ascii_name(name)
        ok = any(_dns_match(p.lower().rstrip("."), want) for p in names if not is_ip(p))
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


class EndpointConfig(CheckConfig):
    """Fields shared by the kinds that connect to HOST:PORT and may verify TLS (tls, tcp)."""

    target: str = Field(description="HOST:PORT to connect to")
    servername: str | None = Field(default=None, description="SNI and expected name; "
                                   "default: the target's host")
    ca_file: str | None = Field(default=None, description="PEM bundle to trust; "
                                "default: the system trust store")
    verify_hostname: bool = True

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_target(v)
        return v.strip()

    @field_validator("servername")
    @classmethod
    def _servername(cls, v: str | None) -> str | None:
        return None if v is None else ascii_name(v)

    @property
    def host(self) -> str:
        return split_target(self.target)[0]

    @property
    def port(self) -> int:
        return split_target(self.target)[1]

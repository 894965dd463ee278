"""A local certificate authority for the sandbox: one root, leaf certificates on demand.

Every sandbox server presents a leaf signed by this root; probes trust the root through
their ``ca_file``. Leaves can be made already expired or close to expiry, which is how the
certificate faults are injected.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LocalCA:
    """A root CA written to ``directory/ca.pem``; issues leaves and caches their SSL contexts."""

    def __init__(self, directory: str, name: str = "360Voice Sandbox Root CA") -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(days=1))
            .not_valid_after(_now() + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = os.path.join(directory, "ca.pem")
        with open(self.ca_file, "wb") as fh:
            fh.write(self._cert.public_bytes(serialization.Encoding.PEM))
        self._contexts: dict[tuple[tuple[str, ...], str], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def issue(self, names: list[str], not_after: dt.datetime,
              not_before: dt.datetime | None = None) -> tuple[bytes, bytes]:
        """PEM (certificate, key) for ``names`` (DNS names or IP addresses)."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        start = not_before or min(_now() - dt.timedelta(days=1), not_after - dt.timedelta(days=1))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

    def server_context(self, names: list[str], validity: str = "valid") -> ssl.SSLContext:
        """A cached server context; validity: ``valid``, ``expiring`` (5 days), ``expired``."""
        key = (tuple(names), validity)
        with self._lock:
            ctx = self._contexts.get(key)
            if ctx is None:
                ctx = self._make_context(names, validity)
                self._contexts[key] = ctx
            return ctx

    def _make_context(self, names: list[str], validity: str) -> ssl.SSLContext:
        now = _now()
        if validity == "expired":
            not_after, not_before = now - dt.timedelta(days=2), now - dt.timedelta(days=92)
        elif validity == "expiring":
            not_after, not_before = now + dt.timedelta(days=5), now - dt.timedelta(days=85)
        else:
            not_after, not_before = now + dt.timedelta(days=90), now - dt.timedelta(days=1)
        cert_pem, key_pem = self.issue(names, not_after, not_before)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain wants files; a private temp dir keeps the key readable by us only.
        with tempfile.TemporaryDirectory() as tmp:
            cert_path, key_path = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            with open(cert_path, "wb") as fh:
                fh.write(cert_pem + self._cert.public_bytes(serialization.Encoding.PEM))
            with open(key_path, "wb") as fh:
                fh.write(key_pem)
            ctx.load_cert_chain(cert_path, key_path)
        return ctx

"""Certificates made per test with `cryptography`: roots, intermediates, leaves, any window.

Keys are EC P-256 (fast to make, spoken by OpenSSL and Go alike). Validity times are whole
seconds so a test can compare them exactly with the probe's unix-time metrics.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def days(n: float) -> datetime:
    """A time n days from now (negative: in the past), to whole seconds."""
    return now() + timedelta(days=n)


@dataclass
class Issued:
    """One certificate with its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def not_after(self) -> int:
        return int(self.cert.not_valid_after_utc.timestamp())

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


@dataclass
class ServerFiles:
    """What a TLS server loads (chain file + key) and what a client trusts (ca_file)."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    root: Issued
    intermediate: Issued | None
    leaf: Issued


class CertFactory:
    """Makes certificates into one directory; every file name is unique per factory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def ca(self, name: str, issuer: Issued | None = None, *, not_before: datetime | None = None,
           not_after: datetime | None = None, organization: str = "Controlplane Tests") -> Issued:
        """A root CA (issuer None) or an intermediate CA signed by ``issuer``."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        # CAs outlive leaves by default so the leaf is the earliest expiry unless a test says so
        not_after = not_after or days(1825 if issuer else 3650)
        builder = self._base(subject, issuer, key, not_before, not_after)
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False), critical=True)
        return self._sign(builder, key, issuer)

    def leaf(self, names: list[str], issuer: Issued | None = None, *,
             not_before: datetime | None = None, not_after: datetime | None = None,
             common_name: str | None = None,
             usages: list[x509.ObjectIdentifier] | None = None) -> Issued:
        """A server certificate for ``names`` (DNS names or IPs); self-signed if no issuer."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                common_name or (names[0] if names else "leaf"))])
        builder = self._base(subject, issuer, key, not_before, not_after)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                        critical=True)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(usages or [ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        return self._sign(builder, key, issuer)

    def server(self, names: list[str] | None = None, *,
               leaf_not_before: datetime | None = None, leaf_not_after: datetime | None = None,
               intermediate_not_after: datetime | None = None,
               include_intermediate: bool = True, root_name: str = "Test Root CA",
               intermediate_name: str = "Test Intermediate CA",
               intermediate_org: str = "Controlplane Tests",
               usages: list[x509.ObjectIdentifier] | None = None) -> ServerFiles:
        """Root -> intermediate -> leaf, written out; the served chain is leaf + intermediate."""
        root = self.ca(root_name)
        inter = self.ca(intermediate_name, root, not_after=intermediate_not_after,
                        organization=intermediate_org)
        leaf = self.leaf(names or ["service.test"], inter, not_before=leaf_not_before,
                         not_after=leaf_not_after, usages=usages)
        served = [leaf, inter] if include_intermediate else [leaf]
        return ServerFiles(cert_file=self.write("chain", *served), key_file=self.write_key(leaf),
                           ca_file=self.write("ca", root), root=root, intermediate=inter,
                           leaf=leaf)

    def self_signed(self, names: list[str] | None = None) -> ServerFiles:
        """A self-signed leaf; ca_file holds an unrelated root so the leaf is untrusted."""
        leaf = self.leaf(names or ["service.test"])
        root = self.ca("Unrelated Root CA")
        return ServerFiles(cert_file=self.write("chain", leaf), key_file=self.write_key(leaf),
                           ca_file=self.write("ca", root), root=root, intermediate=None, leaf=leaf)

    def write(self, stem: str, *certs: Issued) -> Path:
        """Concatenated PEM certificates in a new file."""
        path = self._path(stem, "pem")
        path.write_bytes(b"".join(c.pem() for c in certs))
        return path

    def write_key(self, issued: Issued) -> Path:
        path = self._path("key", "pem")
        path.write_bytes(issued.key_pem())
        return path

    def _path(self, stem: str, ext: str) -> Path:
        self._n += 1
        return self.dir / f"{stem}-{self._n}.{ext}"

    @staticmethod
    def _base(subject: x509.Name, issuer: Issued | None, key: ec.EllipticCurvePrivateKey,
              not_before: datetime | None, not_after: datetime | None) -> x509.CertificateBuilder:
        issuer_name = issuer.cert.subject if issuer else subject
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(issuer_name)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before or days(-1))
                   .not_valid_after(not_after or days(90))
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False))
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False)
        return builder

    @staticmethod
    def _sign(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey,
              issuer: Issued | None) -> Issued:
        signer = issuer.key if issuer else key
        return Issued(builder.sign(signer, hashes.SHA256()), key)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@pytest.fixture
def certs(tmp_path: Path) -> CertFactory:
    """A certificate factory writing into this test's temporary directory."""
    return CertFactory(tmp_path / "certs")

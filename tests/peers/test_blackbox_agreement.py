"""Peer agreement: our tls probe and Prometheus's blackbox_exporter judge the same endpoints.

Every case is a real loopback TLS server. For each, blackbox_exporter's tcp prober (with
TLS, the same CA file, server name and minimum version) is asked via /probe, and:

- our status is up (ok or degraded) exactly when its ``probe_success`` is 1;
- when it succeeds, our ``earliest_not_after`` equals its ``probe_ssl_earliest_cert_expiry``
  (and both equal the certificate we know expires first).

Its verdict has no expiry thresholds, so the cases keep clear of our critical window. One
documented difference is asserted as such: a server that presents an extra, expired
certificate its chain does not need. blackbox_exporter says success (its expiry metric is in
the past, which the usual `probe_ssl_earliest_cert_expiry - time()` alert catches); we say
failing, because days left is judged on the earliest not_after presented.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from controlplane.probes.tls import TlsCheckConfig, TlsProbe
from controlplane.results import Status
from tests.services.blackbox import BlackboxExporter
from tests.services.certs import CertFactory, Issued, ServerFiles, days
from tests.services.common import free_port
from tests.services.tlsserver import TlsServer

pytestmark = pytest.mark.peer
NAME = "service.test"


@dataclass
class Case:
    files: ServerFiles
    status: Status                      # what we must say
    earliest: Issued | None             # the certificate expiring first, when up
    server: dict[str, str] = field(default_factory=dict)
    target: str = ""                    # filled in once its server runs
    peer_up: bool | None = None         # blackbox's probe_success when it differs by design


def make_cases(certs: CertFactory) -> dict[str, Case]:
    inter_first = certs.server(intermediate_not_after=days(30), leaf_not_after=days(90))
    soon = certs.server(leaf_not_after=days(10))
    valid = certs.server()
    stale = certs.server()
    assert stale.intermediate is not None
    old = certs.ca("Old Cross-signed CA", not_before=days(-400), not_after=days(-2))
    stale.cert_file = certs.write("chain", stale.leaf, stale.intermediate, old)
    return {
        "valid": Case(valid, Status.OK, valid.leaf),
        "expired": Case(certs.server(leaf_not_before=days(-30), leaf_not_after=days(-1)),
                        Status.FAILING, None),
        "not_yet_valid": Case(certs.server(leaf_not_before=days(1)), Status.FAILING, None),
        "wrong_host": Case(certs.server(["other.test"]), Status.FAILING, None),
        "self_signed": Case(certs.self_signed(), Status.FAILING, None),
        "missing_intermediate": Case(certs.server(include_intermediate=False),
                                     Status.FAILING, None),
        "intermediate_expires_first": Case(inter_first, Status.OK, inter_first.intermediate),
        "inside_warning_window": Case(soon, Status.DEGRADED, soon.leaf),
        "tls_1_1_only": Case(certs.server(), Status.FAILING, None,
                             server={"min_version": "1.0", "max_version": "1.1"}),
        "tls_1_2_only": Case(valid, Status.OK, valid.leaf, server={"max_version": "1.2"}),
        "unreachable": Case(valid, Status.FAILING, None, server={"none": ""}),
        "extra_expired_cert": Case(stale, Status.FAILING, old, peer_up=True),
        "client_auth_only": Case(certs.server(usages=[ExtendedKeyUsageOID.CLIENT_AUTH]),
                                 Status.FAILING, None),
    }


def blackbox_module(case: Case) -> dict[str, Any]:
    return {"prober": "tcp", "timeout": "10s",
            "tcp": {"tls": True, "preferred_ip_protocol": "ip4",
                    "tls_config": {"ca_file": str(case.files.ca_file), "server_name": NAME,
                                   "min_version": "TLS12"}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[dict[str, Case], BlackboxExporter]]:
    """All cases served at once, and one exporter with one module per case."""
    base: Path = tmp_path_factory.mktemp("blackbox")
    cases = make_cases(CertFactory(base / "certs"))
    servers: list[TlsServer] = []
    try:
        for case in cases.values():
            if "none" in case.server:
                case.target = f"127.0.0.1:{free_port()}"
                continue
            srv = TlsServer(case.files.cert_file, case.files.key_file, **case.server).start()
            servers.append(srv)
            case.target = srv.target
        modules = {name: blackbox_module(case) for name, case in cases.items()}
        with BlackboxExporter(base / "exporter", modules) as exporter:
            yield cases, exporter
    finally:
        for srv in servers:
            srv.stop()


CASES = ["valid", "expired", "not_yet_valid", "wrong_host", "self_signed",
         "missing_intermediate", "intermediate_expires_first", "inside_warning_window",
         "tls_1_1_only", "tls_1_2_only", "unreachable", "extra_expired_cert",
         "client_auth_only"]


@pytest.mark.parametrize("name", CASES)
def test_our_verdict_agrees_with_blackbox_exporter(
        world: tuple[dict[str, Case], BlackboxExporter], name: str) -> None:
    cases, exporter = world
    case = cases[name]
    theirs = exporter.probe(case.target, name)
    ours = TlsProbe(TlsCheckConfig(id=f"peer-{name}", target=case.target, servername=NAME,
                                   ca_file=str(case.files.ca_file))).execute()

    assert ours.status == case.status, ours.message
    ours_up = ours.status in (Status.OK, Status.DEGRADED)
    peer_up = ours_up if case.peer_up is None else case.peer_up
    assert theirs["probe_success"] == (1.0 if peer_up else 0.0), exporter.log.read_text()
    if case.earliest is not None:
        assert ours.metrics["earliest_not_after"] == case.earliest.not_after
        assert theirs["probe_ssl_earliest_cert_expiry"] == case.earliest.not_after

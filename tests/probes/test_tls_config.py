"""tls/tcp configuration: targets, names, thresholds, hostname rules, the shipped checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from controlplane.config import load_config
from controlplane.probes.tls import TlsCheckConfig, TlsProbe
from controlplane.probes.tlsconn import hostname_problem
from controlplane.results import Status
from tests.services.certs import CertFactory
from tests.services.common import ROOT, run_cli
from tests.services.tlsserver import TlsServer

StartServer = Callable[..., TlsServer]
NAME = "service.test"


# -- hostname rules and configuration -------------------------------------------------------

@pytest.mark.parametrize(("names", "host", "ok"), [
    (["*.service.test"], "api.service.test", True),
    (["*.service.test"], "a.b.service.test", False),
    (["*.service.test"], "service.test", False),
    (["Service.Test"], "service.test.", True),
    (["127.0.0.1"], "127.0.0.1", True),
    (["127.0.0.2"], "127.0.0.1", False),
    (["127.0.0.1"], "localhost", False),
])
def test_hostname_matching_follows_rfc_6125(certs: CertFactory, names: list[str], host: str,
                                             ok: bool) -> None:
    leaf = certs.leaf(names).cert
    assert (hostname_problem(leaf, host) is None) == ok


def test_certificate_without_subject_alt_names_matches_no_host(certs: CertFactory) -> None:
    leaf = certs.leaf([], common_name=NAME).cert
    assert hostname_problem(leaf, NAME) == (
        f"certificate is not valid for {NAME}; its names are: none (no subjectAltName)")


def test_ip_target_without_servername_is_matched_against_ip_sans(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(["127.0.0.1"])
    srv = tls_server(files.cert_file, files.key_file)
    config = TlsCheckConfig(id="t", target=srv.target, ca_file=str(files.ca_file))
    assert TlsProbe(config).execute().status == Status.OK


@pytest.mark.parametrize(("target", "message"), [
    ("example.com", "target 'example.com' must be HOST:PORT, e.g. example.com:443 or "
                    "[2001:db8::1]:443"),
    ("example.com:http", "target 'example.com:http' must be HOST:PORT, e.g. example.com:443 or "
                         "[2001:db8::1]:443"),
    ("example.com:70000", "target 'example.com:70000': port must be between 1 and 65535"),
    ("a..b:443", "target 'a..b:443': 'a..b' is not a valid host name"),
])
def test_bad_target_is_rejected(target: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        TlsCheckConfig(id="t", target=target)
    assert info.value.errors()[0]["msg"] == f"Value error, {message}"


def test_invalid_servername_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        TlsCheckConfig(id="t", target="h:1", servername="a..b")
    assert info.value.errors()[0]["msg"] == "Value error, 'a..b' is not a valid host name"


def test_internationalised_servername_is_sent_and_matched_in_ascii_form(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(["xn--bcher-kva.test"])
    srv = tls_server(files.cert_file, files.key_file)
    config = TlsCheckConfig(id="t", target=srv.target, servername="Bücher.test",
                            ca_file=str(files.ca_file))
    assert config.servername == "xn--bcher-kva.test"
    assert TlsProbe(config).execute().status == Status.OK


def test_ipv6_target_in_brackets_is_accepted() -> None:
    config = TlsCheckConfig(id="t", target="[::1]:443")
    assert (config.host, config.port) == ("::1", 443)


def test_min_version_written_as_a_yaml_number_is_read_as_text() -> None:
    config = TlsCheckConfig.model_validate({"id": "t", "target": "h:1", "min_version": 1.3})
    assert config.min_version == "1.3"


def test_crit_days_above_warn_days_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        TlsCheckConfig(id="t", target="h:1", warn_days=5, crit_days=10)
    assert info.value.errors()[0]["msg"] == (
        "Value error, crit_days (10) must not exceed warn_days (5)")


# -- the shipped checks ---------------------------------------------------------------------

def test_shipped_tls_checks_cover_every_public_host_of_every_environment() -> None:
    cfg = load_config(str(ROOT / "controlplane.yaml"))
    tls = {c.target: c for c in cfg.checks if isinstance(c, TlsCheckConfig)}
    hosts = {f"{host}:443": env for env, e in cfg.environments.items()
             for host in e.hosts.values()}
    assert {t: c.env for t, c in tls.items()} == {
        **hosts, "kafka-prod-new.techhalo.ai:9094": "production"}
    assert {c.expected_issuer for t, c in tls.items() if t.endswith(":443")} == {"Let's Encrypt"}
    assert tls["bic-sky.halo360.ai:443"].id == "tls-bic-sky-production"


def test_validate_reports_bad_tls_fields_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "checks").mkdir()
    (tmp_path / "controlplane.yaml").write_text("environments:\n  production: {}\n")
    checks = tmp_path / "checks" / "tls.yaml"
    checks.write_text("checks:\n"
                      "  - id: tls-a\n    kind: tls\n    target: nohost\n"
                      "  - id: tls-b\n    kind: tls\n    target: h:443\n    min_version: 1.4\n"
                      "  - id: tls-c\n    kind: tls\n    target: h:443\n    warn_days: 5\n"
                      "    crit_days: 9\n")
    proc = run_cli("validate", "--config", str(tmp_path / "controlplane.yaml"))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() + proc.stderr.splitlines() == [
        f"{checks}:4: checks.0.target: target 'nohost' must be HOST:PORT, e.g. example.com:443 "
        "or [2001:db8::1]:443",
        f"{checks}:8: checks.1.min_version: Input should be '1.0', '1.1', '1.2' or '1.3'",
        f"{checks}:9: checks.2: crit_days (9) must not exceed warn_days (5)",
    ]

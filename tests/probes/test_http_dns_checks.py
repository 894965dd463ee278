"""The shipped checks/http.yaml and checks/dns.yaml cover every public host of the platform."""

from __future__ import annotations

from controlplane.config import ControlPlaneConfig, load_config
from controlplane.probes.dns import DnsCheckConfig
from controlplane.probes.http import HttpCheckConfig
from tests.services.common import ROOT, run_cli

PATHS = {"voice360": "/", "bic_agent": "/", "halo_task_api": "/health", "idcard_frontend": "/"}
SLUGS = {"voice360": "voice360", "bic_agent": "bic-agent", "halo_task_api": "halo-task",
         "idcard_frontend": "bic-sky"}


def shipped() -> ControlPlaneConfig:
    return load_config(str(ROOT / "controlplane.yaml"))


def test_shipped_config_validates() -> None:
    proc = run_cli("validate", "--config", str(ROOT / "controlplane.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_public_host_has_an_http_liveness_check() -> None:
    cfg = shipped()
    for env, environment in cfg.environments.items():
        for role, host in environment.hosts.items():
            check = cfg.check(f"http-{SLUGS[role]}-{env}")
            assert isinstance(check, HttpCheckConfig)
            assert (check.env, check.url, check.method, check.expect_status) == (
                env, f"https://{host}{PATHS[role]}", "GET", [200])


def test_every_public_host_resolves_to_the_load_balancer() -> None:
    cfg = shipped()
    for env, environment in cfg.environments.items():
        for role, host in environment.hosts.items():
            check = cfg.check(f"dns-{SLUGS[role]}-{env}")
            assert isinstance(check, DnsCheckConfig)
            assert (check.env, check.name, check.type, check.expect) == (
                env, host, "A", ["20.124.179.20"])


def test_kafka_external_listener_resolves_to_its_own_load_balancer() -> None:
    check = shipped().check("dns-kafka-production")
    assert isinstance(check, DnsCheckConfig)
    assert (check.name, check.expect) == ("kafka-prod-new.techhalo.ai", ["4.156.62.101"])

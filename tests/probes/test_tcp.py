"""The tcp probe: plain connects and verified TLS handshakes against real loopback servers."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from controlplane.probes.tcp import TcpCheckConfig, TcpProbe
from controlplane.results import Result, Status
from tests.services.certs import CertFactory, days
from tests.services.common import free_port, run_cli
from tests.services.tlsserver import TlsServer

StartServer = Callable[..., TlsServer]
NAME = "service.test"


def probe(target: str, **fields: Any) -> Result:
    return TcpProbe(TcpCheckConfig(id="tcp-test", target=target, **fields)).execute()


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel completes them from the backlog)."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv.getsockname()[1]


def test_open_port_is_ok_with_connect_time(listener: int) -> None:
    result = probe(f"127.0.0.1:{listener}")
    assert result.status == Status.OK
    connect_s = result.metrics["connect_s"]
    assert connect_s is not None and connect_s >= 0
    assert result.message == f"127.0.0.1:{listener}: connected in {connect_s * 1000:.1f} ms"
    assert [(s.name, s.status) for s in result.steps] == [("connect", Status.OK)]


def test_closed_port_fails_with_a_clear_message() -> None:
    port = free_port()
    result = probe(f"127.0.0.1:{port}")
    assert result.status == Status.FAILING
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert result.metrics == {}


def test_unresolvable_host_fails_naming_the_host() -> None:
    result = probe("no-such-host.invalid:443")
    assert result.status == Status.FAILING
    assert result.message.startswith("cannot resolve no-such-host.invalid: ")


def test_tls_with_a_trusted_chain_is_ok(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server()
    srv = tls_server(files.cert_file, files.key_file)
    result = probe(srv.target, tls=True, servername=NAME, ca_file=str(files.ca_file))
    assert result.status == Status.OK
    assert result.message == f"{srv.target}: connected, TLSv1.3 with a trusted certificate " \
                             f"for {NAME}"
    assert set(result.metrics) == {"connect_s", "handshake_s"}
    assert result.details["subject"] == f"CN={NAME}"
    assert [(s.name, s.status) for s in result.steps] == [
        ("connect", Status.OK), ("handshake", Status.OK), ("verify", Status.OK)]


def test_tls_with_an_untrusted_chain_fails(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.self_signed()
    srv = tls_server(files.cert_file, files.key_file)
    result = probe(srv.target, tls=True, servername=NAME, ca_file=str(files.ca_file))
    assert result.status == Status.FAILING
    assert result.message == (
        f"certificate verify failed: self-signed certificate (depth 0: CN={NAME})")


def test_tls_with_the_wrong_name_fails(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(["other.test"])
    srv = tls_server(files.cert_file, files.key_file)
    result = probe(srv.target, tls=True, servername=NAME, ca_file=str(files.ca_file))
    assert result.status == Status.FAILING
    assert result.message == f"certificate is not valid for {NAME}; its names are: other.test"


def test_tls_on_a_closed_port_fails() -> None:
    port = free_port()
    result = probe(f"127.0.0.1:{port}", tls=True)
    assert result.status == Status.FAILING
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_tls_does_not_judge_expiry_thresholds(certs: CertFactory,
                                              tls_server: StartServer) -> None:
    files = certs.server(leaf_not_after=days(2))
    srv = tls_server(files.cert_file, files.key_file)
    result = probe(srv.target, tls=True, servername=NAME, ca_file=str(files.ca_file))
    assert result.status == Status.OK


def test_bad_target_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        TcpCheckConfig(id="t", target="localhost")
    assert info.value.errors()[0]["msg"] == (
        "Value error, target 'localhost' must be HOST:PORT, e.g. example.com:443 or "
        "[2001:db8::1]:443")


def test_cli_exits_0_on_an_open_port(listener: int) -> None:
    proc = run_cli("probe", "tcp", f"127.0.0.1:{listener}", "--json")
    assert proc.returncode == 0
    out = json.loads(proc.stdout)
    assert (out["check"], out["kind"], out["status"]) == (
        f"tcp-127.0.0.1-{listener}", "tcp", "ok")


def test_cli_exits_1_on_a_closed_port() -> None:
    port = free_port()
    proc = run_cli("probe", "tcp", f"127.0.0.1:{port}")
    assert proc.returncode == 1
    assert proc.stdout.startswith(
        f"FAILING  tcp-127.0.0.1-{port}  cannot connect to 127.0.0.1:{port}: connection refused")


def test_cli_with_tls_flags(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server()
    srv = tls_server(files.cert_file, files.key_file)
    proc = run_cli("probe", "tcp", srv.target, "--tls", "--servername", NAME, "--ca-file",
                   str(files.ca_file), "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["details"]["tls_version"] == "TLSv1.3"


def test_cli_exits_2_on_a_bad_target() -> None:
    proc = run_cli("probe", "tcp", "localhost")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("controlplane: target 'localhost' must be HOST:PORT, "
                                   "e.g. example.com:443 or [2001:db8::1]:443")


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_cli_timeout_is_a_duration_like_every_other_probe(kind: str) -> None:
    port = free_port()
    ok = run_cli("probe", kind, f"127.0.0.1:{port}", "--timeout", "1m", "--json")
    assert ok.returncode == 1, ok.stderr  # refused: failing, but the flag was understood
    bad = run_cli("probe", kind, f"127.0.0.1:{port}", "--timeout", "soon")
    assert (bad.returncode, bad.stderr) == (
        2, "controlplane: timeout: 'soon' is not a duration; write it like 30s, 5m, 1h30m "
           "or 2d\n")

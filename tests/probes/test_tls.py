"""The tls probe against real loopback TLS servers with certificates made per test."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from controlplane.metrics import Metrics
from controlplane.probes.tls import TlsCheckConfig, TlsProbe
from controlplane.results import Result, Status
from tests.services.certs import CertFactory, ServerFiles, days
from tests.services.common import free_port, run_cli
from tests.services.tlsserver import TlsServer

StartServer = Callable[..., TlsServer]
NAME = "service.test"


def probe(target: str, files: ServerFiles | None = None, **fields: Any) -> Result:
    config = TlsCheckConfig(id="tls-test", target=target, servername=NAME,
                            ca_file=str(files.ca_file) if files else None, **fields)
    return TlsProbe(config).execute()


def probe_server(tls_server: StartServer, files: ServerFiles,
                 server: dict[str, str] | None = None,
                 **fields: Any) -> tuple[Result, float, float]:
    """Probe a server serving ``files``; also return the wall clock before and after."""
    srv = tls_server(files.cert_file, files.key_file, **(server or {}))
    before = time.time()
    result = probe(srv.target, files, **fields)
    return result, before, time.time()


def assert_days_left(result: Result, not_after: int, before: float, after: float) -> None:
    """days_left is (earliest not_after - now) in days, now being during the probe."""
    days_left = result.metrics["days_left"]
    assert days_left is not None
    assert (not_after - after) / 86400 - 1e-4 <= days_left <= (not_after - before) / 86400 + 1e-4


def date(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# -- verdicts -------------------------------------------------------------------------------

def test_valid_chain_is_ok_with_exact_metrics_and_details(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server([NAME, "alt.service.test", "127.0.0.1"])
    result, before, after = probe_server(tls_server, files)
    leaf, inter = files.leaf, files.intermediate
    assert inter is not None
    assert result.status == Status.OK
    assert result.metrics["not_after"] == leaf.not_after
    assert result.metrics["earliest_not_after"] == leaf.not_after
    assert_days_left(result, leaf.not_after, before, after)
    days_left = result.metrics["days_left"]
    assert result.message == (f"{NAME}: TLSv1.3, chain trusted, {days_left:.1f} days left "
                              f"(CN={NAME} expires {date(leaf.not_after)})")
    assert result.details["subject"] == f"CN={NAME}"
    assert result.details["issuer"] == "CN=Test Intermediate CA,O=Controlplane Tests"
    assert result.details["sans"] == [NAME, "alt.service.test", "127.0.0.1"]
    assert result.details["serial"] == format(leaf.cert.serial_number, "X")
    assert result.details["tls_version"] == "TLSv1.3"
    assert result.details["cipher"].startswith("TLS_")
    assert result.details["chain"] == [
        {"subject": f"CN={NAME}", "issuer": "CN=Test Intermediate CA,O=Controlplane Tests",
         "not_after": date(leaf.not_after)},
        {"subject": "CN=Test Intermediate CA,O=Controlplane Tests",
         "issuer": "CN=Test Root CA,O=Controlplane Tests", "not_after": date(inter.not_after)},
    ]
    assert result.details["problems"] == []
    assert [(s.name, s.status) for s in result.steps] == [
        ("handshake", Status.OK), ("verify chain", Status.OK), ("hostname", Status.OK),
        ("min version", Status.OK), ("issuer", Status.OK), ("expiry", Status.OK)]


def test_expired_cert_fails(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(leaf_not_before=days(-30), leaf_not_after=days(-1))
    result, before, after = probe_server(tls_server, files)
    assert result.status == Status.FAILING
    assert result.message == (
        f"certificate verify failed: certificate has expired (depth 0: CN={NAME})")
    assert result.metrics["not_after"] == files.leaf.not_after
    assert result.metrics["earliest_not_after"] == files.leaf.not_after
    assert_days_left(result, files.leaf.not_after, before, after)
    assert result.details["problems"][1] == (
        f"certificate CN={NAME} expired 1.0 days ago ({date(files.leaf.not_after)})")


def test_not_yet_valid_cert_fails(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(leaf_not_before=days(1), leaf_not_after=days(90))
    result, _, _ = probe_server(tls_server, files)
    assert result.status == Status.FAILING
    assert result.message == ("certificate verify failed: certificate is not yet valid or "
                              f"the system clock is incorrect (depth 0: CN={NAME})")


def test_wrong_hostname_fails(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(["other.test", "*.other.test"])
    result, _, _ = probe_server(tls_server, files)
    assert result.status == Status.FAILING
    assert result.message == (
        f"certificate is not valid for {NAME}; its names are: other.test, *.other.test")


def test_wrong_hostname_passes_when_hostname_verification_is_off(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(["other.test"])
    result, _, _ = probe_server(tls_server, files, verify_hostname=False)
    assert result.status == Status.OK


def test_leaf_only_for_client_auth_fails(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    result, _, _ = probe_server(tls_server, files)
    assert result.status == Status.FAILING
    assert result.message == (
        f"certificate CN={NAME} is not for TLS servers (extended key usage: clientAuth)")


def test_self_signed_cert_fails_as_untrusted(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.self_signed()
    result, _, _ = probe_server(tls_server, files)
    assert result.status == Status.FAILING
    assert result.message == (
        f"certificate verify failed: self-signed certificate (depth 0: CN={NAME})")
    assert result.metrics["earliest_not_after"] == files.leaf.not_after


def test_chain_from_a_private_ca_is_untrusted_by_the_system_store(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server()
    srv = tls_server(files.cert_file, files.key_file)
    result = probe(srv.target, None)
    assert result.status == Status.FAILING
    assert result.message == ("certificate verify failed: unable to get local issuer "
                              "certificate (depth 1: CN=Test Intermediate CA,O=Controlplane Tests)")


def test_chain_missing_its_intermediate_fails_as_untrusted(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(include_intermediate=False)
    result, _, _ = probe_server(tls_server, files)
    assert result.status == Status.FAILING
    assert result.message == ("certificate verify failed: unable to get local issuer "
                              f"certificate (depth 0: CN={NAME})")
    assert len(result.details["chain"]) == 1


@pytest.mark.parametrize(("warn", "crit", "status", "threshold"), [
    (21, 7, Status.FAILING, "critical threshold of 7 days"),
    (7, 2, Status.DEGRADED, "warning threshold of 7 days"),
    (2, 1, Status.OK, None),
])
def test_leaf_expiring_in_3_days_is_judged_by_the_thresholds(
        certs: CertFactory, tls_server: StartServer, warn: int, crit: int, status: Status,
        threshold: str | None) -> None:
    files = certs.server(leaf_not_after=days(3))
    result, before, after = probe_server(tls_server, files, warn_days=warn, crit_days=crit)
    assert result.status == status
    assert_days_left(result, files.leaf.not_after, before, after)
    if threshold:
        assert result.message == (f"certificate CN={NAME} expires in 3.0 days "
                                  f"({date(files.leaf.not_after)}), within the {threshold}")
    else:
        assert result.message.startswith(f"{NAME}: TLSv1.3, chain trusted, 3.0 days left")


def test_intermediate_expiring_before_the_leaf_sets_earliest_not_after(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(intermediate_not_after=days(30), leaf_not_after=days(90))
    result, before, after = probe_server(tls_server, files)
    assert files.intermediate is not None
    inter = files.intermediate.not_after
    assert result.status == Status.OK
    assert result.metrics["not_after"] == files.leaf.not_after
    assert result.metrics["earliest_not_after"] == inter
    assert_days_left(result, inter, before, after)
    assert result.message.endswith(
        f"(CN=Test Intermediate CA,O=Controlplane Tests expires {date(inter)})")


def test_intermediate_inside_the_warning_window_degrades(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(intermediate_not_after=days(10))
    result, _, _ = probe_server(tls_server, files)
    assert files.intermediate is not None
    assert result.status == Status.DEGRADED
    assert result.message == (
        "certificate CN=Test Intermediate CA,O=Controlplane Tests expires in 10.0 days "
        f"({date(files.intermediate.not_after)}), within the warning threshold of 21 days")


def test_extra_expired_certificate_presented_fails_on_earliest_expiry(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server()
    assert files.intermediate is not None
    old = certs.ca("Old Cross-signed CA", not_before=days(-400), not_after=days(-2))
    files.cert_file = certs.write("chain", files.leaf, files.intermediate, old)
    result, _, _ = probe_server(tls_server, files)
    assert result.status == Status.FAILING
    assert result.metrics["earliest_not_after"] == old.not_after
    assert result.metrics["not_after"] == files.leaf.not_after
    assert result.message == ("certificate CN=Old Cross-signed CA,O=Controlplane Tests expired "
                              f"2.0 days ago ({date(old.not_after)})")
    assert [s.name for s in result.steps if s.status != Status.OK] == ["expiry"]


@pytest.mark.parametrize(("server_max", "negotiated"), [("1.1", "1.1"), ("1.0", "1.0")])
def test_server_allowing_only_tls_1_0_or_1_1_fails_min_version(
        certs: CertFactory, tls_server: StartServer, server_max: str, negotiated: str) -> None:
    files = certs.server()
    result, _, _ = probe_server(tls_server, files, {"min_version": "1.0",
                                                    "max_version": server_max})
    assert result.status == Status.FAILING
    assert result.message == f"server negotiated TLS {negotiated}, below the minimum TLS 1.2"
    assert result.details["tls_version"] == {"1.0": "TLSv1", "1.1": "TLSv1.1"}[server_max]


def test_old_server_passes_when_the_minimum_allows_it(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server()
    result, _, _ = probe_server(tls_server, files, {"max_version": "1.1"}, min_version="1.1")
    assert result.status == Status.OK
    assert result.details["tls_version"] == "TLSv1.1"


def test_minimum_1_3_fails_on_a_tls_1_2_server(certs: CertFactory,
                                               tls_server: StartServer) -> None:
    files = certs.server()
    result, _, _ = probe_server(tls_server, files, {"max_version": "1.2"}, min_version="1.3")
    assert result.status == Status.FAILING
    assert result.message == "server negotiated TLS 1.2, below the minimum TLS 1.3"


def test_expected_issuer_matches(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(intermediate_name="R11", intermediate_org="Let's Encrypt")
    result, _, _ = probe_server(tls_server, files, expected_issuer="Let's Encrypt")
    assert result.status == Status.OK
    assert result.details["issuer"] == "CN=R11,O=Let's Encrypt"


def test_expected_issuer_mismatch_fails(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server()
    result, _, _ = probe_server(tls_server, files, expected_issuer="Let's Encrypt")
    assert result.status == Status.FAILING
    assert result.message == ("leaf issuer 'CN=Test Intermediate CA,O=Controlplane Tests' "
                              "does not contain \"Let's Encrypt\"")


def test_unreachable_port_fails_with_a_clear_message() -> None:
    port = free_port()
    result = probe(f"127.0.0.1:{port}")
    assert result.status == Status.FAILING
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert result.metrics == {}
    assert [(s.name, s.status) for s in result.steps] == [("connect", Status.FAILING)]


@pytest.fixture
def plain_server() -> Iterator[Callable[[bool], int]]:
    """A TCP server that speaks no TLS: it hangs up at once, or says nothing (hang=True)."""
    socks: list[socket.socket] = []
    held: list[socket.socket] = []

    def start(hang: bool) -> int:
        srv = socket.create_server(("127.0.0.1", 0))
        socks.append(srv)

        def serve() -> None:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            if hang:
                held.append(conn)
            else:
                conn.close()
        threading.Thread(target=serve, daemon=True).start()
        port: int = srv.getsockname()[1]
        return port

    yield start
    for s in socks + held:
        s.close()


def test_server_hanging_up_during_the_handshake_fails(
        plain_server: Callable[[bool], int]) -> None:
    port = plain_server(False)
    result = probe(f"127.0.0.1:{port}")
    assert result.status == Status.FAILING
    assert result.message == (f"TLS handshake with 127.0.0.1:{port} failed: "
                              "connection closed by the server")


def test_silent_server_times_out(plain_server: Callable[[bool], int]) -> None:
    port = plain_server(True)
    result = probe(f"127.0.0.1:{port}", timeout=1)
    assert result.status == Status.FAILING
    assert result.message == f"127.0.0.1:{port}: no TLS handshake within 1s"


def test_missing_ca_file_is_an_error(tmp_path: Path) -> None:
    config = TlsCheckConfig(id="t", target="127.0.0.1:1", ca_file=str(tmp_path / "nope.pem"))
    result = TlsProbe(config).execute()
    assert result.status == Status.ERROR
    assert result.message == (f"ca_file {tmp_path / 'nope.pem'} does not exist; "
                              "give a PEM bundle of trusted CAs")


def test_ca_file_without_certificates_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    config = TlsCheckConfig(id="t", target="127.0.0.1:1", ca_file=str(bad))
    result = TlsProbe(config).execute()
    assert result.status == Status.ERROR
    assert result.message == f"ca_file {bad} holds no readable PEM certificate"


def test_a_rewritten_ca_file_is_read_again_on_the_next_run(
        certs: CertFactory, tls_server: StartServer, tmp_path: Path) -> None:
    # trust stores are cached per file version: a new bundle must not be missed
    files, other = certs.server(), certs.self_signed()
    srv = tls_server(files.cert_file, files.key_file)
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(other.ca_file.read_bytes())
    config = TlsCheckConfig(id="tls-test", target=srv.target, servername=NAME,
                            ca_file=str(bundle))
    assert TlsProbe(config).execute().status == Status.FAILING
    bundle.write_bytes(files.ca_file.read_bytes() + b"\n")  # another size, another mtime
    assert TlsProbe(config).execute().status == Status.OK


def test_export_metrics_sets_the_earliest_not_after(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(intermediate_not_after=days(30))
    result, _, _ = probe_server(tls_server, files)
    metrics = Metrics()
    TlsProbe.export_metrics(result, metrics)
    assert files.intermediate is not None
    assert metrics.registry.get_sample_value(
        "controlplane_tls_not_after_seconds", {"check": "tls-test"}) == files.intermediate.not_after


def test_pipeline_exports_the_tls_not_after_gauge_in_prometheus_text(
        certs: CertFactory, tls_server: StartServer) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from controlplane.pipeline import Pipeline
    from controlplane.store import Store

    files = certs.server(intermediate_not_after=days(30))
    srv = tls_server(files.cert_file, files.key_file)
    config = TlsCheckConfig(id="tls-pipeline", env="staging", target=srv.target,
                            servername=NAME, ca_file=str(files.ca_file))
    pipeline = Pipeline(Store("sqlite://"), Metrics())
    pipeline.process(TlsProbe(config).execute(), config)
    assert files.intermediate is not None
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(pipeline.metrics.render().decode())
               for s in f.samples}
    key = ("controlplane_tls_not_after_seconds", (("check", "tls-pipeline"),))
    assert samples[key] == files.intermediate.not_after


# -- the CLI --------------------------------------------------------------------------------

def cli(target: str, files: ServerFiles, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = run_cli("probe", "tls", target, "--ca-file", str(files.ca_file), "--servername", NAME,
                   "--json", *extra)
    return proc.returncode, json.loads(proc.stdout)


def test_cli_prints_the_result_json_and_exits_0_when_ok(
        certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server()
    srv = tls_server(files.cert_file, files.key_file)
    code, out = cli(srv.target, files)
    assert code == 0
    assert set(out) == {"check", "kind", "env", "status", "started_at", "duration_s", "message",
                        "metrics", "details", "steps"}
    assert (out["check"], out["kind"], out["env"], out["status"]) == (
        f"tls-127.0.0.1-{srv.port}", "tls", "", "ok")
    assert out["metrics"]["not_after"] == files.leaf.not_after
    assert out["metrics"]["earliest_not_after"] == files.leaf.not_after
    assert set(out["metrics"]) == {"not_after", "earliest_not_after", "days_left",
                                   "handshake_s", "connect_s"}
    assert out["details"]["subject"] == f"CN={NAME}"
    assert out["started_at"].endswith("Z")


def test_cli_exits_0_when_degraded(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(leaf_not_after=days(3))
    srv = tls_server(files.cert_file, files.key_file)
    code, out = cli(srv.target, files, "--warn-days", "30", "--crit-days", "1")
    assert (code, out["status"]) == (0, "degraded")


def test_cli_exits_1_when_failing(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(leaf_not_before=days(-30), leaf_not_after=days(-1))
    srv = tls_server(files.cert_file, files.key_file)
    code, out = cli(srv.target, files)
    assert (code, out["status"]) == (1, "failing")
    assert out["message"] == (
        f"certificate verify failed: certificate has expired (depth 0: CN={NAME})")


def test_cli_min_version_flag_is_applied(certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server()
    srv = tls_server(files.cert_file, files.key_file, max_version="1.2")
    code, out = cli(srv.target, files, "--min-version", "1.3")
    assert (code, out["message"]) == (1, "server negotiated TLS 1.2, below the minimum TLS 1.3")


def test_cli_exits_2_on_a_missing_ca_file(tmp_path: Path) -> None:
    proc = run_cli("probe", "tls", "127.0.0.1:1", "--ca-file", str(tmp_path / "x.pem"), "--json")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["status"] == "error"


def test_cli_exits_2_on_a_bad_target() -> None:
    proc = run_cli("probe", "tls", "no-port-here")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "controlplane: target 'no-port-here' must be HOST:PORT, e.g. example.com:443 "
        "or [2001:db8::1]:443")

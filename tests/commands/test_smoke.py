"""`controlplane smoke --env ENV`: every matching check once, against real loopback servers.

HTTP(S) and TLS servers are real sockets on 127.0.0.1; the command runs as a deploy
pipeline runs it (a subprocess), and its lines, JSON, JUnit XML and exit code are read.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.services.certs import CertFactory, days
from tests.services.common import run_cli
from tests.services.httpserver import ScriptedServer, SilentServer
from tests.services.tlsserver import TlsServer

StartServer = Callable[..., TlsServer]
LINE = re.compile(r"^(OK|DEGRADED|FAILING|ERROR) +(\d+\.\d{3})s  (\S+)  (.*)$")


def write_config(tmp_path: Path, checks: list[dict[str, Any]]) -> Path:
    """A config with two environments; its store path must stay untouched by smoke."""
    doc = {
        "environments": {
            "staging": {"label": "Staging", "hosts": {"voice360": "localhost"}},
            "production": {"label": "Production", "hosts": {"voice360": "localhost"}},
        },
        "store": {"dsn": f"sqlite:///{tmp_path / 'never.db'}"},
        "check_files": [],
        "checks": checks,
    }
    path = tmp_path / "controlplane.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def http_check(check_id: str, url: str, env: str = "staging", **more: Any) -> dict[str, Any]:
    return {"id": check_id, "kind": "http", "env": env, "url": url, "timeout": "10s", **more}


def smoke(config: Path, *args: str) -> tuple[int, list[str], str]:
    proc = run_cli("smoke", "--config", str(config), *args)
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def parsed(lines: list[str]) -> dict[str, tuple[str, str]]:
    """check id -> (STATUS, message) from the per-check lines."""
    out = {}
    for line in lines:
        m = LINE.match(line)
        if m:
            out[m.group(3)] = (m.group(1), m.group(4))
    return out


def test_all_checks_passing_exit_0_with_one_line_each_and_a_summary(
        tmp_path: Path, http_server: ScriptedServer) -> None:
    a = http_server.route("/a", 200, "fine")
    b = http_server.route("/b", 200, "fine")
    prod = http_server.route("/prod", 500)
    cfg = write_config(tmp_path, [http_check("http-a", a), http_check("http-b", b),
                                  http_check("http-prod", prod, env="production")])
    code, lines, stderr = smoke(cfg, "--env", "staging")
    assert (code, stderr) == (0, "")
    results = parsed(lines)
    assert set(results) == {"http-a", "http-b"} and len(lines) == 3
    for status, message in results.values():
        assert (status, message) == ("OK", "200 OK")
    assert re.fullmatch(r"smoke staging: PASSED: 2 checks, 2 ok, 0 degraded, 0 failing, "
                        r"0 error in \d+\.\d\ds", lines[-1]), lines[-1]
    # only staging was probed, and no store was opened
    assert sorted(s.path for s in http_server.seen) == ["/a", "/b"]
    assert not (tmp_path / "never.db").exists()


def test_failing_check_exits_1_and_the_junit_report_names_it(
        tmp_path: Path, http_server: ScriptedServer) -> None:
    ok = http_server.route("/ok", 200)
    broken = http_server.route("/broken", 502, "bad gateway")
    cfg = write_config(tmp_path, [http_check("http-ok", ok), http_check("http-broken", broken)])
    junit = tmp_path / "smoke.xml"
    code, lines, _ = smoke(cfg, "--env", "staging", "--junit", str(junit))
    assert code == 1
    status, message = parsed(lines)["http-broken"]
    assert (status, message) == ("FAILING", "expected status 200, got 502")
    assert lines[-1].startswith("smoke staging: FAILED: 2 checks, 1 ok, 0 degraded, "
                                "1 failing, 0 error in ")
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    assert {k: suite.get(k) for k in ("name", "tests", "failures", "errors", "skipped")} == {
        "name": "controlplane smoke staging", "tests": "2", "failures": "1", "errors": "0",
        "skipped": "0"}
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"http-ok", "http-broken"}
    assert cases["http-ok"].find("failure") is None
    assert cases["http-ok"].get("classname") == "smoke.staging.http"
    failure = cases["http-broken"].find("failure")
    assert failure is not None and failure.get("type") == "failing"
    assert failure.get("message") == message
    assert float(cases["http-broken"].get("time") or "x") >= 0


def test_expired_certificate_fails_the_smoke_test(
        tmp_path: Path, certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(["service.test"], leaf_not_before=days(-30), leaf_not_after=days(-1))
    srv = tls_server(files.cert_file, files.key_file)
    cfg = write_config(tmp_path, [{"id": "tls-api", "kind": "tls", "env": "staging",
                                   "target": srv.target, "servername": "service.test",
                                   "ca_file": str(files.ca_file)}])
    code, lines, _ = smoke(cfg, "--env", "staging")
    assert code == 1
    assert parsed(lines)["tls-api"] == (
        "FAILING", "certificate verify failed: certificate has expired (depth 0: "
        "CN=service.test)")


def test_degraded_passes_unless_fail_on_degraded(
        tmp_path: Path, certs: CertFactory, tls_server: StartServer) -> None:
    files = certs.server(["service.test"], leaf_not_after=days(10))
    srv = tls_server(files.cert_file, files.key_file)
    cfg = write_config(tmp_path, [{"id": "tls-api", "kind": "tls", "env": "staging",
                                   "target": srv.target, "servername": "service.test",
                                   "ca_file": str(files.ca_file)}])
    code, lines, _ = smoke(cfg, "--env", "staging")
    assert code == 0
    assert parsed(lines)["tls-api"][0] == "DEGRADED", lines
    assert "PASSED: 1 checks, 0 ok, 1 degraded" in lines[-1]
    junit = tmp_path / "strict.xml"
    code, lines, _ = smoke(cfg, "--env", "staging", "--fail-on-degraded", "--junit", str(junit))
    assert code == 1
    assert "FAILED: 1 checks, 0 ok, 1 degraded" in lines[-1]
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure is not None and failure.get("type") == "degraded"


def test_hung_check_is_an_error_at_the_smoke_timeout(
        tmp_path: Path, silent_server: SilentServer, http_server: ScriptedServer) -> None:
    cfg = write_config(tmp_path, [
        http_check("http-hung", f"http://127.0.0.1:{silent_server.port}/", timeout="60s"),
        http_check("http-ok", http_server.route("/ok"))])
    junit = tmp_path / "smoke.xml"
    code, lines, _ = smoke(cfg, "--env", "staging", "--timeout", "2s", "--junit", str(junit))
    assert code == 1
    assert parsed(lines)["http-hung"] == (
        "ERROR", "still running when the smoke test's 2s timeout ended")
    assert parsed(lines)["http-ok"][0] == "OK"
    # the summary came at the smoke timeout, not the check's own 60 s
    seconds = float(lines[-1].rsplit(" in ", 1)[1].rstrip("s"))
    assert 2.0 <= seconds < 30, lines[-1]
    error = ET.parse(junit).getroot().find("testsuite/testcase/error")
    assert error is not None
    assert error.get("message") == "still running when the smoke test's 2s timeout ended"


def test_checks_run_in_parallel(tmp_path: Path) -> None:
    """Three checks whose server answers only once all three requests are in: run one after
    another, the first would wait forever (and time out); in parallel, all pass."""
    barrier = threading.Barrier(3, timeout=20)
    server = ScriptedServer()
    original = server.httpd.RequestHandlerClass

    class Waiting(original):  # type: ignore[misc,valid-type]
        def _serve(self) -> None:
            with contextlib.suppress(threading.BrokenBarrierError):  # asserted below
                barrier.wait()
            super()._serve()

        do_GET = _serve

    server.httpd.RequestHandlerClass = Waiting
    server.start()
    try:
        checks = [http_check(f"http-{i}", server.route(f"/{i}"), timeout="10s")
                  for i in range(3)]
        code, lines, _ = smoke(write_config(tmp_path, checks), "--env", "staging")
    finally:
        server.stop()
    assert code == 0, lines
    assert {v[0] for v in parsed(lines).values()} == {"OK"}
    assert not barrier.broken


def test_kind_and_check_filters_choose_the_checks(
        tmp_path: Path, http_server: ScriptedServer, certs: CertFactory,
        tls_server: StartServer) -> None:
    files = certs.server(["service.test"])
    srv = tls_server(files.cert_file, files.key_file)
    cfg = write_config(tmp_path, [
        http_check("http-a", http_server.route("/a")),
        http_check("http-b", http_server.route("/b")),
        {"id": "tls-api", "kind": "tls", "env": "staging", "target": srv.target,
         "servername": "service.test", "ca_file": str(files.ca_file)}])
    code, lines, _ = smoke(cfg, "--env", "staging", "--kind", "tls")
    assert (code, set(parsed(lines))) == (0, {"tls-api"})
    code, lines, _ = smoke(cfg, "--env", "staging", "--check", "http-b", "--check", "tls-api")
    assert (code, set(parsed(lines))) == (0, {"http-b", "tls-api"})
    code, lines, _ = smoke(cfg, "--env", "staging", "--kind", "http", "--check", "tls-api")
    assert code == 2


def test_json_prints_one_document_with_every_result(
        tmp_path: Path, http_server: ScriptedServer) -> None:
    cfg = write_config(tmp_path, [http_check("http-a", http_server.route("/a")),
                                  http_check("http-b", http_server.route("/b", 404))])
    proc = run_cli("smoke", "--config", str(cfg), "--env", "staging", "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert set(doc) == {"env", "passed", "duration_s", "counts", "failed", "results"}
    assert (doc["env"], doc["passed"], doc["failed"]) == ("staging", False, 1)
    assert doc["counts"] == {"ok": 1, "degraded": 0, "failing": 1, "error": 0}
    assert [(r["check"], r["status"]) for r in doc["results"]] == [
        ("http-a", "ok"), ("http-b", "failing")]


def test_secrets_in_a_url_never_reach_the_output_or_the_report(
        tmp_path: Path, http_server: ScriptedServer) -> None:
    url = http_server.route("/api", 503) + "?token=s3cr3t-value"
    cfg = write_config(tmp_path, [http_check("http-api", url)])
    junit = tmp_path / "smoke.xml"
    proc = run_cli("smoke", "--config", str(cfg), "--env", "staging", "--junit", str(junit))
    assert proc.returncode == 1
    assert "s3cr3t" not in proc.stdout + proc.stderr + junit.read_text()
    assert http_server.seen[0].path == "/api?token=s3cr3t-value"


def test_bad_input_exits_2_with_an_instruction(tmp_path: Path,
                                               http_server: ScriptedServer) -> None:
    cfg = write_config(tmp_path, [http_check("http-a", http_server.route("/a"))])
    cases = {
        ("--env", "qa"): "controlplane: no environment 'qa'; you must pass one of: "
                         "production, staging",
        ("--env", "production"): "controlplane: no enabled check of environment 'production' "
                                 "matches; a smoke test that runs nothing would pass without "
                                 "testing anything",
        ("--env", "staging", "--kind", "backup"):
            "controlplane: backup checks read the control plane's store, which a smoke test "
            "runs without; use `controlplane backup list` instead",
        ("--env", "staging", "--check", "nope"):
            "controlplane: no check with id 'nope'; `controlplane check list` shows the ids",
        ("--env", "staging", "--timeout", "soon"):
            "controlplane: --timeout: 'soon' is not a duration; write it like 30s, 5m, 1h30m "
            "or 2d",
    }
    for args, message in cases.items():
        code, lines, stderr = smoke(cfg, *args)
        assert (code, lines, stderr.strip()) == (2, [], message), args
    assert http_server.seen == []

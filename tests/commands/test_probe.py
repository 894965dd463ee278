"""`controlplane probe KIND ... --json` prints the Result JSON of DESIGN.md §4 for every kind.

Each kind runs against its own real loopback server, passing and failing; the document
must have exactly the contract's keys with the contract's types, whatever the verdict.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.commands.probe import PROBE_COMMANDS
from tests.services.certs import CertFactory
from tests.services.common import free_port, run_cli
from tests.services.dnsserver import ScriptedDnsServer
from tests.services.httpserver import ScriptedServer
from tests.services.tlsserver import TlsServer

RESULT_KEYS = {"check", "kind", "env", "status", "started_at", "duration_s", "message",
               "metrics", "details", "steps"}
STEP_KEYS = {"name", "status", "duration_s", "message"}
STATUSES = {"ok", "degraded", "failing", "error"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
NAME = "service.test"


def assert_result_shape(doc: dict[str, Any], kind: str) -> None:
    assert set(doc) == RESULT_KEYS
    assert (doc["kind"], doc["env"]) == (kind, "")
    assert isinstance(doc["check"], str) and doc["check"]
    assert doc["status"] in STATUSES
    assert ISO_UTC.match(doc["started_at"]), doc["started_at"]
    assert isinstance(doc["duration_s"], float) and doc["duration_s"] >= 0
    assert isinstance(doc["message"], str) and doc["message"]
    assert isinstance(doc["metrics"], dict)
    for key, value in doc["metrics"].items():
        assert isinstance(key, str)
        assert value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    assert isinstance(doc["details"], dict)
    assert isinstance(doc["steps"], list)
    for step in doc["steps"]:
        assert set(step) == STEP_KEYS
        assert step["status"] in STATUSES
        assert isinstance(step["name"], str) and isinstance(step["message"], str)
        assert isinstance(step["duration_s"], float)


def probe_json(*args: str) -> tuple[int, dict[str, Any]]:
    proc = run_cli("probe", *args, "--json")
    assert proc.stderr == "", proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return proc.returncode, doc


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv.getsockname()[1]


def test_every_design_kind_is_offered() -> None:
    assert {"tls", "http", "dns", "tcp"} <= set(PROBE_COMMANDS)


def test_tls_json_has_the_contract_shape_and_tls_fields(
        certs: CertFactory, tls_server: Callable[..., TlsServer]) -> None:
    files = certs.server()
    srv = tls_server(files.cert_file, files.key_file)
    code, doc = probe_json("tls", srv.target, "--servername", NAME, "--ca-file",
                           str(files.ca_file), "--warn-days", "20", "--crit-days", "5",
                           "--min-version", "1.2")
    assert (code, doc["status"]) == (0, "ok")
    assert_result_shape(doc, "tls")
    assert {"not_after", "earliest_not_after", "days_left"} <= set(doc["metrics"])
    assert {"subject", "issuer", "sans", "serial", "tls_version", "cipher"} <= set(doc["details"])
    assert doc["details"]["sans"] == [NAME]


def test_tls_json_keeps_the_shape_when_failing() -> None:
    port = free_port()
    code, doc = probe_json("tls", f"127.0.0.1:{port}")
    assert (code, doc["status"]) == (1, "failing")
    assert_result_shape(doc, "tls")


def test_http_json_has_the_contract_shape_and_phase_timings(
        http_server: ScriptedServer) -> None:
    url = http_server.route("/health", 200, "healthy")
    code, doc = probe_json("http", url, "--method", "GET", "--expect-status", "200",
                           "--contains", "healthy", "--timeout", "5")
    assert (code, doc["status"], doc["message"]) == (0, "ok", "200 OK")
    assert_result_shape(doc, "http")
    assert {"dns_s", "connect_s", "tls_s", "first_byte_s", "transfer_s", "total_s"} <= set(
        doc["metrics"])


def test_http_json_keeps_the_shape_when_failing(http_server: ScriptedServer) -> None:
    code, doc = probe_json("http", http_server.route("/", 500))
    assert (code, doc["status"], doc["message"]) == (1, "failing", "expected status 200, got 500")
    assert_result_shape(doc, "http")


def test_dns_json_has_the_contract_shape(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("360voice.techhalo.ai", "A", "20.124.179.20")
    code, doc = probe_json("dns", "360voice.techhalo.ai", "--type", "A", "--expect",
                           "20.124.179.20", "--nameserver", dns_server.address)
    assert (code, doc["status"]) == (0, "ok")
    assert_result_shape(doc, "dns")
    assert doc["details"]["answers"] == ["20.124.179.20"]


def test_dns_json_keeps_the_shape_on_a_wrong_answer(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("360voice.techhalo.ai", "A", "10.0.0.1")
    code, doc = probe_json("dns", "360voice.techhalo.ai", "--expect", "20.124.179.20",
                           "--nameserver", dns_server.address)
    assert (code, doc["status"]) == (1, "failing")
    assert_result_shape(doc, "dns")


def test_tcp_json_has_the_contract_shape(listener: int) -> None:
    code, doc = probe_json("tcp", f"127.0.0.1:{listener}")
    assert (code, doc["status"]) == (0, "ok")
    assert_result_shape(doc, "tcp")
    assert set(doc["metrics"]) >= {"connect_s"}


def test_tcp_json_keeps_the_shape_when_failing() -> None:
    code, doc = probe_json("tcp", f"127.0.0.1:{free_port()}")
    assert (code, doc["status"]) == (1, "failing")
    assert_result_shape(doc, "tcp")


def test_error_json_keeps_the_shape_and_exits_2(tmp_path: Path) -> None:
    code, doc = probe_json("tls", "127.0.0.1:1", "--ca-file", str(tmp_path / "none.pem"))
    assert (code, doc["status"]) == (2, "error")
    assert_result_shape(doc, "tls")


def test_unknown_kind_exits_2_listing_the_kinds() -> None:
    proc = run_cli("probe", "ftp", "x")
    assert proc.returncode == 2
    kinds = ", ".join(repr(k) for k in sorted(PROBE_COMMANDS))
    assert f"invalid choice: 'ftp' (choose from {kinds})" in proc.stderr

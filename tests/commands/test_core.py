"""`controlplane check list` and `check run ID [--json]` on a real config and real servers.

Exit codes (DESIGN.md §4): 0 ok or degraded, 1 failing, 2 error (probe could not judge,
unknown id, invalid config).
"""

from __future__ import annotations

import json
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.common import free_port, run_cli
from tests.services.httpserver import ScriptedServer
from tests.ship.tools import ROOT

RESULT_KEYS = {"check", "kind", "env", "status", "started_at", "duration_s", "message",
               "metrics", "details", "steps"}


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv.getsockname()[1]


@pytest.fixture
def config(tmp_path: Path, listener: int, http_server: ScriptedServer) -> Path:
    http_server.route("/health", 200, '{"status": "ok"}')
    closed = free_port()
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "local.yaml").write_text(f"""\
checks:
  - id: tcp-open
    kind: tcp
    env: production
    target: 127.0.0.1:{listener}
    interval: 30s
  - id: tcp-closed
    kind: tcp
    env: staging
    target: 127.0.0.1:{closed}
  - id: http-health
    kind: http
    env: dev
    url: {http_server.url("/health")}
    contains: ok
    interval: 5m
  - id: http-bad-ca
    kind: http
    env: dev
    url: https://127.0.0.1:{http_server.port}/
    ca_file: {tmp_path / "missing.pem"}
    enabled: false
""")
    path = tmp_path / "controlplane.yaml"
    path.write_text("environments:\n  production: {}\n  staging: {}\n  dev: {}\n"
                    f"store: {{dsn: 'sqlite:///{tmp_path / 'cp.db'}'}}\n")
    return path


def test_check_list_prints_every_check_with_kind_env_and_interval(config: Path) -> None:
    proc = run_cli("check", "list", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "ID           KIND           ENV         INTERVAL",
        "tcp-open     tcp            production  30s",
        "tcp-closed   tcp            staging     60s",
        "http-health  http           dev         300s",
        "http-bad-ca  http           dev         60s  (disabled)",
    ]


def test_check_list_json_is_one_object_per_check(config: Path) -> None:
    proc = run_cli("check", "list", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        {"id": "tcp-open", "kind": "tcp", "env": "production", "interval_s": 30.0,
         "enabled": True, "builtin": None},
        {"id": "tcp-closed", "kind": "tcp", "env": "staging", "interval_s": 60.0,
         "enabled": True, "builtin": None},
        {"id": "http-health", "kind": "http", "env": "dev", "interval_s": 300.0,
         "enabled": True, "builtin": None},
        {"id": "http-bad-ca", "kind": "http", "env": "dev", "interval_s": 60.0,
         "enabled": False, "builtin": None},
    ]


def test_check_run_ok_exits_0_with_the_result_json(config: Path, listener: int) -> None:
    proc = run_cli("check", "run", "tcp-open", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == RESULT_KEYS
    assert (doc["check"], doc["kind"], doc["env"], doc["status"]) == (
        "tcp-open", "tcp", "production", "ok")
    assert doc["message"] == (f"127.0.0.1:{listener}: connected in "
                              f"{doc['metrics']['connect_s'] * 1000:.1f} ms")


def test_check_run_http_ok_exits_0(config: Path) -> None:
    proc = run_cli("check", "run", "http-health", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["check"], doc["env"], doc["status"], doc["message"]) == (
        "http-health", "dev", "ok", "200 OK")


def test_check_run_failing_exits_1(config: Path) -> None:
    port = _closed_port(config)
    proc = run_cli("check", "run", "tcp-closed", "--json", "--config", str(config))
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["check"], doc["env"], doc["status"], doc["message"]) == (
        "tcp-closed", "staging", "failing",
        f"cannot connect to 127.0.0.1:{port}: connection refused")


def test_check_run_without_json_prints_the_verdict_line(config: Path) -> None:
    port = _closed_port(config)
    proc = run_cli("check", "run", "tcp-closed", "--config", str(config))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        f"FAILING  tcp-closed  cannot connect to 127.0.0.1:{port}: connection refused")


def test_check_run_error_exits_2(config: Path, tmp_path: Path) -> None:
    # A disabled check can still be run by hand; its CA bundle is missing, so it cannot judge.
    proc = run_cli("check", "run", "http-bad-ca", "--json", "--config", str(config))
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["status"], doc["message"]) == (
        "error", f"ca_file {tmp_path / 'missing.pem'} does not exist; give a PEM bundle path")


def test_check_run_of_an_unknown_id_exits_2_naming_it(config: Path) -> None:
    proc = run_cli("check", "run", "nope", "--json", "--config", str(config))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == ("controlplane: no check with id 'nope'; `controlplane check list` "
                           "shows the ids\n")


def test_check_commands_exit_2_on_an_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text("environments: {dev: {}}\ncheck_files: []\n"
                    "checks:\n  - {id: x, kind: ftp}\n")
    for args in (("check", "list"), ("check", "run", "x")):
        proc = run_cli(*args, "--config", str(path))
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"{path}:4: checks.0.kind: unknown check kind 'ftp'; "
                                      "valid kinds are: ")


@pytest.mark.parametrize("command", [("check", "list"), ("validate",)])
def test_commands_exit_2_on_a_missing_config_file(tmp_path: Path,
                                                  command: tuple[str, ...]) -> None:
    proc = run_cli(*command, "--config", str(tmp_path / "absent.yaml"))
    assert proc.returncode == 2
    assert proc.stderr == f"{tmp_path / 'absent.yaml'}:1: cannot read file: No such file or " \
                          "directory\n"


def _closed_port(config: Path) -> int:
    text = (config.parent / "checks" / "local.yaml").read_text()
    tail = text.split("id: tcp-closed", 1)[1]
    return int(tail.split("target: 127.0.0.1:", 1)[1].split()[0])


def test_version_prints_the_projects_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"controlplane {version}\n"

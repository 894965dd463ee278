"""`controlplane run` end to end: real checks, a PostgreSQL store, the web UI and API over
real HTTP, state kept across a restart, and SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.services.common import ROOT, free_port, run_cli
from tests.services.httpserver import ScriptedServer
from tests.services.postgres import PgServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv.getsockname()[1]


class Running:
    def __init__(self, config: Path, port: int, dsn: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "run", "--config", str(config)], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "CP_TEST_STORE_DSN": dsn})

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def wait_for(self, path: str, ok: Any, timeout: float = 90) -> requests.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()[1]
            try:
                resp = self.get(path)
                if ok(resp):
                    return resp
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{path} never satisfied the condition")

    def stop(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=90)
        return self.proc.returncode, out, err


def write_config(tmp_path: Path, listener: int, closed: int, http_url: str, port: int) -> Path:
    (tmp_path / "checks").mkdir(exist_ok=True)
    (tmp_path / "checks" / "local.yaml").write_text(f"""\
checks:
  - {{id: tcp-up, kind: tcp, env: production, target: "127.0.0.1:{listener}", interval: 1s}}
  - {{id: tcp-down, kind: tcp, env: staging, target: "127.0.0.1:{closed}", interval: 1s,
     failure_threshold: 3}}
  - {{id: http-up, kind: http, env: dev, url: "{http_url}", interval: 1s}}
""")
    path = tmp_path / "controlplane.yaml"
    path.write_text(f"""\
environments:
  production: {{label: Production}}
  staging: {{label: Staging}}
  dev: {{label: Dev}}
store: {{dsn: "${{CP_TEST_STORE_DSN}}"}}
web: {{port: {port}}}
scheduler: {{grace_period: 10s}}
""")
    return path


def test_run_serves_checks_from_a_postgres_store_and_keeps_state_across_restarts(
        tmp_path: Path, pg_server: PgServer, listener: int, http_server: ScriptedServer) -> None:
    dsn = pg_server.createdb(f"store_{uuid.uuid4().hex[:12]}")
    port = free_port()
    config = write_config(tmp_path, listener, free_port(), http_server.route("/", 200, "up"),
                          port)

    first = Running(config, port, dsn)
    try:
        ready = first.wait_for("/readyz", lambda r: r.status_code == 200)
        assert ready.json() == {"status": "ok", "store": True, "store_writes": True,
                                "scheduler": True, "outbox": True, "role": "active",
                                "problems": []}
        first.wait_for("/api/v1/checks/tcp-down", lambda r: r.json()["state"] == "failing")
        checks = first.wait_for("/api/v1/checks", lambda r: all(
            c["last_result"] for c in r.json()["checks"])).json()["checks"]
        assert {c["id"]: c["state"] for c in checks} == {
            "tcp-up": "ok", "tcp-down": "failing", "http-up": "ok"}
        page = first.get("/").text
        for label in ("Production", "Staging", "Dev"):
            assert f"<h2>{label} " in page
        assert 'data-check="tcp-down" data-state="failing"' in page
        metrics = first.get("/metrics").text
        assert 'controlplane_check_up{check="tcp-up",env="production",kind="tcp"} 1.0' \
            in metrics
        assert 'controlplane_check_up{check="tcp-down",env="staging",kind="tcp"} 0.0' \
            in metrics
        results = first.get("/api/v1/checks/http-up/results?since=1h").json()["results"]
        assert results and {r["status"] for r in results} == {"ok"}
    finally:
        code, out, err = first.stop()
    assert code == 0, err
    assert out.splitlines()[-1] == "controlplane: stopped"

    second = Running(config, port, dsn)
    try:
        # The damped state comes from the store: failing from the first answer, although a
        # fresh state would need failure_threshold (3) runs of this process to get there.
        body = second.wait_for("/api/v1/checks/tcp-down", lambda r: r.status_code == 200).json()
        assert body["state"] == "failing"
        before = len(results)
        again = second.wait_for("/api/v1/checks/http-up/results?since=1h",
                                lambda r: len(r.json()["results"]) > before)
        assert {r["status"] for r in again.json()["results"]} == {"ok"}
    finally:
        code, _, err = second.stop()
    assert code == 0, err


def test_run_refuses_to_start_when_postgres_is_unreachable(tmp_path: Path) -> None:
    closed = free_port()
    path = tmp_path / "controlplane.yaml"
    path.write_text("environments: {dev: {}}\ncheck_files: []\n"
                    f"store: {{dsn: 'postgresql://cp:pg-secret-pw@127.0.0.1:{closed}/cp'}}\n")
    proc = run_cli("run", "--config", str(path), timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"controlplane: refusing to start: cannot open the store "
        f"postgresql+psycopg://cp:***@127.0.0.1:{closed}/cp: connection failed: connection to "
        f'server at "127.0.0.1", port {closed} failed: Connection refused; check store.dsn '
        "and that the database is up\n")
    assert "pg-secret-pw" not in proc.stderr


def test_run_refuses_to_start_when_the_sqlite_file_cannot_be_opened(tmp_path: Path) -> None:
    db = tmp_path / "no-such-dir" / "cp.db"
    path = tmp_path / "controlplane.yaml"
    path.write_text(f"environments: {{dev: {{}}}}\ncheck_files: []\nstore: {{dsn: 'sqlite:///{db}'}}\n")
    proc = run_cli("run", "--config", str(path), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (f"controlplane: refusing to start: cannot open the store "
                           f"sqlite:///{db}: unable to open database file; check store.dsn "
                           "and that the database is up\n")


def test_a_second_run_on_the_same_store_stands_by_and_one_that_loses_its_lock_exits_1(
        tmp_path: Path, pg_server: PgServer, listener: int, http_server: ScriptedServer) -> None:
    dsn = pg_server.createdb(f"store_{uuid.uuid4().hex[:12]}")
    url = http_server.route("/", 200, "up")
    ports = free_port(), free_port()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Running(write_config(tmp_path / "a", listener, free_port(), url, ports[0]),
                    ports[0], dsn)
    second: Running | None = None
    try:
        first.wait_for("/readyz", lambda r: r.json().get("role") == "active")
        second = Running(write_config(tmp_path / "b", listener, free_port(), url, ports[1]),
                         ports[1], dsn)
        ready = second.wait_for("/readyz", lambda r: r.status_code == 200)
        assert ready.json() == {"status": "ok", "store": True, "store_writes": True,
                                "scheduler": False, "outbox": True, "role": "standby",
                                "problems": []}
        db = dsn.rsplit("/", 1)[1]
        pg_server.execute(  # the active instance's lock connection goes
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d "
            f"ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = '{db}'")
        _, err = first.proc.communicate(timeout=90)
        assert first.proc.returncode == 1
        assert err.strip().endswith(
            "controlplane: lost the store lock that makes this instance the active one; "
            "stopped so two instances never run at once (a restart stands by or takes over)")
        second.wait_for("/readyz", lambda r: r.json().get("role") == "active")
    finally:
        for r in (first, second):
            if r is not None and r.proc.poll() is None:
                r.stop()

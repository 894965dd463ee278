"""`controlplane silence add|list|expire` as a user runs it."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from controlplane.app import build_runtime
from controlplane.config import load_config
from controlplane.web import create_app
from tests.services.common import free_port, run_cli

TOKEN = "cli-admin-token"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "controlplane.yaml"
    path.write_text(f"environments: {{production: {{}}}}\n"
                    f"store: {{dsn: 'sqlite:///{tmp_path / 'cp.db'}'}}\ncheck_files: []\n"
                    + CHECKS)
    return path


# A silence may only name checks that exist.
CHECKS = ("checks:\n"
          "  - {id: tls-bic-sky-prod, kind: tcp, target: '127.0.0.1:1', env: production}\n"
          "  - {id: a, kind: tcp, target: '127.0.0.1:1', env: production}\n")


def test_silence_add_list_and_expire(config: Path) -> None:
    added = run_cli("silence", "add", "--config", str(config), "--check", "tls-bic-sky-prod",
                    "--label", "team=frontend", "--duration", "2h", "--comment",
                    "cert rotation", "--author", "alice", "--json")
    assert added.returncode == 0, added.stderr
    data = json.loads(added.stdout)
    assert (data["id"], data["active"], data["author"], data["source"]) == (
        1, True, "alice", "cli")
    assert data["matchers"] == {"check": "tls-bic-sky-prod", "env": None,
                                "labels": {"team": "frontend"}}
    listed = run_cli("silence", "list", "--config", str(config))
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "ACTIVE", "UNTIL", "MATCHERS", "COMMENT", "(AUTHOR)"]
    assert "check=tls-bic-sky-prod team=frontend" in lines[1]
    assert lines[1].endswith("cert rotation (alice)")
    expired = run_cli("silence", "expire", "--config", str(config), "1")
    assert (expired.returncode, expired.stdout) == (0, "silence 1 expired\n")
    assert run_cli("silence", "list", "--config", str(config)).stdout == "no active silences\n"


def test_recurring_maintenance_window_from_the_cli(config: Path) -> None:
    added = run_cli("silence", "add", "--config", str(config), "--env", "staging", "--cron",
                    "0 2 * * sun", "--duration", "2h", "--comment", "weekly patching",
                    "--json")
    assert added.returncode == 0, added.stderr
    data = json.loads(added.stdout)
    assert (data["cron"], data["duration_s"]) == ("0 2 * * sun", 7200.0)
    everything = json.loads(run_cli("silence", "list", "--all", "--json", "--config",
                                    str(config)).stdout)
    assert [s["id"] for s in everything] == [1]


@pytest.mark.parametrize(("args", "message"), [
    (["--duration", "1h", "--comment", "x"],
     "a silence needs at least one matcher (check, env or a label); silencing everything "
     "is not allowed"),
    (["--check", "a", "--comment", "x"], "a one-off silence needs ends_at or duration"),
    (["--check", "a", "--comment", "x", "--label", "team"],
     "--label 'team': write KEY=VALUE, e.g. --label team=kafka"),
    (["--check", "a", "--comment", "x", "--until", "tomorrow"],
     "--until: 'tomorrow' is not an ISO time; write 2026-11-26T23:00:00Z"),
])
def test_bad_silence_input_exits_2_with_a_clear_message(config: Path, args: list[str],
                                                        message: str) -> None:
    result = run_cli("silence", "add", "--config", str(config), *args)
    assert (result.returncode, result.stderr) == (2, f"controlplane: {message}\n")


def test_a_silence_on_a_check_that_does_not_exist_is_refused(config: Path) -> None:
    result = run_cli("silence", "add", "--config", str(config), "--check", "tls-bic-sky-prdo",
                     "--duration", "1h", "--comment", "x")
    assert (result.returncode, result.stderr) == (
        2, "controlplane: no check with id 'tls-bic-sky-prdo'; use one of the ids from "
           "`controlplane check list` (a typo would silence nothing)\n")


def test_expiring_an_unknown_silence_says_how_to_find_ids(config: Path) -> None:
    result = run_cli("silence", "expire", "--config", str(config), "42")
    assert result.returncode == 2
    assert result.stderr == ("controlplane: no silence 42; `controlplane silence list --all` "
                             "shows the ids\n")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A running control plane (web API on a loopback port) with an admin token."""
    path = tmp_path / "served.yaml"
    path.write_text(f"environments: {{production: {{}}}}\ncheck_files: []\n"
                    f"store: {{dsn: 'sqlite:///{tmp_path / 'served.db'}'}}\n"
                    f"web: {{admin_token: {TOKEN}}}\n" + CHECKS)
    rt = build_runtime(load_config(str(path)))
    server = make_server("127.0.0.1", 0, create_app(rt), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    rt.stop(0)


def listing(served: str) -> urllib.request.Request:
    return urllib.request.Request(served + "/api/v1/silences",
                                  headers={"Authorization": f"Bearer {TOKEN}"})


def test_silence_add_list_and_expire_against_a_running_instance(served: str) -> None:
    env = {"CONTROLPLANE_ADMIN_TOKEN": TOKEN}
    added = run_cli("silence", "add", "--url", served, "--env", "production", "--duration",
                    "1h", "--comment", "failover drill", "--author", "bob", "--json", env=env)
    assert added.returncode == 0, added.stderr
    data = json.loads(added.stdout)
    assert (data["id"], data["active"], data["author"], data["comment"]) == (
        1, True, "bob", "failover drill")
    with urllib.request.urlopen(listing(served), timeout=30) as resp:
        [listed] = json.loads(resp.read())["silences"]
    assert listed["matchers"] == {"check": None, "env": "production", "labels": {}}
    listed_cli = run_cli("silence", "list", "--url", served, "--json", env=env)
    assert [s["id"] for s in json.loads(listed_cli.stdout)] == [1]
    expired = run_cli("silence", "expire", "--url", served, "1", env=env)
    assert (expired.returncode, expired.stdout) == (0, "silence 1 expired\n")
    with urllib.request.urlopen(listing(served), timeout=30) as resp:
        assert json.loads(resp.read()) == {"silences": []}


def test_a_running_instance_refuses_the_cli_without_the_admin_token(served: str) -> None:
    result = run_cli("silence", "add", "--url", served, "--token", "wrong", "--check", "a",
                     "--duration", "1h", "--comment", "x")
    assert (result.returncode, result.stderr) == (
        2, f"controlplane: {served} refused the admin token (HTTP 401); pass --token or "
           "set $CONTROLPLANE_ADMIN_TOKEN\n")


def test_a_running_instance_explains_bad_input_and_unknown_ids(served: str) -> None:
    env = {"CONTROLPLANE_URL": served, "CONTROLPLANE_ADMIN_TOKEN": TOKEN}
    bad = run_cli("silence", "add", "--check", "a", "--cron", "0 2 * * sun", "--comment",
                  "x", env=env)
    assert (bad.returncode, bad.stderr) == (
        2, "controlplane: a recurring silence (cron) needs a duration, e.g. duration: 2h\n")
    unknown = run_cli("silence", "expire", "42", env=env)
    assert (unknown.returncode, unknown.stderr) == (
        2, "controlplane: no silence 42; `controlplane silence list --all` shows the ids\n")


def test_an_unreachable_instance_says_which_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("silence", "list", "--url", url)
    assert result.returncode == 2
    assert result.stderr.startswith(f"controlplane: cannot reach {url}: ")
    assert result.stderr.endswith("; check --url or $CONTROLPLANE_URL\n")

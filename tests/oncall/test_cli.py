"""`controlplane oncall now|show|override …` as a user runs it, on the store and against a
running instance."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from controlplane.app import build_runtime
from controlplane.config import load_config
from controlplane.web import create_app
from tests.oncall.conftest import TOKEN, write_config
from tests.services.common import run_cli


def test_oncall_now_lists_every_schedule(config_path: Path) -> None:
    result = run_cli("oncall", "now", "--config", str(config_path), "--at",
                     "2026-12-08T12:00:00Z")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "SCHEDULE   ON CALL                  UNTIL                      SLACK",
        "primary    Bob Stone                Mon 2026-12-14 09:00 CET   U0BOB0001",
        "secondary  Dave Okafor              Tue 2026-12-08 09:00 EST"]
    as_json = json.loads(run_cli("oncall", "now", "--config", str(config_path), "--at",
                                 "2026-11-29T12:00:00Z", "--schedule", "primary",
                                 "--json").stdout)
    assert as_json == [{"id": "primary", "name": "Platform primary",
                        "timezone": "Europe/Berlin", "now": None}]


def test_oncall_show_lists_the_shifts_in_the_schedules_zone(config_path: Path) -> None:
    result = run_cli("oncall", "show", "primary", "--config", str(config_path), "--from",
                     "2026-12-08T12:00:00Z", "--days", "14")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Platform primary (primary), times in Europe/Berlin",
        "FROM                       TO                         WHO                      SOURCE",
        "Mon 2026-12-07 09:00 CET   Mon 2026-12-14 09:00 CET   Bob Stone                layer 1",
        "Mon 2026-12-14 09:00 CET   Mon 2026-12-21 09:00 CET   Alice Martin             layer 1",
        "Mon 2026-12-21 09:00 CET   Tue 2026-12-22 13:00 CET   Bob Stone                layer 1"]


def test_override_add_list_and_remove_on_the_store(config_path: Path) -> None:
    cfg = str(config_path)
    added = run_cli("oncall", "override", "add", "--config", cfg, "--schedule", "primary",
                    "--person", "carol", "--covers", "bob", "--from", "2030-01-01T00:00:00Z",
                    "--until", "2030-01-20T00:00:00Z", "--reason", "swap", "--author", "bob")
    assert (added.returncode, added.stdout) == (0, (
        "override 1 added: carol on call for primary from 2030-01-01T00:00:00Z to "
        "2030-01-20T00:00:00Z\n")), added.stderr
    shown = run_cli("oncall", "show", "primary", "--config", cfg, "--from",
                    "2030-01-02T00:00:00Z", "--days", "7", "--json")
    assert [(s["person"]["id"], s["source"]) for s in json.loads(shown.stdout)["shifts"]] == [
        ("carol", "override 1"), ("alice", "layer 1")]
    listed = run_cli("oncall", "override", "list", "--config", cfg).stdout.splitlines()
    assert listed[1].split() == ["1", "primary", "carol", "bob", "2030-01-01T00:00:00Z",
                                 "2030-01-20T00:00:00Z", "swap", "(bob)"]
    removed = run_cli("oncall", "override", "remove", "--config", cfg, "1")
    assert (removed.returncode, removed.stdout) == (0, "override 1 removed\n")
    assert run_cli("oncall", "override", "list", "--config", cfg).stdout == "no overrides\n"
    assert run_cli("oncall", "override", "list", "--all", "--config", cfg).stdout.splitlines(
        )[1].endswith("swap (bob) [removed]")


@pytest.mark.parametrize(("command", "args", "message"), [
    (["override", "add"], ["--schedule", "primary", "--person", "zed", "--duration", "1h"],
     "unknown person 'zed'; use one of: alice, bob, carol, dave, manager"),
    (["override", "add"], ["--schedule", "primary", "--person", "bob"],
     "give the end as --until TIME or --duration D (one of them)"),
    (["override", "add"], ["--schedule", "primary", "--person", "bob", "--covers", "bob",
                           "--duration", "1h"],
     "bob cannot cover themselves; name who is covered with covers"),
    (["override", "remove"], ["7"],
     "no override 7; `controlplane oncall override list` shows the ids"),
    (["show"], ["tertiary"], "no schedule 'tertiary'; configured: primary, secondary"),
    (["now"], ["--at", "noon"], "--at: 'noon' is not an ISO time; write 2026-11-26T23:00:00Z"),
])
def test_bad_oncall_input_exits_2_with_a_clear_message(
        config_path: Path, command: list[str], args: list[str], message: str) -> None:
    result = run_cli("oncall", *command, "--config", str(config_path), *args)
    assert (result.returncode, result.stderr) == (2, f"controlplane: {message}\n")


def test_oncall_without_schedules_says_where_to_add_them(tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(f"environments: {{production: {{}}}}\ncheck_files: []\n"
                    f"store: {{dsn: 'sqlite:///{tmp_path / 'cp.db'}'}}\n")
    result = run_cli("oncall", "now", "--config", str(path))
    assert (result.returncode, result.stderr) == (
        2, f"controlplane: {path}: no on-call schedules; add them under oncall.schedules "
           "(docs/oncall.md)\n")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    rt = build_runtime(load_config(str(write_config(tmp_path))))
    server = make_server("127.0.0.1", 0, create_app(rt), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    rt.stop(0)


def test_overrides_through_a_running_instance_need_its_admin_token(served: str) -> None:
    args = ["oncall", "override", "add", "--url", served, "--schedule", "secondary",
            "--person", "alice", "--duration", "2h", "--json"]
    refused = run_cli(*args, "--token", "wrong")
    assert (refused.returncode, refused.stderr) == (
        2, f"controlplane: {served} refused the admin token (HTTP 401); pass --token or "
           "set $CONTROLPLANE_ADMIN_TOKEN\n")
    env = {"CONTROLPLANE_ADMIN_TOKEN": TOKEN}
    added = run_cli(*args, env=env)
    assert added.returncode == 0, added.stderr
    data = json.loads(added.stdout)
    assert (data["id"], data["person"], data["source"]) == (1, "alice", "api")
    listed = run_cli("oncall", "override", "list", "--url", served, "--json", env=env)
    assert [o["id"] for o in json.loads(listed.stdout)] == [1]
    bad = run_cli("oncall", "override", "add", "--url", served, "--schedule", "nope",
                  "--person", "alice", "--duration", "2h", env=env)
    assert (bad.returncode, bad.stderr) == (
        2, "controlplane: unknown schedule 'nope'; use one of: primary, secondary\n")
    assert run_cli("oncall", "override", "remove", "--url", served, "1",
                   env=env).stdout == "override 1 removed\n"
    gone = run_cli("oncall", "override", "remove", "--url", served, "1", env=env)
    assert gone.stderr == ("controlplane: no override 1; `controlplane oncall override list` "
                           "shows the ids\n")

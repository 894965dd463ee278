"""`controlplane silence add|list|expire` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.services.common import run_cli


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "controlplane.yaml"
    path.write_text(f"environments: {{production: {{}}}}\n"
                    f"store: {{dsn: 'sqlite:///{tmp_path / 'cp.db'}'}}\ncheck_files: []\n")
    return path


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


def test_expiring_an_unknown_silence_says_how_to_find_ids(config: Path) -> None:
    result = run_cli("silence", "expire", "--config", str(config), "42")
    assert result.returncode == 2
    assert result.stderr == ("controlplane: no silence 42; `controlplane silence list --all` "
                             "shows the ids\n")

"""`controlplane runbook list|show|run|runs|status|approve|cancel`."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from controlplane.cli import main
from controlplane.runbooks import runs
from controlplane.store import Store
from tests.runbooks.conftest import runbook, step, write_site


@pytest.fixture
def config(tmp_path: Path) -> str:
    return write_site(tmp_path, [
        runbook("greet", [step("hello", "note", args={"text": "hello {{ params.who }}"}),
                          step("bye", "note", args={"text": "bye"},
                               when="params.who == 'nobody'")],
                parameters={"who": {"type": "string", "default": "world"}}),
        runbook("gate", [step("ask", "approve", args={"message": "ok?", "timeout": "30s"})])])


def test_dry_run_prints_the_plan_and_changes_nothing(config: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runbook", "run", "greet", "--config", config, "--param", "who=ops",
                 "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "dry-run of greet: Runbook greet (owner dr-team); nothing is changed",
        'parameters: {"who": "ops"}',
        "1. hello [note] (timeout 10s, idempotent, on failure stop)",
        '     args {"text": "hello ops"}',
        "     show: hello ops",
        "2. bye [note] (timeout 10s, idempotent, on failure stop)",
        "     only when params.who == 'nobody'",
        '     args {"text": "bye"}',
        "     show: bye"]
    assert main(["runbook", "runs", "--config", config]) == 0
    assert capsys.readouterr().out == ""


def test_run_follow_prints_steps_and_exits_by_the_outcome(
        config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runbook", "run", "greet", "--config", config, "--follow", "--by", "ann"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "run 1 of greet queued"
    assert any(line.startswith("  hello: succeeded in ") and line.endswith("hello world")
               for line in out)
    assert "  bye: skipped in " in "\n".join(out)
    assert out[-1] == "run 1 succeeded: all 2 steps done"
    assert main(["runbook", "list", "--config", config]) == 0
    listing = capsys.readouterr().out
    assert "greet" in listing and "#1 succeeded" in listing


def test_bad_parameter_and_unknown_runbook_exit_2(config: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runbook", "run", "greet", "--config", config, "--param", "nope=1"]) == 2
    assert capsys.readouterr().err == ("controlplane: unknown parameter 'nope'; this runbook "
                                       "takes: who\n")
    assert main(["runbook", "show", "nope", "--config", config]) == 2
    assert capsys.readouterr().err == ("controlplane: no runbook 'nope'; `controlplane runbook "
                                       "list` shows them: gate, greet\n")


def test_approve_and_reject_from_another_terminal(config: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    codes: list[int] = []
    store = Store(f"sqlite:///{Path(config).parent / 'cp.db'}")  # tables exist before the run
    runs.history(store)
    t = threading.Thread(target=lambda: codes.append(main(["runbook", "run", "gate",
                                                           "--config", config])))
    t.start()
    try:
        while not runs.history(store) or runs.history(store)[0]["status"] != "waiting_approval":
            t.join(0.05)
        assert main(["runbook", "approve", "1", "--config", config, "--reject", "--by", "gus",
                     "--comment", "not now"]) == 0
        t.join(30)
        assert codes == [1]
        out = capsys.readouterr().out
        assert "run 1: step ask rejected by gus" in out
        assert out.rstrip().endswith("run 1 failed: step ask failed: rejected by gus: not now")
        assert main(["runbook", "cancel", "1", "--config", config]) == 2
        assert capsys.readouterr().err == "controlplane: run 1 is already failed\n"
        assert main(["runbook", "status", "1", "--config", config]) == 0
        assert "ask rejected by gus via cli" in capsys.readouterr().out
    finally:
        store.close()

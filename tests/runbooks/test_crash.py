"""kill -9 in the middle of a step: a non-idempotent step never runs twice (the run waits
for a human), an idempotent one runs again and the run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from controlplane.runbooks import runs
from tests.runbooks.conftest import MakeSite, Site, runbook, step
from tests.services.httpserver import ScriptedServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _killed_mid_step(site: Site, server: ScriptedServer) -> int:
    """Start the run in a CLI process, SIGKILL it while its HTTP call is in flight."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-m", "controlplane", "runbook", "run", "rb",
                             "--config", site.config_path, "--by", "erin"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 60
        while not any(s.path == "/call" for s in server.seen):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < end, "the step never called the server"
            time.sleep(0.05)
        (run,) = runs.history(site.runtime.store, "rb")
        assert site.steps(run["id"]) == [("prepare", "succeeded"), ("call", "running")]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return int(run["id"])


def _site(make_site: MakeSite, server: ScriptedServer, idempotent: bool) -> Site:
    server.route("/call", delay=20)
    return make_site([runbook("rb", [
        step("prepare", "note", args={"text": "ready"}),
        step("call", "http.request", args={"url": server.url("/call"), "method": "POST",
                                           "timeout": "60s"}, idempotent=idempotent),
        step("finish", "note", args={"text": "{{ steps.call.message }}"}),
    ])], start=False, stale_after_s=1.0)


def _calls(server: ScriptedServer) -> int:
    return sum(1 for s in server.seen if s.path == "/call")


def test_kill_9_in_a_non_idempotent_step_waits_for_a_human(make_site: MakeSite,
                                                            http_server: ScriptedServer) -> None:
    site = _site(make_site, http_server, idempotent=False)
    run_id = _killed_mid_step(site, http_server)
    site.engine.start()
    run = site.wait(run_id, ("interrupted",))
    assert run["message"] == "step call interrupted; waiting for a human decision"
    call: dict[str, Any] = run["steps"][1]
    assert (call["status"], call["attempt"]) == ("interrupted", 1)
    assert call["message"].startswith("interrupted: the control plane stopped while this step "
                                      "was running (attempt 1); it is not idempotent, so it "
                                      "will not run again.")
    time.sleep(1.5)  # the engine keeps polling: still interrupted, nothing re-ran
    assert site.run(run_id)["status"] == "interrupted" and _calls(http_server) == 1
    runs.decide(site.runtime.store, run_id, True, "frank", "cli", "checked: it went through")
    run = site.wait(run_id)
    assert run["status"] == "succeeded"
    assert [(s["step"], s["status"], s["attempt"]) for s in run["steps"]] == [
        ("prepare", "succeeded", 1), ("call", "succeeded", 1), ("finish", "succeeded", 1)]
    assert run["steps"][1]["message"] == ("confirmed done by frank after the interruption; "
                                          "not run again")
    assert _calls(http_server) == 1


def test_kill_9_then_reject_fails_the_interrupted_step(make_site: MakeSite,
                                                       http_server: ScriptedServer) -> None:
    site = _site(make_site, http_server, idempotent=False)
    run_id = _killed_mid_step(site, http_server)
    site.engine.start()
    site.wait(run_id, ("interrupted",))
    runs.decide(site.runtime.store, run_id, False, "frank", "api")
    run = site.wait(run_id)
    assert run["status"] == "failed"
    assert run["message"] == "step call failed: declared failed by frank after the interruption"
    assert _calls(http_server) == 1


def test_kill_9_in_an_idempotent_step_resumes_it(make_site: MakeSite,
                                                 http_server: ScriptedServer) -> None:
    site = _site(make_site, http_server, idempotent=True)
    run_id = _killed_mid_step(site, http_server)
    http_server.route("/call", body="second time")
    site.engine.start()
    run = site.wait(run_id)
    assert run["status"] == "succeeded"
    assert [(s["step"], s["status"], s["attempt"]) for s in run["steps"]] == [
        ("prepare", "succeeded", 1), ("call", "succeeded", 2), ("finish", "succeeded", 1)]
    assert _calls(http_server) == 2
    assert run["steps"][0]["outputs"] == {"text": "ready"}  # the done step did not run again

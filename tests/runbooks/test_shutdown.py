"""SIGTERM is a graceful stop, not a crash: `controlplane run` lets the step in flight
finish within the shutdown grace period (the run continues on the next start), and a step
that cannot finish in time is recorded as interrupted by the shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from controlplane.runbooks import runs
from tests.runbooks.conftest import TOKEN, MakeSite, Site, runbook, step
from tests.services.common import ROOT, free_port
from tests.services.httpserver import ScriptedServer


def _site(make_site: MakeSite, server: ScriptedServer, grace: str, delay: float,
          idempotent: bool) -> Site:
    server.route("/call", body="called", delay=delay)
    return make_site([runbook("rb", [
        step("prepare", "note", args={"text": "ready"}),
        step("call", "http.request", args={"url": server.url("/call"), "method": "POST",
                                           "timeout": "60s"}, idempotent=idempotent),
        step("finish", "note", args={"text": "{{ steps.call.message }}"}),
    ])], start=False, extra={"web": {"admin_token": TOKEN, "host": "127.0.0.1",
                                     "port": free_port()},
                             "scheduler": {"grace_period": grace}})


def _sigterm_mid_step(site: Site, server: ScriptedServer) -> tuple[int, float, str]:
    """`controlplane run` picks up a queued run; SIGTERM while its HTTP call is in flight.
    Returns the run, how long the process took to stop, and its output."""
    proc = subprocess.Popen([sys.executable, "-m", "controlplane", "run", "--config",
                             site.config_path], cwd=ROOT, env={**os.environ,
                                                               "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run_id = site.start("rb", by="erin")
        end = time.monotonic() + 60
        while not any(s.path == "/call" for s in server.seen):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < end, "the step never called the server"
            time.sleep(0.05)
        assert site.steps(run_id) == [("prepare", "succeeded"), ("call", "running")]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert out.strip().endswith("controlplane: stopped")
    return run_id, took, out


def _calls(server: ScriptedServer) -> int:
    return sum(1 for s in server.seen if s.path == "/call")


def test_sigterm_lets_the_step_in_flight_finish_and_the_run_continues_on_the_next_start(
        make_site: MakeSite, http_server: ScriptedServer) -> None:
    site = _site(make_site, http_server, grace="30s", delay=3.0, idempotent=False)
    run_id, took, _ = _sigterm_mid_step(site, http_server)
    assert took >= 1.5  # it waited for the answer instead of leaving at once
    run = site.run(run_id)
    assert (run["status"], run["message"]) == (
        "queued", "paused: the control plane shut down; the next active instance "
                  "continues with the next step")
    call: dict[str, Any] = run["steps"][1]
    assert (call["step"], call["status"], call["attempt"]) == ("call", "succeeded", 1)
    assert call["message"].startswith(f"POST {http_server.url('/call')}: 200 in ")
    assert [s["step"] for s in run["steps"]] == ["prepare", "call"]  # finish not started
    site.engine.start()
    run = site.wait(run_id)
    assert run["status"] == "succeeded"
    assert [(s["step"], s["status"], s["attempt"]) for s in run["steps"]] == [
        ("prepare", "succeeded", 1), ("call", "succeeded", 1), ("finish", "succeeded", 1)]
    assert _calls(http_server) == 1


def test_sigterm_past_the_grace_period_interrupts_a_non_idempotent_step_for_a_human(
        make_site: MakeSite, http_server: ScriptedServer) -> None:
    site = _site(make_site, http_server, grace="1s", delay=20.0, idempotent=False)
    run_id, took, _ = _sigterm_mid_step(site, http_server)
    assert took < 15  # the grace period, not the step's 20 s
    run = site.run(run_id)
    assert (run["status"], run["message"]) == (
        "interrupted", "step call interrupted; waiting for a human decision")
    call: dict[str, Any] = run["steps"][1]
    assert call["status"] == "interrupted"
    assert call["message"] == (
        "interrupted (shutdown): the control plane shut down while this step was running "
        "and it did not finish within the shutdown grace period; it is not idempotent, so "
        "it will not run again. Check what it did, then approve (it completed) or reject "
        "(it failed), or cancel the run")
    site.engine.start()
    time.sleep(1.0)  # the engine polls: nothing re-runs without a human
    assert site.run(run_id)["status"] == "interrupted" and _calls(http_server) == 1
    runs.decide(site.runtime.store, run_id, True, "frank", "cli", "it went through")
    run = site.wait(run_id)
    assert run["status"] == "succeeded"
    assert run["steps"][1]["message"] == ("confirmed done by frank after the interruption; "
                                          "not run again")
    assert _calls(http_server) == 1


def test_sigterm_past_the_grace_period_reruns_an_idempotent_step_on_the_next_start(
        make_site: MakeSite, http_server: ScriptedServer) -> None:
    site = _site(make_site, http_server, grace="1s", delay=20.0, idempotent=True)
    run_id, _, _ = _sigterm_mid_step(site, http_server)
    run = site.run(run_id)
    assert (run["status"], run["message"]) == (
        "queued", "paused: the control plane shut down during step call, which runs again "
                  "on the next start")
    assert run["steps"][1]["status"] == "interrupted"
    assert run["steps"][1]["message"].startswith("interrupted (shutdown): ")
    http_server.route("/call", body="second time")
    site.engine.start()
    run = site.wait(run_id)
    assert run["status"] == "succeeded"
    assert [(s["step"], s["status"], s["attempt"]) for s in run["steps"]] == [
        ("prepare", "succeeded", 1), ("call", "succeeded", 2), ("finish", "succeeded", 1)]
    assert _calls(http_server) == 2


def test_sigterm_to_runbook_run_in_the_cli_also_lets_the_step_finish(
        make_site: MakeSite, http_server: ScriptedServer) -> None:
    site = _site(make_site, http_server, grace="30s", delay=3.0, idempotent=False)
    proc = subprocess.Popen([sys.executable, "-m", "controlplane", "runbook", "run", "rb",
                             "--config", site.config_path, "--by", "erin"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        while not any(s.path == "/call" for s in http_server.seen):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < end, "the step never called the server"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    (run,) = runs.history(site.runtime.store, "rb")
    assert proc.returncode == 1, err
    assert out.strip().splitlines()[-1] == (
        f"run {run['id']} queued: paused: the control plane shut down; the next active "
        "instance continues with the next step")
    assert "letting the step in flight finish (up to 30s)" in err
    assert site.steps(run["id"]) == [("prepare", "succeeded"), ("call", "succeeded")]
    site.engine.start()
    assert site.wait(run["id"])["status"] == "succeeded"
    assert _calls(http_server) == 1

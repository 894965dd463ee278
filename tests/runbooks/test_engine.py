"""The engine on real actions and a real HTTP server: outputs flow between steps, failures
roll back, approvals are given, refused or time out, runs are cancelled and time out, and
the concurrency rule holds when two starts race."""

from __future__ import annotations

import re
import threading

import pytest

from controlplane.runbooks import runs
from tests.runbooks.conftest import MakeSite, runbook, step
from tests.services.httpserver import ScriptedServer


def test_outputs_of_a_step_feed_the_next_and_conditions_skip(make_site: MakeSite,
                                                              http_server: ScriptedServer) -> None:
    url = http_server.route("/version", body="v1.2.3")
    site = make_site([runbook("rb", [
        step("get", "http.request", args={"url": url}, idempotent=True),
        step("tell", "note", args={"text": "deployed {{ steps.get.outputs.body }} "
                                           "({{ steps.get.outputs.status }})"}),
        step("never", "note", args={"text": "x"}, when="steps.get.outputs.status != 200"),
    ])])
    run = site.wait(site.start("rb"))
    assert run["status"] == "succeeded"
    assert run["message"] == "all 3 steps done"
    assert [(s["step"], s["status"], s["message"]) for s in run["steps"]] == [
        ("get", "succeeded", run["steps"][0]["message"]),
        ("tell", "succeeded", "deployed v1.2.3 (200)"),
        ("never", "skipped", "skipped: condition 'steps.get.outputs.status != 200' is false")]
    assert run["steps"][0]["outputs"]["status"] == 200
    assert run["started_by"] == "alice" and run["duration_s"] is not None


def test_a_failing_step_runs_its_rollback_and_fails_the_run(make_site: MakeSite,
                                                            http_server: ScriptedServer) -> None:
    http_server.route("/deploy", status=500, body="boom")
    http_server.route("/undo", status=200)
    site = make_site([runbook("rb", [
        step("deploy", "http.request", args={"url": http_server.url("/deploy"),
                                             "method": "POST"},
             on_failure=[step("undo", "http.request", args={"url": http_server.url("/undo"),
                                                            "method": "POST"})]),
        step("after", "note", args={"text": "never reached"}),
    ])])
    run = site.wait(site.start("rb"))
    assert run["status"] == "failed"
    assert run["message"] == (f"step deploy failed: POST {http_server.url('/deploy')} "
                              "answered 500, expected 200; rolled back (undo succeeded)")
    assert site.steps(run["id"]) == [("deploy", "failed"), ("undo", "succeeded")]
    assert run["steps"][1]["rollback_of"] == "deploy"
    assert [(s.method, s.path) for s in http_server.seen] == [("POST", "/deploy"),
                                                              ("POST", "/undo")]


def test_on_failure_continue_goes_on(make_site: MakeSite, http_server: ScriptedServer) -> None:
    http_server.route("/x", status=503)
    site = make_site([runbook("rb", [
        step("attempt", "http.request", args={"url": http_server.url("/x")}, on_failure="continue"),
        step("next", "note", args={"text": "{{ steps.attempt.status }}"}),
    ])])
    run = site.wait(site.start("rb"))
    assert run["status"] == "succeeded"
    assert [s["message"] for s in run["steps"]][1] == "failed"


def _approval_site(make_site: MakeSite, timeout: str = "30s") -> tuple[object, int]:
    site = make_site([runbook("rb", [
        step("ask", "approve", args={"message": "Restore now?", "timeout": timeout}),
        step("done", "note", args={"text": "approved by {{ steps.ask.outputs.by }}"}),
    ])])
    return site, site.start("rb")


def test_approval_given_continues_and_records_who(make_site: MakeSite) -> None:
    site, run_id = _approval_site(make_site)
    site.wait(run_id, ("waiting_approval",))  # type: ignore[attr-defined]
    assert runs.decide(site.runtime.store, run_id, True, "bob", "cli", "go") == "ask"  # type: ignore[attr-defined]
    run = site.wait(run_id)  # type: ignore[attr-defined]
    assert run["status"] == "succeeded"
    assert [s["message"] for s in run["steps"]] == ["approved by bob: go", "approved by bob"]
    (d,) = run["decisions"]
    assert (d["step"], d["approved"], d["by"], d["via"], d["comment"]) == (
        "ask", True, "bob", "cli", "go")


def test_approval_refused_fails_the_run(make_site: MakeSite) -> None:
    site, run_id = _approval_site(make_site)
    site.wait(run_id, ("waiting_approval",))  # type: ignore[attr-defined]
    runs.decide(site.runtime.store, run_id, False, "carol", "api", "not during peak")  # type: ignore[attr-defined]
    run = site.wait(run_id)  # type: ignore[attr-defined]
    assert run["status"] == "failed"
    assert run["message"] == "step ask failed: rejected by carol: not during peak"
    assert site.steps(run_id) == [("ask", "failed")]  # type: ignore[attr-defined]


def test_approval_timed_out_fails_the_run(make_site: MakeSite) -> None:
    site, run_id = _approval_site(make_site, timeout="1s")
    run = site.wait(run_id)  # type: ignore[attr-defined]
    assert run["status"] == "failed"
    assert run["message"] == ("step ask failed: approval timed out after 1s: nobody approved "
                              "or rejected")
    with pytest.raises(runs.RunRefused) as exc:
        runs.decide(site.runtime.store, run_id, True, "late", "cli")  # type: ignore[attr-defined]
    assert str(exc.value) == f"run {run_id} is failed: it is not waiting for a decision"


def test_cancel_stops_a_running_step(make_site: MakeSite) -> None:
    site = make_site([runbook("rb", [step("nap", "wait", args={"duration": "60s"}),
                                     step("after", "note", args={"text": "x"})])])
    run_id = site.start("rb")
    site.wait_step(run_id, "nap", "running")
    assert runs.cancel(site.runtime.store, run_id, "dave") == "running"
    run = site.wait(run_id, timeout=10)
    assert run["status"] == "cancelled"
    assert run["message"] == "cancelled by dave during step nap"
    assert site.steps(run_id) == [("nap", "cancelled")]


def test_a_step_past_its_timeout_fails(make_site: MakeSite, http_server: ScriptedServer) -> None:
    url = http_server.route("/slow", hang=True)
    site = make_site([runbook("rb", [
        step("nap", "wait", args={"duration": "30s"}, timeout="1s", on_failure="continue"),
        step("slow", "http.request", args={"url": url, "timeout": "30s"}, timeout="1s")])])
    run = site.wait(site.start("rb"), timeout=15)
    assert run["status"] == "failed"
    assert site.steps(run["id"]) == [("nap", "timed_out"), ("slow", "timed_out")]
    assert run["steps"][0]["message"] == "timed out after 1s: stopped before the wait ended"
    assert run["message"].startswith(f"step slow failed: timed out after 1s: GET {url} "
                                     "failed: ReadTimeout")


def test_a_run_past_its_timeout_is_timed_out(make_site: MakeSite) -> None:
    site = make_site([runbook("rb", [step("a", "wait", args={"duration": "1s"}),
                                     step("b", "wait", args={"duration": "30s"})],
                              timeout="2s")])
    run = site.wait(site.start("rb"), timeout=15)
    assert run["status"] == "timed_out"
    assert run["message"] == "the run took longer than its timeout (2s), in step b"


def _race(site: object, n: int = 2) -> list[object]:
    out: list[object] = []
    barrier = threading.Barrier(n)

    def go() -> None:
        barrier.wait()
        try:
            out.append(site.start("rb"))  # type: ignore[attr-defined]
        except runs.RunRefused as exc:
            out.append(exc)

    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_the_same_runbook_twice_at_once_refuses_the_second(make_site: MakeSite) -> None:
    site = make_site([runbook("rb", [step("nap", "wait", args={"duration": "2s"})])])
    got = _race(site)
    started = [r for r in got if isinstance(r, int)]
    refused = [r for r in got if isinstance(r, runs.RunRefused)]
    assert len(started) == 1 and len(refused) == 1
    # The first run may still be queued or already running when the second one asks.
    assert re.match(rf"runbook rb is already running \(run {started[0]} \((queued|running)\)\); "
                    "it allows 1 at a time: wait, or cancel that run$", str(refused[0]))
    assert site.wait(started[0])["status"] == "succeeded"


def test_queued_runs_wait_for_the_running_one(make_site: MakeSite) -> None:
    site = make_site([runbook("rb", [step("nap", "wait", args={"duration": "1s"})],
                              concurrency={"limit": 1, "when_busy": "queue"})])
    first, second = sorted(r for r in _race(site) if isinstance(r, int))
    site.wait_step(first, "nap", "running")
    assert site.run(second)["status"] == "queued"
    a, b = site.wait(first), site.wait(second)
    assert a["status"] == b["status"] == "succeeded"
    assert b["started_at"] >= a["finished_at"]


def test_bad_parameters_are_refused_before_anything_runs(make_site: MakeSite) -> None:
    site = make_site([runbook("rb", [step("a", "note", args={"text": "{{ params.n }}"})],
                              parameters={"n": {"type": "int"}})])
    with pytest.raises(runs.RunRefused) as exc:
        site.start("rb", {"n": "three"})
    assert str(exc.value) == "parameter 'n': 'three' is not an integer"
    run = site.wait(site.start("rb", {"n": "3"}))
    assert run["steps"][0]["message"] == "3"


def test_templates_in_mapping_keys_are_resolved_and_checked() -> None:
    from controlplane.runbooks import expr

    scope = {"params": {"src": "prod", "dst": "rebuilt"}}
    assert expr.render({"{{ params.src }}": "{{ params.dst }}"}, scope) == {"prod": "rebuilt"}
    assert expr.expressions({"{{ params.src }}": "x"}) == [" params.src "]

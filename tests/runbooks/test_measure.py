"""A runbook with `measures:` is a drill of a DR component: its duration is the RTO /dr
shows, a failed run breaches it."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.config import ConfigError, load_config
from controlplane.dr import tracker
from tests.runbooks.conftest import MakeSite, runbook, step, write_site
from tests.services.httpserver import ScriptedServer


def _rebuild(url: str) -> dict[str, object]:
    return runbook("cluster-rebuild", [
        step("apply", "http.request", args={"url": url}),
        step("settle", "wait", args={"duration": "1s"})], measures="cluster-rebuild")


def _status(site: object, component: str) -> tracker.ComponentStatus:
    rt = site.runtime  # type: ignore[attr-defined]
    (cs,) = [c for c in tracker.evaluate(rt.store, rt.config.dr) if c.component == component]
    return cs


def test_a_succeeded_run_is_the_measured_rto(make_site: MakeSite,
                                             http_server: ScriptedServer) -> None:
    site = make_site([_rebuild(http_server.route("/ok"))])
    assert _status(site, "cluster-rebuild").rto_status == "unknown"
    run = site.wait(site.start("cluster-rebuild"))
    assert run["status"] == "succeeded"
    cs = _status(site, "cluster-rebuild")
    assert cs.rto_s == run["duration_s"] and 1.0 <= cs.rto_s < 10
    assert cs.rto_status == "met"
    assert cs.last_drill is not None
    assert cs.last_drill["message"] == (f"runbook cluster-rebuild run #{run['id']}: all 2 "
                                        "steps done")
    assert [s["name"] for s in cs.last_drill["steps"]] == ["apply", "settle"]


def test_a_failed_run_breaches_the_rto(make_site: MakeSite, http_server: ScriptedServer) -> None:
    site = make_site([_rebuild(http_server.route("/down", status=503))])
    assert site.wait(site.start("cluster-rebuild"))["status"] == "failed"
    cs = _status(site, "cluster-rebuild")
    assert cs.rto_status == "breached"
    assert cs.reasons[0].startswith("latest drill failed at apply: runbook cluster-rebuild "
                                    "run #1: step apply failed: GET ")


def test_measures_must_name_a_dr_component(tmp_path: Path) -> None:
    path = write_site(tmp_path, [runbook("rb", [step("a", "note", args={"text": "x"})],
                                         measures="kafak")])
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    (problem,) = exc.value.problems
    assert (problem.line, problem.path) == (9, "measures")
    assert problem.message == ("unknown DR component 'kafak'; use one of: cluster-rebuild, "
                               "kafka, kubernetes-secrets, postgres")


def test_the_dr_page_lists_the_runbook_drill(make_site: MakeSite,
                                             http_server: ScriptedServer) -> None:
    from controlplane.web import create_app

    site = make_site([_rebuild(http_server.route("/ok"))])
    run = site.wait(site.start("cluster-rebuild"))
    client = create_app(site.runtime).test_client()
    comps = {c["component"]: c for c in client.get("/api/v1/dr").get_json()["components"]}
    (drill,) = comps["cluster-rebuild"]["drills"]
    assert (drill["status"], drill["message"]) == (
        "passed", f"runbook cluster-rebuild run #{run['id']}: all 2 steps done")
    page = client.get("/dr").get_data(as_text=True)
    section = page[page.index("cluster-rebuild"):]
    assert "<h3>Drills</h3>" in section and ">passed</span>" in section

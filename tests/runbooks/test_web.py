"""/runbooks pages and /api/v1/runbooks: reading is open, starting and deciding need the
admin token."""

from __future__ import annotations

from flask.testing import FlaskClient

from controlplane.web import create_app
from tests.runbooks.conftest import TOKEN, MakeSite, Site, runbook, step

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _site(make_site: MakeSite) -> tuple[Site, FlaskClient]:
    site = make_site([
        runbook("restore", [step("ask", "approve", args={"message": "Restore {{ params.db }}?"}),
                            step("tell", "note", args={"text": "restored {{ params.db }}"})],
                parameters={"db": {"type": "string", "default": "restored"},
                            "mode": {"type": "enum", "values": ["fast", "full"],
                                     "default": "full"}},
                description="Restores things."),
        runbook("smoke", [step("tell", "note", args={"text": "ok"})], schedule="0 3 * * *")])
    return site, create_app(site.runtime).test_client()


def test_starting_a_run_needs_the_admin_token(make_site: MakeSite) -> None:
    _, client = _site(make_site)
    resp = client.post("/api/v1/runbooks/restore/runs", json={"params": {}})
    assert resp.status_code == 401
    assert resp.get_json() == {"error": "missing or wrong admin token: send it as "
                                        "'Authorization: Bearer <web.admin_token>'"}
    resp = client.post("/api/v1/runbooks/runs/1/approve", json={})
    assert resp.status_code == 401


def test_run_approve_and_watch_through_the_api(make_site: MakeSite) -> None:
    site, client = _site(make_site)
    resp = client.post("/api/v1/runbooks/restore/runs", headers=AUTH,
                       json={"params": {"db": "voice360_new"}, "by": "alice"})
    assert resp.status_code == 201
    run_id = resp.get_json()["run"]
    assert resp.get_json()["url"] == f"/runbooks/runs/{run_id}"
    busy = client.post("/api/v1/runbooks/restore/runs", headers=AUTH, json={})
    assert busy.status_code == 409
    assert busy.get_json()["error"].startswith("runbook restore is already running (run ")
    site.wait(run_id, ("waiting_approval",))
    resp = client.post(f"/api/v1/runbooks/runs/{run_id}/approve", headers=AUTH,
                       json={"by": "bob", "comment": "go"})
    assert resp.get_json() == {"run": run_id, "step": "ask", "approved": True}
    site.wait(run_id)
    run = client.get(f"/api/v1/runbooks/runs/{run_id}").get_json()
    assert run["status"] == "succeeded"
    assert [(s["step"], s["status"], s["message"]) for s in run["steps"]] == [
        ("ask", "succeeded", "approved by bob: go"),
        ("tell", "succeeded", "restored voice360_new")]
    assert run["decisions"][0]["by"] == "bob" and run["decisions"][0]["via"] == "api"
    again = client.post(f"/api/v1/runbooks/runs/{run_id}/approve", headers=AUTH, json={})
    assert again.status_code == 409


def test_bad_parameters_are_a_409_naming_them(make_site: MakeSite) -> None:
    _, client = _site(make_site)
    resp = client.post("/api/v1/runbooks/restore/runs", headers=AUTH,
                       json={"params": {"mode": "slow"}})
    assert resp.status_code == 409
    assert resp.get_json() == {"error": "parameter 'mode': 'slow' is not allowed; use one of: "
                                        "fast, full"}


def test_dry_run_through_the_api_changes_nothing(make_site: MakeSite) -> None:
    _, client = _site(make_site)
    resp = client.post("/api/v1/runbooks/restore/plan", json={"params": {"db": "x"}})
    assert resp.status_code == 200
    plan = resp.get_json()["plan"]
    assert plan[1] == 'parameters: {"db": "x", "mode": "full"}'
    assert "     ask for approval: 'Restore x?'; fail without a decision after 3600s" in plan
    assert client.get("/api/v1/runbooks/restore").get_json()["runs"] == []


def test_pages_list_show_and_follow_runs(make_site: MakeSite) -> None:
    site, client = _site(make_site)
    page = client.get("/runbooks").get_data(as_text=True)
    assert '<a href="/runbooks/restore">restore</a>' in page
    assert "cron <span class=\"mono\">0 3 * * *</span>" in page
    assert page.count("never") == 2
    page = client.get("/runbooks/restore").get_data(as_text=True)
    assert "Restores things." in page and 'id="run-form"' in page
    assert '<option value="full" selected>full</option>' in page
    assert "<script>" not in page and "runbooks.js" in page
    run_id = site.start("smoke")
    site.wait(run_id)
    page = client.get(f"/runbooks/runs/{run_id}").get_data(as_text=True)
    assert f"Run #{run_id} of" in page and "succeeded" in page
    assert client.get("/runbooks/nope").status_code == 404
    assert client.get("/runbooks/runs/999").status_code == 404
    assert client.get("/api/v1/runbooks/runs/999").get_json() == {"error": "no runbook run 999"}
    listing = client.get("/api/v1/runbooks").get_json()
    assert [(r["id"], (r["last_run"] or {}).get("status")) for r in listing] == [
        ("restore", None), ("smoke", "succeeded")]
    assert client.get("/static/runbooks/runbooks.js").status_code == 200


def test_cancel_through_the_api(make_site: MakeSite) -> None:
    site, client = _site(make_site)
    run_id = site.start("restore")
    site.wait(run_id, ("waiting_approval",))
    resp = client.post(f"/api/v1/runbooks/runs/{run_id}/cancel", headers=AUTH,
                       json={"by": "dave"})
    assert resp.status_code == 200
    run = site.wait(run_id)
    assert (run["status"], run["message"]) == ("cancelled", "cancelled by dave during step ask")


def test_runbook_links_on_incident_pages_and_the_api_lead_to_the_runbook_page(
        make_site: MakeSite) -> None:
    from controlplane.incidents.model import IncidentRow
    from controlplane.results import utcnow

    site, client = _site(make_site)
    with site.runtime.store.session() as s:
        for i, link in enumerate(("restore", "https://wiki.example.com/tls")):
            s.add(IncidentRow(dedup_key=f"c{i}/production", check_id=f"c{i}", env="production",
                              kind="tcp", name="", severity="major", labels={}, runbook=link,
                              state="open", status="failing", message="down",
                              opened_at=utcnow(), since=utcnow(), notified=False,
                              last_notified_message=""))
    page = client.get("/incidents/1").get_data(as_text=True)
    assert '<a href="/runbooks/restore">Runbook</a>' in page
    page = client.get("/incidents/2").get_data(as_text=True)
    assert '<a href="https://wiki.example.com/tls">Runbook</a>' in page
    listing = client.get("/api/v1/incidents").get_json()
    got = {i["check"]: (i["runbook"], i["runbook_url"]) for i in listing["incidents"]}
    assert got == {"c0": ("restore", "/runbooks/restore"),
                   "c1": ("https://wiki.example.com/tls", "https://wiki.example.com/tls")}

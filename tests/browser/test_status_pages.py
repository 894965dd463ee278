"""The status page, a check page and the incidents page in a real browser, against the demo."""

from __future__ import annotations

import json
import time

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import Recorder, shot
from tests.services.sandbox import DemoProcess

pytestmark = pytest.mark.browser

ENVS = ("production", "release", "staging", "dev")


def set_fault(demo: DemoProcess, name: str, env: str = "production") -> None:
    state = json.loads((demo.cache / "sandbox" / "state.json").read_text())
    resp = requests.post(f"{state['control_url']}/faults", json={"name": name, "env": env},
                         timeout=10)
    assert resp.status_code == 201, resp.text


def clear_faults(demo: DemoProcess) -> None:
    state = json.loads((demo.cache / "sandbox" / "state.json").read_text())
    requests.delete(f"{state['control_url']}/faults", timeout=10)


def wait_runs(demo: DemoProcess, check_id: str, n: int, timeout: float = 180) -> None:
    """Until the check has ``n`` runs, one of them ok (an earlier test's fault may linger)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = requests.get(f"{demo.url}/api/v1/checks/{check_id}/results", timeout=10).json()
        results = rows["results"]
        if len(results) >= n and any(r["status"] == "ok" for r in results):
            return
        time.sleep(1)
    raise AssertionError(f"{check_id} did not run {n} times with one ok in {timeout}s")


def test_status_page_shows_all_four_environments(demo_site: DemoProcess,
                                                 page: tuple[Page, Recorder]) -> None:
    pg, rec = page
    pg.goto(demo_site.url + "/")
    for env in ENVS:
        section = pg.locator(f"section#env-{env}")
        expect(section).to_be_visible()
        for check in (f"idcard-sms-{env}", f"config-drift-{env}", f"http-halo-task-{env}",
                      f"http-voice360-{env}", f"dns-idcard-{env}", f"tls-idcard-{env}"):
            expect(section.locator(f'tr.check[data-check="{check}"]')).to_have_count(1)
    expect(pg.locator('tr[data-check="idcard-sms-production"]')).to_be_visible()
    # Wait for the first runs so the screenshot shows states, not "not run yet".
    expect(pg.locator('tr[data-check="config-drift-dev"][data-state="ok"]')).to_have_count(
        1, timeout=90_000)
    shot(pg, "status-page")
    assert rec.offsite() == []


def test_fault_turns_its_check_red_on_the_page_by_itself(demo_site: DemoProcess,
                                                         page: tuple[Page, Recorder]) -> None:
    pg, rec = page
    pg.goto(demo_site.url + "/")
    row = 'tr[data-check="config-drift-production"]'
    expect(pg.locator(f'{row}[data-state="ok"]')).to_have_count(1, timeout=90_000)
    set_fault(demo_site, "appconfig_staging")
    try:
        # No reload from the test: the page's own refresh must bring the new state.
        expect(pg.locator(f'{row}[data-state="failing"]')).to_have_count(1, timeout=120_000)
        expect(pg.locator(f"{row} .badge")).to_have_class("badge s-failing")
        expect(pg.locator(row)).to_contain_text("production appconfig.json points at staging")
        shot(pg, "status-page-r121-drift")
    finally:
        clear_faults(demo_site)
    assert rec.offsite() == []


def test_check_page_shows_history_and_a_chart(demo_site: DemoProcess,
                                              page: tuple[Page, Recorder]) -> None:
    pg, rec = page
    wait_runs(demo_site, "idcard-sms-production", 2)
    pg.goto(demo_site.url + "/checks/idcard-sms-production")
    expect(pg.locator("h1")).to_contain_text("ID card by SMS (Production)")
    rows = pg.locator("table#history tbody tr")
    assert rows.count() >= 2
    expect(rows.first).to_contain_text("request_link")
    expect(pg.locator("table#history")).to_contain_text("download_pdf: ok")
    chart = pg.locator("#latency-chart svg")
    expect(chart).to_be_visible()
    assert chart.locator("path, polyline").count() >= 1
    shot(pg, "check-page-idcard-sms-production")
    assert rec.offsite() == []


def test_incident_opens_notifies_and_resolves_on_the_incidents_page(
        demo_site: DemoProcess, page: tuple[Page, Recorder]) -> None:
    pg, rec = page
    pg.goto(demo_site.url + "/incidents")
    expect(pg.locator("h1")).to_have_text("Incidents")
    active = pg.locator('#active-incidents tr:has-text("http-halo-task-release")')
    expect(active).to_have_count(0)
    set_fault(demo_site, "halo_task_500", "release")
    try:
        # The page reloads itself every 15 s; the test never reloads it.
        expect(active).to_have_count(1, timeout=150_000)
        expect(active).to_contain_text("release")
        shot(pg, "incidents-open")
    finally:
        clear_faults(demo_site)
    deadline = time.monotonic() + 60
    while True:  # notified once the Slack outbox worker delivered it
        rows = requests.get(f"{demo_site.url}/api/v1/incidents", timeout=10).json()["incidents"]
        mine = [i for i in rows if i["check"] == "http-halo-task-release"]
        if mine and mine[0]["notified"]:
            break
        assert time.monotonic() < deadline, f"incident not notified: {mine}"
        time.sleep(0.5)
    assert mine[0]["slack"]["channel"] == "C0ONCALL"
    resolved = pg.locator('#resolved-incidents tr:has-text("http-halo-task-release")')
    expect(resolved).to_have_count(1, timeout=150_000)
    expect(active).to_have_count(0)
    shot(pg, "incidents-resolved")
    assert rec.offsite() == []

"""Status page, check page and the checks API, served from a real runtime and store."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.results import Result, Status
from controlplane.web import create_app
from tests import fakeprobes

pytestmark = pytest.mark.usefixtures("scripted_kind")

CONFIG = """
environments:
  production: {label: Production}
  release: {label: Release}
  staging: {label: Staging}
  dev: {label: Dev}
store: {dsn: "sqlite:///%(db)s"}
web: {admin_token: s3cret-token}
check_files: []
checks:
  - {id: tls-prod, kind: scripted, env: production, failure_threshold: 1}
  - {id: http-dev, kind: scripted, env: dev}
"""


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    path = tmp_path / "controlplane.yaml"
    path.write_text(CONFIG % {"db": tmp_path / "cp.db"})
    runtime = build_runtime(load_config(str(path)))
    yield runtime
    runtime.stop(0)


@pytest.fixture
def client(rt: Runtime) -> FlaskClient:
    return create_app(rt).test_client()


def test_status_page_groups_checks_by_environment(rt: Runtime, client: FlaskClient) -> None:
    fakeprobes.SCRIPTS["tls-prod"] = deque([Status.FAILING])
    rt.scheduler.run_now("tls-prod")
    html = client.get("/").get_data(as_text=True)
    for label in ("Production", "Release", "Staging", "Dev"):
        assert f"<h2>{label} " in html
    assert 'data-check="tls-prod" data-state="failing"' in html
    assert "scripted failing" in html
    assert 'data-check="http-dev" data-state="unknown"' in html


def test_check_page_shows_history_and_chart(rt: Runtime, client: FlaskClient) -> None:
    for _ in range(3):
        rt.scheduler.run_now("tls-prod")
    html = client.get("/checks/tls-prod").get_data(as_text=True)
    assert html.count('<span class="badge s-ok">ok</span>') >= 3
    assert '<svg class="chart"' in html and "<polyline" in html


def test_unknown_check_is_404(client: FlaskClient) -> None:
    assert client.get("/checks/nope").status_code == 404
    for path in ("/api/v1/checks/nope", "/api/v1/checks/nope/results"):
        resp = client.get(path)
        assert (resp.status_code, resp.get_json()) == (404, {"error": "no check with id 'nope'"})
    resp = client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404 and "error" in resp.get_json()


def test_a_bad_results_limit_is_400_saying_what_is_allowed(client: FlaskClient) -> None:
    for bad in ("ten", "0"):
        resp = client.get(f"/api/v1/checks/tls-prod/results?limit={bad}")
        assert (resp.status_code, resp.get_json()) == (
            400, {"error": f"limit must be a whole number from 1 to 5000, not {bad!r}"})


def test_checks_api_lists_state_and_last_result(rt: Runtime, client: FlaskClient) -> None:
    rt.scheduler.run_now("tls-prod")
    body = client.get("/api/v1/checks").get_json()
    by_id = {c["id"]: c for c in body["checks"]}
    assert by_id["tls-prod"]["state"] == "ok"
    assert by_id["tls-prod"]["uptime_24h"] == 1.0
    last = by_id["tls-prod"]["last_result"]
    assert set(last) == {"check", "kind", "env", "status", "started_at", "duration_s",
                         "message", "metrics", "details", "steps"}
    assert (last["check"], last["status"], last["metrics"]) == ("tls-prod", "ok",
                                                                {"value": 1.0})
    assert by_id["http-dev"]["last_result"] is None


def test_results_api_filters_by_since(rt: Runtime, client: FlaskClient) -> None:
    rt.scheduler.run_now("tls-prod")
    assert len(client.get("/api/v1/checks/tls-prod/results?since=1h").get_json()
               ["results"]) == 1
    assert client.get("/api/v1/checks/tls-prod/results?since=2999-01-01T00:00:00Z"
                      ).get_json()["results"] == []


def test_results_api_rejects_a_bad_since(client: FlaskClient) -> None:
    resp = client.get("/api/v1/checks/tls-prod/results?since=yesterday")
    assert resp.status_code == 400
    assert resp.get_json()["error"] == ("since='yesterday' is neither an ISO 8601 time "
                                        "(2026-11-26T12:00:00Z) nor a look-back such as "
                                        "1h or 7d")


def test_run_now_needs_the_admin_token(client: FlaskClient) -> None:
    assert client.post("/api/v1/checks/tls-prod/run").status_code == 401
    resp = client.post("/api/v1/checks/tls-prod/run",
                       headers={"Authorization": "Bearer s3cret-token"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "ok"


def test_metrics_endpoint_exposes_check_metrics(rt: Runtime, client: FlaskClient) -> None:
    rt.scheduler.run_now("tls-prod")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'controlplane_check_up{check="tls-prod",env="production",kind="scripted"} 1.0' \
        in text


def test_readyz_needs_store_and_running_scheduler(rt: Runtime, client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json() == {"status": "unavailable", "store": True, "store_writes": True,
                               "scheduler": False, "outbox": True, "role": "stopped",
                               "problems": ["this instance is stopping (or lost leadership)"]}
    rt.scheduler.start()
    assert client.get("/readyz").status_code == 200


def seed_history(rt: Runtime) -> datetime:
    """Two errors three days ago, then ok, ok, degraded, failing in the last hour."""
    now = datetime.now(UTC)
    check = rt.config.check("tls-prod")
    runs = [(now - timedelta(days=3, minutes=1), Status.ERROR, 0.4),
            (now - timedelta(days=3), Status.ERROR, 0.4),
            (now - timedelta(minutes=40), Status.OK, 0.1),
            (now - timedelta(minutes=30), Status.OK, 0.2),
            (now - timedelta(minutes=20), Status.DEGRADED, 0.3),
            (now - timedelta(minutes=10), Status.FAILING, 0.4)]
    for started, status, duration in runs:
        rt.pipeline.process(Result(check="tls-prod", kind="scripted", env="production",
                                   status=status, started_at=started, duration_s=duration,
                                   message=f"run was {status.value}"), check)
    return now


def test_status_page_shows_uptime_over_24_hours_and_7_days_and_a_sparkline(
        rt: Runtime, client: FlaskClient) -> None:
    seed_history(rt)
    html = client.get("/").get_data(as_text=True)
    row = html.split('data-check="tls-prod"', 1)[1].split("</tr>", 1)[0]
    assert 'data-state="failing"' in row
    assert "<td>run was failing</td>" in row
    assert "<td>75.00%</td><td>50.00%</td>" in row
    # Latencies oldest first: 0.4 0.4 0.1 0.2 0.3 0.4 scaled into a 120x24 box.
    assert ('<svg class="spark" width="120" height="24" viewBox="0 0 120 24" role="img" '
            'aria-label="latency sparkline"><polyline fill="none" stroke="#0969da" '
            'stroke-width="1.5" points="0.0,2.0 24.0,2.0 48.0,22.0 72.0,15.3 96.0,8.7 '
            '120.0,2.0"/></svg>') in row
    never = html.split('data-check="http-dev"', 1)[1].split("</tr>", 1)[0]
    assert "<td>not run yet</td>" in never
    assert "<td>n/a</td><td>n/a</td>" in never
    assert '<svg class="spark" width="120" height="24"></svg>' in never


def test_check_page_shows_uptime_history_rows_and_latency_chart(
        rt: Runtime, client: FlaskClient) -> None:
    seed_history(rt)
    html = client.get("/checks/tls-prod").get_data(as_text=True)
    assert "<b>Uptime 24 h</b> 75.00% · <b>7 d</b> 50.00%" in html
    history_table = html.split('<table id="history">', 1)[1].split("</table>", 1)[0]
    badges = re.findall(r'<span class="badge s-(\w+)">', history_table)
    assert badges == ["failing", "degraded", "ok", "ok", "error", "error"]
    assert re.findall(r"<td>(\d\.\d{3})s</td>", history_table) == [
        "0.400", "0.300", "0.200", "0.100", "0.400", "0.400"]
    chart = html.split('<div class="card" id="latency-chart">', 1)[1].split("</svg>", 1)[0]
    assert 'aria-label="Latency (last 200 runs)"' in chart
    assert ">0.44s</text>" in chart  # y axis: 10 % above the slowest run
    (points,) = re.findall(r'<polyline [^>]*points="([^"]+)"', chart)
    assert len(points.split()) == 6


def test_checks_api_reports_both_uptime_windows(rt: Runtime, client: FlaskClient) -> None:
    seed_history(rt)
    body = client.get("/api/v1/checks/tls-prod").get_json()
    assert (body["state"], body["uptime_24h"], body["uptime_7d"]) == ("failing", 0.75, 0.5)
    assert body["last_result"]["message"] == "run was failing"

"""Dashboards and alert rules against a real Prometheus scraping a running control plane.

`controlplane demo --no-timeline` (sandbox + demo config) serves /metrics on loopback; Debian's
`prometheus` scrapes it every second with the alert rules loaded. After two scrapes, every
dashboard panel's expression (template variables filled as Grafana would with "All") and
every alert rule's expression go through Prometheus' HTTP API: each must parse, and each
panel and each metric selector of a rule must return series, so a misspelled metric name
fails. The JSON is checked for what Grafana needs to import it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from controlplane.sandbox.datatier import rabbitmq_unavailable, s3_unavailable
from controlplane.sandbox.kafka_broker import kafka_unavailable
from controlplane.sandbox.localdata import postgres_bindir
from tests.services.common import free_port, run_cli
from tests.services.sandbox import DemoProcess
from tests.ship.tools import ROOT, tool

DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
ALERT_FILES = sorted((ROOT / "dashboards" / "alerts").glob("*.yaml"))
GRAFANA_VARS = {"$__range": "1h", "$__rate_interval": "1m", "$__interval": "15s",
                "$env": ".*", "$check": ".*"}
SELECTOR = re.compile(r"\b((?:controlplane|process)_[a-z_]+|up)\b(\{[^}]*\})?")


class Prometheus:
    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in ALERT_FILES],
            "scrape_configs": [{"job_name": "controlplane",
                                "static_configs": [{"targets": [target]}]}],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=(directory / "prometheus.log").open("w"))

    def api(self, path: str, **params: str) -> Any:
        resp = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        doc = resp.json()
        assert doc["status"] == "success", (path, params, doc)
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] != "scalar" \
            else [data["result"]]
        return result

    def wait_for_scrapes(self, n: int, timeout: float = 120) -> None:
        """Until the control plane target has been scraped ``n`` times (polled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}")
            try:  # 503 until its storage is open, then ready
                ready = requests.get(f"{self.url}/-/ready", timeout=10).status_code == 200
            except requests.ConnectionError:
                ready = False
            rows = self.query('count_over_time(up{job="controlplane"}[10m])') if ready else []
            if rows and float(rows[0]["value"][1]) >= n and float(
                    self.query('up{job="controlplane"}')[0]["value"][1]) == 1:
                return
            time.sleep(0.2)
        raise AssertionError(f"fewer than {n} scrapes of the control plane in {timeout}s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def prometheus(shared_demo: DemoProcess, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Prometheus]:
    target = shared_demo.url.removeprefix("http://")
    _wait_for_demo_metrics(shared_demo.url)
    _one_failing_check(shared_demo)
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), target)
    try:
        prom.wait_for_scrapes(2)
        yield prom
    finally:
        prom.stop()


def _one_failing_check(demo: DemoProcess) -> None:
    """A fault, so the panels about failing checks have something to show."""
    r = run_cli("sandbox", "fault", "set", "appconfig_staging", env=demo.cli_env)
    assert r.returncode == 0, r.stderr
    resp = requests.post(f"{demo.url}/api/v1/checks/config-drift-production/run", timeout=90,
                         headers={"Authorization": f"Bearer {demo.admin_token}"})
    assert resp.status_code == 200 and resp.json()["status"] == "failing", resp.text


def _wait_for_demo_metrics(url: str, timeout: float = 240) -> None:
    """Until the demo has exported what the dashboards read: every kind it runs has a
    result, and DR has been primed (first runs are spread over the first seconds)."""
    want = ["controlplane_tls_not_after_seconds", "controlplane_check_duration_seconds_bucket",
            "controlplane_scheduler_start_delay_seconds_bucket", "controlplane_incidents_open",
            "controlplane_notifications_pending", 'phase="tls"']
    if postgres_bindir() is not None:
        want += ["controlplane_dr_rpo_seconds", "controlplane_dr_rto_seconds",
                 "controlplane_backup_size_bytes", 'kind="backup"']
    # the data-services dashboard: the demo's vendors always, its data services when installed
    ran = ["vendor-status-openai-demo", "vendor-api-openai-demo"]
    ran += ["postgres-halotasks-demo"] if postgres_bindir() is not None else []
    ran += ["rabbitmq-demo"] if rabbitmq_unavailable() is None else []
    ran += ["s3-transcripts-demo"] if s3_unavailable() is None else []
    want += [f'controlplane_check_up{{check="{check}"' for check in ran]
    if kafka_unavailable() is None:
        want += ["controlplane_kafka_consumergroup_lag{", "controlplane_kafka_consumergroup_status",
                 "controlplane_kafka_consumergroup_lag_seconds{",
                 "controlplane_kafka_under_replicated_partitions{", 'kind="kafka_canary"']
    deadline = time.monotonic() + timeout
    missing = want
    while time.monotonic() < deadline:
        text = "\n" + requests.get(f"{url}/metrics", timeout=30).text
        # a sample line, not only the family's # HELP line
        missing = [w for w in want if (w if "=" in w else f"\n{w.rstrip('{')}{{") not in text]
        if not missing:
            return
        time.sleep(0.5)
    raise AssertionError(f"the demo never exported {missing}")


def panel_targets() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression with Grafana's variables filled)."""
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
                    expr = expr.replace(var, value)
                out.append((path.name, panel["title"], expr))
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [r for p in ALERT_FILES for g in yaml.safe_load(p.read_text())["groups"]
            for r in g["rules"]]


def test_every_panel_expression_parses_and_returns_series(prometheus: Prometheus) -> None:
    targets = panel_targets()
    assert len(targets) >= 40
    empty = [(f, title, expr) for f, title, expr in targets if not prometheus.query(expr)]
    assert empty == []


def test_every_alert_expression_parses_and_its_metrics_return_series(
        prometheus: Prometheus) -> None:
    for rule in alert_rules():
        prometheus.query(rule["expr"])  # parses and evaluates (its result may be empty)
        for name, labels in SELECTOR.findall(rule["expr"]):
            selector = name + labels
            # the metric has series, and they carry every label the rule matches on (the
            # values a rule looks for, e.g. severity="minor", need not occur right now)
            rows = prometheus.query(name)
            assert rows, (rule["alert"], selector)
            for label in re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", labels):
                assert any(label in row["metric"] for row in rows), (rule["alert"], label)


def test_latency_by_phase_shows_every_phase_of_an_https_check(prometheus: Prometheus) -> None:
    (expr,) = [e for f, title, e in panel_targets() if title == "Latency by phase (latest run)"]
    rows = prometheus.query(expr)
    by_check: dict[str, set[str]] = {}
    for row in rows:
        assert set(row["metric"]) == {"check", "phase"}
        assert float(row["value"][1]) >= 0
        by_check.setdefault(row["metric"]["check"], set()).add(row["metric"]["phase"])
    full = {"dns", "connect", "tls", "first_byte", "transfer"}
    assert any(p == full for p in by_check.values()), by_check
    assert all(p <= full for p in by_check.values()), by_check


def test_prometheus_loaded_every_alert_rule(prometheus: Prometheus) -> None:
    groups = prometheus.api("rules")["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    assert loaded == {r["alert"] for r in alert_rules()}
    assert all(r["health"] != "err" for g in groups for r in g["rules"]
               if r.get("lastEvaluation", "").startswith("2"))


def test_a_misspelled_metric_returns_no_series(prometheus: Prometheus) -> None:
    """The check above can fail: a name the control plane does not export finds nothing."""
    assert prometheus.query('controlplane_check_upp{env=~".*"}') == []
    assert prometheus.query('controlplane_check_up{env=~".*"}') != []


def test_dashboards_have_what_grafana_needs_to_import_them() -> None:
    assert [p.name for p in DASHBOARDS] == ["checks.json", "controlplane.json",
                                            "data-services.json", "dr.json",
                                            "incidents.json", "kafka.json",
                                            "platform-overview.json"]
    uids = set()
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        assert doc["uid"] and doc["uid"] not in uids, path.name
        uids.add(doc["uid"])
        assert doc["title"] and doc["schemaVersion"] >= 36, path.name
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert "env" in variables, path.name
        if path.name != "controlplane.json":
            assert "check" in variables, path.name
        for var in variables.values():
            if var["type"] == "query":
                assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in doc["panels"]:
            where = f"{path.name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["targets"], where
            assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), where
            for target in panel["targets"]:
                assert target["expr"] and target["refId"], where
                # every $variable used is defined by the dashboard or Grafana itself
                for var in re.findall(r"\$(\w+)", target["expr"]):
                    assert var in variables or f"${var}" in GRAFANA_VARS, (where, var)

"""A kafka_lag check's page shows its groups, partitions and lag over time; a kafka_cluster
check's page its brokers, topics and findings: results in the shape the probes produce,
stored through the real pipeline and rendered from a real runtime and store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.results import Result, Status
from controlplane.web import create_app

CONFIG = """
environments: {production: {label: Production}}
store: {dsn: "sqlite:///%(db)s"}
check_files: []
checks:
  - {id: kafka-lag, kind: kafka_lag, bootstrap: "127.0.0.1:9", interval: 1h}
  - {id: kafka-cluster, kind: kafka_cluster, bootstrap: "127.0.0.1:9", interval: 1h}
"""
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


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


def lag_result(minute: int, lag: int) -> Result:
    rows = [{"group": "live-call-consumer", "topic": "calls", "partition": 0, "committed": 100,
             "end_offset": 100 + lag, "lag": lag, "lag_seconds": 42.5, "status": "STALL"},
            {"group": "live-call-consumer", "topic": "calls", "partition": 1, "committed": None,
             "end_offset": 7, "lag": None, "lag_seconds": None, "status": "OK"}]
    groups = {"live-call-consumer": {"state": "STABLE", "members": 1, "partitions": 2,
                                     "status": "STALL", "lag_sum": lag, "lag_max": lag,
                                     "lag_seconds_max": 42.5, "topics": {}}}
    return Result(check="kafka-lag", kind="kafka_lag", status=Status.FAILING,
                  started_at=T0 + timedelta(minutes=minute), message="group STALL",
                  metrics={"groups": 1.0, "partitions": 2.0, "total_lag": float(lag),
                           "max_lag": float(lag), "max_lag_seconds": 42.5},
                  details={"partitions": rows, "groups": groups, "topics": {}, "problems": []})


def test_kafka_lag_page_shows_groups_partitions_and_lag_over_time(
        rt: Runtime, client: FlaskClient) -> None:
    check = rt.config.check("kafka-lag")
    for minute, lag in ((0, 5), (1, 12), (2, 30)):
        rt.pipeline.process(lag_result(minute, lag), check)
    html = client.get("/checks/kafka-lag").get_data(as_text=True)
    assert '<div class="card" id="lag-chart"><svg class="chart"' in html
    assert "Total lag, messages (last 200 runs)" in html
    assert ('<tr data-group="live-call-consumer"><td>live-call-consumer</td><td>STALL</td>'
            "<td>STABLE</td>") in html
    assert "<td>1</td><td>2</td><td>30</td><td>30</td>\n      <td>42.5s</td></tr>" in html
    partitions = html.split('<table id="kafka-partitions">')[1].split("</table>")[0]
    assert partitions.count("<tr><td>live-call-consumer</td>") == 2
    assert ("<td>100</td><td>130</td>\n      <td>30</td>\n      <td>42.5s</td>\n"
            "      <td>STALL</td>") in partitions
    # no committed offset: shown as Kafka's own tool shows it
    assert "<td>-</td><td>7</td>\n      <td>-</td>" in partitions


def test_kafka_cluster_page_shows_brokers_topics_and_findings(
        rt: Runtime, client: FlaskClient) -> None:
    result = Result(
        check="kafka-cluster", kind="kafka_cluster", status=Status.DEGRADED, started_at=T0,
        message="1 broker, expected 3",
        details={"cluster": "platform", "cluster_id": "q1Sh-9_ISia", "brokers": [1],
                 "controller": 1, "total": 12, "under_replicated": [], "offline": [],
                 "findings": [{"status": "degraded", "code": "too_few_brokers",
                               "message": "1 broker, expected 3"}],
                 "topics": {"calls": {"exists": True, "partitions": 6,
                                      "replication_factor": 1},
                            "calls.dlq": {"exists": False}},
                 "dlq": {}})
    rt.pipeline.process(result, rt.config.check("kafka-cluster"))
    html = client.get("/checks/kafka-cluster").get_data(as_text=True)
    assert "<h2>Cluster platform</h2>" in html
    assert "<b>Brokers</b> 1 ·" in html and '<span class="mono">q1Sh-9_ISia</span>' in html
    assert ('<tr><td><span class="badge s-degraded">degraded</span></td>'
            '<td class="mono">too_few_brokers</td><td>1 broker, expected 3</td></tr>') in html
    assert ('<tr data-topic="calls"><td>calls</td><td>yes</td>\n      <td>6</td>\n'
            "      <td>1</td></tr>") in html
    assert '<tr data-topic="calls.dlq"><td>calls.dlq</td><td>no</td>' in html
    assert 'id="lag-chart"' not in html


def test_other_kinds_have_no_kafka_sections(rt: Runtime, client: FlaskClient) -> None:
    html = client.get("/checks/kafka-cluster").get_data(as_text=True)  # no result yet
    assert "kafka-findings" not in html and "kafka-partitions" not in html

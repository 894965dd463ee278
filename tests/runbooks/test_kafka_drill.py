"""The kafka-broker-drill runbook on a real 3-broker KRaft cluster: one broker stopped
after the approval, the run waits until no partition is under-replicated and the lag
check is ok, and that time is the `kafka` component's measured RTO on /dr."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.dr import tracker
from controlplane.runbooks import runs
from tests.runbooks.conftest import MakeSite, Site
from tests.services.kafka import KafkaCluster

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def test_kafka_broker_drill_measures_the_recovery(make_site: MakeSite,
                                                  kafka3: KafkaCluster) -> None:
    topic, group = f"drill.{uuid.uuid4().hex[:6]}", f"drill-{uuid.uuid4().hex[:6]}"
    kafka3.create_topic(topic, 3)
    kafka3.produce(topic, {0: 5, 1: 5, 2: 5})
    kafka3.commit(group, {(topic, p): 5 for p in range(3)})
    drill: dict[str, Any] = yaml.safe_load((ROOT / "runbooks" / "kafka-broker-drill.yaml")
                                           .read_text())
    checks = [{"id": "kc", "kind": "kafka_cluster", "bootstrap": kafka3.bootstrap,
               "expect_brokers": 3, "topics": [{"name": topic}], "timeout": "10s"},
              {"id": "kl", "kind": "kafka_lag", "bootstrap": kafka3.bootstrap,
               "groups": [group], "timeout": "10s"}]
    site = make_site([drill], checks=checks)
    run_id = site.start("kafka-broker-drill", {"cluster_check": "kc", "lag_checks": "kl"})
    run = site.wait(run_id, ("waiting_approval", "failed"), timeout=180)
    assert run["status"] == "waiting_approval", run
    assert run["steps"][0]["outputs"]["brokers"] == [1, 2, 3]
    assert run["steps"][2]["progress"]["question"].startswith(
        "Stop one broker now (brokers [1, 2, 3]: kubectl delete pod kafka-N")

    victim = kafka3.nodes[2]
    kafka3.stop_node(victim)
    runs.decide(site.runtime.store, run_id, True, "dr-lead", "cli", "broker 3 stopped")
    site.wait_step(run_id, "recover", "running")
    # The drill sees the loss before the broker comes back.
    deadline = time.monotonic() + 120
    while "under-replicated" not in str(_recover(site, run_id)["progress"].get("waiting_for")):
        assert time.monotonic() < deadline, site.run(run_id)
        time.sleep(0.2)
    kafka3.restart_node(victim)
    run = site.wait(run_id, timeout=300)
    assert run["status"] == "succeeded", run
    recover = run["steps"][3]
    assert recover["outputs"]["under_replicated_partitions"] == 0
    assert recover["message"].startswith("healthy after ")
    rt = site.runtime
    (kafka,) = [c for c in tracker.evaluate(rt.store, rt.config.dr) if c.component == "kafka"]
    assert kafka.rto_s == run["duration_s"]
    assert kafka.rto_status == "met"


def _recover(site: Site, run_id: int) -> dict[str, Any]:
    return next(s for s in site.run(run_id)["steps"] if s["step"] == "recover")

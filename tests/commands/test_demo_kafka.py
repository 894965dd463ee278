"""`controlplane demo` with its own Kafka broker: the three Kafka checks, and Ctrl-C."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from controlplane.sandbox.kafka_broker import kafka_unavailable
from tests.services.sandbox import DemoProcess

KAFKA_CHECKS = {"kafka-cluster-production": "kafka_cluster",
                "kafka-lag-production": "kafka_lag", "kafka-canary-production": "kafka_canary"}


def kafka_jvms() -> list[int]:
    """Live JVMs running the demo's broker (their config is under a cp-demo- workdir)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if "kafka.Kafka " in cmd and "/cp-demo-" in cmd and state != "Z":
            found.append(int(entry.name))
    return found


def kafka_rows(url: str) -> dict[str, dict[str, Any]]:
    rows = requests.get(f"{url}/api/v1/checks", timeout=30).json()["checks"]
    return {r["id"]: r for r in rows if r["id"] in KAFKA_CHECKS}


@pytest.mark.skipif(kafka_unavailable() is not None,
                    reason=f"needs java and the Kafka jars (scripts/setup.d/30-kafka.sh): "
                           f"{kafka_unavailable()}")
def test_demo_runs_a_broker_its_kafka_checks_reach_a_state_and_ctrl_c_kills_it(
        own_demo: DemoProcess) -> None:
    demo = own_demo
    line = demo.wait_line("demo: Kafka ", timeout=240)
    assert "one KRaft broker" in line
    mine = kafka_jvms()
    assert mine, "no broker JVM found while the demo runs"
    url = demo.url
    deadline = time.monotonic() + 240
    while True:  # every check runs once at start-up, then on its interval
        rows = kafka_rows(url)
        if len(rows) == 3 and all(r["last_result"] for r in rows.values()):
            break
        assert time.monotonic() < deadline, f"Kafka checks without a result: {rows}"
        time.sleep(1)
    assert {i: r["kind"] for i, r in rows.items()} == KAFKA_CHECKS
    assert {r["env"] for r in rows.values()} == {"production"}
    results = {i: r["last_result"] for i, r in rows.items()}
    # One broker is the platform's real P1: degraded, not failing.
    assert results["kafka-cluster-production"]["status"] == "degraded"
    assert "single broker, no replication" in results["kafka-cluster-production"]["message"]
    assert results["kafka-canary-production"]["status"] == "ok", results
    assert results["kafka-lag-production"]["status"] == "ok", results
    assert demo.stop() == 0
    deadline = time.monotonic() + 30
    while alive := [p for p in mine if p in kafka_jvms()]:
        assert time.monotonic() < deadline, f"Kafka JVM still running after Ctrl-C: {alive}"
        time.sleep(0.2)

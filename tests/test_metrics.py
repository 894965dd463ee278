"""Metrics (controlplane/metrics.py) beyond the pipeline's: the phases of a request, taken
from real http runs against loopback servers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controlplane.metrics import Metrics
from controlplane.probes.http import HttpCheckConfig, HttpProbe
from controlplane.results import Result, Status
from tests.services.httpserver import Pki, ScriptedServer


def run(url: str, **fields: Any) -> Result:
    config = HttpCheckConfig.model_validate({"id": "t-http", "url": url, "env": "production",
                                             **fields})
    p = HttpProbe(config)
    try:
        return p.execute()
    finally:
        p.close()


def phases(m: Metrics) -> dict[str, float]:
    (family,) = [f for f in m.registry.collect() if f.name == "controlplane_check_phase_seconds"]
    return {s.labels["phase"]: s.value for s in family.samples
            if s.labels["check"] == "t-http" and s.labels["kind"] == "http"
            and s.labels["env"] == "production"}


def test_an_https_run_exports_each_phase_as_its_result_timed_it(
        https_server: ScriptedServer, test_pki: Pki) -> None:
    r = run(https_server.route("/", 200, "secure"), ca_file=str(test_pki.ca_file))
    m = Metrics()
    m.observe_result(r)
    assert phases(m) == {"dns": r.metrics["dns_s"], "connect": r.metrics["connect_s"],
                         "tls": r.metrics["tls_s"], "first_byte": r.metrics["first_byte_s"],
                         "transfer": r.metrics["transfer_s"]}


def test_a_phase_the_latest_run_did_not_reach_is_removed(
        https_server: ScriptedServer, http_server: ScriptedServer, test_pki: Pki) -> None:
    m = Metrics()
    m.observe_result(run(https_server.route("/", 200, "secure"), ca_file=str(test_pki.ca_file)))
    assert "tls" in phases(m)
    plain = run(http_server.route("/", 200, "hello"))  # same check id, now plain HTTP
    m.observe_result(plain)
    assert sorted(phases(m)) == ["connect", "dns", "first_byte", "transfer"]
    assert phases(m)["first_byte"] == plain.metrics["first_byte_s"]


def test_a_result_without_phases_exports_none() -> None:
    m = Metrics()
    m.observe_result(Result(check="t-http", kind="http", env="production", status=Status.ERROR,
                            started_at=datetime.now(UTC), duration_s=0.0, message="crashed",
                            metrics={"connect_s": None}))
    assert phases(m) == {}

"""The DR tracker: met / at risk / breached / unknown, metrics and Results."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.backups import catalog
from controlplane.backups.config import DrConfig
from controlplane.dr.probes import DrProbe, dr_check
from controlplane.dr.tracker import ComponentStatus, evaluate, judge, rpo_series
from controlplane.metrics import Metrics
from controlplane.pipeline import Pipeline
from controlplane.probes.base import ProbeContext, Services
from controlplane.results import Status, utcnow
from controlplane.store import Store

DR = DrConfig.model_validate({"defaults": False, "components": {
    "postgres": {"rto": "1h", "rpo": "24h", "backup_component": "app"},
    "kafka": {"rto": "4h", "rpo": "1h"}}})


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store("sqlite://")
    yield s
    s.close()


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _backup(store: Store, bid: str, age_h: float, verified: bool = True,
            status: str = "complete", now: datetime | None = None) -> None:
    started = (now or utcnow()) - timedelta(hours=age_h)
    with store.session() as s:
        s.add(catalog.BackupRow(id=bid, component="app", env="production", status=status,
                                started_at=started, finished_at=started,
                                verified_at=started if verified else None))


def _drill(store: Store, duration: float, status: str = "passed", age_h: float = 0.5,
           now: datetime | None = None) -> None:
    with store.session() as s:
        s.add(catalog.DrillRow(component="app", backup_id="x", status=status,
                               started_at=(now or utcnow()) - timedelta(hours=age_h),
                               duration_s=duration, failed_step="" if status == "passed"
                               else "restore", message="" if status == "passed" else "boom"))


def _pg(store: Store) -> ComponentStatus:
    return {c.component: c for c in evaluate(store, DR, NOW)}["postgres"]


def test_judge_uses_twenty_percent_margin() -> None:
    assert [judge(v, 100, 0.8) for v in (None, 0, 80, 80.1, 100, 100.1)] == [
        "unknown", "met", "met", "at_risk", "at_risk", "breached"]


def test_component_without_measurements_is_unknown(store: Store) -> None:
    statuses = {c.component: c for c in evaluate(store, DR)}
    kafka = statuses["kafka"]
    assert (kafka.status, kafka.status_words, kafka.rto_s, kafka.rpo_s) == (
        "unknown", "Unknown", None, None)
    assert kafka.reasons == ["RPO never measured: no backup verified by a drill",
                             "RTO never measured: no drill passed"]


def test_met_at_risk_and_breached_from_catalog(store: Store) -> None:
    _backup(store, "b-new-unverified", 1, verified=False, now=NOW)
    _backup(store, "b-old-verified", 20, now=NOW)
    _drill(store, 600, now=NOW)
    pg = _pg(store)
    # RPO from the verified backup (20 h of 24 h > 80 %), the newer unproven one beside it.
    assert (pg.rpo_s, pg.rpo_complete_s, pg.rto_s) == (72000.0, 3600.0, 600.0)
    assert (pg.rpo_status, pg.rto_status, pg.status, pg.status_words) == (
        "at_risk", "met", "at_risk", "At risk")
    assert pg.reasons == ["RPO 20.0h vs target 24.0h"]
    _drill(store, 5000, age_h=0.1, now=NOW)
    pg = _pg(store)
    assert (pg.rto_status, pg.rto_s, pg.status) == ("breached", 5000, "breached")
    assert pg.reasons[-1] == "RTO 83m vs target 60m"


@pytest.mark.parametrize(("rpo_h", "rto_s", "want"), [
    (19.2, 2880, ("met", "met", "met")),            # exactly 80 % of both targets
    (19.2 + 1 / 3600, 2881, ("at_risk", "at_risk", "at_risk")),  # one second over 80 %
    (24, 3600, ("at_risk", "at_risk", "at_risk")),  # exactly on target
    (24 + 1 / 3600, 3601, ("breached", "breached", "breached")),  # one second over
    (1, 3601, ("met", "breached", "breached")),     # the worse of the two wins
])
def test_status_boundaries_at_eighty_percent_and_at_the_target(
        store: Store, rpo_h: float, rto_s: float, want: tuple[str, str, str]) -> None:
    _backup(store, "b1", rpo_h, now=NOW)
    _drill(store, rto_s, now=NOW)
    pg = _pg(store)
    assert (pg.rpo_s, pg.rto_s) == (round(rpo_h * 3600, 1), rto_s)
    assert (pg.rpo_status, pg.rto_status, pg.status) == want


def test_rpo_counts_from_the_newest_verified_backup_however_many_came_after(
        store: Store) -> None:
    """300 hourly backups no drill proved: the RPO is 301 h and breached, not unknown."""
    _backup(store, "b-verified", 301, now=NOW)
    for i in range(300):
        _backup(store, f"b-{i:03d}", 300 - i, verified=False, now=NOW)
    _drill(store, 600, now=NOW)
    pg = _pg(store)
    assert (pg.rpo_s, pg.rpo_complete_s) == (301 * 3600.0, 3600.0)
    assert (pg.rpo_status, pg.status) == ("breached", "breached")
    assert pg.last_backup is not None and pg.last_backup["id"] == "b-299"


def test_failed_latest_drill_breaches_rto(store: Store) -> None:
    _backup(store, "b1", 1)
    _drill(store, 100, age_h=2)
    _drill(store, 50, status="failed", age_h=0.1)
    pg = {c.component: c for c in evaluate(store, DR)}["postgres"]
    assert (pg.rto_status, pg.rto_s) == ("breached", 100)
    assert pg.reasons[0] == "latest drill failed at restore: boom"


def test_dr_probe_result_feeds_pipeline_metrics_and_incident(store: Store) -> None:
    _backup(store, "b1", 30)
    _drill(store, 100)
    metrics = Metrics()
    pipeline = Pipeline(store, metrics)
    transitions: list[object] = []
    pipeline.on_transition(transitions.append)
    check = dr_check("postgres")
    probe = DrProbe(check, ProbeContext(services=Services(store=store, dr=DR)))
    result = probe.execute()
    assert result.status == Status.FAILING
    assert result.message.startswith("postgres: Breached — RPO 30.0h (target 24.0h), RTO 100s "
                                     "(target 60m); RPO 30.0h vs target 24.0h")
    pipeline.process(result, check)
    assert len(transitions) == 1
    text = metrics.render().decode()
    assert 'controlplane_dr_rpo_target_seconds{component="postgres"} 86400.0' in text
    assert 'controlplane_dr_rto_seconds{component="postgres"} 100.0' in text
    assert 'controlplane_dr_rto_target_seconds{component="postgres"} 3600.0' in text
    assert 'controlplane_dr_rpo_seconds{component="postgres"}' in text


def test_platform_defaults_include_postgres_secrets_kafka_and_cluster_rebuild() -> None:
    targets = DrConfig().targets()
    assert sorted(targets) == ["cluster-rebuild", "kafka", "kubernetes-secrets", "postgres"]
    assert targets["cluster-rebuild"].rto == 4 * 3600


def test_rpo_series_rises_until_a_verified_backup_resets_it(store: Store) -> None:
    _backup(store, "b1", 48)
    series = rpo_series(store, "app", days=4, points=5)
    values = [None if v is None else round(v / 3600) for _, v in series]
    assert values == [None, None, 0, 24, 48]

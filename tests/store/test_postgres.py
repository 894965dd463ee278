"""The result store on a real PostgreSQL: history, uptime, retention, restarts, indexes.

The same behaviour the SQLite tests (tests/test_pipeline.py) prove, on the HA backend a
``postgresql://`` DSN selects, through the real pipeline and runtime.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.evaluator import State, Transition
from controlplane.metrics import Metrics
from controlplane.pipeline import Pipeline
from controlplane.probes.base import CheckConfig
from controlplane.results import Result, Status, Step
from controlplane.store import Store
from controlplane.store.results import (
    CheckStateRow,
    HourlyAggregate,
    ResultRow,
    history,
    prune,
    uptime,
)
from tests import fakeprobes
from tests.services.postgres import PgServer

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("scripted_kind")]

CHECK = CheckConfig(id="tls-x", kind="scripted", env="production", failure_threshold=2)
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def dsn(pg_server: PgServer) -> str:
    return pg_server.createdb(f"store_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def pipeline(dsn: str) -> Iterator[Pipeline]:
    p = Pipeline(Store(dsn), Metrics())
    yield p
    p.store.close()


def result(status: Status, minutes: float = 0, duration: float = 0.25,
           start: datetime = T0) -> Result:
    return Result(check="tls-x", kind="scripted", env="production", status=status,
                  started_at=start + timedelta(minutes=minutes), duration_s=duration,
                  message=f"{status.value} run", metrics={"earliest_not_after": 1767225600,
                                                          "days_left": 35.2},
                  details={"sans": ["a.test", "b.test"], "issuer": "CN=R3, O=Let's Encrypt"},
                  steps=[Step(name="connect", status=status, duration_s=0.01, message="x")])


def test_store_opens_on_postgres_and_creates_its_tables(pipeline: Pipeline) -> None:
    assert pipeline.store.engine.dialect.name == "postgresql"
    assert pipeline.store.ping() is True
    tables = set(inspect(pipeline.store.engine).get_table_names())
    assert {"results", "results_hourly", "check_state"} <= tables


def test_results_are_indexed_by_check_and_time(pipeline: Pipeline) -> None:
    indexes = {ix["name"]: ix["column_names"]
               for ix in inspect(pipeline.store.engine).get_indexes("results")}
    assert indexes["ix_results_check_started"] == ["check_id", "started_at"]


def test_result_round_trips_through_postgres_unchanged(pipeline: Pipeline) -> None:
    pipeline.process(result(Status.DEGRADED), CHECK)
    with pipeline.store.session() as s:
        (r,) = history(s, "tls-x")
    assert r.to_json_dict() == result(Status.DEGRADED).to_json_dict()
    assert r.to_json_dict()["started_at"] == "2026-11-26T12:00:00Z"


def test_history_is_newest_first_and_filtered_by_since(pipeline: Pipeline) -> None:
    for i in range(5):
        pipeline.process(result(Status.OK, minutes=i), CHECK)
    with pipeline.store.session() as s:
        newest_first = [r.started_at for r in history(s, "tls-x")]
        recent = history(s, "tls-x", since=T0 + timedelta(minutes=3))
        two = history(s, "tls-x", limit=2)
        other = history(s, "other")
    assert newest_first == [T0 + timedelta(minutes=i) for i in (4, 3, 2, 1, 0)]
    assert [r.started_at for r in recent] == [T0 + timedelta(minutes=4),
                                              T0 + timedelta(minutes=3)]
    assert len(two) == 2 and other == []


def test_hourly_aggregates_give_uptime_over_24_hours_and_7_days(pipeline: Pipeline) -> None:
    now = T0 + timedelta(hours=1)
    for i, st in enumerate([Status.OK, Status.OK, Status.DEGRADED, Status.FAILING]):
        pipeline.process(result(st, minutes=i, duration=0.5), CHECK)
    for i in range(4):  # three days earlier: four errors
        pipeline.process(result(Status.ERROR, minutes=i, start=T0 - timedelta(days=3)), CHECK)
    with pipeline.store.session() as s:
        assert uptime(s, "tls-x", timedelta(hours=24), now=now) == 0.75
        assert uptime(s, "tls-x", timedelta(days=7), now=now) == 0.375
        assert uptime(s, "never-ran", timedelta(days=7), now=now) is None
        agg = s.get(HourlyAggregate, ("tls-x", T0))
        assert agg is not None
        assert (agg.runs, agg.ok, agg.degraded, agg.failing, agg.error) == (4, 2, 1, 1, 0)
        assert (agg.duration_sum, agg.duration_max) == (2.0, 0.5)


def test_retention_prunes_raw_rows_before_aggregates(pipeline: Pipeline) -> None:
    pipeline.process(result(Status.OK), CHECK)
    pipeline.process(result(Status.OK, minutes=60 * 24 * 3), CHECK)
    now = T0 + timedelta(days=4)
    with pipeline.store.session() as s:
        assert prune(s, raw_retention_s=2 * 86400, aggregate_retention_s=30 * 86400,
                     now=now) == (1, 0)
    with pipeline.store.session() as s:
        assert s.query(ResultRow).count() == 1
        assert s.query(HourlyAggregate).count() == 2
    with pipeline.store.session() as s:
        assert prune(s, 2 * 86400, 3.5 * 86400, now=now) == (0, 1)
        assert s.query(HourlyAggregate).count() == 1


CONFIG = """
environments: {production: {label: Production}}
store: {dsn: "%(dsn)s", raw_retention: 14d, aggregate_retention: 30d}
check_files: []
checks:
  - {id: tls-x, kind: scripted, env: production, failure_threshold: 2}
"""


def runtime(tmp_path: Path, dsn: str) -> Runtime:
    path = tmp_path / "controlplane.yaml"
    path.write_text(CONFIG % {"dsn": dsn})
    return build_runtime(load_config(str(path)))


def test_runtime_retention_job_uses_the_configured_periods(tmp_path: Path, dsn: str) -> None:
    rt = runtime(tmp_path, dsn)
    now = datetime.now(UTC)
    try:
        for age_days in (40, 20, 0):  # past both retentions, past raw only, fresh
            rt.pipeline.process(result(Status.OK, start=now - timedelta(days=age_days)),
                                rt.config.checks[0])
        rt.prune()
        with rt.store.session() as s:
            kept = [r.started_at for r in history(s, "tls-x")]
            hours = s.query(HourlyAggregate).count()
    finally:
        rt.stop(0)
    assert kept == [now]
    assert hours == 2


def test_state_survives_a_restart_on_postgres(tmp_path: Path, dsn: str) -> None:
    fakeprobes.SCRIPTS["tls-x"] = deque([Status.OK, Status.FAILING, Status.FAILING])
    first = runtime(tmp_path, dsn)
    try:
        assert first.scheduler.run_now("tls-x").status == Status.OK
        assert first.scheduler.run_now("tls-x").status == Status.FAILING
    finally:
        first.stop(0)

    second = runtime(tmp_path, dsn)
    seen: list[Transition] = []
    second.pipeline.on_transition(seen.append)
    try:
        # One more failing run reaches failure_threshold=2 only if the streak was kept.
        assert second.scheduler.run_now("tls-x").status == Status.FAILING
        with second.store.session() as s:
            row = s.get(CheckStateRow, "tls-x")
            assert row is not None
            assert (row.state, row.fail_streak, row.last_status, row.last_message) == (
                "failing", 2, "failing", "scripted failing")
            assert len(history(s, "tls-x")) == 3
    finally:
        second.stop(0)
    assert [(t.old, t.new) for t in seen] == [(State.OK, State.FAILING)]


def test_results_still_reach_metrics_while_postgres_is_down(tmp_path: Path,
                                                            own_pg_server: PgServer) -> None:
    fakeprobes.SCRIPTS["tls-x"] = deque([Status.OK, Status.FAILING])
    rt = runtime(tmp_path, own_pg_server.dsn())
    labels = {"check": "tls-x", "kind": "scripted", "env": "production"}
    try:
        rt.scheduler.run_now("tls-x")
        own_pg_server.stop()
        assert rt.scheduler.run_now("tls-x").status == Status.FAILING
        sample = rt.metrics.registry.get_sample_value
        assert sample("controlplane_check_up", labels) == 0
        assert sample("controlplane_check_runs_total", {"check": "tls-x",
                                                        "status": "failing"}) == 1
        own_pg_server.start()
        with rt.store.session() as s:  # the outage's run was not stored; the first was
            assert [r.status for r in history(s, "tls-x")] == [Status.OK]
    finally:
        rt.stop(0)

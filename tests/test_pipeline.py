"""The pipeline: each result is stored, exported as metrics, traced and evaluated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from controlplane.evaluator import State, Transition
from controlplane.metrics import Metrics
from controlplane.pipeline import Pipeline
from controlplane.probes.base import CheckConfig
from controlplane.results import Result, Status
from controlplane.store import Store
from controlplane.store.results import (
    CheckStateRow,
    HourlyAggregate,
    ResultRow,
    history,
    prune,
    uptime,
)

pytestmark = pytest.mark.usefixtures("scripted_kind")

CHECK = CheckConfig(id="tls-x", kind="scripted", env="production", failure_threshold=2)
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def pipeline(spans: InMemorySpanExporter) -> Pipeline:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return Pipeline(Store("sqlite://"), Metrics(), provider.get_tracer("t"))


def result(status: Status, minutes: int = 0, duration: float = 0.25) -> Result:
    return Result(check="tls-x", kind="scripted", env="production", status=status,
                  started_at=T0 + timedelta(minutes=minutes), duration_s=duration,
                  message=f"{status.value} run", metrics={"earliest_not_after": 1767225600})


def sample(p: Pipeline, name: str, **labels: str) -> float | None:
    value = p.metrics.registry.get_sample_value(name, labels)
    return value


def test_result_is_stored_and_readable_as_history(pipeline: Pipeline) -> None:
    pipeline.process(result(Status.OK), CHECK)
    with pipeline.store.session() as s:
        (r,) = history(s, "tls-x")
    assert r.to_json_dict() == result(Status.OK).to_json_dict()


def test_metrics_follow_the_design_names(pipeline: Pipeline) -> None:
    pipeline.process(result(Status.FAILING, duration=0.5), CHECK)
    labels = {"check": "tls-x", "kind": "scripted", "env": "production"}
    assert sample(pipeline, "controlplane_check_up", **labels) == 0
    assert sample(pipeline, "controlplane_check_status", status="failing", **labels) == 1
    assert sample(pipeline, "controlplane_check_status", status="ok", **labels) == 0
    assert sample(pipeline, "controlplane_check_runs_total", check="tls-x",
                  status="failing") == 1
    assert sample(pipeline, "controlplane_check_duration_seconds_sum", check="tls-x",
                  kind="scripted") == 0.5


def test_one_span_per_run_with_check_attributes(pipeline: Pipeline,
                                                spans: InMemorySpanExporter) -> None:
    pipeline.process(result(Status.DEGRADED, duration=0.125), CHECK)
    (span,) = spans.get_finished_spans()
    assert span.name == "check tls-x"
    assert dict(span.attributes or {}) == {"check": "tls-x", "kind": "scripted",
                                           "env": "production", "status": "degraded"}
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == 125_000_000


def test_transition_reaches_listeners_once(pipeline: Pipeline) -> None:
    seen: list[Transition] = []
    pipeline.on_transition(seen.append)
    for i, st in enumerate([Status.OK, Status.FAILING, Status.FAILING, Status.FAILING]):
        pipeline.process(result(st, minutes=i), CHECK)
    assert [(t.old, t.new) for t in seen] == [(State.UNKNOWN, State.OK),
                                              (State.OK, State.FAILING)]
    assert seen[1].since == T0 + timedelta(minutes=2)


def test_state_survives_a_new_pipeline_on_the_same_store(pipeline: Pipeline) -> None:
    pipeline.process(result(Status.OK), CHECK)
    pipeline.process(result(Status.FAILING, 1), CHECK)
    again = Pipeline(pipeline.store)
    seen: list[Transition] = []
    again.on_transition(seen.append)
    again.process(result(Status.FAILING, 2), CHECK)
    assert [(t.old, t.new) for t in seen] == [(State.OK, State.FAILING)]
    with again.store.session() as s:
        assert s.get(CheckStateRow, "tls-x").state == "failing"  # type: ignore[union-attr]


def test_failing_listener_does_not_stop_the_pipeline(pipeline: Pipeline) -> None:
    def broken(_: Transition) -> None:
        raise RuntimeError("listener bug")

    pipeline.on_transition(broken)
    assert pipeline.process(result(Status.OK), CHECK) is not None


def test_hourly_aggregates_give_uptime(pipeline: Pipeline) -> None:
    for i, st in enumerate([Status.OK, Status.OK, Status.DEGRADED, Status.FAILING]):
        pipeline.process(result(st, minutes=i), CHECK)
    with pipeline.store.session() as s:
        assert uptime(s, "tls-x", timedelta(hours=24), now=T0 + timedelta(hours=1)) == 0.75
        agg = s.get(HourlyAggregate, ("tls-x", T0))
        assert agg is not None and (agg.runs, agg.ok, agg.degraded, agg.failing) == (4, 2, 1, 1)


def test_uptime_covers_exactly_the_window_not_whole_hours(pipeline: Pipeline) -> None:
    now = T0 + timedelta(minutes=30)  # the 24 h window starts at 12:30 the day before
    pipeline.process(result(Status.FAILING, minutes=-(23 * 60 + 45)), CHECK)  # 12:15: outside
    pipeline.process(result(Status.OK, minutes=-(23 * 60 + 15)), CHECK)  # 12:45: inside
    pipeline.process(result(Status.DEGRADED, minutes=10), CHECK)
    with pipeline.store.session() as s:
        assert uptime(s, "tls-x", timedelta(hours=24), now=now) == 1.0
        assert uptime(s, "tls-x", timedelta(hours=24, minutes=20), now=now) == 2 / 3


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

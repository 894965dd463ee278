"""The result pipeline: store -> metrics -> state evaluation -> trace span -> listeners.

Every producer of Results (probes, backup jobs, DR evaluation) feeds :meth:`Pipeline.process`,
so a backup failure travels the same road to incidents as a failing TLS check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

from opentelemetry import trace
from sqlalchemy.exc import SQLAlchemyError

from controlplane.evaluator import Counters, State, Transition, evaluate
from controlplane.metrics import Metrics
from controlplane.probes import KINDS, probe_class
from controlplane.probes.base import CheckConfig
from controlplane.readiness import WriteHealth
from controlplane.results import Result
from controlplane.store import Store
from controlplane.store.results import add_results, load_state, save_state

log = logging.getLogger(__name__)

WRITE_RETRY_PAUSES_S = (0.2, 1.0)
"""Pauses between the attempts to store one result: a locked or briefly unreachable
database gets three tries within ~1.2 s; a full disk fails all three and is reported."""

Listener = Callable[[Transition], None]
ResultListener = Callable[[Result, CheckConfig], None]


class Pipeline:
    def __init__(self, store: Store, metrics: Metrics | None = None,
                 tracer: trace.Tracer | None = None) -> None:
        self.store = store
        self.metrics = metrics or Metrics()
        self.tracer = tracer or trace.get_tracer("controlplane")
        self._transition_listeners: list[Listener] = []
        self._result_listeners: list[ResultListener] = []
        self._lock = threading.Lock()
        self.write_health = WriteHealth()

    def on_transition(self, listener: Listener) -> None:
        """Call ``listener`` for every state change (incidents subscribe here)."""
        self._transition_listeners.append(listener)

    def on_result(self, listener: ResultListener) -> None:
        """Call ``listener`` for every stored result, transition or not."""
        self._result_listeners.append(listener)

    def process(self, result: Result, check: CheckConfig) -> Transition | None:
        self.metrics.check_info.labels(check.id, check.kind, check.env, check.severity).set(1)
        try:
            stored, transition = self._store_with_retries(result, check)
        finally:
            # Metrics and the span need no store: a store outage must not freeze them.
            self._export(result)
            self._span(result)
        if not stored:
            return None
        for rl in self._result_listeners:
            _safely(rl, result, check)
        if transition is not None:
            log.info("state change check=%s env=%s old=%s new=%s message=%r", check.id,
                     check.env, transition.old.value, transition.new.value, result.message)
            for tl in self._transition_listeners:
                _safely(tl, transition)
        return transition

    def _store_with_retries(self, result: Result,
                            check: CheckConfig) -> tuple[bool, Transition | None]:
        """Store the result (and its state change); a failed write is retried, then counted
        and reported: (stored, transition). Never raises for a store error, so the caller
        (a scheduler thread) goes on, and /readyz says what happened."""
        for attempt, pause in enumerate((*WRITE_RETRY_PAUSES_S, None), start=1):
            try:
                transition = self._store_and_evaluate(result, check)
            except SQLAlchemyError as exc:
                self.metrics.store_errors.inc()  # alerted on: the store is failing
                reason = _reason(exc)
                self.write_health.failed(reason)
                if pause is None:
                    self.metrics.results_unstored.labels(check.id).inc()
                    log.error("result not stored check=%s status=%s attempts=%d error=%r",
                              check.id, result.status.value, attempt, reason)
                    return False, None
                log.warning("store write failed, retrying check=%s attempt=%d error=%r",
                            check.id, attempt, reason)
                time.sleep(pause)
            else:
                self.write_health.succeeded()
                return True, transition
        raise AssertionError("unreachable")

    def _store_and_evaluate(self, result: Result, check: CheckConfig) -> Transition | None:
        # The per-process lock keeps read-modify-write of one state row atomic on SQLite;
        # the scheduler never runs one check twice at once, so contention is low.
        with self._lock, self.store.session() as s:
            add_results(s, [result])
            conn = s.connection()
            row = load_state(conn, check.id)
            counters = Counters() if row is None else Counters(
                State(row.state), row.ok_streak, row.degraded_streak, row.bad_streak,
                row.fail_streak, row.since)
            transition = evaluate(counters, check, result)
            save_state(conn, check.id, {
                "state": counters.state.value, "ok_streak": counters.ok_streak,
                "degraded_streak": counters.degraded_streak, "bad_streak": counters.bad_streak,
                "fail_streak": counters.fail_streak, "since": counters.since,
                "last_status": result.status.value, "last_message": result.message,
                "last_run_at": result.started_at}, exists=row is not None)
            return transition

    def _export(self, result: Result) -> None:
        self.metrics.observe_result(result)
        if result.kind in KINDS:
            probe_class(result.kind).export_metrics(result, self.metrics)

    def _span(self, result: Result) -> None:
        start_ns = int(result.started_at.astimezone(UTC).timestamp() * 1e9)
        span = self.tracer.start_span(f"check {result.check}", start_time=start_ns, attributes={
            "check": result.check, "kind": result.kind, "env": result.env,
            "status": result.status.value})
        span.end(end_time=start_ns + int(result.duration_s * 1e9))


def _reason(exc: SQLAlchemyError) -> str:
    """The database's own first line ("database or disk is full"), without the SQL."""
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]


def _safely(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("pipeline listener failed listener=%s", getattr(fn, "__qualname__", fn))

"""Every Prometheus metric the control plane exports, defined once (DESIGN.md §4).

One :class:`Metrics` per process (tests make their own), each with its own registry so
parallel instances never collide.
"""

from __future__ import annotations

import contextlib

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from controlplane.results import Result, Status

P = "controlplane_"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
PHASES = {"dns_s": "dns", "connect_s": "connect", "tls_s": "tls", "handshake_s": "tls",
          "first_byte_s": "first_byte", "transfer_s": "transfer"}
"""Result metrics that time one phase of a request -> the ``phase`` label they export as
(``http`` reports every phase, ``tls`` its connect and handshake)."""


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        # process_* (memory, CPU, start time) for the control plane's own dashboard
        ProcessCollector(registry=r)
        # The check's configured severity, joined onto check_* by alert rules (info pattern).
        self.check_info = Gauge(P + "check_info", "Configured checks (value 1) with their "
                                "severity", ["check", "kind", "env", "severity"], registry=r)
        self.store_errors = Counter(P + "store_errors",
                                    "Failed store writes of results (each attempt)", registry=r)
        # checks
        self.check_up = Gauge(P + "check_up", "1 if the latest run was ok or degraded",
                              ["check", "kind", "env"], registry=r)
        self.check_status = Gauge(P + "check_status", "Latest run status, one-hot",
                                  ["check", "kind", "env", "status"], registry=r)
        self.check_duration = Histogram(P + "check_duration_seconds", "Run duration",
                                        ["check", "kind"], buckets=DURATION_BUCKETS, registry=r)
        self.check_phase = Gauge(P + "check_phase_seconds",
                                 "Seconds the latest run spent in each phase of its request "
                                 "(dns, connect, tls, first_byte, transfer)",
                                 ["check", "kind", "env", "phase"], registry=r)
        self.check_runs = Counter(P + "check_runs", "Runs by outcome", ["check", "status"],
                                  registry=r)
        self.scheduler_start_delay = Histogram(
            P + "scheduler_start_delay_seconds", "How late scheduled runs start",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.tls_not_after = Gauge(P + "tls_not_after_seconds",
                                   "Earliest not_after of the certificates presented (unix time)",
                                   ["check"], registry=r)
        # kafka
        self.kafka_lag = Gauge(P + "kafka_consumergroup_lag", "Consumer lag in messages",
                               ["group", "topic", "partition"], registry=r)
        self.kafka_lag_seconds = Gauge(P + "kafka_consumergroup_lag_seconds",
                                       "Estimated consumer lag in seconds",
                                       ["group", "topic", "partition"], registry=r)
        self.kafka_group_status = Gauge(
            P + "kafka_consumergroup_status",
            "Group status: 0 OK, 1 WARN, 2 STALL, 3 STOP, 4 REWIND, 5 ERROR", ["group"],
            registry=r)
        self.kafka_urp = Gauge(P + "kafka_under_replicated_partitions",
                               "Partitions whose ISR is smaller than their replica set",
                               ["cluster"], registry=r)
        # backups and DR
        self.backup_last_success = Gauge(P + "backup_last_success_timestamp_seconds",
                                         "Completion time of the newest complete backup",
                                         ["component"], registry=r)
        self.backup_duration = Gauge(P + "backup_duration_seconds", "Duration of the last backup",
                                     ["component"], registry=r)
        self.backup_size = Gauge(P + "backup_size_bytes", "Size of the last backup",
                                 ["component"], registry=r)
        self.dr_rpo = Gauge(P + "dr_rpo_seconds", "Current RPO (age of newest verified backup)",
                            ["component"], registry=r)
        self.dr_rpo_target = Gauge(P + "dr_rpo_target_seconds", "RPO target", ["component"],
                                   registry=r)
        self.dr_rto = Gauge(P + "dr_rto_seconds", "Measured RTO (latest drill duration)",
                            ["component"], registry=r)
        self.dr_rto_target = Gauge(P + "dr_rto_target_seconds", "RTO target", ["component"],
                                   registry=r)
        # incidents and notifications
        self.incidents_open = Gauge(P + "incidents_open", "Open incidents", ["severity"],
                                    registry=r)
        self.notifications_pending = Gauge(P + "notifications_pending",
                                           "Notifications stored but not yet delivered",
                                           ["channel"], registry=r)
        self.notifications_failed = Counter(P + "notifications_failed",
                                            "Notifications given up after a permanent error",
                                            ["channel"], registry=r)

        # the store
        self.results_unstored = Counter(P + "results_unstored",
                                        "Results given up on after the store write retries",
                                        ["check"], registry=r)

    def observe_result(self, r: Result) -> None:
        self.check_up.labels(r.check, r.kind, r.env).set(
            1 if r.status in (Status.OK, Status.DEGRADED) else 0)
        for s in Status:
            self.check_status.labels(r.check, r.kind, r.env, s.value).set(
                1 if s == r.status else 0)
        self.check_duration.labels(r.check, r.kind).observe(r.duration_s)
        self.check_runs.labels(r.check, r.status.value).inc()
        self._observe_phases(r)

    def _observe_phases(self, r: Result) -> None:
        """The latest run's phases; a phase it did not reach (a refused connection has no
        TLS) is removed rather than left at an older run's value."""
        seen: dict[str, float] = {}
        for key, phase in PHASES.items():
            value = r.metrics.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                seen[phase] = float(value)
        for phase in set(PHASES.values()):
            if phase in seen:
                self.check_phase.labels(r.check, r.kind, r.env, phase).set(seen[phase])
            else:
                with contextlib.suppress(KeyError):  # never set for this check
                    self.check_phase.remove(r.check, r.kind, r.env, phase)

    def render(self) -> bytes:
        return generate_latest(self.registry)

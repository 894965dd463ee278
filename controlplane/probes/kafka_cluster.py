"""kafka_cluster: is the cluster whole? Brokers, controller, replication, DLQ growth.

Findings, each with the status it gives the check:

* fewer brokers online than expected, no active controller, offline partitions (no
  leader), under-replicated partitions (ISR smaller than the replica set), a policy topic
  that does not exist, DLQ growth over ``dlq_growth_crit``: failing;
* a single broker ("single broker, no replication"), a topic whose replication factor or
  ``min.insync.replicas`` is below the policy, any new DLQ message since the last run:
  degraded — a risk to fix, not an outage.

In KRaft mode clients cannot reach the quorum controllers, so the "controller" in the
metadata is a live broker chosen by the cluster; "no active controller" means
the cluster could not name one at all.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from controlplane.durations import parse_duration
from controlplane.kafka.child import ProbeInChild
from controlplane.kafka.client import (
    PLATFORM_DLQS,
    PLATFORM_TOPICS,
    Deadline,
    ErrorTrap,
    KafkaCheckConfig,
    KafkaUnavailable,
    client_config,
    describe,
    request_deadline,
    tls_arguments,
    tls_values,
    unreachable_message,
)
from controlplane.lazyimport import lazy_module
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.results import Result, Status, Step

if TYPE_CHECKING:
    import confluent_kafka as ck
    import confluent_kafka.admin as ck_admin
else:  # the Kafka client loads when a probe runs, not when a config validates
    ck = lazy_module("confluent_kafka")
    ck_admin = lazy_module("confluent_kafka.admin")

if TYPE_CHECKING:  # prometheus_client loads with the metrics, not with the config
    from controlplane.metrics import Metrics

log = logging.getLogger(__name__)


class TopicPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    min_replication_factor: int = Field(default=3, ge=1)
    min_insync_replicas: int = Field(default=2, ge=1)
    dlq: bool = False


def platform_policy() -> list[TopicPolicy]:
    return ([TopicPolicy(name=t) for t in PLATFORM_TOPICS]
            + [TopicPolicy(name=t, dlq=True) for t in PLATFORM_DLQS])


class KafkaClusterConfig(KafkaCheckConfig):
    kind: str = "kafka_cluster"
    cluster: str = Field(default="", description="label of the kafka_* metrics; default: id")
    expect_brokers: int | None = Field(default=None, ge=1)
    topics: list[TopicPolicy] = Field(default_factory=platform_policy)
    dlq_growth_crit: int = Field(default=100, ge=0,
                                 description="new DLQ messages in one interval that fail")
    single_broker_status: Literal["degraded", "failing"] = "degraded"


@dataclass
class Finding:
    status: Status
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status.value, "code": self.code, "message": self.message}


class KafkaClusterProbe(Probe[KafkaClusterConfig]):
    kind: ClassVar[str] = "kafka_cluster"
    config_model: ClassVar[type[CheckConfig]] = KafkaClusterConfig
    cli_name: ClassVar[str | None] = "kafka-cluster"

    def __init__(self, config: KafkaClusterConfig, context: Any = None) -> None:
        super().__init__(config, context)
        self._admin: ck_admin.AdminClient | None = None
        self.trap = ErrorTrap()
        self.seen_brokers: dict[int, str] = {}
        self.dlq_offsets: dict[str, int] = {}
        self.child = (ProbeInChild(config, "inspecting the cluster at")
                      if config.isolate_client else None)

    def admin(self) -> ck_admin.AdminClient:
        if self._admin is None:
            try:
                self._admin = ck_admin.AdminClient(client_config(self.config, self.config.timeout,
                                                        self.trap))
            except ck.KafkaException as exc:
                raise ProbeError(f"invalid Kafka client settings: {describe(exc)}") from exc
        return self._admin

    def _client_error(self, admin: ck_admin.AdminClient) -> str | None:
        admin.poll(0)
        return self.trap.take()

    def get_state(self) -> dict[str, Any]:
        """What a run leaves for the next (kept by the parent when the probe runs in a
        child process, see kafka/child.py)."""
        return {"seen_brokers": dict(self.seen_brokers), "dlq_offsets": dict(self.dlq_offsets)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.seen_brokers = dict(state["seen_brokers"])
        self.dlq_offsets = dict(state["dlq_offsets"])

    def close(self) -> None:
        self._admin = None
        if self.child is not None:
            self.child.close()

    def check(self) -> Outcome:
        outcome = self.child.check() if self.child is not None else self._inspect()
        # Every result names its cluster, so a failed read can clear the cluster's series.
        outcome.details.setdefault("cluster", self.config.cluster or self.config.id)
        return outcome

    def _inspect(self) -> Outcome:
        cfg = self.config
        deadline = request_deadline(cfg.timeout)
        admin = self.admin()
        admin.poll(0)
        self.trap.take()  # errors from before this run are not this run's answer
        findings: list[Finding] = []
        t0 = time.monotonic()
        try:
            # Metadata, not DescribeCluster: librdkafka sends DescribeCluster to the broker
            # it last knew as controller and waits for it, even when that broker is the one
            # that just died; Metadata goes to any broker that answers.
            try:
                md = admin.list_topics(timeout=deadline.left())
            except ck.KafkaException as exc:
                raise KafkaUnavailable(f"reading metadata: {describe(exc)}") from exc
            findings += self._brokers(md)
            partitions = _partition_findings(md, findings)
            policy_details = self._policy(admin, md, deadline, findings)
            dlq = self._dlq_growth(admin, md, deadline, findings)
        except KafkaUnavailable as exc:
            return Outcome(Status.FAILING, unreachable_message(
                cfg.bootstrap, str(exc), self._client_error(admin)))
        finally:
            admin.poll(0)
        step = Step(name="inspect cluster", status=Status.OK,
                    duration_s=round(time.monotonic() - t0, 6))
        status = max((f.status for f in findings), key=lambda s: s.rank, default=Status.OK)
        brokers = sorted(md.brokers)
        metrics: dict[str, float | None] = {
            "brokers": float(len(brokers)),
            "expected_brokers": float(cfg.expect_brokers) if cfg.expect_brokers else None,
            "topics": float(len(md.topics)), "partitions": float(partitions["total"]),
            "under_replicated_partitions": float(len(partitions["under_replicated"])),
            "offline_partitions": float(len(partitions["offline"])),
            "dlq_new_messages": float(sum(d["new"] or 0 for d in dlq.values())),
        }
        controller = md.controller_id if md.controller_id >= 0 else None
        message = "; ".join(f.message for f in findings) if findings else (
            f"{len(brokers)} brokers, {len(md.topics)} topics, {partitions['total']} "
            "partitions, none under-replicated or offline")
        details = {"cluster": cfg.cluster or cfg.id, "cluster_id": md.cluster_id,
                   "brokers": brokers, "controller": controller,
                   "findings": [f.as_dict() for f in findings], **partitions,
                   "topics": policy_details, "dlq": dlq}
        return Outcome(status, message, metrics=metrics, details=details, steps=[step])

    def _brokers(self, md: Any) -> list[Finding]:
        cfg = self.config
        out: list[Finding] = []
        online = {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}
        self.seen_brokers.update(online)
        if cfg.expect_brokers and len(online) < cfg.expect_brokers:
            gone = sorted(set(self.seen_brokers) - set(online))
            names = (" (offline: " + ", ".join(f"broker {b} {self.seen_brokers[b]}"
                                               for b in gone) + ")") if gone else ""
            out.append(Finding(Status.FAILING, "brokers_missing",
                               f"{len(online)} of {cfg.expect_brokers} brokers online{names}"))
        if len(online) == 1:
            (only,) = online
            out.append(Finding(Status(cfg.single_broker_status), "single_broker",
                               f"single broker, no replication: losing broker {only} "
                               "loses every partition"))
        if md.controller_id is None or md.controller_id < 0:
            out.append(Finding(Status.FAILING, "no_controller", "no active controller"))
        return out

    def _policy(self, admin: ck_admin.AdminClient, md: Any, deadline: Deadline,
                findings: list[Finding]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        present = [p for p in self.config.topics if p.name in md.topics]
        for p in self.config.topics:
            if p.name not in md.topics:
                findings.append(Finding(Status.FAILING, "topic_missing",
                                        f"topic {p.name} does not exist (deleted?)"))
                out[p.name] = {"exists": False}
        min_isr = _min_insync(admin, [p.name for p in present], deadline, findings)
        for p in present:
            parts = md.topics[p.name].partitions.values()
            rf = min((len(x.replicas) for x in parts), default=0)
            isr_setting = min_isr.get(p.name)
            out[p.name] = {"exists": True, "partitions": len(parts), "replication_factor": rf,
                           "min_insync_replicas": isr_setting}
            if rf < p.min_replication_factor:
                findings.append(Finding(Status.DEGRADED, "replication_factor",
                                        f"topic {p.name} replication factor {rf} < "
                                        f"{p.min_replication_factor}"))
            if isr_setting is not None and isr_setting < p.min_insync_replicas:
                findings.append(Finding(Status.DEGRADED, "min_insync_replicas",
                                        f"topic {p.name} min.insync.replicas {isr_setting} < "
                                        f"{p.min_insync_replicas}"))
        return out

    def _dlq_growth(self, admin: ck_admin.AdminClient, md: Any, deadline: Deadline,
                    findings: list[Finding]) -> dict[str, dict[str, Any]]:
        dlqs = [p.name for p in self.config.topics if p.dlq and p.name in md.topics]
        tps = [ck.TopicPartition(t, pid) for t in dlqs for pid in md.topics[t].partitions]
        totals: dict[str, int] = dict.fromkeys(dlqs, 0)
        unreadable: dict[str, str] = {}
        if tps:
            latest = ck_admin.OffsetSpec.latest()  # type: ignore[attr-defined,no-untyped-call]
            futs = admin.list_offsets({tp: latest for tp in tps},
                                      request_timeout=deadline.left())
            for tp, fut in futs.items():
                # One DLQ partition without a leader must not hide the rest of the answer
                # (that is when the offline finding matters most).
                try:
                    offset = fut.result(timeout=deadline.wait_s()).offset
                except (ck.KafkaException, TimeoutError) as exc:
                    unreadable.setdefault(tp.topic, f"{tp.topic}[{tp.partition}]: "
                                                    f"{describe(exc)}")
                    continue
                if offset < 0:  # librdkafka's "unknown" (-1001) when the leader timed out
                    unreadable.setdefault(tp.topic, f"{tp.topic}[{tp.partition}]: no "
                                                    "offset came back (its leader did not "
                                                    "answer in time)")
                else:
                    totals[tp.topic] += offset
        for topic, reason in unreadable.items():
            del totals[topic]  # its last total stays, for the next readable run
            findings.append(Finding(Status.FAILING, "dlq_unreadable",
                                    f"cannot read the offsets of DLQ {reason}"))
        out: dict[str, dict[str, Any]] = {
            topic: {"messages": None, "new": None} for topic in unreadable}
        for topic, total in totals.items():
            last = self.dlq_offsets.get(topic)
            new = None if last is None or total < last else total - last
            self.dlq_offsets[topic] = total
            out[topic] = {"messages": total, "new": new}
            if new:
                crit = new > self.config.dlq_growth_crit
                findings.append(Finding(Status.FAILING if crit else Status.DEGRADED,
                                        "dlq_growth", f"DLQ {topic} +{new} messages since the "
                                        "last run" + (f" (> {self.config.dlq_growth_crit})"
                                                      if crit else "")))
        return out

    @classmethod
    def export_metrics(cls, result: Result, metrics: Metrics) -> None:
        urp = result.metrics.get("under_replicated_partitions")
        cluster = result.details.get("cluster") or result.check
        if urp is not None:
            metrics.kafka_urp.labels(cluster).set(urp)
        else:  # unknown is absent, not a stale number
            with contextlib.suppress(KeyError):
                metrics.kafka_urp.remove(cluster)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--bootstrap", required=True, help="host:port[,host:port...]")
        parser.add_argument("--expect-brokers", type=int, metavar="N")
        parser.add_argument("--topic", action="append", default=[], metavar="T",
                            help="topic under policy (repeatable); default: the platform's "
                            "topics and their DLQs")
        parser.add_argument("--dlq", action="append", default=[], metavar="T",
                            help="DLQ topic under policy and growth watch (repeatable)")
        parser.add_argument("--min-replication-factor", type=int, default=3, metavar="N")
        parser.add_argument("--min-insync-replicas", type=int, default=2, metavar="N")
        parser.add_argument("--timeout", default="10s", help="e.g. 10s")
        tls_arguments(parser)

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> CheckConfig:
        extra: dict[str, Any] = {}
        if args.topic or args.dlq:
            rules = {"min_replication_factor": args.min_replication_factor,
                     "min_insync_replicas": args.min_insync_replicas}
            extra["topics"] = ([TopicPolicy(name=t, **rules) for t in args.topic]
                               + [TopicPolicy(name=t, dlq=True, **rules) for t in args.dlq])
        return KafkaClusterConfig(id="kafka-cluster", bootstrap=args.bootstrap,
                                  expect_brokers=args.expect_brokers,
                                  timeout=parse_duration(args.timeout), **tls_values(args), **extra)


def _min_insync(admin: ck_admin.AdminClient, topics: list[str], deadline: Deadline,
                findings: list[Finding]) -> dict[str, int]:
    if not topics:
        return {}
    resources = [ck_admin.ConfigResource(  # type: ignore[attr-defined]
        ck_admin.ResourceType.TOPIC, t) for t in topics]  # type: ignore[attr-defined]
    futs = admin.describe_configs(resources, request_timeout=deadline.left())
    out: dict[str, int] = {}
    for res, fut in futs.items():
        try:
            entries = fut.result(timeout=deadline.wait_s())
        except TimeoutError as exc:
            raise KafkaUnavailable(f"reading the config of topic {res.name}: "
                                   f"{describe(exc)}") from exc
        except ck.KafkaException as exc:
            # Topic-level answer (deleted just now, or not yet known to that broker).
            findings.append(Finding(Status.DEGRADED, "topic_config",
                                    f"cannot read the config of topic {res.name}: "
                                    f"{describe(exc)}"))
            continue
        entry = entries.get("min.insync.replicas")
        if entry is not None and entry.value is not None:
            out[res.name] = int(entry.value)
    return out


def _partition_findings(md: Any, findings: list[Finding]) -> dict[str, Any]:
    under: list[str] = []
    offline: list[str] = []
    total = 0
    for name, topic in sorted(md.topics.items()):
        for pid, part in sorted(topic.partitions.items()):
            total += 1
            if part.leader < 0:
                offline.append(f"{name}[{pid}]")
            elif len(part.isrs) < len(part.replicas):
                under.append(f"{name}[{pid}]")
    if offline:
        findings.append(Finding(Status.FAILING, "offline_partitions",
                                f"{len(offline)} offline partitions (no leader): "
                                + _compact(offline)))
    if under:
        findings.append(Finding(Status.FAILING, "under_replicated",
                                f"{len(under)} under-replicated partitions: " + _compact(under)))
    return {"total": total, "under_replicated": under, "offline": offline}


def _compact(tps: list[str], limit: int = 40) -> str:
    """'t[0,1], u[2]' from ['t[0]', 't[1]', 'u[2]'], listing at most ``limit`` partitions."""
    by_topic: dict[str, list[str]] = {}
    for tp in tps[:limit]:
        topic, _, rest = tp.rpartition("[")
        by_topic.setdefault(topic, []).append(rest.rstrip("]"))
    text = ", ".join(f"{t}[{','.join(ps)}]" for t, ps in by_topic.items())
    return text + (f" and {len(tps) - limit} more" if len(tps) > limit else "")

"""kafka_canary: end-to-end proof that the cluster moves messages (kminion's idea).

Every run produces one message with a unique id to each partition of a probe topic
(so every partition leader is exercised), consumes them back from the offsets the
partitions ended at just before, and reports the produce-ack and round-trip latency.
Failing when a message is not acknowledged or not read back within ``sla``.
The consumer only ``assign``s partitions: it never joins a group or commits, so it adds
nothing to the consumer groups the lag check watches.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from controlplane.durations import Duration
from controlplane.kafka.child import ProbeInChild
from controlplane.kafka.client import (
    Deadline,
    ErrorTrap,
    KafkaCheckConfig,
    KafkaProblem,
    KafkaUnavailable,
    client_config,
    describe,
    request_deadline,
    unreachable_message,
    wait,
)
from controlplane.lazyimport import lazy_module
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.results import Status, Step

if TYPE_CHECKING:
    import confluent_kafka as ck
    import confluent_kafka.admin as ck_admin
    import confluent_kafka.cimpl as ck_cimpl
else:  # the Kafka client loads when a probe runs, not when a config validates
    ck = lazy_module("confluent_kafka")
    ck_admin = lazy_module("confluent_kafka.admin")
    ck_cimpl = lazy_module("confluent_kafka.cimpl")

log = logging.getLogger(__name__)


class KafkaCanaryConfig(KafkaCheckConfig):
    kind: str = "kafka_canary"
    topic: str = Field(default="controlplane.canary", min_length=1)
    create_topic: bool = True
    partitions: int | None = Field(default=None, ge=1,
                                   description="when creating; default one per broker")
    replication_factor: int | None = Field(default=None, ge=1,
                                           description="when creating; default min(3, brokers)")
    sla: Duration = Field(default=5.0, description="longest acceptable round trip")

    @model_validator(mode="after")
    def _sla_fits(self) -> KafkaCanaryConfig:
        if self.sla >= self.timeout:
            raise ValueError(f"sla ({self.sla:g}s) must be shorter than timeout "
                             f"({self.timeout:g}s)")
        return self


class KafkaCanaryProbe(Probe[KafkaCanaryConfig]):
    kind: ClassVar[str] = "kafka_canary"
    config_model: ClassVar[type[CheckConfig]] = KafkaCanaryConfig

    def __init__(self, config: KafkaCanaryConfig, context: Any = None) -> None:
        super().__init__(config, context)
        self._clients: tuple[ck_admin.AdminClient, ck.Producer, ck.Consumer] | None = None
        self.trap = ErrorTrap()
        self.child = (ProbeInChild(config, "sending a canary message through")
                      if config.isolate_client else None)

    def clients(self) -> tuple[ck_admin.AdminClient, ck.Producer, ck.Consumer]:
        if self._clients is None:
            base = client_config(self.config, self.config.timeout, self.trap)
            try:
                admin = ck_admin.AdminClient(base)
                producer = ck.Producer({**base, "acks": "all", "linger.ms": 0,
                                     "message.timeout.ms": int(self.config.timeout * 1000)})
                consumer = ck.Consumer({**base, "group.id": f"controlplane-canary-{self.config.id}",
                                     "enable.auto.commit": False, "fetch.wait.max.ms": 50,
                                     "auto.offset.reset": "latest"})
            except ck.KafkaException as exc:
                raise ProbeError(f"invalid Kafka client settings: {describe(exc)}") from exc
            self._clients = (admin, producer, consumer)
        return self._clients

    def close(self) -> None:
        if self._clients is not None:
            _, producer, consumer = self._clients
            producer.flush(0)
            consumer.close()
            self._clients = None
        if self.child is not None:
            self.child.close()

    def check(self) -> Outcome:
        if self.child is not None:
            return self.child.check()
        cfg = self.config
        deadline = request_deadline(cfg.timeout)
        admin, producer, consumer = self.clients()
        admin.poll(0)
        producer.poll(0)
        self.trap.take()  # errors from before this run are not this run's answer
        steps: list[Step] = []
        try:
            t0 = time.monotonic()
            leaders = self._ensure_topic(admin, deadline)
            self._assign_at_end(consumer, list(leaders), deadline)
            steps.append(Step(name="prepare", status=Status.OK,
                              duration_s=round(time.monotonic() - t0, 6),
                              message=f"{cfg.topic}: {len(leaders)} partitions"))
        except KafkaUnavailable as exc:
            admin.poll(0)
            producer.poll(0)
            return Outcome(Status.FAILING, unreachable_message(
                cfg.bootstrap, str(exc), self.trap.take()), steps=steps)
        except KafkaProblem as exc:
            return Outcome(Status.FAILING, str(exc), steps=steps)
        finally:
            admin.poll(0)
        return self._round_trip(producer, consumer, leaders, steps, deadline)

    def _ensure_topic(self, admin: ck_admin.AdminClient, deadline: Deadline) -> dict[int, int]:
        """Partition -> leader broker id of the canary topic, created if allowed."""
        cfg = self.config
        md = _metadata(admin, deadline)
        topic = md.topics.get(cfg.topic)
        if topic is None or topic.error is not None:
            if not cfg.create_topic:
                raise KafkaProblem(f"canary topic {cfg.topic} does not exist; create it "
                                   "or set create_topic: true")
            brokers = len(md.brokers)
            new = ck_cimpl.NewTopic(cfg.topic, cfg.partitions or brokers,
                           cfg.replication_factor or min(3, brokers))
            fut = admin.create_topics([new], request_timeout=deadline.left())[cfg.topic]
            try:
                wait(fut, deadline, f"creating canary topic {cfg.topic}")
            except KafkaUnavailable as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
            log.info("canary topic created topic=%s partitions=%d", cfg.topic,
                     new.num_partitions)
            while not deadline.expired:
                topic = _metadata(admin, deadline).topics.get(cfg.topic)
                if topic is not None and topic.error is None and all(
                        p.leader >= 0 for p in topic.partitions.values()):
                    break
                time.sleep(0.2)
            if topic is None or topic.error is not None:
                raise KafkaUnavailable(f"canary topic {cfg.topic} not ready after creation")
        return {pid: p.leader for pid, p in sorted(topic.partitions.items())}

    def _assign_at_end(self, consumer: ck.Consumer, partitions: list[int],
                       deadline: Deadline) -> None:
        """Read from where each partition ends now, so only this run's messages count."""
        starts: dict[int, int] = {}
        for pid in partitions:
            while True:
                try:
                    _, high = consumer.get_watermark_offsets(
                        ck.TopicPartition(self.config.topic, pid), timeout=deadline.left(),
                        cached=False)
                    break
                except ck.KafkaException as exc:
                    # Leadership moves (a new topic, a broker restart) show up as errors
                    # here while the client's metadata catches up: retry until the deadline.
                    if deadline.expired:
                        raise KafkaUnavailable(f"reading offsets of {self.config.topic}[{pid}]"
                                               f": {describe(exc)}") from exc
                    time.sleep(0.2)
            starts[pid] = high
        consumer.assign([ck.TopicPartition(self.config.topic, p, o) for p, o in starts.items()])

    def _round_trip(self, producer: ck.Producer, consumer: ck.Consumer, leaders: dict[int, int],
                    steps: list[Step], deadline: Deadline) -> Outcome:
        cfg = self.config
        sent: dict[str, tuple[int, float]] = {}
        acked: dict[str, float] = {}
        failed: dict[str, str] = {}

        def on_delivery(err: ck.KafkaError | None, msg: ck.Message) -> None:
            key = (msg.key() or b"").decode()
            if err is not None:
                failed[key] = err.str()
            else:
                acked[key] = time.monotonic()

        for pid in leaders:
            mid = uuid.uuid4().hex
            body = json.dumps({"id": mid, "sent_at": time.time()}).encode()
            sent[mid] = (pid, time.monotonic())
            try:
                producer.produce(cfg.topic, key=mid.encode(), value=body, partition=pid,
                                 on_delivery=on_delivery)
            except (BufferError, ck.KafkaException) as exc:
                failed[mid] = describe(exc)
        t0 = time.monotonic()
        # The SLA, unless the check's own timeout comes first (a slow prepare step).
        end = min(t0 + cfg.sla, deadline.end)
        cut_short = end < t0 + cfg.sla
        # Acks first (delivery callbacks fire inside poll/flush), then the read-back: the
        # consumer's fetcher runs meanwhile, so waiting here does not delay the messages.
        while time.monotonic() < end and len(acked) + len(failed) < len(sent):
            producer.poll(min(0.05, max(0.0, end - time.monotonic())))
        received: dict[str, float] = {}
        while time.monotonic() < end and len(received) + len(failed) < len(sent):
            msg = consumer.poll(min(0.1, max(0.0, end - time.monotonic())))
            if msg is None or msg.error() is not None:
                continue
            key = (msg.key() or b"").decode()
            if key in sent:
                received[key] = time.monotonic()
        producer.poll(0)
        return self._judge(leaders, sent, acked, failed, received, steps, t0, cut_short)

    def _judge(self, leaders: dict[int, int], sent: dict[str, tuple[int, float]],
               acked: dict[str, float], failed: dict[str, str], received: dict[str, float],
               steps: list[Step], t0: float, cut_short: bool) -> Outcome:
        cfg = self.config
        acks = [acked[m] - s for m, (_, s) in sent.items() if m in acked]
        trips = [received[m] - s for m, (_, s) in sent.items() if m in received]
        problems = []
        for mid, (pid, _) in sorted(sent.items(), key=lambda kv: kv[1][0]):
            where = f"{cfg.topic}[{pid}] (leader broker {leaders[pid]})"
            if mid in failed:
                problems.append(f"produce to {where} failed: {failed[mid]}")
            elif mid not in received:
                within = (f"before the check's timeout ({cfg.timeout:g}s, SLA {cfg.sla:g}s)"
                          if cut_short else f"within {cfg.sla:g}s")
                problems.append(f"message to {where} not read back {within}")
        metrics: dict[str, float | None] = {
            "produce_ack_s": round(max(acks), 6) if acks else None,
            "roundtrip_s": round(max(trips), 6) if trips else None,
            "messages": float(len(sent)), "received": float(len(received)),
        }
        status = Status.FAILING if problems else Status.OK
        steps.append(Step(name="round trip", status=status,
                          duration_s=round(time.monotonic() - t0, 6),
                          message=f"{len(received)}/{len(sent)} back"))
        message = "; ".join(problems) if problems else (
            f"{len(sent)} messages round-tripped through {cfg.topic}: max ack "
            f"{metrics['produce_ack_s']:.3f}s, max round trip {metrics['roundtrip_s']:.3f}s")
        details = {"topic": cfg.topic, "leaders": {str(p): b for p, b in leaders.items()},
                   "partitions": [{"partition": pid, "leader": leaders[pid],
                                   "ack_s": round(acked[m] - s, 6) if m in acked else None,
                                   "roundtrip_s": round(received[m] - s, 6)
                                   if m in received else None,
                                   "error": failed.get(m)}
                                  for m, (pid, s) in sent.items()]}
        return Outcome(status, message, metrics=metrics, details=details, steps=steps)


def _metadata(admin: ck_admin.AdminClient, deadline: Deadline) -> Any:
    try:
        return admin.list_topics(timeout=deadline.left())
    except ck.KafkaException as exc:
        raise KafkaUnavailable(f"reading metadata: {describe(exc)}") from exc

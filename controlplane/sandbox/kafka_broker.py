"""One throw-away Kafka broker for the demo: KRaft combined mode, loopback, small heap.

The jars are the ones scripts/setup.d/30-kafka.sh collects under
``$CONTROLPLANE_CACHE/kafka/<version>/libs``; any version with a ``.complete`` marker does,
so the demo does not need the repository checkout. The node is formatted with
``kafka.tools.StorageTool format`` and started with ``kafka.Kafka server.properties``, as
tests/services/kafka.py does for the tests. :class:`DemoTraffic` keeps a consumer group a
little behind a producer, so the lag check has something to measure.
"""

from __future__ import annotations

import base64
import glob
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from typing import Any

log = logging.getLogger(__name__)

# The platform's topics (checks/kafka.yaml) and the group that reads them in the demo.
TOPICS = ("turn_resolution.v1", "call_trace.v1", "turn_resolution.v1.dlq", "call_trace.v1.dlq")
GROUP = "voice360-live-call-consumer"
START_TIMEOUT_S = 180.0
JVM_FLAGS = ["-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Djava.awt.headless=true"]
LOG4J = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={path}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.raft=WARN
log4j.logger.kafka.log.LogCleaner=WARN
"""


def kafka_libs() -> str | None:
    """The newest cached jar directory with its ``.complete`` marker; None if there is none."""
    cache = os.environ.get("CONTROLPLANE_CACHE") or os.path.expanduser("~/.cache/controlplane")
    found = glob.glob(os.path.join(cache, "kafka", "*", "libs", ".complete"))

    def version(path: str) -> tuple[int, ...]:
        name = path.split(os.sep)[-3]
        return tuple(int(p) if p.isdigit() else 0 for p in name.split("."))

    return os.path.dirname(max(found, key=version)) if found else None


def kafka_unavailable() -> str | None:
    """Why the demo cannot run a broker here, or None when it can."""
    if shutil.which("java") is None:
        return "no java on PATH"
    if kafka_libs() is None:
        return "no Kafka jars in $CONTROLPLANE_CACHE/kafka (run scripts/setup.d/30-kafka.sh)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> list[str]:
    """A prefix that SIGKILLs the JVM if the demo process dies, so no broker outlives it.

    setpriv sets PR_SET_PDEATHSIG before exec; a Python preexec_fn would run in a forked
    copy of the threaded demo process, where it can deadlock.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class KafkaBroker:
    """A single KRaft node (broker and controller) under ``<workdir>/kafka``."""

    def __init__(self, workdir: str, libs: str) -> None:
        self.dir, self.libs = os.path.join(workdir, "kafka"), libs
        self.port, self.controller_port = _free_port(), _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> str:
        return os.path.join(self.dir, "server.log")

    def _java(self, main_class: str, *args: str) -> list[str]:
        return ["java", *JVM_FLAGS, "-cp", os.path.join(self.libs, "*"),
                f"-Dlog4j.configuration=file:{os.path.join(self.dir, 'log4j.properties')}",
                main_class, *args]

    def _properties(self) -> str:
        props: dict[str, object] = {
            "process.roles": "broker,controller", "node.id": 1,
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": os.path.join(self.dir, "data"),
            "num.partitions": 1, "default.replication.factor": 1, "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1, "offsets.topic.num.partitions": 3,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1, "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "false", "num.network.threads": 2,
            "num.io.threads": 2, "background.threads": 2, "log.cleaner.enable": "false",
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def start(self) -> KafkaBroker:
        os.makedirs(self.dir, exist_ok=True)
        config = os.path.join(self.dir, "server.properties")
        with open(config, "w", encoding="utf-8") as fh:
            fh.write(self._properties())
        with open(os.path.join(self.dir, "log4j.properties"), "w", encoding="utf-8") as fh:
            fh.write(LOG4J.format(path=self.log_file))
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        # "=" form: a base64 id may start with "-", which would read as an option.
        proc = subprocess.run(self._java("kafka.tools.StorageTool", "format",
                                         f"--cluster-id={cluster_id}", "-c", config),
                              capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"Kafka StorageTool format failed: {proc.stderr.strip()[-300:]}")
        with open(os.path.join(self.dir, "stdout.log"), "ab") as out:
            self.proc = subprocess.Popen([*_die_with_parent(), *self._java("kafka.Kafka", config)],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self._wait_ready()
        self.create_topics(TOPICS)
        return self

    def _wait_ready(self) -> None:
        """Until the broker answers metadata requests (it listens a little before that)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                break
            admin = self._admin()  # referenced until the future resolves, or it is destroyed
            try:
                if admin.describe_cluster(request_timeout=5).result(10).nodes:
                    return
            except Exception:  # not up yet
                log.debug("demo kafka broker not ready yet")
            time.sleep(0.5)
        raise RuntimeError(f"the demo Kafka broker did not start; see {self.log_file}")

    def _admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})

    def create_topics(self, names: tuple[str, ...]) -> None:
        from confluent_kafka.cimpl import NewTopic

        admin = self._admin()
        futures = admin.create_topics([NewTopic(n, 1, 1) for n in names], request_timeout=60)
        for name, future in futures.items():
            try:
                future.result(90)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in repr(exc):
                    raise RuntimeError(f"could not create Kafka topic {name}: {exc}") from exc

    def stop(self) -> None:
        # SIGKILL: the data is thrown away, and waiting for a clean shutdown buys nothing.
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None


class DemoTraffic:
    """A producer (a few messages a second) and a consumer group that trails it and commits.

    The consumer reads in bursts every few seconds, so the group's lag is non-zero but
    keeps moving, the way a healthy live consumer looks to the lag check.
    """

    def __init__(self, bootstrap: str, rate: float = 4.0, consume_every_s: float = 3.0) -> None:
        self.bootstrap, self.rate, self.every = bootstrap, rate, consume_every_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> DemoTraffic:
        for target, name in ((self._produce, "demo-kafka-producer"),
                             (self._consume, "demo-kafka-consumer")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _produce(self) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5,
                             "log_level": 0})
        n = 0
        while not self._stop.wait(1 / self.rate):
            try:
                producer.produce(TOPICS[n % 2], value=b"demo-%d" % n)
                producer.poll(0)
            except BufferError:  # broker gone (demo stopping): drop the message
                log.debug("demo kafka producer queue full")
            n += 1
        producer.flush(5)

    def _consume(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": GROUP,
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "log_level": 0})
        consumer.subscribe(list(TOPICS[:2]))
        try:
            while not self._stop.wait(self.every):
                messages = consumer.consume(num_messages=1000, timeout=1)
                if messages:
                    consumer.commit(asynchronous=True)
        except Exception:
            log.exception("demo kafka consumer stopped")
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

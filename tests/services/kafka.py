"""Real Apache Kafka brokers for tests: KRaft combined mode, one JVM per node, on loopback.

The jars come from Maven Central (scripts/setup.d/30-kafka.sh, cached under
$CONTROLPLANE_CACHE/kafka/<version>/libs). Each node is formatted with
``kafka.tools.StorageTool format`` and started with ``kafka.Kafka server.properties``; its
log4j output goes to ``<node dir>/server.log``, which is printed when start-up fails and
attached to the report of any failing test that used a cluster.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane.sandbox.kafka_broker import LOG4J
from tests.services import kafka_admin
from tests.services.certs import CertFactory, ServerFiles
from tests.services.common import ROOT, free_port
from tests.services.kafka_admin import WORKER

POM = ROOT / "scripts" / "kafka" / "pom.xml"
SETUP = ROOT / "scripts" / "setup.d" / "30-kafka.sh"
START_TIMEOUT_S = 180.0
JVM_FLAGS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]
_CLUSTERS: list[KafkaCluster] = []


def kafka_version() -> str:
    m = re.search(r"<kafka.version>(.+?)</kafka.version>", POM.read_text())
    assert m, f"{POM} has no <kafka.version>"
    return m.group(1)


def kafka_libs() -> Path:
    """The directory of broker + tools jars; runs the setup script if they are missing."""
    cache = Path(os.environ.get("CONTROLPLANE_CACHE") or Path.home() / ".cache" / "controlplane")
    libs = cache / "kafka" / kafka_version() / "libs"
    if not (libs / ".complete").exists():
        proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True,
                              env={**os.environ, "CONTROLPLANE_CACHE": str(cache)})
        if proc.returncode != 0:
            pytest.fail(f"could not fetch the Kafka jars ({SETUP}):\n{proc.stdout}\n"
                        f"{proc.stderr}")
    return libs


def java_cmd(main_class: str, *args: str, log_config: Path | None = None,
             heap: str = "256m", flags: list[str] | None = None) -> list[str]:
    cmd = ["java", "-Xms64m", f"-Xmx{heap}", *(JVM_FLAGS if flags is None else flags),
           "-cp", str(kafka_libs() / "*")]
    if log_config is not None:
        cmd.append(f"-Dlog4j.configuration=file:{log_config}")
    return [*cmd, main_class, *args]


TOOL_LOG4J = "log4j.rootLogger=ERROR, stderr\nlog4j.appender.stderr=org.apache.log4j." \
             "ConsoleAppender\nlog4j.appender.stderr.Target=System.err\n" \
             "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n" \
             "log4j.appender.stderr.layout.ConversionPattern=%p %m%n\n"


@dataclass
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    dir: Path
    tls_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for f in (self.log_file, self.dir / "stdout.log"):
            if f.exists():
                text = f.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- node {self.node_id} {f.name} (last {len(text)} lines)\n"
                             + "\n".join(text))
        return "\n".join(parts)


@dataclass
class KafkaCluster:
    """N KRaft nodes, each broker and controller; RF = min(3, N), min.insync = min(2, N)."""

    base: Path
    size: int
    heap: str = "256m"
    tls: ServerFiles | None = None
    """When set, every node also listens with TLS (PEM keystore) on ``tls_port``."""
    extra_properties: dict[str, object] = field(default_factory=dict)
    jvm_flags: list[str] | None = None
    """JVM options for the brokers; None: quick start-up for tests (JVM_FLAGS)."""
    nodes: list[KafkaNode] = field(default_factory=list)
    cluster_id: str = field(
        default_factory=lambda: base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22])

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def tls_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.tls_port}" for n in self.nodes)

    def setup(self) -> None:
        self.nodes = [KafkaNode(i + 1, free_port(), free_port(), self.base / f"node{i + 1}",
                                tls_port=free_port() if self.tls else None)
                      for i in range(self.size)]
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            (node.dir / "server.properties").write_text(self._properties(node, voters))
            (node.dir / "log4j.properties").write_text(LOG4J.format(path=node.log_file))
            # "=" form: a base64 id may start with "-", which would read as an option.
            proc = subprocess.run(
                java_cmd("kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}",
                         "-c", str(node.dir / "server.properties"),
                         log_config=node.dir / "log4j.properties"),
                capture_output=True, text=True, timeout=START_TIMEOUT_S)
            if proc.returncode != 0:
                raise RuntimeError(f"StorageTool format failed for node {node.node_id}:\n"
                                   f"{proc.stdout}\n{proc.stderr}\n{node.log_tail()}")

    def _properties(self, node: KafkaNode, voters: str) -> str:
        rf = min(3, self.size)
        listeners = [f"PLAINTEXT://127.0.0.1:{node.port}"]
        tls: dict[str, object] = {}
        if self.tls is not None:
            listeners.append(f"SSL://127.0.0.1:{node.tls_port}")
            keystore = node.dir / "keystore.pem"  # key first, then the served chain
            keystore.write_bytes(self.tls.key_file.read_bytes()
                                 + self.tls.cert_file.read_bytes())
            tls = {"ssl.keystore.type": "PEM", "ssl.keystore.location": keystore,
                   "ssl.client.auth": "none"}
        props = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": ",".join([*listeners,
                                   f"CONTROLLER://127.0.0.1:{node.controller_port}"]),
            "advertised.listeners": ",".join(listeners),
            "listener.security.protocol.map":
                "PLAINTEXT:PLAINTEXT,SSL:SSL,CONTROLLER:PLAINTEXT",
            **tls,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": node.dir / "data",
            "num.partitions": 1,
            "default.replication.factor": rf,
            "min.insync.replicas": min(2, self.size),
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min(2, self.size),
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "false",
            # ISR shrinks within seconds of a follower going away (tests wait for it).
            "replica.lag.time.max.ms": 3000,
            "broker.session.timeout.ms": 6000,
            "broker.heartbeat.interval.ms": 1000,
            "num.network.threads": 2,
            "num.io.threads": 2,
            "background.threads": 2,
            "num.recovery.threads.per.data.dir": 1,
            "log.cleaner.enable": "false",
            **self.extra_properties,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def start_node(self, node: KafkaNode) -> None:
        out = (node.dir / "stdout.log").open("ab")
        node.proc = subprocess.Popen(
            java_cmd("kafka.Kafka", str(node.dir / "server.properties"),
                     log_config=node.dir / "log4j.properties", heap=self.heap,
                     flags=self.jvm_flags),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)
        out.close()

    def start(self) -> None:
        for node in self.nodes:
            self.start_node(node)
        self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until every running node answers and the cluster metadata lists all of them."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.proc is not None:
                self._wait_port(node, deadline)
        want = sum(1 for n in self.nodes if n.running)
        while time.monotonic() < deadline:
            if self._registered_brokers() >= want:
                return
            time.sleep(0.5)
        raise RuntimeError(f"Kafka cluster did not register {want} brokers within "
                           f"{timeout:g}s\n{self.logs()}")

    def _wait_port(self, node: KafkaNode, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not node.running:
                raise RuntimeError(f"Kafka node {node.node_id} exited during start-up "
                                   f"(code {node.proc.returncode if node.proc else '?'})\n"
                                   f"{node.log_tail(120)}")
            try:
                with socket.create_connection(("127.0.0.1", node.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"Kafka node {node.node_id} did not listen on {node.port}\n"
                           f"{node.log_tail(120)}")

    def _registered_brokers(self) -> int:
        return WORKER.call(kafka_admin.registered_brokers, self.bootstrap)

    def stop_node(self, node: KafkaNode, sig: int = signal.SIGTERM) -> None:
        if node.proc is None:
            return
        if node.proc.poll() is None:
            os.killpg(node.proc.pid, sig)
            try:
                node.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait(30)
        node.proc = None

    def restart_node(self, node: KafkaNode) -> None:
        self.start_node(node)
        self.wait_ready()

    def stop(self) -> None:
        # SIGKILL: the data is thrown away, and the last nodes of a KRaft quorum would wait
        # for a quorum that is gone before shutting down cleanly.
        for node in self.nodes:
            self.stop_node(node, signal.SIGKILL)
        WORKER.call(kafka_admin.forget, self.bootstrap)

    def logs(self, lines: int = 60) -> str:
        return "\n".join(n.log_tail(lines) for n in self.nodes)

    # -- helpers for tests ----------------------------------------------------------------

    def admin(self) -> Any:
        """An AdminClient in this process, for tests of the probes' own admin calls; the
        fixtures' requests go through the child (tests/services/kafka_admin.py)."""
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})

    def create_topic(self, name: str, partitions: int, replication: int | None = None,
                     config: dict[str, str] | None = None,
                     assignment: list[list[int]] | None = None) -> None:
        """Create and wait until every partition has a leader; ``assignment`` pins replicas
        (one list of broker ids per partition)."""
        WORKER.call(kafka_admin.create_topic, self.bootstrap, name, partitions,
                    replication or min(3, self.size), config or {}, assignment)
        count = len(assignment) if assignment is not None else partitions
        wait_until(lambda: WORKER.call(kafka_admin.topic_ready, self.bootstrap, name, count),
                   60, f"topic {name} ready")

    def topic_names(self) -> set[str]:
        return WORKER.call(kafka_admin.topic_names, self.bootstrap)

    def delete_topic(self, name: str) -> None:
        WORKER.call(kafka_admin.delete_topic, self.bootstrap, name)

    def delete_group(self, group: str) -> None:
        WORKER.call(kafka_admin.delete_group, self.bootstrap, group)

    def produce(self, topic: str, counts: dict[int, int]) -> None:
        """Produce ``counts[partition]`` small messages to each partition, acked by all ISR."""
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 5,
                      "log_level": 0})
        for partition, n in counts.items():
            for i in range(n):
                p.produce(topic, value=b"m%d" % i, partition=partition)
                if i % 10000 == 0:
                    p.poll(0)
        assert p.flush(120) == 0, "messages not delivered within 120s"

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        """Commit offsets for ``group`` as its consumers would (the group must be empty)."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                      "enable.auto.commit": False, "log_level": 0})
        try:
            tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            deadline = time.monotonic() + 120
            while True:  # the first commit after start-up races the offsets topic's creation
                try:
                    c.commit(offsets=tps, asynchronous=False)
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
        finally:
            c.close()

    def coordinator_of(self, group: str) -> int:
        return WORKER.call(kafka_admin.coordinator_of, self.bootstrap, group)

    def consumer_group_command(self, *args: str) -> str:
        """Run Kafka's own ConsumerGroupCommand from the same jars; stdout."""
        return self.consumer_group_command_output(*args)[0]

    def consumer_group_command_output(self, *args: str) -> tuple[str, str]:
        """The same; (stdout, stderr): the tool reports groups without rows on stderr."""
        log_config = self.base / "tool-log4j.properties"
        log_config.write_text(TOOL_LOG4J)
        proc = subprocess.run(
            java_cmd("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                     "--bootstrap-server", self.bootstrap, *args, log_config=log_config),
            capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"ConsumerGroupCommand failed: {proc.stderr}")
        return proc.stdout, proc.stderr


def _die_with_parent() -> None:
    """Linux: SIGKILL the broker if the test process dies, so no JVM outlives a crash."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _cluster(tmp_path_factory: pytest.TempPathFactory, size: int, name: str,
             tls: bool = False) -> Iterator[KafkaCluster]:
    base = tmp_path_factory.mktemp(name)
    files = CertFactory(base / "certs").server(["127.0.0.1", "localhost"]) if tls else None
    cluster = KafkaCluster(base, size, tls=files)
    _CLUSTERS.append(cluster)
    try:
        cluster.setup()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        _CLUSTERS.remove(cluster)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A 1-node KRaft cluster for the whole session, plaintext and TLS listeners."""
    yield from _cluster(tmp_path_factory, 1, "kafka1", tls=True)


@pytest.fixture(scope="session")
def kafka3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A 3-node KRaft cluster (RF 3, min.insync.replicas 2) for the whole session."""
    yield from _cluster(tmp_path_factory, 3, "kafka3")


@pytest.fixture
def kafka_disposable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A 1-node cluster a test may kill outright."""
    yield from _cluster(tmp_path_factory, 1, "kafka-disposable")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    used = {"kafka1", "kafka3", "kafka_disposable"} & set(getattr(item, "fixturenames", ()))
    if report.failed and used:
        for cluster in list(_CLUSTERS):
            report.sections.append((f"kafka broker logs ({cluster.base.name})",
                                    cluster.logs()))

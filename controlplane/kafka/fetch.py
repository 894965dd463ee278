"""One lag run's reads from the cluster, in this process or in a child process.

Why a child process: librdkafka aborts the whole process (``rd_kafka_enq_once_del_source_
return: Assertion `eonce->refcnt > 0' failed``) when a broker drops a coordinator request
in flight (DescribeGroups, OffsetFetch), confluentinc/librdkafka#4605, unfixed in
librdkafka 2.16. That is the "broker killed mid-run" case the lag check exists for, and
an abort would take the scheduler down with it. So by default the reads run in a
long-lived child (forked from a clean fork server, one per check); if it dies, the run
fails saying so and the next run starts a new one. The sliding windows and time tables
stay in the parent.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import re
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from controlplane.kafka.client import (
    Deadline,
    ErrorTrap,
    KafkaCheckConfig,
    KafkaUnavailable,
    client_config,
    describe,
)
from controlplane.kafka.offsets import Snapshot, collect, select_groups
from controlplane.probes.base import ProbeError

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """What a lag check reads: picklable, so the child can be told."""

    groups: list[str]
    group_patterns: list[str]
    topics: list[str]
    topic_patterns: list[str]


class TopicFilter:
    def __init__(self, topics: list[str], patterns: list[str]) -> None:
        self.topics = set(topics)
        self.patterns = [re.compile(p) for p in patterns]

    def __call__(self, topic: str) -> bool:
        if not self.topics and not self.patterns:
            return True
        return topic in self.topics or any(rx.fullmatch(topic) for rx in self.patterns)


@dataclass
class Fetched:
    snapshot: Snapshot
    known_topics: set[str] | None
    """All topics of the cluster, read only when the check names topics."""


def fetch(admin: AdminClient, sel: Selection, deadline: Deadline) -> Fetched:
    """Groups, committed and log-end offsets; KafkaUnavailable if the cluster is not there."""
    try:
        # One-topic Metadata (any live broker answers): a down cluster fails here once.
        admin.list_topics(topic="__consumer_offsets", timeout=deadline.left())
        known = None
        if sel.topics:
            md = admin.list_topics(timeout=deadline.left())
            known = {name for name, t in md.topics.items() if t.error is None}
    except KafkaException as exc:
        raise KafkaUnavailable(f"connecting: {describe(exc)}") from exc
    groups = select_groups(admin, sel.groups, sel.group_patterns, deadline)
    snap = collect(admin, groups, TopicFilter(sel.topics, sel.topic_patterns), deadline, known)
    return Fetched(snap, known)


class InProcessClient:
    """Reads with an AdminClient in this process (``isolate_client: false``)."""

    def __init__(self, cfg: KafkaCheckConfig) -> None:
        self.cfg = cfg
        self.trap = ErrorTrap()
        try:
            self.admin = AdminClient(client_config(cfg, cfg.timeout, self.trap))
        except KafkaException as exc:
            raise ProbeError(f"invalid Kafka client settings: {describe(exc)}") from exc

    def fetch(self, sel: Selection, timeout: float) -> Fetched:
        self.admin.poll(0)
        self.trap.take()  # errors from before this run are not this run's answer
        try:
            return fetch(self.admin, sel, Deadline(timeout))
        except KafkaUnavailable as exc:
            self.admin.poll(0)
            exc.client_error = self.trap.take()  # type: ignore[attr-defined]
            raise
        finally:
            self.admin.poll(0)

    def close(self) -> None:
        pass


_CONTEXT: ForkServerContext | None = None


def _context() -> ForkServerContext:
    global _CONTEXT
    if _CONTEXT is None:
        ctx = mp.get_context("forkserver")
        assert isinstance(ctx, ForkServerContext)
        ctx.set_forkserver_preload(["controlplane.kafka.fetch"])
        _CONTEXT = ctx
    return _CONTEXT


def _child_main(conn: Connection, cfg_json: str, kind: str) -> None:
    """The child: one AdminClient, then answer (selection, timeout) requests until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    from controlplane.probes import probe_class

    cfg = probe_class(kind).config_model.model_validate_json(cfg_json)
    assert isinstance(cfg, KafkaCheckConfig)
    try:
        client = InProcessClient(cfg)
    except ProbeError as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ready",))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away without saying goodbye
        if request is None:
            return
        sel, timeout = request
        try:
            conn.send(("ok", client.fetch(sel, timeout)))
        except KafkaUnavailable as exc:
            conn.send(("unavailable", str(exc), getattr(exc, "client_error", None)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class ClientDied(Exception):
    """The child process ended while it held a request."""


class IsolatedClient:
    """The same reads in a long-lived child process (the default)."""

    START_TIMEOUT_S = 30.0

    def __init__(self, cfg: KafkaCheckConfig) -> None:
        self.cfg = cfg
        self.proc: BaseProcess | None = None
        self.conn: Connection | None = None

    def _start(self) -> Connection:
        ctx = _context()
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child_main, name=f"kafka-client-{self.cfg.id}",
                           args=(child, self.cfg.model_dump_json(), self.cfg.kind),
                           daemon=True)
        proc.start()
        child.close()
        self.proc, self.conn = proc, parent
        if not parent.poll(self.START_TIMEOUT_S):
            self.close()
            raise ProbeError("the Kafka client process did not start within "
                             f"{self.START_TIMEOUT_S:g}s")
        answer = self._recv(parent)
        if answer[0] == "error":
            self.close()
            raise ProbeError(answer[1])
        log.info("kafka client process started check=%s pid=%s", self.cfg.id, proc.pid)
        return parent

    def _live_conn(self) -> Connection:
        if self.proc is not None and not self.proc.is_alive():
            log.warning("kafka client process had died check=%s exitcode=%s; restarting",
                        self.cfg.id, self.proc.exitcode)
            self.close()
        return self.conn if self.conn is not None else self._start()

    def fetch(self, sel: Selection, timeout: float) -> Fetched:
        conn = self._live_conn()
        conn.send((sel, timeout))
        # The child honours the timeout itself (plus 0.5 s grace); the margin covers
        # pickling 10,000 rows and stays inside the scheduler's 1 s hard-timeout margin.
        if not conn.poll(timeout + 0.8):
            self.close()
            raise KafkaUnavailable("no answer within the check's timeout (the client "
                                   "process was stopped and restarts on the next run)")
        answer = self._recv(conn)
        if answer[0] == "ok":
            fetched: Fetched = answer[1]
            return fetched
        if answer[0] == "unavailable":
            exc = KafkaUnavailable(answer[1])
            exc.client_error = answer[2]  # type: ignore[attr-defined]
            raise exc
        raise ProbeError(answer[1])

    def _recv(self, conn: Connection) -> Any:
        try:
            return conn.recv()
        except (EOFError, OSError):
            code = self.proc.exitcode if self.proc is not None else None
            if self.proc is not None:
                self.proc.join(5)
                code = self.proc.exitcode
            self.close()
            raise ClientDied(_exit_text(code)) from None

    def close(self) -> None:
        conn, proc = self.conn, self.proc
        self.conn = self.proc = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        if proc is not None:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"

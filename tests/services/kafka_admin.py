"""Admin requests the test fixtures make, run in a child process.

librdkafka aborts the whole process on some admin requests a broker drops in flight
(confluentinc/librdkafka#4605, see controlplane/kafka/fetch.py): exactly what happens while a
3-node cluster forms, or after a test kills a broker. In the pytest process that would end
the whole session, so the fixtures' own admin requests (cluster formed? create, delete,
list) run in one long-lived child, which is replaced if it dies and the request retried.
The functions here are what the child runs: module-level and picklable.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
_admins: dict[str, Any] = {}


def _admin(bootstrap: str) -> Any:
    # One client per cluster for the child's life: a client is never destroyed with a
    # request in flight.
    from confluent_kafka.admin import AdminClient

    if bootstrap not in _admins:
        _admins[bootstrap] = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    return _admins[bootstrap]


def forget(bootstrap: str) -> None:
    """Drop the cluster's client (the cluster is being thrown away)."""
    _admins.pop(bootstrap, None)


def registered_brokers(bootstrap: str) -> int:
    """Brokers in the cluster metadata (fenced brokers are left out); 0 when none answers.

    Metadata, not DescribeCluster: any broker answers it and it is not an admin request."""
    try:
        return len(_admin(bootstrap).list_topics(timeout=5).brokers)
    except Exception:
        return 0


def topic_names(bootstrap: str) -> set[str]:
    return set(_admin(bootstrap).list_topics(timeout=10).topics)


def topic_ready(bootstrap: str, name: str, partitions: int) -> bool:
    """Every partition has a leader that answers for it: a leader in the metadata can still
    refuse ListOffsets for a moment while its log is created, and the checks read those."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = _admin(bootstrap)
    md = admin.list_topics(topic=name, timeout=10)
    t = md.topics.get(name)
    if not (t and t.error is None and len(t.partitions) == partitions
            and all(p.leader >= 0 for p in t.partitions.values())):
        return False
    futures = admin.list_offsets({TopicPartition(name, p): OffsetSpec.latest()
                                  for p in t.partitions}, request_timeout=10)
    try:
        for fut in futures.values():
            fut.result(15)
    except Exception:
        return False
    return True


def create_topic(bootstrap: str, name: str, partitions: int, replication: int,
                 config: dict[str, str], assignment: list[list[int]] | None) -> None:
    from confluent_kafka.admin import NewTopic

    if assignment is not None:
        new = NewTopic(name, num_partitions=len(assignment), replication_factor=-1,
                       replica_assignment=assignment, config=config)
    else:
        new = NewTopic(name, partitions, replication, config=config)
    deadline = time.monotonic() + 120
    while True:
        try:
            _admin(bootstrap).create_topics([new], request_timeout=30)[name].result(60)
            return
        except Exception as exc:
            # A broker connection replaced under a request (3 nodes) is worth a retry;
            # "already exists" means an earlier attempt got through.
            if "TOPIC_ALREADY_EXISTS" in repr(exc):
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def delete_topic(bootstrap: str, name: str) -> None:
    """Delete and wait. "Unknown topic" is the state asked for: an earlier attempt, maybe
    by a child that died, got through (a broker just back from a stop can drop answers)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            _admin(bootstrap).delete_topics([name], request_timeout=30)[name].result(60)
            return
        except Exception as exc:
            text = repr(exc)
            if "UNKNOWN_TOPIC_OR_PART" in text:
                return
            if time.monotonic() > deadline:
                # cimpl's exceptions do not pickle back to the test process: send the text.
                raise RuntimeError(f"deleting topic {name}: {text}") from None
            time.sleep(1)


def coordinator_of(bootstrap: str, group: str) -> int:
    """The broker id coordinating ``group`` (a group that does not exist has one too);
    retried while a new cluster's coordinators are still loading (NOT_COORDINATOR)."""
    deadline = time.monotonic() + 60
    while True:
        (fut,) = _admin(bootstrap).describe_consumer_groups([group],
                                                            request_timeout=20).values()
        try:
            return int(fut.result(30).coordinator.id)
        except Exception as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no coordinator for {group}: {exc}") from None
            time.sleep(0.5)


def delete_group(bootstrap: str, group: str) -> None:
    _admin(bootstrap).delete_consumer_groups([group], request_timeout=30)[group].result(60)


class AdminWorker:
    """Runs this module's functions in a child; a child that dies is replaced, once per call."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not forkserver: the fork server is the product's, started with its own
            # preloaded modules (controlplane/kafka/child.py); ours must not start it first.
            self._pool = ProcessPoolExecutor(max_workers=1,
                                             mp_context=mp.get_context("spawn"))
        return self._pool

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 300) -> T:
        for attempt in (1, 2):
            try:
                return self._executor().submit(fn, *args).result(timeout)
            except BrokenProcessPool:
                log.warning("kafka admin child died fn=%s attempt=%d", fn.__name__, attempt)
                self.shutdown()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


WORKER = AdminWorker()

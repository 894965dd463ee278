"""Collect committed and log-end offsets for many consumer groups in few round trips.

One ``list_consumer_groups`` (every group's state), ``describe_consumer_groups`` only for
the groups that may have members (their assignments: a member may own a partition the
group never committed on), one ``list_consumer_group_offsets`` per group (the client's
limit), all in flight at once, then ``list_offsets`` for the union of every group's
partitions.

An EMPTY group is not described: it has no members, so there is nothing to learn, and
describing costs each group a coordinator lookup and two requests (librdkafka tries
KIP-848's ConsumerGroupDescribe first, then the classic DescribeGroups). A group that
gains members between the listing and the offset fetch shows them on the next run.
Rows follow Kafka's ConsumerGroupCommand: every partition the group has a commit on or a
member is assigned, ``committed`` None where there is no commit.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controlplane.kafka.client import (
    Deadline,
    KafkaUnavailable,
    describe,
    request_deadline,
    wait,
)
from controlplane.lazyimport import lazy_module

if TYPE_CHECKING:
    import confluent_kafka as ck
    import confluent_kafka.admin as ck_admin
else:  # the Kafka client loads when a probe runs, not when a config validates
    ck = lazy_module("confluent_kafka")
    ck_admin = lazy_module("confluent_kafka.admin")

log = logging.getLogger(__name__)

TP = tuple[str, int]
CHUNK = 500
"""Partitions per ListOffsets request."""
GROUP_CHUNK = 50
"""Groups per DescribeGroups call (smaller requests, answered in parallel)."""
LIST_SHARE = 0.25
LIST_MIN_S = 1.0
"""The group listing gets a quarter of the run's time, at least a second (see
_list_groups)."""
NO_END = "no log-end offset came back (its leader did not answer in time)"
EMPTY = "EMPTY"
"""A listed group's state when it has no members (ConsumerGroupState.EMPTY)."""


@dataclass
class GroupOffsets:
    group: str
    state: str = "UNKNOWN"
    members: int = 0
    committed: dict[TP, int | None] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Snapshot:
    groups: dict[str, GroupOffsets]
    end_offsets: dict[TP, int]
    end_errors: dict[TP, str]
    missing_topics: list[str]
    listing_errors: list[str] = field(default_factory=list)
    """Brokers whose group listing failed, when the listing chose the groups (patterns or
    all groups): the groups they coordinate are missing from this snapshot."""


@dataclass
class Listing:
    states: dict[str, str | None]
    """Group name: its state as listed, None when not listed (deleted, or on a broker that
    did not answer)."""
    errors: list[str]


def select_groups(admin: ck_admin.AdminClient, names: list[str], patterns: list[str],
                  deadline: Deadline) -> Listing:
    """The groups to read: the named ones, then those matching a pattern (full match), or
    every group when neither is given; each with its listed state."""
    listed, errors = _list_groups(admin, deadline, needed=bool(patterns or not names))
    if names and not patterns:
        return Listing({g: listed.get(g) for g in dict.fromkeys(names)}, [])
    compiled = [re.compile(p) for p in patterns]
    picked = [g for g in sorted(listed)
              if not compiled or any(rx.fullmatch(g) for rx in compiled)]
    return Listing({g: listed.get(g) for g in dict.fromkeys([*names, *picked])}, errors)


def _list_groups(admin: ck_admin.AdminClient, deadline: Deadline, needed: bool
                 ) -> tuple[dict[str, str | None], list[str]]:
    """Every listed group's state, and the brokers' listing errors.

    ListGroups goes to every broker, and one that crashed stays in the metadata until its
    session times out; a request to it waits its whole timeout. So the listing gets a share
    of the run's time, and what answered within it is used. When the listing only saves
    requests (named groups), failing to list costs nothing but those requests.
    """
    budget = request_deadline(min(deadline.left(), max(LIST_MIN_S, deadline.left() * LIST_SHARE)))
    try:
        listing = wait(admin.list_consumer_groups(request_timeout=budget.left()), budget,
                       "listing consumer groups")
    except KafkaUnavailable:
        if needed:
            raise
        return {}, []
    states = {g.group_id: g.state.name if g.state is not None else None
              for g in listing.valid}
    return states, [_error_text(e) for e in listing.errors]


def _error_text(err: Any) -> str:
    if isinstance(err, BaseException):
        return describe(err)
    return f"{err.str()} ({err.name()})" if hasattr(err, "name") else str(err)


def collect(admin: ck_admin.AdminClient, listed: dict[str, str | None], topic_ok: Any,
            deadline: Deadline, known_topics: set[str] | None = None) -> Snapshot:
    """Offsets of the ``listed`` groups (name: listed state) on the partitions whose topic
    passes ``topic_ok(topic)``."""
    groups = list(listed)
    result = {g: GroupOffsets(g) for g in groups}
    if groups:
        to_describe = [g for g in groups if listed[g] != EMPTY]
        described: dict[str, Future[Any]] = {}
        for i in range(0, len(to_describe), GROUP_CHUNK):
            described.update(admin.describe_consumer_groups(
                to_describe[i:i + GROUP_CHUNK], request_timeout=deadline.left()))
        fetches = {g: admin.list_consumer_group_offsets(
            [ck.ConsumerGroupTopicPartitions(g)], request_timeout=deadline.left())[g]
            for g in groups}
        for g in groups:
            if g not in described:
                result[g].state = EMPTY
            _fill_group(result[g], described.get(g), fetches[g], topic_ok, deadline)
    wanted = sorted({tp for go in result.values() for tp in go.committed})
    missing: list[str] = []
    if known_topics is not None:
        missing = sorted({t for t, _ in wanted if t not in known_topics})
    ends, errors = _end_offsets(admin, wanted, deadline)
    return Snapshot(result, ends, errors, missing)


def _fill_group(out: GroupOffsets, described: Future[Any] | None, fetched: Future[Any],
                topic_ok: Any, deadline: Deadline) -> None:
    try:
        if described is not None:
            _fill_members(out, described.result(timeout=deadline.wait_s()), topic_ok)
        offsets = fetched.result(timeout=deadline.wait_s())
    except ck.KafkaException as exc:
        out.error = describe(exc)
        return
    except TimeoutError:
        out.error = "no answer within the check's timeout"
        return
    for tp in offsets.topic_partitions:
        if tp.error is not None:
            out.error = f"{tp.topic}[{tp.partition}]: {tp.error.str()}"
            continue
        if topic_ok(tp.topic):
            # Negative means "no commit" (OFFSET_INVALID), shown by Kafka's tool as "-".
            out.committed[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None


def _fill_members(out: GroupOffsets, desc: Any, topic_ok: Any) -> None:
    out.state = desc.state.name
    out.members = len(desc.members)
    for member in desc.members:
        for tp in member.assignment.topic_partitions:
            if topic_ok(tp.topic):
                out.committed.setdefault((tp.topic, tp.partition), None)


def _end_offsets(admin: ck_admin.AdminClient, tps: list[TP], deadline: Deadline
                 ) -> tuple[dict[TP, int], dict[TP, str]]:
    if not tps:
        return {}, {}
    # Chunks, all in flight at once: librdkafka's handling of one ListOffsets grows faster
    # than linearly with its partition count (10,000 partitions: 0.5 s in one request,
    # 0.05 s in 20 requests of 500, measured with bench/kafka_lag).
    chunks = [(tps[i:i + CHUNK], _list_latest(admin, tps[i:i + CHUNK], deadline))
              for i in range(0, len(tps), CHUNK)]
    answers: dict[Any, Any] = {}
    ends: dict[TP, int] = {}
    errors: dict[TP, str] = {}
    failed: list[KafkaUnavailable] = []
    for asked, chunk in chunks:
        try:
            answers.update(wait(chunk, deadline, "reading log-end offsets"))
        except KafkaUnavailable as exc:
            # A chunk holding a partition whose leader hangs fails whole; the other chunks
            # still count, and its partitions say why they have no log-end offset.
            failed.append(exc)
            errors.update(dict.fromkeys(asked, str(exc)))
    if len(failed) == len(chunks):
        raise failed[0]  # nothing was read: the cluster is not there
    for tp, info in answers.items():
        key = (tp.topic, tp.partition)
        if isinstance(info, ck.KafkaError):
            errors[key] = f"{info.str()} ({info.name()})"
        elif info.offset < 0:  # librdkafka's "unknown" (-1001) when the leader timed out
            errors[key] = NO_END
        else:
            ends[key] = info.offset
    return ends, errors


@functools.cache
def _fast_list_offsets() -> Any:
    """The C method behind AdminClient.list_offsets (see _list_latest), or None: it is
    internal, and a client version without it must still work."""
    try:
        from confluent_kafka.cimpl import _AdminClientImpl
    except ImportError:
        return None
    return getattr(_AdminClientImpl, "list_offsets", None)


def _list_latest(admin: ck_admin.AdminClient, tps: list[TP], deadline: Deadline) -> Future[Any]:
    """One ListOffsets(latest) for all partitions, answered by ONE future holding the dict
    {TopicPartition: ListOffsetsResultInfo | KafkaError}.

    ck_admin.AdminClient.list_offsets wraps the same C call but builds one Future per partition,
    which costs more than the request itself at 10,000 partitions; we call the C method
    the wrapper calls. Should the wrapper's internals change, fall back to it.
    """
    latest = ck_admin.OffsetSpec.latest()  # type: ignore[attr-defined,no-untyped-call]
    impl = _fast_list_offsets()  # looked up on first use: the Kafka client loads lazily
    if impl is not None:
        request = [ck.TopicPartition(t, p, latest._value) for t, p in tps]
        fut: Future[Any] = Future()
        fut.set_running_or_notify_cancel()
        try:
            impl(admin, request, fut, request_timeout=deadline.left())
            return fut
        except TypeError:
            log.warning("fast list_offsets unavailable; using the per-partition wrapper")
    per_tp = admin.list_offsets({ck.TopicPartition(t, p): latest for t, p in tps},
                                request_timeout=deadline.left())
    return _gather(per_tp)


def _gather(per_tp: dict[Any, Future[Any]]) -> Future[Any]:
    out: Future[Any] = Future()
    out.set_running_or_notify_cancel()
    pending = len(per_tp)
    answers: dict[Any, Any] = {}
    lock = threading.Lock()

    def done(tp: Any, f: Future[Any]) -> None:
        nonlocal pending
        exc = f.exception()
        value = exc.args[0] if isinstance(exc, ck.KafkaException) else exc or f.result()
        with lock:
            answers[tp] = value
            pending -= 1
            finished = pending == 0
        if finished:
            out.set_result(answers)

    for tp, f in per_tp.items():
        f.add_done_callback(functools.partial(done, tp))
    return out

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
CHUNK = 250
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
    keys = _Keys(topic_ok)
    if groups:
        to_describe = [g for g in groups if listed[g] != EMPTY]
        described: dict[str, Future[Any]] = {}
        for i in range(0, len(to_describe), GROUP_CHUNK):
            described.update(admin.describe_consumer_groups(
                to_describe[i:i + GROUP_CHUNK], request_timeout=deadline.left()))
        fetches = {g: _committed_of(admin, g, deadline) for g in groups}
        for g in groups:
            if g not in described:
                result[g].state = EMPTY
            _fill_group(result[g], described.get(g), fetches[g], keys, deadline)
    wanted = sorted({tp for go in result.values() for tp in go.committed})
    missing: list[str] = []
    if known_topics is not None:
        missing = sorted({t for t, _ in wanted if t not in known_topics})
    ends, errors = _end_offsets(admin, wanted, deadline, keys.tps)
    return Snapshot(result, ends, errors, missing)


_UNSEEN = object()


class _Keys:
    """``topic_ok`` asked once per topic, and ONE (topic, partition) tuple per partition.

    At 100,000 group-partitions on 10,000 partitions the client hands out a new string
    for every row; sharing one key per partition makes the snapshot a tenth of the
    objects to pickle (pickle writes an object seen before as a reference), to rebuild in
    the check's process and to hash there (a dict finds an identical key first).
    """

    def __init__(self, topic_ok: Any) -> None:
        self.topic_ok = topic_ok
        self.topics: dict[str, str | None] = {}
        """Topic as the client gave it: the shared string, or None when not watched."""
        self.tps: dict[TP, TP] = {}

    def topic(self, name: str) -> str | None:
        known = self.topics.get(name, _UNSEEN)
        if known is _UNSEEN:
            known = self.topics[name] = name if self.topic_ok(name) else None
        return known  # type: ignore[return-value]

    def tp(self, topic: str, partition: int) -> TP:
        key = (topic, partition)
        return self.tps.setdefault(key, key)


def _committed_of(admin: ck_admin.AdminClient, group: str, deadline: Deadline
                  ) -> Future[Any]:
    """One OffsetFetch for ``group``: a future of its ConsumerGroupTopicPartitions, or of
    the KafkaError that stands for it.

    The wrapper AdminClient.list_consumer_group_offsets builds two Futures and a callback
    per group (2,000 groups a run at scale); the C method it calls takes one, so we call
    that, as _list_latest does for ListOffsets, and fall back to the wrapper.
    """
    request = [ck.ConsumerGroupTopicPartitions(group)]
    impl = _fast_admin("list_consumer_group_offsets")
    if impl is not None:
        fut: Future[Any] = Future()
        fut.set_running_or_notify_cancel()
        try:
            impl(admin, request, fut, request_timeout=deadline.left())
            return fut  # its result: [ConsumerGroupTopicPartitions | KafkaError]
        except TypeError:
            log.warning("fast list_consumer_group_offsets unavailable; using the wrapper")
    return _first(admin.list_consumer_group_offsets(
        request, request_timeout=deadline.left())[group])


def _first(per_group: Future[Any]) -> Future[Any]:
    """The wrapper's per-group future, answering as the C method's does (a list)."""
    out: Future[Any] = Future()
    out.set_running_or_notify_cancel()

    def done(f: Future[Any]) -> None:
        exc = f.exception()
        if isinstance(exc, ck.KafkaException) and exc.args:
            out.set_result([exc.args[0]])
        elif exc is not None:
            out.set_exception(exc)
        else:
            out.set_result([f.result()])

    per_group.add_done_callback(done)
    return out


def _fill_group(out: GroupOffsets, described: Future[Any] | None, fetched: Future[Any],
                keys: _Keys, deadline: Deadline) -> None:
    try:
        if described is not None:
            _fill_members(out, described.result(timeout=deadline.wait_s()), keys)
        (offsets,) = fetched.result(timeout=deadline.wait_s())
        if isinstance(offsets, ck.KafkaError):
            raise ck.KafkaException(offsets)
    except ck.KafkaException as exc:
        out.error = describe(exc)
        return
    except TimeoutError:
        out.error = "no answer within the check's timeout"
        return
    # 100,000 rows a run: the lookups of _Keys inlined.
    committed, topics, tps = out.committed, keys.topics, keys.tps
    for tp in offsets.topic_partitions:
        if tp.error is not None:
            out.error = f"{tp.topic}[{tp.partition}]: {tp.error.str()}"
            continue
        topic = topics.get(tp.topic, _UNSEEN)
        if topic is _UNSEEN:
            topic = keys.topic(tp.topic)
        if isinstance(topic, str):
            key = (topic, tp.partition)
            key = tps.setdefault(key, key)
            # Negative means "no commit" (OFFSET_INVALID), shown by Kafka's tool as "-".
            offset = tp.offset
            committed[key] = offset if offset >= 0 else None


def _fill_members(out: GroupOffsets, desc: Any, keys: _Keys) -> None:
    out.state = desc.state.name
    out.members = len(desc.members)
    for member in desc.members:
        for tp in member.assignment.topic_partitions:
            topic = keys.topic(tp.topic)
            if topic is not None:
                out.committed.setdefault(keys.tp(topic, tp.partition), None)


def _end_offsets(admin: ck_admin.AdminClient, tps: list[TP], deadline: Deadline,
                 shared: dict[TP, TP]) -> tuple[dict[TP, int], dict[TP, str]]:
    """Log-end offsets of ``tps``, keyed by the ``shared`` key objects (see _Keys)."""
    if not tps:
        return {}, {}
    # Chunks, all in flight at once: librdkafka's handling of one ListOffsets grows faster
    # than linearly with its partition count (it finds each partition's leader by a linear
    # search of the request). 10,000 partitions on one node: 0.5 s in one request; in
    # requests of 1,000 / 500 / 250 / 100, 128 / 105 / 80 / 90 ms (medians of 8, measured
    # against the bench/kafka_lag layout).
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
    kafka_error = ck.KafkaError
    for tp, info in answers.items():
        key = (tp.topic, tp.partition)
        key = shared.get(key, key)
        if isinstance(info, kafka_error):
            errors[key] = f"{info.str()} ({info.name()})"
        elif info.offset < 0:  # librdkafka's "unknown" (-1001) when the leader timed out
            errors[key] = NO_END
        else:
            ends[key] = info.offset
    return ends, errors


@functools.cache
def _fast_admin(method: str) -> Any:
    """The C method behind an AdminClient method (see _list_latest), or None: it is
    internal, and a client version without it must still work."""
    try:
        from confluent_kafka.cimpl import _AdminClientImpl
    except ImportError:
        return None
    return getattr(_AdminClientImpl, method, None)


def _list_latest(admin: ck_admin.AdminClient, tps: list[TP], deadline: Deadline) -> Future[Any]:
    """One ListOffsets(latest) for all partitions, answered by ONE future holding the dict
    {TopicPartition: ListOffsetsResultInfo | KafkaError}.

    ck_admin.AdminClient.list_offsets wraps the same C call but builds one Future per partition,
    which costs more than the request itself at 10,000 partitions; we call the C method
    the wrapper calls. Should the wrapper's internals change, fall back to it.
    """
    latest = ck_admin.OffsetSpec.latest()  # type: ignore[attr-defined,no-untyped-call]
    impl = _fast_admin("list_offsets")  # looked up on first use: the client loads lazily
    if impl is not None:
        tp_class, spec = ck.TopicPartition, latest._value
        request = [tp_class(t, p, spec) for t, p in tps]
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

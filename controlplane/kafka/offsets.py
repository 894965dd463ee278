"""Collect committed and log-end offsets for many consumer groups in few round trips.

One ``describe_consumer_groups`` for all groups (their state and members' assignments),
one ``list_consumer_group_offsets`` per group (the client's limit), all in flight at
once, then a single ``list_offsets`` for the union of every group's partitions.
Rows follow Kafka's ConsumerGroupCommand: every partition the group has a commit on or a
member is assigned, ``committed`` None where there is no commit.
"""

from __future__ import annotations

import re
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from controlplane.kafka.client import Deadline, KafkaUnavailable, describe, wait

TP = tuple[str, int]


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


def select_groups(admin: AdminClient, names: list[str], patterns: list[str],
                  deadline: Deadline) -> list[str]:
    """Named groups as given; patterns (full match) and the no-filter case list the cluster."""
    if names and not patterns:
        return list(dict.fromkeys(names))
    listing = wait(admin.list_consumer_groups(request_timeout=deadline.left()), deadline,
                   "listing consumer groups")
    found = sorted(g.group_id for g in listing.valid)
    compiled = [re.compile(p) for p in patterns]
    picked = [g for g in found if not compiled or any(rx.fullmatch(g) for rx in compiled)]
    return list(dict.fromkeys([*names, *picked]))


def collect(admin: AdminClient, groups: list[str], topic_ok: Any, deadline: Deadline,
            known_topics: set[str] | None = None) -> Snapshot:
    """Offsets of ``groups`` on the partitions whose topic passes ``topic_ok(topic)``."""
    result = {g: GroupOffsets(g) for g in groups}
    if groups:
        described = admin.describe_consumer_groups(groups, request_timeout=deadline.left())
        fetches = {g: admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(g)], request_timeout=deadline.left())[g]
            for g in groups}
        for g in groups:
            _fill_group(result[g], described[g], fetches[g], topic_ok, deadline)
    wanted = sorted({tp for go in result.values() for tp in go.committed})
    missing: list[str] = []
    if known_topics is not None:
        missing = sorted({t for t, _ in wanted if t not in known_topics})
    ends, errors = _end_offsets(admin, wanted, deadline)
    return Snapshot(result, ends, errors, missing)


def _fill_group(out: GroupOffsets, described: Future[Any], fetched: Future[Any],
                topic_ok: Any, deadline: Deadline) -> None:
    try:
        desc = described.result(timeout=deadline.wait_s())
        out.state = desc.state.name
        out.members = len(desc.members)
        for member in desc.members:
            for tp in member.assignment.topic_partitions:
                if topic_ok(tp.topic):
                    out.committed.setdefault((tp.topic, tp.partition), None)
        offsets = fetched.result(timeout=deadline.wait_s())
    except KafkaException as exc:
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


def _end_offsets(admin: AdminClient, tps: list[TP], deadline: Deadline
                 ) -> tuple[dict[TP, int], dict[TP, str]]:
    if not tps:
        return {}, {}
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    request = {TopicPartition(t, p): latest for t, p in tps}
    futures = admin.list_offsets(request, request_timeout=deadline.left())
    ends: dict[TP, int] = {}
    errors: dict[TP, str] = {}
    for tp, fut in futures.items():
        key = (tp.topic, tp.partition)
        try:
            ends[key] = fut.result(timeout=deadline.wait_s()).offset
        except KafkaException as exc:
            errors[key] = describe(exc)
        except TimeoutError:
            raise KafkaUnavailable("reading log-end offsets: no answer within the check's "
                                   "timeout") from None
    return ends, errors

"""One lag run's reads from the cluster, in this process or in the check's child process.

By default the reads run in a long-lived child (controlplane/kafka/child.py says why); the
sliding windows and time tables stay in the parent, so a child that dies loses nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controlplane.kafka.child import ChildClient
from controlplane.kafka.client import (
    Deadline,
    ErrorTrap,
    KafkaCheckConfig,
    KafkaUnavailable,
    client_config,
    describe,
    request_deadline,
)
from controlplane.kafka.offsets import (
    LIST_MIN_S,
    LIST_SHARE,
    Snapshot,
    collect,
    select_groups,
)
from controlplane.lazyimport import lazy_module
from controlplane.probes.base import ProbeError

if TYPE_CHECKING:
    import confluent_kafka as ck
    import confluent_kafka.admin as ck_admin
else:  # the Kafka client loads when a probe runs, not when a config validates
    ck = lazy_module("confluent_kafka")
    ck_admin = lazy_module("confluent_kafka.admin")

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


def fetch(admin: ck_admin.AdminClient, sel: Selection, deadline: Deadline,
          trap: ErrorTrap | None = None) -> Fetched:
    """Groups, committed and log-end offsets; KafkaUnavailable if the cluster is not there."""
    # One-topic Metadata (any live broker answers): a down cluster fails here once.
    _metadata(admin, deadline, trap, topic="__consumer_offsets")
    known = None
    if sel.topics:
        md = _metadata(admin, deadline, trap)
        if md is not None:
            known = {name for name, t in md.topics.items() if t.error is None}
    listing = select_groups(admin, sel.groups, sel.group_patterns, deadline)
    snap = collect(admin, listing.states, TopicFilter(sel.topics, sel.topic_patterns),
                   deadline, known)
    snap.listing_errors = listing.errors
    return Fetched(snap, known)


def _metadata(admin: ck_admin.AdminClient, deadline: Deadline, trap: ErrorTrap | None,
              topic: str | None = None) -> Any:
    """A Metadata answer within a share of the run's time, or None.

    librdkafka sends it to any broker it holds a connection to, and a broker that hangs
    without closing its connections (a frozen VM) looks alive until the controller fences
    it. A timeout with no broker error reported means exactly that: the run goes on with
    the brokers that answer. A timeout after connection errors means the cluster is down.
    """
    budget = request_deadline(min(deadline.left(), max(LIST_MIN_S, deadline.left() * LIST_SHARE)))
    try:
        return admin.list_topics(topic=topic, timeout=budget.left())
    except ck.KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if trap is not None and getattr(err, "code", lambda: None)() == ck.KafkaError._TIMED_OUT:
            admin.poll(0)  # delivers the errors the client saw meanwhile to the trap
            if trap.last is None:
                log.info("metadata request unanswered with no broker error; going on "
                         "(a broker may hang) timeout_s=%.1f", max(0.0, budget.remaining()))
                return None
        raise KafkaUnavailable(f"connecting: {describe(exc)}") from exc


class InProcessClient:
    """Reads with an AdminClient in this process (``isolate_client: false``)."""

    def __init__(self, cfg: KafkaCheckConfig) -> None:
        self.cfg = cfg
        self.trap = ErrorTrap()
        try:
            self.admin = ck_admin.AdminClient(client_config(cfg, cfg.timeout, self.trap))
        except ck.KafkaException as exc:
            raise ProbeError(f"invalid Kafka client settings: {describe(exc)}") from exc

    def fetch(self, sel: Selection, timeout: float) -> Fetched:
        self.admin.poll(0)
        self.trap.take()  # errors from before this run are not this run's answer
        try:
            return fetch(self.admin, sel, request_deadline(timeout), self.trap)
        except KafkaUnavailable as exc:
            self.admin.poll(0)
            exc.client_error = self.trap.take()  # type: ignore[attr-defined]
            raise
        finally:
            self.admin.poll(0)

    def close(self) -> None:
        pass


class IsolatedClient(ChildClient):
    """The same reads in the check's long-lived child process (the default)."""

    def __init__(self, cfg: KafkaCheckConfig) -> None:
        super().__init__(cfg, InProcessClient)

    def fetch(self, sel: Selection, timeout: float) -> Fetched:
        fetched: Fetched = self.call("fetch", (sel,), timeout)
        return fetched

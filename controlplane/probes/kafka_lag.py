"""kafka_lag: consumer-group lag in messages and seconds, judged with Burrow's rules.

Per partition: committed offset, log-end offset, lag = end - committed (None where the
group never committed, as Kafka's tool prints "-"), estimated time lag (see
controlplane/kafka/timelag.py) and a Burrow status over the last ``window`` runs (see
controlplane/kafka/status.py). The probe instance keeps the offset tables and windows
across runs; the scheduler keeps one instance per check.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from controlplane.durations import Duration, parse_duration
from controlplane.kafka.child import ClientDied, died_message
from controlplane.kafka.client import (
    KafkaCheckConfig,
    KafkaUnavailable,
    gc_paused,
    request_deadline,
    tls_arguments,
    tls_values,
    unreachable_message,
)
from controlplane.kafka.fetch import InProcessClient, IsolatedClient, Selection
from controlplane.kafka.offsets import Snapshot
from controlplane.kafka.status import GroupStatus, StatusWindows
from controlplane.kafka.timelag import TimeLagTables
from controlplane.probes.base import CheckConfig, Outcome, Probe
from controlplane.results import Result, Status, Step

if TYPE_CHECKING:  # prometheus_client loads with the metrics, not with the config
    from controlplane.metrics import Metrics

log = logging.getLogger(__name__)

STATUS_TO_CHECK = {GroupStatus.OK: Status.OK, GroupStatus.WARN: Status.DEGRADED}
STATUS_NAMES = {s: s.name for s in GroupStatus}  # Enum.name is slow at 10,000 rows a run


class KafkaLagConfig(KafkaCheckConfig):
    kind: str = "kafka_lag"
    groups: list[str] = Field(default_factory=list, description="exact group names")
    group_patterns: list[str] = Field(default_factory=list,
                                      description="regexes a group name must fully match")
    topics: list[str] = Field(default_factory=list, description="only these topics")
    topic_patterns: list[str] = Field(default_factory=list)
    window: int = Field(default=10, ge=2, le=1000, description="runs in Burrow's window")
    allowed_lag: int = Field(default=0, ge=0, description="lag still counted as caught up")
    lag_warn: int | None = Field(default=None, ge=0)
    lag_crit: int | None = Field(default=None, ge=0)
    lag_seconds_warn: Duration | None = None
    lag_seconds_crit: Duration | None = None
    time_table_size: int = Field(default=60, ge=2, le=10000)

    @field_validator("group_patterns", "topic_patterns")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"{p!r} is not a valid regular expression: {exc}") from None
        return v


@dataclass(slots=True)
class Row:
    group: str
    topic: str
    partition: int
    committed: int | None
    end_offset: int | None
    lag: int | None
    lag_seconds: float | None
    status: GroupStatus

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "topic": self.topic, "partition": self.partition,
                "committed": self.committed, "end_offset": self.end_offset, "lag": self.lag,
                "lag_seconds": self.lag_seconds, "status": STATUS_NAMES[self.status]}


class KafkaLagProbe(Probe[KafkaLagConfig]):
    kind: ClassVar[str] = "kafka_lag"
    config_model: ClassVar[type[CheckConfig]] = KafkaLagConfig
    cli_name: ClassVar[str | None] = "kafka-lag"
    # Details are group, topic and partition names with offsets, lags and statuses.
    redact_details: ClassVar[bool] = False
    _exported: ClassVar[dict[str, set[tuple[str, ...]]]] = {}
    _export_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, config: KafkaLagConfig, context: Any = None) -> None:
        super().__init__(config, context)
        self._client: IsolatedClient | InProcessClient | None = None
        self.tables = TimeLagTables(config.time_table_size)
        self.windows = StatusWindows(config.window)
        self.selection = Selection(config.groups, config.group_patterns, config.topics,
                                   config.topic_patterns)

    def client(self) -> IsolatedClient | InProcessClient:
        if self._client is None:
            self._client = (IsolatedClient(self.config) if self.config.isolate_client
                            else InProcessClient(self.config))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def check(self) -> Outcome:
        cfg = self.config
        deadline = request_deadline(cfg.timeout)
        t0 = time.monotonic()
        try:
            fetched = self.client().fetch(self.selection, deadline.left())
        except KafkaUnavailable as exc:
            return Outcome(Status.FAILING, unreachable_message(
                cfg.bootstrap, str(exc), getattr(exc, "client_error", None)))
        except ClientDied as exc:
            return Outcome(Status.FAILING, died_message("reading offsets from",
                                                        cfg.bootstrap, exc))
        snap, known = fetched.snapshot, fetched.known_topics
        steps = [Step(name="fetch offsets", status=Status.OK,
                      duration_s=round(time.monotonic() - t0, 6),
                      message=f"{len(snap.groups)} groups")]
        missing_topics = sorted(set(cfg.topics) - known) if known is not None else []
        with gc_paused():
            rows = self._evaluate(snap)
            return self._outcome(snap, rows, missing_topics, steps)

    def _evaluate(self, snap: Snapshot, now: float | None = None) -> list[Row]:
        # ``now`` is this run's sample time (the tests pass their own clock).
        now = time.time() if now is None else now
        tables, windows, allowed = self.tables, self.windows, self.config.allowed_lag
        for (topic, partition), end_offset in snap.end_offsets.items():
            tables.add(topic, partition, end_offset, now)
        rows: list[Row] = []
        append, ok = rows.append, GroupStatus.OK
        end_of, table_of = snap.end_offsets.get, tables.tables.get  # 100,000 rows a run
        for name, go in snap.groups.items():
            has_members = go.members > 0
            mine = windows.of_group(name)
            window_of = mine.get
            for tp, committed in sorted(go.committed.items()):
                end = end_of(tp)
                w = window_of(tp)
                if committed is not None and end is not None:
                    lag: int | None = end - committed
                    if w is None:
                        w = windows.window(mine, tp)
                    status = w.step(committed, end - committed, has_members, allowed)
                else:
                    lag = None
                    status = ok if w is None else w.evaluate(has_members, allowed)
                table = table_of(tp)
                secs = None if table is None else table.lag_seconds(committed, now)
                topic, partition = tp
                append(Row(name, topic, partition, committed, end, lag, secs, status))
        # Forget partitions no longer watched; every current one was just touched, so a
        # surplus in size is the only sign there is anything to forget. Not after a partial
        # read: a group that could not be read this once keeps its window (a STOPped group
        # must not look new, and OK, for the next `window` runs).
        if _partial(snap):
            return rows
        if len(tables.tables) > len(snap.end_offsets):
            tables.forget_except(set(snap.end_offsets))
        if len(windows.groups) > len(snap.groups) or len(windows) > len(rows):
            windows.forget_except({name: set(go.committed) for name, go in snap.groups.items()})
        return rows

    def _outcome(self, snap: Snapshot, rows: list[Row], missing_topics: list[str],
                 steps: list[Step]) -> Outcome:
        cfg = self.config
        problems: list[tuple[Status, str]] = []
        for topic in missing_topics:
            problems.append((Status.FAILING, f"topic {topic} does not exist (deleted?)"))
        if snap.listing_errors:
            problems.append((Status.FAILING, "consumer groups could not be listed on every "
                             f"broker ({'; '.join(snap.listing_errors)}); the groups they "
                             "coordinate are missing from this run"))
        groups, topics = _summaries(snap, rows)
        for name, go in snap.groups.items():
            summary = groups[name]
            if go.error:
                summary["status"] = GroupStatus.ERROR.name
                problems.append((Status.FAILING, f"group {name}: {go.error}"))
            elif go.state == "DEAD" and not go.committed and name in cfg.groups:
                summary["status"] = GroupStatus.ERROR.name
                problems.append((Status.FAILING, f"group {name} does not exist (deleted?)"))
        problems += _status_problems(rows)
        problems += self._threshold_problems(rows)
        for (topic, partition), reason in sorted(snap.end_errors.items()):
            problems.append((Status.FAILING,
                             f"cannot read the log-end offset of {topic}[{partition}]: {reason}"))
        if cfg.groups == [] and cfg.group_patterns and not snap.groups:
            problems.append((Status.FAILING, "no consumer group matches "
                             + ", ".join(cfg.group_patterns)))
        lags = [r.lag for r in rows if r.lag is not None]
        secs = [r.lag_seconds for r in rows if r.lag_seconds is not None]
        metrics: dict[str, float | None] = {
            "groups": float(len(snap.groups)), "partitions": float(len(rows)),
            "total_lag": float(sum(lags)), "max_lag": float(max(lags, default=0)),
            "max_lag_seconds": max(secs) if secs else None,
        }
        status = max((s for s, _ in problems), key=lambda s: s.rank, default=Status.OK)
        problems.sort(key=lambda p: -p[0].rank)  # stable: the worst first, in found order
        message = _summary(problems) if problems else _ok_message(rows, metrics)
        details = {"partitions": [r.as_dict() for r in rows], "groups": groups,
                   "topics": topics, "problems": [m for _, m in problems],
                   "missing_topics": missing_topics, "listing_errors": snap.listing_errors}
        return Outcome(status, message, metrics=metrics, details=details, steps=steps)

    def _threshold_problems(self, rows: list[Row]) -> list[tuple[Status, str]]:
        """Per group and measure, the worse limit crossed: 'group G lag 6 > 4 on t[0,2]'."""
        cfg = self.config
        out: list[tuple[Status, str]] = []
        checks: list[tuple[str, str, float | None, float | None, str]] = [
            ("lag", "lag", cfg.lag_crit, cfg.lag_warn, ""),
            ("lag_seconds", "time lag", cfg.lag_seconds_crit, cfg.lag_seconds_warn, "s")]
        if all(crit is None and warn is None for _, _, crit, warn, _ in checks):
            return out
        by_group: dict[str, list[Row]] = {}
        for r in rows:
            by_group.setdefault(r.group, []).append(r)
        for attr, label, crit, warn, unit in checks:
            for group, mine in by_group.items():
                for limit, status in ((crit, Status.FAILING), (warn, Status.DEGRADED)):
                    if limit is None:
                        continue
                    over = [r for r in mine if (getattr(r, attr) or 0) > limit]
                    if over:
                        top = max(getattr(r, attr) for r in over)
                        out.append((status, f"group {group} {label} {top:g}{unit} > "
                                    f"{limit:g}{unit} on {_partitions_text(over)}"))
                        break
        return out

    @classmethod
    def export_metrics(cls, result: Result, metrics: Metrics) -> None:
        if "partitions" not in result.details:
            cls._export_unreadable(result.check, metrics)
            return
        rows = result.details["partitions"]
        groups = result.details.get("groups") or {}
        seen: set[tuple[str, ...]] = set()
        for r in rows:
            labels = (str(r["group"]), str(r["topic"]), str(r["partition"]))
            seen.add(("p", *labels))
            if r.get("lag") is not None:
                metrics.kafka_lag.labels(*labels).set(r["lag"])
            else:
                _remove(metrics.kafka_lag, labels)
            if r.get("lag_seconds") is not None:
                metrics.kafka_lag_seconds.labels(*labels).set(r["lag_seconds"])
            else:
                _remove(metrics.kafka_lag_seconds, labels)
        for name, g in groups.items():
            seen.add(("g", name))
            metrics.kafka_group_status.labels(name).set(GroupStatus[g["status"]].value)
        # Groups the listing could not reach this run are unknown, not gone: ERROR.
        unlisted = bool(result.details.get("listing_errors"))
        with cls._export_lock:
            stale = cls._exported.get(result.check, set()) - seen
            kept = {k for k in stale if k[0] == "g"} if unlisted else set()
            cls._exported[result.check] = seen | kept
        for key in stale:
            if key in kept:
                metrics.kafka_group_status.labels(*key[1:]).set(GroupStatus.ERROR.value)
            elif key[0] == "p":
                _remove(metrics.kafka_lag, key[1:])
                _remove(metrics.kafka_lag_seconds, key[1:])
            else:
                _remove(metrics.kafka_group_status, key[1:])

    @classmethod
    def _export_unreadable(cls, check: str, metrics: Metrics) -> None:
        """The cluster could not be read: groups we knew go to ERROR, lag series go away
        (an old number would look current)."""
        with cls._export_lock:
            known = cls._exported.get(check, set())
            cls._exported[check] = {k for k in known if k[0] == "g"}
        for key in known:
            if key[0] == "g":
                metrics.kafka_group_status.labels(*key[1:]).set(GroupStatus.ERROR.value)
            else:
                _remove(metrics.kafka_lag, key[1:])
                _remove(metrics.kafka_lag_seconds, key[1:])

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--bootstrap", required=True, help="host:port[,host:port...]")
        parser.add_argument("--group", action="append", default=[], metavar="G",
                            help="consumer group (repeatable); default: all groups")
        parser.add_argument("--group-regex", action="append", default=[], metavar="RE",
                            help="groups whose name fully matches RE (repeatable)")
        parser.add_argument("--topic", action="append", default=[], metavar="T",
                            help="only partitions of topic T (repeatable)")
        parser.add_argument("--lag-warn", type=int, metavar="N", help="degraded above N")
        parser.add_argument("--lag-crit", type=int, metavar="N", help="failing above N")
        parser.add_argument("--timeout", default="10s", help="e.g. 10s")
        tls_arguments(parser)

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> CheckConfig:
        return KafkaLagConfig(
            id="kafka-lag", bootstrap=args.bootstrap, groups=args.group,
            group_patterns=args.group_regex, topics=args.topic, lag_warn=args.lag_warn,
            lag_crit=args.lag_crit, timeout=parse_duration(args.timeout),
            **tls_values(args))


def _partial(snap: Snapshot) -> bool:
    """Some of what the check watches could not be read this run."""
    return bool(snap.listing_errors or snap.end_errors
                or any(go.error for go in snap.groups.values()))


def _remove(gauge: Any, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)


MAX_PROBLEMS_IN_MESSAGE = 5
MAX_PARTITIONS_IN_MESSAGE = 20


def _summary(problems: list[tuple[Status, str]]) -> str:
    """One line: the first problems, and how many more are in details.problems."""
    shown = "; ".join(m for _, m in problems[:MAX_PROBLEMS_IN_MESSAGE])
    more = len(problems) - MAX_PROBLEMS_IN_MESSAGE
    return shown + (f"; and {more} more (details.problems)" if more > 0 else "")


def _partitions_text(rows: list[Row]) -> str:
    """'t1[0,2], t2[1]' naming topics and partitions (the first 20, then a count)."""
    keys = sorted({(r.topic, r.partition) for r in rows})
    by_topic: dict[str, list[int]] = {}
    for topic, partition in keys[:MAX_PARTITIONS_IN_MESSAGE]:
        by_topic.setdefault(topic, []).append(partition)
    text = ", ".join(f"{t}[{','.join(map(str, ps))}]" for t, ps in by_topic.items())
    more = len(keys) - MAX_PARTITIONS_IN_MESSAGE
    return text + (f" and {more} more partitions" if more > 0 else "")


def _status_problems(rows: list[Row]) -> list[tuple[Status, str]]:
    bad: dict[tuple[str, GroupStatus], list[Row]] = {}
    for r in rows:
        if r.status is not GroupStatus.OK:
            bad.setdefault((r.group, r.status), []).append(r)
    out = []
    for (group, st), rs in sorted(bad.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        out.append((STATUS_TO_CHECK.get(st, Status.FAILING),
                    f"group {group} {st.name} on {_partitions_text(rs)}"))
    return out


def _summaries(snap: Snapshot, rows: list[Row]
               ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per group (with its topics) and per topic across groups, in one pass over the rows
    (100,000 at the benchmark's largest scale): partitions, summed and largest lag, worst
    status."""
    groups: dict[str, dict[str, Any]] = {
        name: {"state": go.state, "members": go.members, "partitions": 0,
               "status": GroupStatus.OK, "lag_sum": 0, "lag_max": 0, "lag_seconds_max": None,
               "topics": {}}
        for name, go in snap.groups.items()}
    topics: dict[str, dict[str, Any]] = {}
    # Rows come group by group, partitions in order, so each (group, topic) is one run of
    # rows: the sums and maxima are taken over lists, not updated row by row.
    for (group, topic), run in groupby(rows, key=_GROUP_TOPIC):
        mine = list(run)
        lags = [r.lag or 0 for r in mine]
        lag_sum, lag_max = sum(lags), max(0, *lags)
        g = groups[group]
        g["partitions"] += len(mine)
        g["lag_sum"] += lag_sum
        g["lag_max"] = max(g["lag_max"], lag_max)
        g["status"] = max(g["status"], *[r.status for r in mine])
        secs = [r.lag_seconds for r in mine if r.lag_seconds is not None]
        if secs and (g["lag_seconds_max"] is None or max(secs) > g["lag_seconds_max"]):
            g["lag_seconds_max"] = max(secs)
        gt = g["topics"].get(topic)
        t = topics.get(topic)
        if t is None:
            t = topics[topic] = {"groups": 0, "lag_sum": 0, "lag_max": 0}
        if gt is None:
            gt = g["topics"][topic] = {"partitions": 0, "lag_sum": 0, "lag_max": 0}
            t["groups"] += 1
        gt["partitions"] += len(mine)
        gt["lag_sum"] += lag_sum
        gt["lag_max"] = max(gt["lag_max"], lag_max)
        t["lag_sum"] += lag_sum
        t["lag_max"] = max(t["lag_max"], lag_max)
    for g in groups.values():
        g["status"] = STATUS_NAMES[g["status"]]
    return groups, topics


_GROUP_TOPIC = attrgetter("group", "topic")


def _ok_message(rows: list[Row], metrics: dict[str, float | None]) -> str:
    text = (f"{metrics['groups']:.0f} groups, {len(rows)} partitions, total lag "
            f"{metrics['total_lag']:.0f}, max lag {metrics['max_lag']:.0f}")
    if metrics["max_lag_seconds"] is not None:
        text += f", max time lag {metrics['max_lag_seconds']:g}s"
    return text

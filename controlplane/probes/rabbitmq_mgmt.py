"""The RabbitMQ management HTTP API as the `rabbitmq` kind reads it: queues, nodes, overview."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from controlplane.lazyimport import lazy_module
from controlplane.probes.base import ProbeError
from controlplane.probes.findings import Deadline, Findings, connection_reason
from controlplane.results import Status

if TYPE_CHECKING:
    import requests

    from controlplane.probes.rabbitmq import RabbitMqCheckConfig
else:  # requests loads when a probe runs, not when a config validates
    requests = lazy_module("requests")


class QueueRule(BaseModel):
    """Bounds for one queue; unset bounds are not judged."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    warn_messages: int | None = Field(default=None, ge=0, description="more: degraded")
    max_messages: int | None = Field(default=None, ge=0, description="more: failing")
    max_unacked: int | None = Field(default=None, ge=0, description="more: degraded")
    min_consumers: int = Field(default=1, ge=0, description="fewer with messages waiting: "
                               "failing; fewer on an empty queue: degraded")
    max_growth_per_min: float | None = Field(default=None, ge=0, description="depth growing "
                                             "faster between two runs: degraded")


class Management:
    """GETs on the management API with the check's credentials."""

    def __init__(self, url: str, user: str, password: str, vhost: str,
                 ca_file: str | None) -> None:
        self.url = url.rstrip("/")
        self.auth = (user, password)
        self.vhost = quote(vhost, safe="")
        self.verify: str | bool = ca_file or True

    def get(self, path: str, deadline: Deadline) -> Any:
        try:
            resp = requests.get(f"{self.url}/api/{path}", auth=self.auth, verify=self.verify,
                                timeout=deadline.budget(), allow_redirects=False)
        except requests.Timeout:
            raise ProbeError(f"management API {self.url}: no answer within "
                             f"{deadline.timeout:g}s") from None
        except requests.exceptions.SSLError as exc:
            raise _MgmtFailed(f"management API {self.url}: TLS failed: "
                              f"{connection_reason(exc)}") from None
        except requests.ConnectionError as exc:
            raise _MgmtFailed(f"management API {self.url}: cannot connect: "
                              f"{connection_reason(exc)}") from None
        if resp.status_code == 401:
            raise _MgmtFailed(f"management API {self.url}: authentication failed for user "
                              f"{self.auth[0]!r}", refused=_reason(resp))
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise _MgmtFailed(f"management API {self.url}/api/{path}: HTTP {resp.status_code}")
        return resp.json()


class _MgmtFailed(Exception):
    """The management API answered with a refusal or could not be reached: failing."""

    def __init__(self, message: str, refused: str | None = None) -> None:
        super().__init__(message)
        self.refused = refused
        """On a 401, the API's reason ("Login failed", "Not monitor user", …)."""


def _reason(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("reason") or "") if isinstance(body, dict) else ""


def judge_management(mgmt: Management, c: RabbitMqCheckConfig, found: Findings,
                     metrics: dict[str, float | None], details: dict[str, Any],
                     deadline: Deadline, last_depth: dict[str, tuple[float, int]]) -> bool:
    """Add the management steps; True if a node has a resource alarm (publishers blocked)."""
    t0 = time.monotonic()
    try:
        overview = mgmt.get("overview", deadline)
        nodes = _get_nodes(mgmt, deadline)
        queues = {rule.name: mgmt.get(f"queues/{mgmt.vhost}/{quote(rule.name, safe='')}",
                                      deadline) for rule in c.queues}
    except _MgmtFailed as exc:
        found.add("management", Status.FAILING, str(exc), time.monotonic() - t0)
        return False
    found.add("management", duration_s=time.monotonic() - t0,
              message=f"RabbitMQ {overview.get('rabbitmq_version', '?')}")
    details["rabbitmq_version"] = overview.get("rabbitmq_version")
    if isinstance(nodes, str):
        # the user may read queues but not nodes: alarms unknown, not absent
        details["nodes"] = None
        metrics["alarms"] = None
        found.add("alarms", Status.DEGRADED, f"node stats unavailable: {nodes}; memory and "
                  "disk alarms cannot be judged")
        alarm = False
    else:
        alarm = _nodes(nodes, found, metrics, details)
    connections = int((overview.get("object_totals") or {}).get("connections", 0))
    metrics["connections"] = connections
    if c.max_connections is not None and connections > c.max_connections:
        found.add("connections", Status.DEGRADED,
                  f"{connections} connections, over {c.max_connections}")
    details["queues"] = []
    now = time.monotonic()
    for rule in c.queues:
        _queue(rule, queues[rule.name], found, metrics, details, now, last_depth)
    return alarm


def _get_nodes(mgmt: Management, deadline: Deadline) -> list[dict[str, Any]] | str:
    """The nodes, or why this user may not read them (after /overview let it in)."""
    try:
        nodes: list[dict[str, Any]] = mgmt.get("nodes", deadline) or []
    except _MgmtFailed as exc:
        if exc.refused and exc.refused != "Login failed":
            return (f"user {mgmt.auth[0]!r} may not read /api/nodes ({exc.refused}: it needs "
                    "the monitoring or administrator tag)")
        raise
    return nodes


def _nodes(nodes: list[dict[str, Any]], found: Findings, metrics: dict[str, float | None],
           details: dict[str, Any]) -> bool:
    alarms: list[str] = []
    unknown: list[str] = []
    details["nodes"] = []
    for node in nodes:
        name = node.get("name", "?")
        if node.get("running") is not False and \
                ("mem_alarm" not in node or "disk_free_alarm" not in node):
            unknown.append(name)
        mem_used, mem_limit = node.get("mem_used"), node.get("mem_limit")
        details["nodes"].append({"name": name, "running": node.get("running"),
                                 "mem_used": mem_used, "mem_limit": mem_limit,
                                 "mem_alarm": node.get("mem_alarm"),
                                 "disk_free": node.get("disk_free"),
                                 "disk_free_limit": node.get("disk_free_limit"),
                                 "disk_free_alarm": node.get("disk_free_alarm")})
        if node.get("running") is False:
            alarms.append(f"node {name} is not running")
        if node.get("mem_alarm"):
            alarms.append(f"memory alarm on node {name}: {_mib(mem_used)} used of a "
                          f"{_mib(mem_limit)} high watermark; publishers are blocked")
        if node.get("disk_free_alarm"):
            alarms.append(f"disk alarm on node {name}: {_mib(node.get('disk_free'))} free, "
                          f"limit {_mib(node.get('disk_free_limit'))}; publishers are blocked")
    metrics["alarms"] = len(alarms)
    metrics["nodes_without_stats"] = len(unknown)
    if nodes and not unknown:
        metrics["mem_used_bytes"] = float(sum(n.get("mem_used") or 0 for n in nodes))
    for alarm in alarms:
        found.add("alarms", Status.FAILING, alarm)
    if unknown:
        # a missing stat is not "no alarm": statistics off, or the node not reporting
        found.add("alarms", Status.DEGRADED, f"node stats unavailable for {', '.join(unknown)}: "
                  "the management API reports no memory/disk alarm state (statistics "
                  "collection disabled on the broker, or the node is not reporting); alarms "
                  "cannot be judged")
    elif not alarms:
        found.add("alarms", message=f"{len(nodes)} node(s), no alarm")
    return bool(alarms)


def _queue(rule: QueueRule, q: dict[str, Any] | None, found: Findings,
           metrics: dict[str, float | None], details: dict[str, Any], now: float,
           last_depth: dict[str, tuple[float, int]]) -> None:
    step = f"queue {rule.name}"
    if q is None:
        found.add(step, Status.FAILING, f"queue {rule.name!r} does not exist in the vhost")
        return
    if "messages" not in q or "consumers" not in q:
        # a queue listed without figures is unknown, never "empty with no consumer"
        details["queues"].append({"name": rule.name, "messages": None, "consumers": None})
        found.add(step, Status.DEGRADED, f"queue {rule.name!r}: stats unavailable (the "
                  "management API lists it without message or consumer counts); it cannot "
                  "be judged")
        return
    messages = int(q.get("messages") or 0)
    ready = int(q.get("messages_ready") or 0)
    unacked = int(q.get("messages_unacknowledged") or 0)
    consumers = int(q.get("consumers") or 0)
    stats = q.get("message_stats") or {}
    publish_rate = (stats.get("publish_details") or {}).get("rate")
    deliver_rate = (stats.get("deliver_get_details") or {}).get("rate")
    growth = None
    if rule.name in last_depth:
        then, before = last_depth[rule.name]
        if now - then > 0:
            growth = round((messages - before) / (now - then) * 60, 3)
    last_depth[rule.name] = (now, messages)
    row = {"name": rule.name, "messages": messages, "ready": ready, "unacked": unacked,
           "consumers": consumers, "publish_rate": publish_rate, "deliver_rate": deliver_rate,
           "growth_per_min": growth}
    details["queues"].append(row)
    for key in ("messages", "ready", "unacked", "consumers", "publish_rate", "deliver_rate"):
        metrics[f"queue_{key}:{rule.name}"] = row[key]  # type: ignore[assignment]
    metrics[f"queue_growth_per_min:{rule.name}"] = growth
    problems = _queue_problems(rule, messages, unacked, consumers, growth)
    for status, message in problems:
        found.add(step, status, message)
    if not problems:
        found.add(step, message=f"{messages} messages ({ready} ready, {unacked} unacked), "
                  f"{consumers} consumer(s)")


def _queue_problems(rule: QueueRule, messages: int, unacked: int, consumers: int,
                    growth: float | None) -> list[tuple[Status, str]]:
    name = rule.name
    out: list[tuple[Status, str]] = []
    if consumers < rule.min_consumers:
        if messages:
            out.append((Status.FAILING, f"queue {name!r} has {messages} message(s) and "
                        f"{consumers} consumer(s) (expected at least {rule.min_consumers})"))
        else:
            out.append((Status.DEGRADED, f"queue {name!r} has {consumers} consumer(s) "
                        f"(expected at least {rule.min_consumers})"))
    if rule.max_messages is not None and messages > rule.max_messages:
        out.append((Status.FAILING, f"queue {name!r} holds {messages} messages, over "
                    f"{rule.max_messages}"))
    elif rule.warn_messages is not None and messages > rule.warn_messages:
        out.append((Status.DEGRADED, f"queue {name!r} holds {messages} messages, over "
                    f"{rule.warn_messages}"))
    if rule.max_unacked is not None and unacked > rule.max_unacked:
        out.append((Status.DEGRADED, f"queue {name!r} has {unacked} unacked messages, over "
                    f"{rule.max_unacked}"))
    if rule.max_growth_per_min is not None and growth is not None \
            and growth > rule.max_growth_per_min:
        out.append((Status.DEGRADED, f"queue {name!r} is growing by {growth:.0f} messages "
                    f"a minute, over {rule.max_growth_per_min:g}"))
    return out


def _mib(value: Any) -> str:
    return f"{value / 1048576:.1f} MiB" if isinstance(value, int | float) else "?"

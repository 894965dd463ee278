"""The Kafka side of kafka-metadata backups: read, apply and compare cluster metadata.

Every function here runs in a child process (:func:`isolated`): librdkafka aborts the whole
process when a broker drops some admin requests in flight (confluentinc/librdkafka#4605, see
controlplane/kafka/child.py), which is exactly what happens while a drill stops a broker.
What crosses the pipe is plain data (dicts, lists, strings).

Message data is not saved: a metadata backup restores topics (partitions, replication
factor, the configs set on the topic), consumer-group committed offsets and ACLs.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from controlplane.kafka.client import ErrorTrap, KafkaSecurity, security_config
from controlplane.probes.base import ProbeError

log = logging.getLogger(__name__)
T = TypeVar("T")

REDACTED = "<redacted>"
SECRET_WORDS = ("password", "secret", "jaas", "credential", "token", "ssl.key")


class KafkaMetadataError(Exception):
    """A Kafka operation of a metadata backup or restore failed; the message says which."""


def _child(conn: Connection, fn: Any, args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except KafkaMetadataError as exc:
        conn.send(("error", _why(str(exc))))
    except Exception as exc:
        conn.send(("error", _why(f"{type(exc).__name__}: {exc}")))


class _Clients:
    """This (child) process's admin clients and their last own error: a failed login or
    TLS handshake answers a request only with "transport failure"; the client's error
    (delivered by poll()) says why."""

    trap = ErrorTrap()
    admins: list[Any] = []


def _why(message: str) -> str:
    for admin in _Clients.admins:
        admin.poll(0)
    client = _Clients.trap.take()
    return f"{message} (client: {client})" if client else message


def isolated(fn: Any, *args: Any, timeout: float) -> Any:
    """``fn(*args)`` in a child process from the fork server; KafkaMetadataError when it
    fails, dies or does not answer within ``timeout`` seconds (it is then killed)."""
    ctx = mp.get_context("forkserver")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args), daemon=True,
                       name=f"kafka-{fn.__name__}")
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise KafkaMetadataError(f"{fn.__name__}: no answer from Kafka within {timeout:g}s")
        try:
            status, value = parent.recv()
        except EOFError:
            proc.join(5)
            raise KafkaMetadataError(f"the Kafka client process died (exit code "
                                     f"{proc.exitcode}) during {fn.__name__}") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    if status != "ok":
        raise KafkaMetadataError(str(value))
    return value


def _ka() -> Any:
    """confluent_kafka.admin, untyped: its stubs do not export the request classes."""
    import importlib

    return importlib.import_module("confluent_kafka.admin")


Cluster = str | dict[str, Any]
"""How to reach a cluster: a plaintext ``host:port[,...]`` bootstrap, or librdkafka settings
from :func:`connection` (bootstrap plus TLS and SASL). Plain data: it crosses the pipe."""


def connection(bootstrap: str, security: KafkaSecurity | None) -> Cluster:
    """The settings of a cluster reached with the kafka_* checks' TLS/SASL fields
    (``security``; None: plaintext). Built in the caller's process: the SASL password is
    read from its environment, and never logged or put in an error."""
    if security is None:
        return bootstrap
    try:
        return {"bootstrap.servers": bootstrap, **security_config(security)}
    except ProbeError as exc:
        raise KafkaMetadataError(str(exc)) from None


def _admin(cluster: Cluster, timeout: float) -> Any:
    ms = max(1000, int(timeout * 1000))
    conf = {"bootstrap.servers": cluster} if isinstance(cluster, str) else dict(cluster)
    admin = _ka().AdminClient({**conf, "log_level": 0, "socket.timeout.ms": ms,
                               "socket.connection.setup.timeout.ms": ms,
                               "error_cb": _Clients.trap})
    _Clients.admins.append(admin)
    return admin


def is_secret(name: str, sensitive: bool) -> bool:
    return sensitive or any(word in name.lower() for word in SECRET_WORDS)


def _user_topics(md: Any) -> dict[str, Any]:
    # Internal topics (__consumer_offsets, ...) are Kafka's own: it recreates them.
    return {n: t for n, t in md.topics.items() if not n.startswith("__")}


def _topic_configs(admin: Any, names: list[str], timeout: float) -> dict[str, dict[str, str]]:
    """The configs set on each topic itself (not broker defaults); secrets redacted."""
    ka = _ka()
    out: dict[str, dict[str, str]] = {}
    if not names:
        return out
    futures = admin.describe_configs([ka.ConfigResource(ka.ResourceType.TOPIC, n) for n in names],
                                     request_timeout=timeout)
    for res, fut in futures.items():
        entries = fut.result(timeout)
        out[res.name] = {
            k: REDACTED if is_secret(k, e.is_sensitive) else str(e.value)
            for k, e in sorted(entries.items())
            if e.source == ka.ConfigSource.DYNAMIC_TOPIC_CONFIG.value}
    return out


def _broker_configs(admin: Any, brokers: list[int], timeout: float) -> dict[str, Any]:
    """Each broker's dynamic configs (``kafka-configs --entity-type brokers``), secrets
    redacted. Saved for reference: broker ids differ in a new cluster, so not restored."""
    ka = _ka()
    out: dict[str, Any] = {}
    for b in brokers:  # librdkafka takes one BROKER resource per call
        r = ka.ConfigResource(ka.ResourceType.BROKER, str(b))
        entries = admin.describe_configs([r], request_timeout=timeout)[r].result(timeout)
        out[r.name] = {k: REDACTED if is_secret(k, e.is_sensitive) else str(e.value)
                       for k, e in sorted(entries.items())
                       if e.source == ka.ConfigSource.DYNAMIC_BROKER_CONFIG.value}
    return out


def _group_offsets(admin: Any, timeout: float) -> dict[str, dict[str, int]]:
    """group -> {"topic:partition": committed offset}, for every consumer group."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    listed = admin.list_consumer_groups(request_timeout=timeout).result(timeout)
    if listed.errors:
        raise KafkaMetadataError(f"listing consumer groups failed: {listed.errors[0]}")
    out: dict[str, dict[str, int]] = {}
    for g in sorted(x.group_id for x in listed.valid):
        fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)],
                                                request_timeout=timeout)[g]
        tps = fut.result(timeout).topic_partitions or []
        out[g] = {f"{tp.topic}:{tp.partition}": int(tp.offset)
                  for tp in sorted(tps, key=lambda t: (t.topic, t.partition))
                  if tp.offset >= 0 and not tp.error}
    return out


def _acls(admin: Any, timeout: float) -> list[dict[str, str]] | None:
    """Every ACL binding; None when the cluster has no authorizer (nothing to save)."""
    ka = _ka()
    flt = ka.AclBindingFilter(ka.ResourceType.ANY, None, ka.ResourcePatternType.ANY, None, None,
                           ka.AclOperation.ANY, ka.AclPermissionType.ANY)
    try:
        bindings = admin.describe_acls(flt, request_timeout=timeout).result(timeout)
    except Exception as exc:
        if "SECURITY_DISABLED" in str(exc) or "no authorizer" in str(exc).lower():
            return None
        raise
    return [{"restype": b.restype.name, "name": b.name, "pattern": b.resource_pattern_type.name,
             "principal": b.principal, "host": b.host, "operation": b.operation.name,
             "permission": b.permission_type.name} for b in bindings]


def collect(cluster: Cluster, timeout: float) -> dict[str, Any]:
    """The cluster's metadata as plain data (what a backup serialises)."""
    admin = _admin(cluster, timeout)
    md = admin.list_topics(timeout=timeout)
    topics: dict[str, Any] = {}
    for name, t in sorted(_user_topics(md).items()):
        if t.error is not None:
            raise KafkaMetadataError(f"topic {name}: {t.error.str()}")
        topics[name] = {"partitions": len(t.partitions),
                        "replication_factor": min(len(p.replicas)
                                                  for p in t.partitions.values())}
    for name, cfg in _topic_configs(admin, list(topics), timeout).items():
        topics[name]["configs"] = cfg
    return {"cluster_id": md.cluster_id, "brokers": len(md.brokers), "topics": topics,
            "broker_configs": _broker_configs(admin, sorted(md.brokers), timeout),
            "groups": _group_offsets(admin, timeout), "acls": _acls(admin, timeout)}


def user_topics(cluster: Cluster, timeout: float) -> list[str]:
    return sorted(_user_topics(_admin(cluster, timeout).list_topics(timeout=timeout).topics))


def apply(cluster: Cluster, doc: dict[str, Any], timeout: float) -> dict[str, int]:
    """Create the backup's topics, commit its offsets and create its ACLs on an EMPTY
    cluster; refuses (writing nothing) when any of the backup's topics already exist."""
    ka = _ka()
    admin = _admin(cluster, timeout)
    md = admin.list_topics(timeout=timeout)
    clash = sorted(set(doc["topics"]) & set(_user_topics(md)))
    if clash:
        raise KafkaMetadataError(f"the target cluster already has topic(s) {', '.join(clash[:5])}"
                                 "; restore only into an empty cluster (nothing was written)")
    brokers = len(md.brokers)
    new = [ka.NewTopic(name, num_partitions=int(t["partitions"]),
                    replication_factor=min(int(t["replication_factor"]), brokers),
                    config={k: v for k, v in t.get("configs", {}).items() if v != REDACTED})
           for name, t in doc["topics"].items()]
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout,
                                             request_timeout=timeout).items():
            try:
                fut.result(timeout)
            except Exception as exc:
                raise KafkaMetadataError(f"creating topic {name} failed: {exc}") from None
    deadline = time.monotonic() + timeout
    _wait_leaders(admin, doc["topics"], deadline)
    for group, offsets in doc["groups"].items():
        _commit(admin, group, offsets, deadline)
    acls = _create_acls(admin, doc.get("acls"), timeout)
    return {"topics": len(new), "groups": len(doc["groups"]), "acls": acls}


def _wait_leaders(admin: Any, topics: dict[str, Any], deadline: float) -> None:
    while True:
        md = admin.list_topics(timeout=10)
        missing = [n for n, t in topics.items() if n not in md.topics or
                   len(md.topics[n].partitions) < int(t["partitions"]) or
                   any(p.leader < 0 for p in md.topics[n].partitions.values())]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise KafkaMetadataError(f"topics without leaders after creation: {missing[:5]}")
        time.sleep(0.5)


def _commit(admin: Any, group: str, offsets: dict[str, int], deadline: float) -> None:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    tps = [TopicPartition(k.rpartition(":")[0], int(k.rpartition(":")[2]), int(v))
           for k, v in offsets.items()]
    while True:  # a fresh cluster answers COORDINATOR_LOAD_IN_PROGRESS for a while
        try:
            fut = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)],
                                                     request_timeout=10)[group]
            result = fut.result(15)
            bad = [tp for tp in result.topic_partitions or [] if tp.error]
            if not bad:
                return
            why = str(bad[0].error)
        except Exception as exc:
            why = str(exc)
        if time.monotonic() > deadline:
            raise KafkaMetadataError(f"committing offsets of group {group} failed: {why}")
        time.sleep(1)


def _create_acls(admin: Any, acls: list[dict[str, str]] | None, timeout: float) -> int:
    if not acls:
        return 0
    ka = _ka()
    bindings = [ka.AclBinding(ka.ResourceType[a["restype"]], a["name"],
                           ka.ResourcePatternType[a["pattern"]], a["principal"], a["host"],
                           ka.AclOperation[a["operation"]], ka.AclPermissionType[a["permission"]])
                for a in acls]
    for fut in admin.create_acls(bindings, request_timeout=timeout).values():
        fut.result(timeout)
    return len(bindings)


def delete_restored(cluster: Cluster, doc: dict[str, Any], timeout: float) -> None:
    """Remove what :func:`apply` created (a drill leaves its scratch cluster empty)."""
    admin = _admin(cluster, timeout)
    for group in doc["groups"]:
        try:
            admin.delete_consumer_groups([group], request_timeout=timeout)[group].result(timeout)
        except Exception as exc:
            log.warning("could not delete restored group group=%s error=%s", group, exc)
    if doc["topics"]:
        for fut in admin.delete_topics(list(doc["topics"]), operation_timeout=timeout).values():
            fut.result(timeout)


def health(cluster: Cluster, timeout: float) -> dict[str, Any]:
    """Under-replicated partitions and each group's total lag (None: offsets unreadable)."""
    from confluent_kafka import TopicPartition
    ka = _ka()
    admin = _admin(cluster, timeout)
    md = admin.list_topics(timeout=timeout)
    urp = sum(1 for t in _user_topics(md).values() for p in t.partitions.values()
              if len(p.isrs) < len(p.replicas) or p.leader < 0)
    groups = _group_offsets(admin, timeout)
    tps = {TopicPartition(k.rpartition(":")[0], int(k.rpartition(":")[2]))
           for offsets in groups.values() for k in offsets}
    ends: dict[str, int] = {}
    if tps:
        futs = admin.list_offsets({tp: ka.OffsetSpec.latest() for tp in tps},
                                  request_timeout=timeout)
        for tp, fut in futs.items():
            ends[f"{tp.topic}:{tp.partition}"] = int(fut.result(timeout).offset)
    lag = {g: sum(max(0, ends[k] - v) for k, v in offsets.items())
           for g, offsets in groups.items()}
    return {"under_replicated": urp, "lag": lag}

"""The rabbitmq probe against a real RabbitMQ 3.10 (Debian) with TLS and the management API."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest

from controlplane.probes.rabbitmq import RabbitMqCheckConfig, RabbitMqProbe
from controlplane.results import Result, Status
from tests.services.certs import CertFactory
from tests.services.common import free_port
from tests.services.rabbitmq import PASSWORD, USER, RabbitServer

pytestmark = pytest.mark.rabbitmq


def config(rabbit: RabbitServer, **fields: Any) -> RabbitMqCheckConfig:
    base: dict[str, Any] = {
        "id": "rabbit-test", "host": "localhost", "port": rabbit.amqps_port, "user": USER,
        "password": PASSWORD, "tls_rules": {"ca_file": str(rabbit.ca_file)},
        "management_url": rabbit.mgmt_url, "timeout": 10}
    return RabbitMqCheckConfig(**{**base, **fields})


def probe(rabbit: RabbitServer, **fields: Any) -> Result:
    return RabbitMqProbe(config(rabbit, **fields)).execute()


def steps(result: Result) -> dict[str, Status]:
    return {s.name: s.status for s in result.steps}


@pytest.fixture
def queue(rabbit: RabbitServer) -> Iterator[str]:
    name = f"q-{uuid.uuid4().hex[:8]}"
    rabbit.api("PUT", f"queues/%2F/{name}", json={"durable": False})
    # a new queue is listed without counts until the stats collector's next round
    wait_for(lambda: "messages" in rabbit.api("GET", f"queues/%2F/{name}").json())
    yield name
    rabbit.api("DELETE", f"queues/%2F/{name}")


def publish(rabbit: RabbitServer, queue: str, n: int) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", rabbit.amqp_port,
        credentials=pika.PlainCredentials(USER, PASSWORD)))
    ch = conn.channel()
    for i in range(n):
        ch.basic_publish("", queue, str(i).encode())
    conn.close()


def wait_for(what: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.3)


def shows(rabbit: RabbitServer, queue: str, messages: int, consumers: int = 0) -> bool:
    q = rabbit.api("GET", f"queues/%2F/{queue}").json()
    return bool(q.get("messages") == messages and q.get("consumers") == consumers)


def test_healthy_broker_with_a_consumed_queue_is_ok(rabbit: RabbitServer, queue: str) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", rabbit.amqp_port, credentials=pika.PlainCredentials(USER, PASSWORD)))
    conn.channel().basic_consume(queue, lambda *a: None)
    try:
        wait_for(lambda: shows(rabbit, queue, 0, consumers=1))
        result = probe(rabbit, queues=[{"name": queue, "max_messages": 100}],
                       canary_queue="controlplane.canary")
    finally:
        conn.close()
    assert result.status == Status.OK, result.message
    assert result.message.startswith(f"localhost:{rabbit.amqps_port}: logged in to vhost / in ")
    assert result.message.endswith(", 1 queue(s) within bounds")
    assert steps(result) == {"tls": Status.OK, "login": Status.OK, "management": Status.OK,
                             "alarms": Status.OK, f"queue {queue}": Status.OK,
                             "canary": Status.OK}
    assert result.metrics[f"queue_consumers:{queue}"] == 1
    assert result.metrics["alarms"] == 0
    assert (result.metrics["tls_days_left"] or 0) > 80
    assert result.details["rabbitmq_version"] == "3.10.8"
    assert result.metrics["canary_s"] is not None


def test_queue_with_messages_and_no_consumer_fails(rabbit: RabbitServer, queue: str) -> None:
    publish(rabbit, queue, 5)
    wait_for(lambda: shows(rabbit, queue, 5))
    result = probe(rabbit, queues=[{"name": queue}])
    assert result.status == Status.FAILING
    assert result.message == (f"queue {queue!r} has 5 message(s) and 0 consumer(s) "
                              "(expected at least 1)")
    assert result.details["queues"][0] | {"publish_rate": None, "deliver_rate": None} == {
        "name": queue, "messages": 5, "ready": 5, "unacked": 0, "consumers": 0,
        "publish_rate": None, "deliver_rate": None, "growth_per_min": None}


def test_empty_queue_without_consumer_is_degraded(rabbit: RabbitServer, queue: str) -> None:
    result = probe(rabbit, queues=[{"name": queue}])
    assert result.status == Status.DEGRADED
    assert result.message == f"queue {queue!r} has 0 consumer(s) (expected at least 1)"


def test_growing_queue_is_degraded_on_the_next_run(rabbit: RabbitServer, queue: str) -> None:
    p = RabbitMqProbe(config(rabbit, queues=[{"name": queue, "min_consumers": 0,
                                              "max_growth_per_min": 100,
                                              "warn_messages": 1000}]))
    first = p.execute()
    assert first.status == Status.OK, first.message
    assert first.metrics[f"queue_growth_per_min:{queue}"] is None
    publish(rabbit, queue, 50)
    wait_for(lambda: shows(rabbit, queue, 50))
    second = p.execute()
    assert second.status == Status.DEGRADED
    growth = second.metrics[f"queue_growth_per_min:{queue}"]
    assert growth is not None and growth > 100
    assert second.message == f"queue {queue!r} is growing by {growth:.0f} messages a minute, " \
                             "over 100"


def test_deep_queue_fails_over_max_messages(rabbit: RabbitServer, queue: str) -> None:
    publish(rabbit, queue, 30)
    wait_for(lambda: shows(rabbit, queue, 30))
    result = probe(rabbit, queues=[{"name": queue, "min_consumers": 0, "warn_messages": 10,
                                    "max_messages": 20}])
    assert result.status == Status.FAILING
    assert result.message == f"queue {queue!r} holds 30 messages, over 20"


def test_missing_queue_fails(rabbit: RabbitServer) -> None:
    result = probe(rabbit, queues=[{"name": "no-such-queue"}])
    assert result.status == Status.FAILING
    assert result.message == "queue 'no-such-queue' does not exist in the vhost"


def test_memory_alarm_fails_and_skips_the_canary(rabbit: RabbitServer) -> None:
    rabbit.ctl("set_vm_memory_high_watermark", "0.0001")
    try:
        wait_for(lambda: any(n.get("mem_alarm") for n in rabbit.api("GET", "nodes").json()))
        result = probe(rabbit, canary_queue="controlplane.canary")
    finally:
        rabbit.ctl("set_vm_memory_high_watermark", "0.4")
        wait_for(lambda: not any(n.get("mem_alarm") for n in rabbit.api("GET", "nodes").json()))
    assert result.status == Status.FAILING
    assert result.message.startswith(f"memory alarm on node {rabbit.node}: ")
    assert result.message.endswith("high watermark; publishers are blocked (and 1 more problem)")
    assert result.details["problems"][1] == "canary skipped: a broker alarm blocks publishers"
    assert result.metrics["alarms"] == 1


def test_user_without_the_monitoring_tag_is_degraded_not_ok(rabbit: RabbitServer,
                                                            queue: str) -> None:
    # the management tag reads queues but not /api/nodes: the alarms are unknown, not absent
    rabbit.ctl("add_user", "mgmtonly", "mgmt-pass-1")
    rabbit.ctl("set_user_tags", "mgmtonly", "management")
    rabbit.ctl("set_permissions", "-p", "/", "mgmtonly", ".*", ".*", ".*")
    try:
        result = probe(rabbit, user="mgmtonly", password="mgmt-pass-1",
                       queues=[{"name": queue, "min_consumers": 0}])
    finally:
        rabbit.ctl("delete_user", "mgmtonly")
    assert result.status == Status.DEGRADED
    assert result.message == ("node stats unavailable: user 'mgmtonly' may not read /api/nodes "
                              "(Not monitor user: it needs the monitoring or administrator tag); "
                              "memory and disk alarms cannot be judged")
    assert steps(result)["alarms"] == Status.DEGRADED
    assert steps(result)[f"queue {queue}"] == Status.OK  # the rest is still judged
    assert result.metrics["alarms"] is None
    assert result.details["nodes"] is None
    assert "mgmt-pass-1" not in result.model_dump_json()


def test_wrong_password_fails_without_showing_it(rabbit: RabbitServer) -> None:
    result = probe(rabbit, password="hunter2-wrong")
    assert result.status == Status.FAILING
    assert result.message == f"authentication failed for user {USER!r} (wrong user or password)"
    assert "hunter2" not in result.model_dump_json()


def test_wrong_password_on_the_management_api_fails(rabbit: RabbitServer) -> None:
    rabbit.ctl("add_user", "amqponly", "amqp-pass-1")
    rabbit.ctl("set_permissions", "-p", "/", "amqponly", ".*", ".*", ".*")
    try:
        result = probe(rabbit, user="amqponly", password="amqp-pass-1")
    finally:
        rabbit.ctl("delete_user", "amqponly")
    # a user without the management tag is refused by the API
    assert result.status == Status.FAILING
    assert result.message == (f"management API {rabbit.mgmt_url}: authentication failed for "
                              "user 'amqponly'")
    assert "amqp-pass-1" not in result.model_dump_json()


def test_unknown_vhost_fails(rabbit: RabbitServer) -> None:
    result = probe(rabbit, vhost="nope")
    assert result.status == Status.FAILING
    assert result.message == (f"user {USER!r} may not open vhost 'nope' "
                              "(access refused, or the vhost does not exist)")


def test_untrusted_certificate_fails(rabbit: RabbitServer, certs: CertFactory) -> None:
    other = certs.self_signed().ca_file
    result = probe(rabbit, tls_rules={"ca_file": str(other)})
    assert result.status == Status.FAILING
    assert result.message.startswith("certificate verify failed: unable to get local issuer")
    assert steps(result) == {"tls": Status.FAILING}


def test_plain_amqp_without_management_is_ok(rabbit: RabbitServer) -> None:
    result = probe(rabbit, host="127.0.0.1", port=rabbit.amqp_port, tls=False,
                   management_url=None)
    assert result.status == Status.OK
    assert steps(result) == {"login": Status.OK}


def test_server_down_fails_with_connection_refused(rabbit: RabbitServer) -> None:
    port = free_port()
    result = probe(rabbit, host="127.0.0.1", port=port, tls=False)
    assert result.status == Status.FAILING
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_unresolvable_host_fails(rabbit: RabbitServer) -> None:
    result = probe(rabbit, host="no-such-broker.invalid", tls=False)
    assert result.status == Status.FAILING
    assert result.message == "cannot resolve no-such-broker.invalid"


def test_silent_server_is_an_error_within_the_timeout(rabbit: RabbitServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        result = probe(rabbit, host="127.0.0.1", port=port, tls=False, timeout=2)
    assert time.monotonic() - t0 < 5
    assert result.status == Status.ERROR
    assert result.message == f"127.0.0.1:{port}: no AMQP answer within 2s"


def test_silent_tls_listener_is_an_error_within_the_timeout(rabbit: RabbitServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        result = probe(rabbit, host="127.0.0.1", port=port, timeout=2)
    assert result.status == Status.ERROR
    assert result.message == f"127.0.0.1:{port}: no TLS handshake within 2s"


def test_node_without_stats_is_degraded_not_ok(rabbit_without_stats: RabbitServer) -> None:
    # management_agent.disable_metrics_collector: the node is listed with no mem_alarm at all
    [node] = rabbit_without_stats.api("GET", "nodes").json()
    assert "mem_alarm" not in node and node["running"] is True
    result = probe(rabbit_without_stats, queues=[{"name": "call_events"}])
    assert result.status == Status.DEGRADED
    assert result.message == (f"node stats unavailable for {rabbit_without_stats.node}: the "
                              "management API reports no memory/disk alarm state (statistics "
                              "collection disabled on the broker, or the node is not "
                              "reporting); alarms cannot be judged (and 1 more problem)")
    assert result.details["problems"][1] == (
        "queue 'call_events': stats unavailable (the management API lists it without message "
        "or consumer counts); it cannot be judged")
    assert steps(result)["alarms"] == Status.DEGRADED
    assert result.metrics["alarms"] == 0
    assert result.metrics["nodes_without_stats"] == 1
    assert "mem_used_bytes" not in result.metrics

"""`rabbitmq` checks: AMQP(S) login, queues and alarms through the management API, a canary.

One run: the TLS listener judged by the `tls` kind's rules; an AMQP login to the vhost
(pika); the management HTTP API for each configured queue (depth, ready/unacked,
consumers, rates, growth since the last run), node memory/disk alarms and the connection
count; then, optionally, a canary message published to a queue and read back, timed.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from pydantic import Field, SecretStr

from controlplane.lazyimport import lazy_module
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.findings import Deadline, Findings, TlsRules, judge_tls
from controlplane.probes.rabbitmq_mgmt import Management, QueueRule, judge_management
from controlplane.results import Status

if TYPE_CHECKING:
    import pika
    import pika.adapters.utils.connection_workflow as pika_workflow
    import pika.exceptions as pex
else:  # pika loads when a probe runs, not when a config validates
    pika = lazy_module("pika")
    pika_workflow = lazy_module("pika.adapters.utils.connection_workflow")
    pex = lazy_module("pika.exceptions")

log = logging.getLogger(__name__)
# pika logs every failed connect at ERROR with a traceback; the probe's result already says
# what failed, once, so its own lines would only repeat it on every run.
logging.getLogger("pika").setLevel(logging.CRITICAL)


class RabbitMqCheckConfig(CheckConfig):
    kind: Literal["rabbitmq"] = "rabbitmq"
    host: str
    port: int = Field(default=5671, ge=1, le=65535)
    tls: bool = True
    tls_rules: TlsRules = Field(default_factory=TlsRules)
    vhost: str = "/"
    user: str
    password: SecretStr = SecretStr("")
    management_url: str | None = Field(default=None, description="e.g. https://host:15671; "
                                       "none: AMQP login only")
    queues: list[QueueRule] = Field(default_factory=list)
    max_connections: int | None = Field(default=None, ge=1)
    canary_queue: str | None = Field(default=None, description="publish and read back here")
    canary_max_s: float = Field(default=2.0, gt=0, description="a slower round trip: degraded")

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


class RabbitMqProbe(Probe[RabbitMqCheckConfig]):
    kind = "rabbitmq"
    config_model = RabbitMqCheckConfig

    def __init__(self, config: RabbitMqCheckConfig, context: Any = None) -> None:
        super().__init__(config, context)
        self._last_depth: dict[str, tuple[float, int]] = {}  # queue -> (monotonic, messages)

    def check(self) -> Outcome:
        c = self.config
        deadline = Deadline(c.timeout)
        found = Findings()
        metrics: dict[str, float | None] = {}
        details: dict[str, Any] = {"target": c.target, "vhost": c.vhost}
        if c.tls and not judge_tls(found, c.host, c.port, c.tls_rules, deadline, metrics,
                                   details):
            return found.outcome("", metrics, details)
        t0 = time.monotonic()
        try:
            conn = self._connect(deadline)
        except _LoginFailed as exc:
            found.add("login", Status.FAILING, str(exc), time.monotonic() - t0)
            return found.outcome("", metrics, details)
        metrics["connect_s"] = round(time.monotonic() - t0, 6)
        found.add("login", duration_s=metrics["connect_s"] or 0.0,
                  message=f"vhost {c.vhost} as {c.user}")
        try:
            alarm = False
            if c.management_url:
                mgmt = Management(c.management_url, c.user, c.password.get_secret_value(),
                                  c.vhost, c.tls_rules.ca_file)
                alarm = judge_management(mgmt, c, found, metrics, details, deadline,
                                         self._last_depth)
            if c.canary_queue:
                self._canary(conn, found, metrics, deadline, alarm)
        finally:
            _close(conn)
        ok = f"{c.target}: logged in to vhost {c.vhost} in {metrics['connect_s'] or 0:.3f}s"
        if c.queues:
            ok += f", {len(c.queues)} queue(s) within bounds"
        return found.outcome(ok, metrics, details)

    def _connect(self, deadline: Deadline) -> pika.BlockingConnection:
        c = self.config
        left = deadline.budget()
        ssl_options = None
        if c.tls:
            ctx = ssl.create_default_context(cafile=c.tls_rules.ca_file)
            ctx.check_hostname = c.tls_rules.verify_hostname
            ssl_options = pika.SSLOptions(ctx, c.tls_rules.servername or c.host)
        params = pika.ConnectionParameters(
            host=c.host, port=c.port, virtual_host=c.vhost,
            credentials=pika.PlainCredentials(c.user, c.password.get_secret_value(),
                                              erase_on_connect=True),
            ssl_options=ssl_options, connection_attempts=1, socket_timeout=left,
            stack_timeout=left, blocked_connection_timeout=left, heartbeat=0,
            client_properties={"connection_name": f"controlplane {c.id}"})
        try:
            return pika.BlockingConnection(params)
        except (pex.ProbableAuthenticationError, pex.AuthenticationError):
            raise _LoginFailed(f"authentication failed for user {c.user!r} "
                               "(wrong user or password)") from None
        except pex.ProbableAccessDeniedError:
            raise _LoginFailed(f"user {c.user!r} may not open vhost {c.vhost!r} "
                               "(access refused, or the vhost does not exist)") from None
        except socket.gaierror:
            raise _LoginFailed(f"cannot resolve {c.host}") from None
        except pika_workflow.AMQPConnectorStackTimeout:
            raise ProbeError(f"{c.target}: no AMQP answer within {c.timeout:g}s") from None
        except (pex.AMQPConnectionError, pika_workflow.AMQPConnectorException) as exc:
            self._connect_failure(exc)

    def _connect_failure(self, exc: Exception) -> NoReturn:
        c = self.config
        cause = _root_cause(exc)
        if isinstance(cause, socket.gaierror):
            raise _LoginFailed(f"cannot resolve {c.host}") from None
        if isinstance(cause, ConnectionRefusedError):
            raise _LoginFailed(f"cannot connect to {c.target}: connection refused") from None
        if isinstance(cause, ssl.SSLError):
            raise _LoginFailed(f"TLS with {c.target} failed: {cause.reason or cause}") from None
        text = f"{type(cause).__name__}: {cause}" if cause else repr(exc)
        if "timeout" in text.lower() or isinstance(cause, TimeoutError):
            raise ProbeError(f"{c.target}: no AMQP answer within {c.timeout:g}s") from None
        raise _LoginFailed(f"cannot open an AMQP connection to {c.target}: {text}") from None

    def _canary(self, conn: pika.BlockingConnection, found: Findings,
                metrics: dict[str, float | None], deadline: Deadline, alarm: bool) -> None:
        c = self.config
        if alarm:
            # a resource alarm blocks every publisher: the publish would only wait
            found.add("canary", Status.FAILING, "canary skipped: a broker alarm blocks "
                      "publishers")
            return
        queue = c.canary_queue or ""
        t0 = time.monotonic()
        try:
            ch = conn.channel()
            ch.queue_declare(queue, durable=False, arguments={"x-message-ttl": 60000})
            ch.confirm_delivery()
            marker = uuid.uuid4().hex
            ch.basic_publish("", queue, marker.encode(),
                             pika.BasicProperties(message_id=marker), mandatory=True)
            while True:
                deadline.budget()
                method, props, _body = ch.basic_get(queue, auto_ack=True)
                if method is not None and props.message_id == marker:
                    break
                if method is None:
                    time.sleep(0.02)
        except pex.ConnectionBlockedTimeout:
            found.add("canary", Status.FAILING, "canary publish blocked by the broker "
                      "(resource alarm)", time.monotonic() - t0)
            return
        except pex.AMQPError as exc:
            found.add("canary", Status.FAILING, f"canary on queue {queue!r} failed: "
                      f"{type(exc).__name__}: {exc}", time.monotonic() - t0)
            return
        took = time.monotonic() - t0
        metrics["canary_s"] = round(took, 6)
        if took > c.canary_max_s:
            found.add("canary", Status.DEGRADED, f"canary round trip {took:.2f}s, over "
                      f"{c.canary_max_s:g}s", took)
        else:
            found.add("canary", message=f"published and read back in {took * 1000:.0f} ms",
                      duration_s=took)


class _LoginFailed(Exception):
    """The broker could not be reached or refused us: failing."""


def _root_cause(exc: BaseException) -> BaseException | None:
    """The socket/TLS error under pika's wrappers (they nest it in args or __cause__)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        cur = todo.pop(0)
        if id(cur) in seen or not isinstance(cur, BaseException):
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError | ssl.SSLError):
            return cur
        todo.extend([cur.__cause__, cur.__context__, *cur.args])
        todo.extend(getattr(cur, "exceptions", []) or [])
        todo.append(getattr(cur, "exception", None))
    return None


def _close(conn: pika.BlockingConnection) -> None:
    try:
        conn.close()
    except pex.AMQPError:
        log.debug("rabbitmq close failed (connection already gone)")

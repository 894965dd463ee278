"""`controlplane run`: the runtime plus the web server, until asked to stop.

The web server is waitress: a pure-Python production WSGI server that serves from a pool
of threads inside this one process. That fits the control plane's model: one process owns
the scheduler, the outbox worker and the store lock (leadership), and the web handlers read
the same in-memory runtime (config, metrics registry, SMS inbox). A pre-fork server
(gunicorn's sync or gthread workers) would start one runtime per worker, each scheduling
every check and fighting for leadership. Waitress parses each request fully before a
handler runs, which is what enforces the limits below on unauthenticated senders.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from controlplane.app import build_runtime
from controlplane.config import ControlPlaneConfig
from controlplane.web import MAX_BODY_BYTES, create_app

log = logging.getLogger(__name__)

WEB_THREADS = 16
"""Handler threads; a request holds one while it reads the store."""

IDLE_TIMEOUT_S = 30
"""A connection silent this long (idle keep-alive, or a sender that stopped) is closed."""

HEADER_TIMEOUT_S = 20.0
"""Total time a request's line and headers may take from their first byte. Waitress alone
has only the idle timeout, which a sender trickling one byte every few seconds (slowloris)
never trips; this deadline does."""

BODY_TIMEOUT_S = 60.0
"""Total time a request's body may take once its headers are in (1 MB at ~17 kB/s)."""

DEADLINE_CHECK_S = 1
"""How often the deadlines and the idle timeout are checked (waitress's cleanup interval)."""

MAX_HEADER_BYTES = 16 * 1024
CONNECTION_LIMIT = 200


class DeadlineChannel(HTTPChannel):
    """An HTTP channel that notes when the request being read began, and when its
    headers were complete, for :class:`DeadlineServer`."""

    began: float | None = None  # first byte of the request being read
    body_began: float | None = None  # its headers complete, body still coming
    _reading: object | None = None  # waitress's parser of that request

    def received(self, data: bytes) -> bool:
        now = time.monotonic()
        more = bool(super().received(data))
        request = self.request  # None once complete (handed to a handler thread)
        if request is None:
            self.began = self.body_began = self._reading = None
        elif request is not self._reading:  # this data began a new request
            self._reading, self.began, self.body_began = request, now, None
        if request is not None and request.headers_finished and self.body_began is None:
            self.body_began = now
        return more


class DeadlineServer(TcpWSGIServer):
    """Waitress's TCP server, plus total deadlines for a request's headers and body."""

    channel_class = DeadlineChannel

    def __init__(self, app: Any, adj: Adjustments, header_timeout: float,
                 body_timeout: float) -> None:
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        super().__init__(app, map={}, dispatcher=dispatcher, adj=adj,
                         sockinfo=cast(Any, adj.listen)[0])

    def maintenance(self, now: Any) -> None:  # waitress passes time.time()
        super().maintenance(now)  # the idle timeout
        mono = time.monotonic()
        channels = cast(dict[int, DeadlineChannel], self.active_channels)
        for channel in list(channels.values()):
            reason = self.overdue(channel, mono)
            if reason and not channel.will_close:
                log.warning("closing a slow connection peer=%s reason=%r", channel.addr[0],
                            reason)
                channel.will_close = True  # the loop closes it on its next pass

    def overdue(self, channel: DeadlineChannel, now: float) -> str | None:
        if channel.body_began is not None:
            if now - channel.body_began > self.body_timeout:
                return f"request body not complete within {self.body_timeout:g}s"
        elif channel.began is not None and now - channel.began > self.header_timeout:
            return f"request headers not complete within {self.header_timeout:g}s"
        return None


class WebServer:
    """The production HTTP server around a WSGI app, started in a background thread."""

    def __init__(self, app: Any, host: str, port: int, max_body: int = MAX_BODY_BYTES,
                 header_timeout: float = HEADER_TIMEOUT_S,
                 body_timeout: float = BODY_TIMEOUT_S) -> None:
        adj = Adjustments(
            host=host, port=port, threads=WEB_THREADS, channel_timeout=IDLE_TIMEOUT_S,
            cleanup_interval=DEADLINE_CHECK_S, max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=max_body, connection_limit=CONNECTION_LIMIT,
            expose_tracebacks=False, ident="controlplane", clear_untrusted_proxy_headers=True)
        # waitress's stubs lack effective_port, _map and trigger, used below
        self._server = cast(Any, DeadlineServer(app, adj, header_timeout, body_timeout))
        self.host = host
        self.port: int = self._server.effective_port
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let handlers in flight finish (up to ``timeout``), close."""
        # Handler threads first (they wake the loop through its trigger when they finish),
        # then the sockets, closed by the loop's own thread: closing them from here while
        # it sits in select() would pull descriptors from under it.
        server = self._server
        server.task_dispatcher.shutdown(timeout=timeout)
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        self._thread.join(timeout)


def serve(cfg: ControlPlaneConfig, stop: threading.Event,
          on_ready: Callable[[str], None] | None = None) -> bool:
    """Serve until ``stop`` is set. In-flight checks get the grace period; returns True if
    they all finished within it."""
    from controlplane.web.twilio_webhook import webhook_warnings

    for warning in webhook_warnings(cfg.checks):
        log.warning("config warning=%r", warning)
    runtime = build_runtime(cfg)
    server = WebServer(create_app(runtime), cfg.web.host, cfg.web.port,
                       header_timeout=cfg.web.header_timeout, body_timeout=cfg.web.body_timeout)
    runtime.on_leadership_lost = stop.set
    runtime.start()
    server.start()
    log.info("serving url=%s checks=%d", server.url, len(cfg.checks))
    if on_ready is not None:
        on_ready(server.url)
    stop.wait()
    log.info("stopping: web server first, then in-flight runs (grace %ss)",
             cfg.scheduler.grace_period)
    server.stop()
    finished = runtime.stop()
    if not finished:
        log.warning("grace period over with runs still in flight; exiting anyway")
    if runtime.leadership_lost:
        raise LeadershipLost("lost the store lock that makes this instance the active one; "
                             "stopped so two instances never run at once (a restart stands "
                             "by or takes over)")
    return finished


class LeadershipLost(Exception):
    """The instance stopped because another may have become active."""

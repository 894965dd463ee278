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
from collections.abc import Callable
from typing import Any, cast

from waitress import wasyncore
from waitress.server import create_server

from controlplane.app import build_runtime
from controlplane.config import ControlPlaneConfig
from controlplane.web import MAX_BODY_BYTES, create_app

log = logging.getLogger(__name__)

WEB_THREADS = 16
"""Handler threads; a request holds one while it reads the store."""

IDLE_TIMEOUT_S = 30
"""A connection silent this long (headers or body trickling in, or idle keep-alive) is
closed: slow senders cannot hold threads or sockets."""

MAX_HEADER_BYTES = 16 * 1024
CONNECTION_LIMIT = 200


class WebServer:
    """The production HTTP server around a WSGI app, started in a background thread."""

    def __init__(self, app: Any, host: str, port: int,
                 max_body: int = MAX_BODY_BYTES) -> None:
        # One host:port gives a TcpWSGIServer (effective_port, task_dispatcher, _map).
        self._server = cast(Any, create_server(
            app, host=host, port=port, threads=WEB_THREADS, channel_timeout=IDLE_TIMEOUT_S,
            cleanup_interval=10, max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=max_body, connection_limit=CONNECTION_LIMIT,
            expose_tracebacks=False, ident="controlplane", clear_untrusted_proxy_headers=True))
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
    server = WebServer(create_app(runtime), cfg.web.host, cfg.web.port)
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

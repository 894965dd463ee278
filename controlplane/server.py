"""`controlplane run`: the runtime plus the web server, until asked to stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from werkzeug.serving import make_server

from controlplane.app import build_runtime
from controlplane.config import ControlPlaneConfig
from controlplane.web import create_app

log = logging.getLogger(__name__)


def serve(cfg: ControlPlaneConfig, stop: threading.Event,
          on_ready: Callable[[str], None] | None = None) -> bool:
    """Serve until ``stop`` is set. In-flight checks get the grace period; returns True if
    they all finished within it."""
    runtime = build_runtime(cfg)
    server = make_server(cfg.web.host, cfg.web.port, create_app(runtime), threaded=True)
    web = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    runtime.on_leadership_lost = stop.set
    runtime.start()
    web.start()
    url = f"http://{cfg.web.host}:{server.server_port}"
    log.info("serving url=%s checks=%d", url, len(cfg.checks))
    if on_ready is not None:
        on_ready(url)
    stop.wait()
    log.info("stopping: web server first, then in-flight runs (grace %ss)",
             cfg.scheduler.grace_period)
    server.shutdown()
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

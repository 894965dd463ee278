"""`controlplane run`: the runtime plus the web server, until asked to stop."""

from __future__ import annotations

import logging
import threading

from werkzeug.serving import make_server

from controlplane.app import build_runtime
from controlplane.config import ControlPlaneConfig
from controlplane.web import create_app

log = logging.getLogger(__name__)


def serve(cfg: ControlPlaneConfig, stop: threading.Event,
          ready: threading.Event | None = None) -> int:
    """Run until ``stop`` is set; in-flight checks get the grace period; returns exit code 0."""
    runtime = build_runtime(cfg)
    server = make_server(cfg.web.host, cfg.web.port, create_app(runtime), threaded=True)
    web = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    runtime.start()
    web.start()
    print(f"controlplane: serving on http://{cfg.web.host}:{server.server_port} "
          f"({len(cfg.checks)} checks)", flush=True)
    if ready is not None:
        ready.set()
    stop.wait()
    server.shutdown()
    finished = runtime.stop()
    if not finished:
        log.warning("grace period over with runs still in flight; exiting anyway")
    print("controlplane: stopped", flush=True)
    return 0

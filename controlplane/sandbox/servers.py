"""Small loopback servers for the sandbox parts: WSGI over TLS (with SNI) or plain HTTP."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

log = logging.getLogger(__name__)

SniPicker = Callable[[str | None], ssl.SSLContext | None]


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to DEBUG: a demo watching six servers must stay readable."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("request part=%s line=%r code=%s", self.server.__dict__.get("part", "?"),
                  self.requestline, code)

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("server error part=%s " + format, self.server.__dict__.get("part", "?"),
                  *args)


class AppServer:
    """Serves one WSGI app on ``host:port`` in a daemon thread until :meth:`stop`."""

    def __init__(self, part: str, app: Any, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None,
                 sni: SniPicker | None = None) -> None:
        self.part = part
        if ssl_context is not None and sni is not None:
            def callback(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None,
                         _ctx: ssl.SSLContext) -> None:
                chosen = sni(name)
                if chosen is not None:
                    sock.context = chosen

            ssl_context.sni_callback = callback
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True,
                                                   request_handler=_QuietHandler,
                                                   ssl_context=ssl_context)
        self._server.__dict__["part"] = part
        self.host = host
        self.port: int = self._server.server_port
        self.scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"sandbox-{part}", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> AppServer:
        self._thread.start()
        log.info("sandbox part started part=%s url=%s", self.part, self.url)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

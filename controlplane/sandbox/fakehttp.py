"""Shared plumbing for the SaaS contract fakes: a threaded HTTP server and fault rules."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, Any]:
        """Query + form or JSON body, merged (Slack accepts all three)."""
        data: dict[str, Any] = dict(self.query)
        ctype = self.headers.get("content-type", "")
        if self.body and "json" in ctype:
            loaded = json.loads(self.body)
            if isinstance(loaded, dict):
                data.update(loaded)
        elif self.body:
            data.update(dict(parse_qsl(self.body.decode(), keep_blank_values=True)))
        return data


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """Answer matching requests with ``response`` instead of the real handling.

    ``response=None`` is the nastier fault: the request IS handled (the service changes
    its state), then the connection is closed before the answer is written, as when a
    network drops the response of a request that succeeded.
    """

    match: str  # path fragment ("" = every request)
    response: Response | None
    remaining: int | None  # None = until cleared


Handler = Callable[[Request], Response]


class FakeServer:
    """Serves ``handle`` on a loopback port until :meth:`stop`; faults are checked first."""

    def __init__(self, handle: Handler,
                 record: Callable[[Request, Response], None] | None = None) -> None:
        self._handle = handle
        self._record = record
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.url = ""

    def add_fault(self, match: str, response: Response | None, count: int | None) -> None:
        with self._lock:
            self._faults.append(Fault(match, response, count))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _fault_for(self, path: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.match in path and (f.remaining is None or f.remaining > 0):
                    if f.remaining is not None:
                        f.remaining -= 1
                    return f
        return None

    def start(self, host: str = "127.0.0.1", port: int = 0,
              ssl_context: ssl.SSLContext | None = None) -> str:
        """Serve on ``host:port`` (0: a free port); HTTPS with ``ssl_context``."""
        server = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                req = Request(self.command, parts.path, dict(parse_qsl(parts.query)),
                              {k.lower(): v for k, v in self.headers.items()},
                              self.rfile.read(length) if length else b"")
                fault = server._fault_for(parts.path)
                resp = fault.response if fault and fault.response else server._handle(req)
                if server._record is not None:
                    server._record(req, resp)
                if fault is not None and fault.response is None:
                    self.close_connection = True  # handled, but the answer never arrives
                    return
                body = b"" if resp.body is None else (
                    resp.body if isinstance(resp.body, bytes) else json.dumps(resp.body).encode())
                self.send_response(resp.status)
                if resp.body is not None:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests read the fake's own record instead

        self._httpd = ThreadingHTTPServer((host, port), _H)
        self._httpd.daemon_threads = True
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, name="fake-http", daemon=True).start()
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://{host}:{self._httpd.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

"""A real webhook receiver on loopback that does what docs/channels.md asks of one:
verify the HMAC-SHA256 signature and the timestamp, and ignore a key it has seen."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

SECRET = "webhook-shared-secret-0123456789"


class Receiver:
    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.posts: list[dict[str, Any]] = []  # every verified request, repeats included
        self.refused: list[int] = []  # statuses answered to requests that failed checks
        self.answer: tuple[int, dict[str, str]] | None = None  # forced (status, headers)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers = receiver.handle(dict(self.headers), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/controlplane"

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        if self.answer is not None:
            return self.answer
        stamp = headers.get("X-Controlplane-Timestamp", "")
        given = headers.get("X-Controlplane-Signature", "")
        want = "sha256=" + hmac.new(self.secret.encode(), stamp.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        if not fresh or not hmac.compare_digest(given, want):
            with self._lock:
                self.refused.append(401)
            return 401, {}
        doc = json.loads(body)
        with self._lock:
            self.posts.append({"headers": headers, "body": doc})
            self._seen.add(doc["idempotency_key"])
        return 204, {}

    def deliveries(self) -> int:
        """Distinct notifications received (a repeat of a key is the same delivery)."""
        with self._lock:
            return len(self._seen)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()

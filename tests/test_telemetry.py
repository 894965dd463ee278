"""OpenTelemetry: one span per run, exported over OTLP/HTTP only when an endpoint is set.

``controlplane run`` runs a real http check against a loopback server; a small real HTTP
server records what the OTLP exporter POSTs. The process is stopped with SIGTERM, which
flushes the batch exporter, so after it exits nothing more can arrive and the count of
spans is exact.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.services.common import ROOT, free_port
from tests.services.httpserver import ScriptedServer


@dataclass
class Post:
    path: str
    content_type: str
    body: bytes


class OtlpReceiver:
    """Accepts OTLP/HTTP protobuf exports on loopback and keeps every request."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.posts.append(Post(self.path, self.headers.get("Content-Type", ""),
                                           body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def spans(self) -> list[tuple[dict[str, str], str, dict[str, str], int, int]]:
        """(resource attributes, span name, span attributes, start ns, end ns) per span."""
        out = []
        for post in self.posts:
            req = ExportTraceServiceRequest.FromString(post.body)
            for rs in req.resource_spans:
                resource = {a.key: _text(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        attrs = {a.key: _text(a.value) for a in span.attributes}
                        out.append((resource, span.name, attrs, span.start_time_unix_nano,
                                    span.end_time_unix_nano))
        return out


def _text(value: AnyValue) -> str:
    return str(getattr(value, value.WhichOneof("value") or "string_value"))


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.httpd.shutdown()
    r.httpd.server_close()


def run_until_results(tmp_path: Path, url: str, telemetry: str, n: int,
                      env: dict[str, str] | None = None) -> list[tuple[str, str, float]]:
    """`controlplane run` until ``n`` results are stored, then SIGTERM; the stored rows."""
    db = tmp_path / "cp.db"
    config = tmp_path / "controlplane.yaml"
    config.write_text(f"""
environments: {{staging: {{label: Staging}}}}
store: {{dsn: "sqlite:///{db}"}}
web: {{port: {free_port()}}}
telemetry: {telemetry}
check_files: []
checks:
  - {{id: http-local, kind: http, env: staging, url: "{url}", interval: 1s, timeout: 5s}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "controlplane", "run", "--config",
                             str(config)], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    try:
        deadline = time.monotonic() + 90
        while _count(db) < n and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _count(db) >= n, proc.stderr.read() if proc.poll() is not None else "no runs"
        proc.send_signal(signal.SIGTERM)
        _, errs = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, errs
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT check_id, status, duration_s FROM results").fetchall()


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_one_span_per_run_is_exported_over_otlp_http(tmp_path: Path, receiver: OtlpReceiver,
                                                     http_server: ScriptedServer) -> None:
    url = http_server.route("/", 200, "up")
    rows = run_until_results(tmp_path, url, f'{{otlp_endpoint: "{receiver.url}"}}', n=2)

    assert {(p.path, p.content_type) for p in receiver.posts} == {
        ("/v1/traces", "application/x-protobuf")}
    spans = receiver.spans()
    assert len(spans) == len(rows) >= 2
    assert {s[0]["service.name"] for s in spans} == {"controlplane"}
    assert {s[1] for s in spans} == {"check http-local"}
    assert [s[2] for s in spans] == [
        {"check": "http-local", "kind": "http", "env": "staging", "status": "ok"}] * len(rows)
    # Each span lasts exactly its run's duration_s (to the nanosecond the span can carry).
    span_durations = sorted((end - start) / 1e9 for _, _, _, start, end in spans)
    run_durations = sorted(d for _, _, d in rows)
    assert all(abs(a - b) < 1e-6 for a, b in zip(span_durations, run_durations, strict=True))


def test_failing_run_span_carries_its_status(tmp_path: Path, receiver: OtlpReceiver,
                                             http_server: ScriptedServer) -> None:
    url = http_server.route("/", 503, "down")
    rows = run_until_results(tmp_path, url, f'{{otlp_endpoint: "{receiver.url}"}}', n=1)
    assert {r[1] for r in rows} == {"failing"}
    assert [s[2]["status"] for s in receiver.spans()] == ["failing"] * len(rows)


def test_no_span_is_exported_without_an_endpoint(tmp_path: Path, receiver: OtlpReceiver,
                                                 http_server: ScriptedServer) -> None:
    url = http_server.route("/", 200, "up")
    # The SDK's own environment variables must not switch export on behind the config's back.
    rows = run_until_results(tmp_path, url, "{service_name: controlplane}", n=2, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_TRACES_EXPORTER": "otlp"})
    assert len(rows) >= 2
    assert receiver.posts == []

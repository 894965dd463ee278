"""Real HTTP(S) servers on loopback with scripted routes, for the http check's tests.

``http_server`` / ``https_server`` fixtures give a :class:`ScriptedServer`; a test says
what each path answers (``route``) and requests it over real sockets. A route can answer
late (``delay``) or never (``hang``): both wait on an event that shutdown sets, so the
server always stops cleanly. ``silent_server`` accepts TCP connections and never sends a
byte (a stuck TLS terminator). The HTTPS variant uses a CA and a leaf for ``localhost`` /
127.0.0.1 made with ``cryptography`` per test.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    body_delay: float = 0.0


@dataclass
class Seen:
    """A request as the server received it (for asserting what the client sent)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def route(self, path: str, status: int = 200, body: str | bytes = b"",
              headers: dict[str, str] | None = None, delay: float = 0.0,
              hang: bool = False, body_delay: float = 0.0) -> str:
        """Script ``path``; returns its URL.

        ``delay``: wait before the status line; ``hang``: never answer; ``body_delay``:
        send the headers at once and the body that much later.
        """
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = Route(status, data, dict(headers or {}), delay, hang, body_delay)
        return self.url(path)

    def json_route(self, path: str, doc: Any, status: int = 200) -> str:
        return self.route(path, status, json.dumps(doc),
                          {"Content-Type": "application/json"})

    def redirect(self, path: str, location: str, status: int = 301) -> str:
        return self.route(path, status, b"", {"Location": location})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)


def _handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.seen.append(Seen(self.command, self.path, dict(self.headers), body))
            route = server.routes.get(self.path.split("?")[0])
            if route is None:
                route = Route(404, b"no such route")
            if route.hang:
                server.stopping.wait()
                return
            if route.delay and server.stopping.wait(route.delay):
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if route.body_delay:
                self.wfile.flush()
                if server.stopping.wait(route.body_delay):
                    return
            if self.command != "HEAD":
                self.wfile.write(route.body)
            self.close_connection = True

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _serve

    return Handler


class SilentServer:
    """Accepts TCP connections and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # shutdown() in stop() wakes accept() with an error
                return
            self.held.append(conn)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.held:
            conn.close()
        self._thread.join(10)


@dataclass
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def make_pki(directory: Path, hostname: str = "localhost") -> Pki:
    """A CA and a leaf for ``hostname`` and 127.0.0.1, valid from an hour ago for a day."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "controlplane test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return pki


@pytest.fixture
def http_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def test_pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
def https_server(test_pki: Pki) -> Iterator[ScriptedServer]:
    server = ScriptedServer(tls=test_pki.server_context())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    server.start()
    yield server
    server.stop()

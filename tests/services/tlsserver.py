"""A real TLS server on loopback (Python's ssl over the system OpenSSL) serving a given chain.

It accepts connections, completes the handshake, then waits for the client to hang up.
Each connection gets its own thread so a slow or broken client never blocks the next.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

log = logging.getLogger(__name__)

VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


class TlsServer:
    """``with TlsServer(cert_file, key_file) as srv: probe(srv.target)``."""

    def __init__(self, cert_file: Path, key_file: Path, *, min_version: str | None = None,
                 max_version: str | None = None, host: str = "127.0.0.1") -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert_file), str(key_file))
        old = "1.0" if max_version in ("1.0", "1.1") else min_version
        if old in ("1.0", "1.1"):
            # Debian's openssl.cnf sets MinProtocol TLSv1.2 and OpenSSL 3 refuses TLS 1.0/1.1
            # (SHA-1 handshake signatures) above security level 0: lower both explicitly.
            self.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            with warnings.catch_warnings():  # the old versions are the point of this server
                warnings.simplefilter("ignore", DeprecationWarning)
                self.ctx.minimum_version = VERSIONS[min_version or old]
                if max_version:
                    self.ctx.maximum_version = VERSIONS[max_version]
        else:
            if min_version:
                self.ctx.minimum_version = VERSIONS[min_version]
            if max_version:
                self.ctx.maximum_version = VERSIONS[max_version]
        self.host = host
        self.handshakes = 0
        self.errors: list[str] = []
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._sock is not None, "server not started"
        port: int = self._sock.getsockname()[1]
        return port

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> TlsServer:
        self._sock = socket.create_server((self.host, 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, name=f"tls-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self._sock:
            self._sock.close()

    def __enter__(self) -> TlsServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.handshakes += 1
                # hold the connection until the client closes it (or sends anything)
                tls.recv(1)
        except (OSError, ssl.SSLError) as exc:
            # clients that reject us (untrusted, old version) end up here; keep it for debugging
            self.errors.append(f"{type(exc).__name__}: {exc}")
            log.debug("tls server handshake ended error=%s", exc)
        finally:
            conn.close()


@pytest.fixture
def tls_server() -> Iterator[Callable[..., TlsServer]]:
    """Start TLS servers: ``srv = tls_server(files.cert_file, files.key_file, max_version="1.1")``.

    Every server started is stopped at teardown.
    """
    started: list[TlsServer] = []

    def start(cert_file: Path, key_file: Path, **kwargs: str) -> TlsServer:
        server = TlsServer(cert_file, key_file, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()

"""A small HTTP/1.1 client that times every phase of one exchange.

Why our own client: the ``http`` check reports how long DNS, TCP connect, the TLS
handshake and the wait for the first byte took (the phases of blackbox_exporter's
``probe_http_duration_seconds``). ``requests``/``urllib`` hide those steps, so here each
step is done by hand with ``socket``/``ssl`` and the response is parsed by
``http.client.HTTPResponse`` (status line, headers, chunked or length-delimited body).

Every blocking call gets the time left until one shared deadline, so a slow or silent
server can never hold a run longer than its timeout. Redirects are the caller's business.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from controlplane.deadline import Deadline

USER_AGENT = "controlplane-http-probe/0.1"
MAX_BODY_BYTES = 1024 * 1024
"""Bodies are read up to this size; enough for any health page, bounded for memory."""


class ExchangeError(Exception):
    """The exchange failed at one phase; the message says where and why."""

    def __init__(self, message: str, phase: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.phase = phase
        self.timed_out = timed_out


@dataclass
class Timings:
    """Seconds spent in each phase of one exchange (None: phase not reached or not used)."""

    dns_s: float | None = None
    connect_s: float | None = None
    tls_s: float | None = None
    first_byte_s: float | None = None
    transfer_s: float | None = None


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    truncated: bool
    peer: str
    tls_version: str | None = None


def budget(deadline: Deadline, phase: str) -> float:
    """What ``phase`` may still wait; the exchange fails as timed out once nothing is left."""
    remaining = deadline.remaining()
    if remaining <= 0:
        raise ExchangeError(deadline.expired_message(phase), phase, timed_out=True)
    return remaining


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


def exchange(request: Request, deadline: Deadline, tls_context: ssl.SSLContext | None,
             timings: Timings) -> Response:
    """Do one request/response exchange, filling ``timings`` as the phases complete."""
    parts = urlsplit(request.url)
    host, port = _host_port(parts)
    addresses = _resolve(host, port, deadline, timings)
    sock = _connect(host, port, addresses, deadline, timings)
    try:
        if parts.scheme == "https":
            assert tls_context is not None
            sock = _handshake(sock, host, tls_context, deadline, timings)
        return _send_and_read(sock, request, parts, deadline, timings)
    finally:
        sock.close()


def _host_port(parts: SplitResult) -> tuple[str, int]:
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return host, port


def _resolve(host: str, port: int, deadline: Deadline,
             timings: Timings) -> list[tuple[Any, ...]]:
    """getaddrinfo in a helper thread: the C call has no timeout of its own."""
    phase = f"resolving {host}"
    t0 = time.monotonic()
    if _is_ip(host):  # nothing to look up, no thread needed
        numeric = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                     flags=socket.AI_NUMERICHOST)
        timings.dns_s = time.monotonic() - t0
        return numeric
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            box["ok"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            box["err"] = exc

    worker = threading.Thread(target=lookup, name=f"resolve-{host}", daemon=True)
    worker.start()
    worker.join(budget(deadline, phase))
    timings.dns_s = time.monotonic() - t0
    if worker.is_alive():
        raise ExchangeError(deadline.expired_message(phase), phase, timed_out=True)
    if "err" in box:
        raise ExchangeError(f"cannot resolve {host}: {_os_reason(box['err'])}", phase)
    addresses: list[tuple[Any, ...]] = box["ok"]
    return addresses


def _connect(host: str, port: int, addresses: list[tuple[Any, ...]], deadline: Deadline,
             timings: Timings) -> socket.socket:
    """Try each resolved address in turn, as a browser would, until one accepts."""
    phase = f"connecting to {host}:{port}"
    t0 = time.monotonic()
    last: OSError | None = None
    try:
        for family, socktype, proto, _name, addr in addresses:
            sock = socket.socket(family, socktype, proto)
            try:
                sock.settimeout(budget(deadline, phase))
                sock.connect(addr)
                return sock
            except TimeoutError:
                sock.close()
                raise ExchangeError(deadline.expired_message(phase), phase,
                                    timed_out=True) from None
            except OSError as exc:
                sock.close()
                last = exc
    finally:
        timings.connect_s = time.monotonic() - t0
    reason = _os_reason(last) if last else "no address"
    raise ExchangeError(f"cannot connect to {host}:{port}: {reason}", phase)


def _handshake(sock: socket.socket, host: str, context: ssl.SSLContext, deadline: Deadline,
               timings: Timings) -> ssl.SSLSocket:
    phase = "in the TLS handshake"
    t0 = time.monotonic()
    try:
        sock.settimeout(budget(deadline, phase))
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        tls.do_handshake()
        return tls
    except TimeoutError:
        raise ExchangeError(deadline.expired_message(phase), phase, timed_out=True) from None
    except ssl.SSLCertVerificationError as exc:
        raise ExchangeError(f"TLS certificate not trusted: {exc.verify_message}", phase) from None
    except (ssl.SSLError, OSError) as exc:
        raise ExchangeError(f"TLS handshake failed: {_os_reason(exc)}", phase) from None
    finally:
        timings.tls_s = time.monotonic() - t0


def _send_and_read(sock: socket.socket, request: Request, parts: SplitResult,
                   deadline: Deadline, timings: Timings) -> Response:
    phase = "waiting for first byte"
    t0 = time.monotonic()
    first: list[float] = []
    try:
        sock.settimeout(budget(deadline, "sending the request"))
        sock.sendall(_request_bytes(request, parts))
        reader = _TimedSocket(sock, deadline, first)
        resp = http.client.HTTPResponse(reader, method=request.method)  # type: ignore[arg-type]
        resp.begin()
        timings.first_byte_s = (first[0] if first else time.monotonic()) - t0
        phase = "reading the body"
        body, truncated = _read_body(resp)
    except TimeoutError:
        raise ExchangeError(deadline.expired_message(phase), phase, timed_out=True) from None
    except ExchangeError:
        raise
    except (http.client.HTTPException, OSError) as exc:
        raise ExchangeError(f"bad response {phase}: {_os_reason(exc)}", phase) from None
    finally:
        if first:
            timings.transfer_s = time.monotonic() - first[0]
    headers = {k.lower(): v for k, v in resp.getheaders()}
    tls_version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
    address, port = sock.getpeername()[:2]
    peer = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return Response(resp.status, resp.reason, headers, body, truncated, peer, tls_version)


def _read_body(resp: http.client.HTTPResponse) -> tuple[bytes, bool]:
    # HTTPResponse itself knows that HEAD, 204 and 304 carry no body.
    body = resp.read(MAX_BODY_BYTES + 1)
    return body[:MAX_BODY_BYTES], len(body) > MAX_BODY_BYTES


def _request_bytes(request: Request, parts: SplitResult) -> bytes:
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port:
        host += f":{parts.port}"
    headers = {"Host": host, "User-Agent": USER_AGENT, "Accept": "*/*",
               "Connection": "close"}
    headers.update(request.headers)
    if request.body is not None:
        headers["Content-Length"] = str(len(request.body))
    lines = [f"{request.method} {target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (request.body or b"")


class _TimedSocket:
    """What HTTPResponse reads from: notes the first byte and re-arms the deadline per read."""

    def __init__(self, sock: socket.socket, deadline: Deadline, first: list[float]) -> None:
        self._sock = sock
        self._deadline = deadline
        self.first = first  # gets the monotonic time of the first byte received

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_TimedRaw(self))


class _TimedRaw(io.RawIOBase):
    def __init__(self, owner: _TimedSocket) -> None:
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        owner = self._owner
        remaining = owner._deadline.remaining()
        if remaining <= 0:
            raise TimeoutError
        owner._sock.settimeout(remaining)
        n = owner._sock.recv_into(buffer)
        if n and not owner.first:
            owner.first.append(time.monotonic())
        return n


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _os_reason(exc: BaseException | None) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return str(exc.strerror or exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__

"""The web server's total deadlines for a request's headers and body (slowloris), on a
real socket that trickles bytes, while a normal client is served at the same time."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import requests

from controlplane.server import WebServer

HEADER_S, BODY_S = 2.0, 3.0


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"got %d bytes" % len(body)]


@pytest.fixture
def server() -> Iterator[WebServer]:
    srv = WebServer(app, "127.0.0.1", 0, header_timeout=HEADER_S, body_timeout=BODY_S).start()
    yield srv
    srv.stop()


def trickle(port: int, head: bytes, drip: bytes, every: float = 0.25,
            give_up: float = 15.0) -> tuple[float, bytes]:
    """Send ``head``, then ``drip`` one byte every ``every`` seconds (each gap far below the
    30 s idle timeout) until the server closes: (seconds from the first byte, what it sent)."""
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        t0 = time.monotonic()
        sock.sendall(head)
        answer = b""
        for byte in drip * 1000:
            if time.monotonic() - t0 > give_up:
                raise AssertionError("the server never closed the slow connection")
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # reset: closed while we wrote
                return time.monotonic() - t0, answer
            if select.select([sock], [], [], every)[0]:
                chunk = sock.recv(65536)
                if not chunk:
                    return time.monotonic() - t0, answer
                answer += chunk
        raise AssertionError("ran out of bytes to trickle")
    finally:
        sock.close()


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response (headers and Content-Length bytes of body), in as many
    reads as the server's writes take."""
    data = b""
    while b"\r\n\r\n" not in data or len(data) < _expected_length(data):
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    return data


def _expected_length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(head) + 4


def served_meanwhile(url: str, stop: threading.Event, codes: list[int]) -> None:
    with requests.Session() as s:
        while not stop.is_set():
            codes.append(s.post(url, data=b"x" * 1000, timeout=5).status_code)
            time.sleep(0.1)


def run_with_normal_client(server: WebServer, head: bytes,
                           drip: bytes) -> tuple[float, bytes, list[int]]:
    stop, codes = threading.Event(), list[int]()
    normal = threading.Thread(target=served_meanwhile, args=(server.url + "/", stop, codes))
    normal.start()
    try:
        elapsed, answer = trickle(server.port, head, drip)
    finally:
        stop.set()
        normal.join()
    return elapsed, answer, codes


def test_a_client_trickling_headers_is_cut_at_the_header_deadline_while_others_are_served(
        server: WebServer) -> None:
    elapsed, answer, codes = run_with_normal_client(
        server, b"GET / HTTP/1.1\r\nHost: x\r\n", b"X-Slow: abcdefghij\r\n")
    # checked once a second: closed after the deadline, well before the idle timeout
    assert HEADER_S <= elapsed < HEADER_S + 2.5
    assert answer == b""  # cut off, nothing served to it
    assert len(codes) >= 10 and set(codes) == {200}


def test_a_client_trickling_its_body_is_cut_at_the_body_deadline_while_others_are_served(
        server: WebServer) -> None:
    elapsed, answer, codes = run_with_normal_client(
        server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", b"y")
    assert BODY_S <= elapsed < BODY_S + 2.5
    assert answer == b""
    assert len(codes) >= 10 and set(codes) == {200}


def test_a_slow_but_timely_request_is_served(server: WebServer) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    with sock:
        for part in (b"POST / HTTP/1.1\r\n", b"Host: x\r\n", b"Content-Length: 4\r\n\r\n",
                     b"ab", b"cd"):
            sock.sendall(part)
            time.sleep(0.3)
        sock.settimeout(5)
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"got 4 bytes")


def test_deadlines_start_again_for_each_request_on_a_kept_alive_connection(
        server: WebServer) -> None:
    # four requests over 3 s on one raw connection: none trips the 2 s header deadline,
    # and the connection stays open (a close would show as an empty read)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(5)
        for _ in range(4):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"got 0 bytes")
            time.sleep(1.0)

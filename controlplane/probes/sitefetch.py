"""HTTP(S) fetches for multi-step probes, with verified TLS and optional own DNS.

``nameserver`` makes the probe resolve names through one DNS server (the sandbox's, or an
authoritative server to bypass caches) and connect to that answer while still sending the
real hostname for SNI, certificate checks and ``Host``. Errors become :class:`FetchError`
with one line a human can act on.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

MAX_BODY = 20 * 1024 * 1024
REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(Exception):
    """A fetch failed; the message names the host and the reason."""


@dataclass
class Fetched:
    url: str
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    ip: str
    cert_not_after: float | None = None  # unix time, https only

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Fetcher:
    def __init__(self, ca_file: str | None = None, nameserver: str | None = None,
                 timeout: float = 10.0) -> None:
        self.nameserver = nameserver
        self.timeout = timeout
        self._ctx = ssl.create_default_context(cafile=ca_file) if ca_file \
            else ssl.create_default_context()

    def resolve(self, host: str) -> str:
        try:
            socket.inet_pton(socket.AF_INET, host)
            return host
        except OSError:
            pass
        if self.nameserver:
            return self._resolve_via(host, self.nameserver)
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError(f"cannot resolve {host}: {exc.strerror}") from None
        return str(infos[0][4][0])

    def _resolve_via(self, host: str, nameserver: str) -> str:
        # dnspython loads here: loading the config need not pay for it
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode
        import dns.rdatatype

        ns_host, _, ns_port = nameserver.partition(":")
        query = dns.message.make_query(host, dns.rdatatype.A)
        try:
            reply = dns.query.udp(query, ns_host, port=int(ns_port or 53), timeout=self.timeout)
        except (dns.exception.DNSException, OSError) as exc:
            raise FetchError(f"cannot resolve {host}: nameserver {nameserver} did not answer "
                             f"({exc})") from None
        if reply.rcode() != dns.rcode.NOERROR:
            raise FetchError(f"cannot resolve {host}: {dns.rcode.to_text(reply.rcode())} "
                             f"from nameserver {nameserver}")
        for rrset in reply.answer:
            for rdata in rrset:
                if rdata.rdtype == dns.rdatatype.A:
                    return str(rdata.address)
        raise FetchError(f"cannot resolve {host}: no A record from nameserver {nameserver}")

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                body: bytes | None = None, max_redirects: int = 5,
                follow: bool = True) -> Fetched:
        """``follow=False`` returns a redirect as is (a browser the probe serves follows it)."""
        for _ in range(max_redirects + 1):
            got = self._once(method, url, headers or {}, body)
            location = got.headers.get("location")
            if not follow or got.status not in REDIRECTS or not location or method != "GET":
                return got
            url = urljoin(url, location)
        raise FetchError(f"more than {max_redirects} redirects starting at {url}")

    def _once(self, method: str, url: str, headers: dict[str, str],
              body: bytes | None) -> Fetched:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"not an http(s) URL: {url}")
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ip = self.resolve(host)
        where = f"{host}:{port} ({ip})"
        conn = _connection(parts.scheme, host, port, ip, self._ctx, self.timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        t0 = time.monotonic()
        try:
            conn.request(method, path, body=body, headers={"User-Agent": "controlplane/0.1",
                                                           **headers})
            resp = conn.getresponse()
            data = resp.read(MAX_BODY + 1)
            not_after = _not_after(conn)
        except ssl.SSLCertVerificationError as exc:
            raise FetchError(f"TLS verification failed for {where}: {exc.verify_message}") \
                from None
        except ssl.SSLError as exc:
            raise FetchError(f"TLS handshake with {where} failed: {exc.reason}") from None
        except ConnectionRefusedError:
            raise FetchError(f"cannot connect to {where}: connection refused") from None
        except TimeoutError:
            raise FetchError(f"{where} did not answer within "
                             f"{time.monotonic() - t0:.1f}s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"request to {where} failed: {type(exc).__name__}: {exc}") \
                from None
        finally:
            conn.close()
        if len(data) > MAX_BODY:
            raise FetchError(f"{url} answered more than {MAX_BODY} bytes; refusing to read it")
        return Fetched(url, resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, ip,
                       not_after)


def _not_after(conn: http.client.HTTPConnection) -> float | None:
    return conn.not_after if isinstance(conn, _PinnedHTTPS) else None


def _connection(scheme: str, host: str, port: int, ip: str, ctx: ssl.SSLContext,
                timeout: float) -> http.client.HTTPConnection:
    if scheme == "https":
        return _PinnedHTTPS(host, port, ip, ctx, timeout)
    return _PinnedHTTP(host, port, ip, timeout)


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to ``ip`` while speaking to ``host`` (the Host header stays the name)."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """Connects to ``ip``; SNI and certificate verification use ``host``."""

    def __init__(self, host: str, port: int, ip: str, ctx: ssl.SSLContext,
                 timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ctx)
        self._ip = ip
        self._ctx = ctx
        self.not_after: float | None = None

    def connect(self) -> None:
        raw = socket.create_connection((self._ip, self.port), self.timeout)
        try:
            sock = self._ctx.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.sock = sock
        # Read now: http.client drops the socket once a Connection: close response is read.
        cert = sock.getpeercert()
        value = cert.get("notAfter") if cert else None
        self.not_after = float(ssl.cert_time_to_seconds(str(value))) if value else None

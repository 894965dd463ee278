"""An authoritative DNS server for the platform's hostnames, UDP on a loopback port.

Known names answer A with the sandbox address (or the wrong IP under ``dns_wrong_ip``);
other names in the platform's zones get NXDOMAIN; anything else is REFUSED, so nothing
is ever forwarded off the machine.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

log = logging.getLogger(__name__)

ZONES = ("halo360.ai.", "techhalo.ai.")
TTL = 30

Answer = Callable[[str], str | None]  # hostname (no trailing dot) -> IPv4, None = unknown


class DnsServer:
    def __init__(self, answer: Answer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.answer = answer
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.5)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sandbox-dns", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> DnsServer:
        self._thread.start()
        log.info("sandbox part started part=dns address=%s", self.address)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                reply = self.respond(data)
            except Exception:
                log.warning("dns query could not be parsed peer=%s", peer, exc_info=True)
                continue
            self._sock.sendto(reply, peer)

    def respond(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if not query.question:
            reply.set_rcode(dns.rcode.FORMERR)
            return reply.to_wire()
        q = query.question[0]
        name = q.name.to_text().lower()
        if not name.endswith(ZONES):
            reply.flags &= ~dns.flags.AA
            reply.set_rcode(dns.rcode.REFUSED)
            return reply.to_wire()
        ip = self.answer(name.rstrip("."))
        if ip is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif q.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            reply.answer.append(dns.rrset.from_text(q.name, TTL, dns.rdataclass.IN,
                                                    dns.rdatatype.A, ip))
        return reply.to_wire()

"""A real UDP DNS server on a loopback port, answering from a small scripted zone.

Built on dnspython's message API: each datagram is parsed with ``dns.message.from_wire``
and answered with ``dns.message.make_response``. A name can hold records (A, AAAA, CNAME,
with CNAME chains followed as a recursive server would), be NXDOMAIN (the default for
unknown names), answer SERVFAIL, or be ``silent`` (the query is read and dropped).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest


class ScriptedDnsServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.records: dict[tuple[dns.name.Name, str], list[str]] = {}
        self.silent_names: set[dns.name.Name] = set()
        self.servfail_names: set[dns.name.Name] = set()
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)  # lets the loop notice stop() promptly
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def add(self, name: str, rtype: str, *values: str) -> None:
        self.records.setdefault((dns.name.from_text(name), rtype), []).extend(values)

    def silent(self, name: str) -> None:
        self.silent_names.add(dns.name.from_text(name))

    def servfail(self, name: str) -> None:
        self.servfail_names.add(dns.name.from_text(name))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                wire, client = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._reply(wire)
            if reply is not None:
                try:
                    self.sock.sendto(reply, client)
                except OSError:
                    return

    def _reply(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        rtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((question.name.to_text(), rtype))
        if question.name in self.silent_names:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if question.name in self.servfail_names:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif not self._answer(response, question.name, rtype):
            response.set_rcode(dns.rcode.NXDOMAIN)
        wire_out: bytes = response.to_wire()
        return wire_out

    def _answer(self, response: dns.message.Message, name: dns.name.Name, rtype: str) -> bool:
        """Fill the answer section; False when the name does not exist at all."""
        exists = any(n == name for n, _ in self.records)
        for _ in range(8):  # follow CNAMEs, bounded against loops
            values = self.records.get((name, rtype))
            if values:
                response.answer.append(_rrset(name, rtype, values))
                return True
            target = self.records.get((name, "CNAME"))
            if not target or rtype == "CNAME":
                return exists
            response.answer.append(_rrset(name, "CNAME", target))
            name = dns.name.from_text(target[0])
        return exists


def _rrset(name: dns.name.Name, rtype: str, values: list[str]) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(name, 300, dns.rdataclass.IN, rtype, values)


@pytest.fixture
def dns_server() -> Iterator[ScriptedDnsServer]:
    server = ScriptedDnsServer()
    server.start()
    yield server
    server.stop()

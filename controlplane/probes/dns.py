"""Kind ``dns``: ask a nameserver for A/AAAA/CNAME records and judge rcode and answers.

One query per run, sent straight to the nameserver with dnspython (UDP, TCP when the
answer is truncated), so the rcode and the latency are the server's own, not a stub
resolver's. Without ``nameserver`` the system's nameservers (/etc/resolv.conf) are asked
in order, each given an equal share of the timeout. See docs/http-dns.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import time
from typing import Any, ClassVar, Literal

import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdatatype
from pydantic import Field, field_validator

from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.results import Status

log = logging.getLogger(__name__)

RecordType = Literal["A", "AAAA", "CNAME"]
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")


class DnsCheckConfig(CheckConfig):
    kind: Literal["dns"] = "dns"
    name: str = Field(min_length=1)  # the queried name (not a display name here)
    type: RecordType = "A"
    expect: list[str] = Field(default_factory=list)
    allow_extra: bool = True
    nameserver: str | None = None
    expect_rcode: str = "NOERROR"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            dns.name.from_text(v)
        except dns.exception.DNSException as exc:
            raise ValueError(f"{v!r} is not a DNS name: {exc}") from None
        return v

    @field_validator("nameserver")
    @classmethod
    def _nameserver(cls, v: str | None) -> str | None:
        if v is not None:
            parse_nameserver(v)
        return v

    @field_validator("expect_rcode")
    @classmethod
    def _rcode(cls, v: str) -> str:
        if v.upper() not in RCODES:
            raise ValueError(f"unknown rcode {v!r}; use one of: {', '.join(RCODES)}")
        return v.upper()


def parse_nameserver(text: str) -> tuple[str, int]:
    """(ip, port) from IP, IP:PORT, [IPv6] or [IPv6]:PORT; ValueError says the format."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"nameserver {text!r}: write it as IP, IP:PORT or [IPv6]:PORT")
            port = tail[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ip = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"nameserver {text!r}: write it as IP, IP:PORT or [IPv6]:PORT "
                         "(an address, not a hostname)") from None
    if not 0 < number < 65536:
        raise ValueError(f"nameserver {text!r}: port must be 1-65535")
    return str(ip), number


class DnsProbe(Probe[DnsCheckConfig]):
    kind: ClassVar[str] = "dns"
    config_model: ClassVar[type[CheckConfig]] = DnsCheckConfig
    cli_name: ClassVar[str | None] = "dns"

    def check(self) -> Outcome:
        cfg = self.config
        servers = self._servers()
        share = cfg.timeout / len(servers)
        silent: list[str] = []
        for ip, port in servers:
            where = _fmt(ip, port)
            t0 = time.monotonic()
            try:
                response = self._ask(ip, port, share)
            except dns.exception.Timeout:
                silent.append(where)
                continue
            except (OSError, dns.exception.DNSException) as exc:
                return Outcome(Status.FAILING, f"query to {where} failed: {exc}",
                               details={"nameserver": where})
            return self._judge(response, where, time.monotonic() - t0)
        message = f"timed out after {cfg.timeout:g}s: no answer from {', '.join(silent)}"
        return Outcome(Status.FAILING, message, details={"nameserver": ", ".join(silent)})

    def _servers(self) -> list[tuple[str, int]]:
        import dns.resolver  # here: loading the config need not pay for the resolver

        if self.config.nameserver:
            return [parse_nameserver(self.config.nameserver)]
        try:
            system = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise ProbeError("no system nameserver is configured (/etc/resolv.conf); "
                             "set `nameserver`") from None
        servers = []
        for ns in system.nameservers:
            address = str(ns)
            servers.append((address, system.nameserver_ports.get(address, system.port)))
        if not servers:
            raise ProbeError("no system nameserver is configured; set `nameserver`")
        return servers

    def _ask(self, ip: str, port: int, timeout: float) -> dns.message.Message:
        import dns.message
        import dns.query

        query = dns.message.make_query(self.config.name, self.config.type)
        response, _tcp = dns.query.udp_with_fallback(query, ip, timeout=timeout, port=port)
        return response

    def _judge(self, response: dns.message.Message, where: str, latency: float) -> Outcome:
        cfg = self.config
        rcode = dns.rcode.to_text(response.rcode())
        answers = _answers(response, cfg.type)
        metrics: dict[str, float | None] = {"latency_s": round(latency, 6),
                                            "answers": float(len(answers))}
        details: dict[str, Any] = {"name": cfg.name, "type": cfg.type, "rcode": rcode,
                                   "answers": answers, "nameserver": where,
                                   "authoritative": bool(response.flags & dns.flags.AA)}
        label = f"{cfg.name} {cfg.type}"
        if rcode != cfg.expect_rcode:
            return Outcome(Status.FAILING, f"{label}: rcode {rcode}, expected {cfg.expect_rcode}",
                           metrics, details)
        if cfg.expect:
            status, message = _compare(label, cfg.expect, answers, cfg.type, cfg.allow_extra)
            details["missing"], details["extra"] = _diff(cfg.expect, answers, cfg.type)
            return Outcome(status, message, metrics, details)
        if rcode == "NOERROR" and not answers:
            return Outcome(Status.FAILING, f"{label}: no {cfg.type} records (NOERROR, empty "
                           "answer)", metrics, details)
        shown = ", ".join(answers) if answers else "no answers"
        return Outcome(Status.OK, f"{label}: {rcode}, {shown}", metrics, details)

    # -- `controlplane probe dns NAME ...` --------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", help="the DNS name to query")
        parser.add_argument("--type", default="A", type=str.upper,
                            choices=["A", "AAAA", "CNAME"], help="record type (default A)")
        parser.add_argument("--expect", action="append", metavar="VALUE", default=[],
                            help="a value that must be in the answer; repeat for several")
        parser.add_argument("--nameserver", metavar="IP[:PORT]",
                            help="ask this server (default: the system's nameservers)")
        parser.add_argument("--expect-rcode", default="NOERROR", metavar="RCODE",
                            help="expected rcode (default NOERROR)")
        parser.add_argument("--timeout", default="5s", metavar="S",
                            help="query timeout (default 5s)")
        parser.add_argument("--json", action="store_true", help="print the Result as JSON")

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> CheckConfig:
        return DnsCheckConfig.model_validate({
            "id": "adhoc-dns", "name": args.name, "type": args.type, "expect": args.expect,
            "nameserver": args.nameserver, "expect_rcode": args.expect_rcode,
            "timeout": args.timeout})


def _answers(response: dns.message.Message, rtype: str) -> list[str]:
    """Values of the requested type in the answer section (a CNAME chain is followed).

    Sorted, because servers rotate record order and a message should not change with it.
    """
    wanted = dns.rdatatype.from_text(rtype)
    values: list[str] = []
    for rrset in response.answer:
        if rrset.rdtype == wanted:
            values += [rd.to_text() for rd in rrset]
    return sorted(values, key=lambda v: _sort_key(v, rtype))


def _sort_key(value: str, rtype: str) -> tuple[int, Any]:
    if rtype in ("A", "AAAA"):
        try:
            return 0, ipaddress.ip_address(value)
        except ValueError:
            pass
    return 1, value


def _normal(value: str, rtype: str) -> str:
    """Compare addresses as addresses and names without case or trailing dot."""
    if rtype in ("A", "AAAA"):
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            return value.strip()
    return value.strip().rstrip(".").lower()


def _diff(expect: list[str], answers: list[str], rtype: str) -> tuple[list[str], list[str]]:
    want = {_normal(v, rtype): v for v in expect}
    got = {_normal(v, rtype): v for v in answers}
    missing = [v for k, v in want.items() if k not in got]
    extra = [v for k, v in got.items() if k not in want]
    return missing, extra


def _compare(label: str, expect: list[str], answers: list[str], rtype: str,
             allow_extra: bool) -> tuple[Status, str]:
    missing, extra = _diff(expect, answers, rtype)
    got = ", ".join(answers) if answers else "no answers"
    if missing or (extra and not allow_extra):
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"extra {', '.join(extra)}"] if extra else []
        return Status.FAILING, (f"{label}: expected {', '.join(expect)}, got {got} "
                                f"({'; '.join(parts)})")
    if extra:
        return Status.OK, f"{label}: {got} (has all expected; extra {', '.join(extra)})"
    return Status.OK, f"{label}: {got}"


def _fmt(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

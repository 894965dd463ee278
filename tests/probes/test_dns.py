"""The dns check against a real UDP DNS server on a loopback port."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from controlplane.probes.dns import DnsCheckConfig, DnsProbe, parse_nameserver
from controlplane.results import Result, Status
from tests.services.common import run_cli
from tests.services.dnsserver import ScriptedDnsServer

PUBLIC_IP = "20.124.179.20"


def probe(server: ScriptedDnsServer, name: str, **fields: Any) -> Result:
    config = DnsCheckConfig.model_validate(
        {"id": "t-dns", "name": name, "nameserver": server.address, **fields})
    return DnsProbe(config).execute()


def test_right_answer_is_ok_with_latency_and_answers(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("bic-sky.halo360.ai", "A", PUBLIC_IP)
    r = probe(dns_server, "bic-sky.halo360.ai", expect=[PUBLIC_IP])
    assert r.status is Status.OK
    assert r.message == f"bic-sky.halo360.ai A: {PUBLIC_IP}"
    assert r.metrics["answers"] == 1
    latency = r.metrics["latency_s"]
    assert latency is not None and latency > 0
    assert r.details["answers"] == [PUBLIC_IP]
    assert r.details["rcode"] == "NOERROR"
    assert r.details["nameserver"] == dns_server.address
    assert (r.details["missing"], r.details["extra"]) == ([], [])
    assert dns_server.queries == [("bic-sky.halo360.ai.", "A")]


def test_wrong_answer_fails_naming_expected_and_got(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("360voice.techhalo.ai", "A", "10.1.2.3")
    r = probe(dns_server, "360voice.techhalo.ai", expect=[PUBLIC_IP])
    assert r.status is Status.FAILING
    assert r.message == (f"360voice.techhalo.ai A: expected {PUBLIC_IP}, got 10.1.2.3 "
                         f"(missing {PUBLIC_IP}; extra 10.1.2.3)")
    assert (r.details["missing"], r.details["extra"]) == ([PUBLIC_IP], ["10.1.2.3"])


def test_every_expected_value_must_be_present(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("lb.example.test", "A", "10.0.0.1")
    r = probe(dns_server, "lb.example.test", expect=["10.0.0.1", "10.0.0.2"])
    assert r.status is Status.FAILING
    assert r.message == ("lb.example.test A: expected 10.0.0.1, 10.0.0.2, got 10.0.0.1 "
                         "(missing 10.0.0.2)")


def test_extra_values_are_reported_but_allowed_by_default(
        dns_server: ScriptedDnsServer) -> None:
    dns_server.add("lb.example.test", "A", "10.0.0.1", "10.0.0.9")
    r = probe(dns_server, "lb.example.test", expect=["10.0.0.1"])
    assert r.status is Status.OK
    assert r.message == ("lb.example.test A: 10.0.0.1, 10.0.0.9 "
                         "(has all expected; extra 10.0.0.9)")
    assert r.details["extra"] == ["10.0.0.9"]


def test_extra_values_fail_when_not_allowed(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("lb.example.test", "A", "10.0.0.1", "10.0.0.9")
    r = probe(dns_server, "lb.example.test", expect=["10.0.0.1"], allow_extra=False)
    assert r.status is Status.FAILING
    assert r.message == ("lb.example.test A: expected 10.0.0.1, got 10.0.0.1, 10.0.0.9 "
                         "(extra 10.0.0.9)")


def test_nxdomain_when_answers_are_expected_fails_naming_the_rcode(
        dns_server: ScriptedDnsServer) -> None:
    r = probe(dns_server, "gone.techhalo.ai", expect=[PUBLIC_IP])
    assert r.status is Status.FAILING
    assert r.message == "gone.techhalo.ai A: rcode NXDOMAIN, expected NOERROR"
    assert r.details["rcode"] == "NXDOMAIN"
    assert r.metrics["answers"] == 0


def test_nxdomain_is_ok_when_it_is_the_expected_rcode(dns_server: ScriptedDnsServer) -> None:
    r = probe(dns_server, "retired.techhalo.ai", expect_rcode="nxdomain")
    assert r.status is Status.OK
    assert r.message == "retired.techhalo.ai A: NXDOMAIN, no answers"


def test_servfail_fails_naming_the_rcode(dns_server: ScriptedDnsServer) -> None:
    dns_server.servfail("broken.example.test")
    r = probe(dns_server, "broken.example.test")
    assert r.status is Status.FAILING
    assert r.message == "broken.example.test A: rcode SERVFAIL, expected NOERROR"


def test_silent_server_fails_with_a_timeout(dns_server: ScriptedDnsServer) -> None:
    dns_server.silent("quiet.example.test")
    r = probe(dns_server, "quiet.example.test", timeout=1)
    assert r.status is Status.FAILING
    assert r.message == f"timed out after 1s: no answer from {dns_server.address}"
    assert r.duration_s < 30
    assert dns_server.queries == [("quiet.example.test.", "A")]


def test_name_without_records_of_the_type_fails(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("v4only.example.test", "A", "10.0.0.1")
    r = probe(dns_server, "v4only.example.test", type="AAAA")
    assert r.status is Status.FAILING
    assert r.message == "v4only.example.test AAAA: no AAAA records (NOERROR, empty answer)"


def test_aaaa_values_compare_as_addresses(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("v6.example.test", "AAAA", "2001:db8::1")
    r = probe(dns_server, "v6.example.test", type="AAAA", expect=["2001:0db8:0:0::1"])
    assert r.status is Status.OK
    assert r.details["answers"] == ["2001:db8::1"]


def test_cname_is_compared_without_case_or_trailing_dot(
        dns_server: ScriptedDnsServer) -> None:
    dns_server.add("www.example.test", "CNAME", "edge.example.test.")
    r = probe(dns_server, "www.example.test", type="CNAME", expect=["Edge.Example.Test"])
    assert r.status is Status.OK
    assert r.details["answers"] == ["edge.example.test."]


def test_a_query_follows_a_cname_chain(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("alias.example.test", "CNAME", "edge.example.test.")
    dns_server.add("edge.example.test", "A", PUBLIC_IP)
    r = probe(dns_server, "alias.example.test", expect=[PUBLIC_IP])
    assert r.status is Status.OK
    assert r.details["answers"] == [PUBLIC_IP]


@pytest.mark.parametrize(("text", "parsed"), [
    ("10.0.0.53", ("10.0.0.53", 53)),
    ("10.0.0.53:5353", ("10.0.0.53", 5353)),
    ("::1", ("::1", 53)),
    ("[::1]:5353", ("::1", 5353)),
])
def test_nameserver_forms(text: str, parsed: tuple[str, int]) -> None:
    assert parse_nameserver(text) == parsed


@pytest.mark.parametrize(("fields", "message"), [
    ({"nameserver": "dns.google"}, "an address, not a hostname"),
    ({"nameserver": "10.0.0.1:0"}, "port must be 1-65535"),
    ({"expect_rcode": "NOPE"}, "unknown rcode 'NOPE'; use one of: NOERROR"),
    ({"type": "MX"}, "Input should be 'A', 'AAAA' or 'CNAME'"),
])
def test_bad_fields_are_rejected_with_instructions(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DnsCheckConfig.model_validate({"id": "x", "name": "a.example.test", **fields})


# -- CLI ----------------------------------------------------------------------------------

def test_cli_right_answer_exits_0_with_the_result_json(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("kafka-prod-new.techhalo.ai", "A", "4.156.62.101")
    proc = run_cli("probe", "dns", "kafka-prod-new.techhalo.ai", "--expect", "4.156.62.101",
                   "--nameserver", dns_server.address, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["check"], doc["kind"], doc["status"]) == ("adhoc-dns", "dns", "ok")
    assert doc["message"] == "kafka-prod-new.techhalo.ai A: 4.156.62.101"
    assert set(doc["metrics"]) == {"latency_s", "answers"}
    assert doc["details"]["answers"] == ["4.156.62.101"]


def test_cli_wrong_answer_exits_1(dns_server: ScriptedDnsServer) -> None:
    dns_server.add("www.example.test", "CNAME", "old.example.test.")
    proc = run_cli("probe", "dns", "www.example.test", "--type", "cname", "--expect",
                   "new.example.test", "--nameserver", dns_server.address)
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAILING  adhoc-dns  www.example.test CNAME: expected "
                                  "new.example.test, got old.example.test.")


def test_cli_bad_nameserver_exits_2() -> None:
    proc = run_cli("probe", "dns", "a.example.test", "--nameserver", "not-an-ip")
    assert proc.returncode == 2
    assert "nameserver 'not-an-ip': write it as IP, IP:PORT or [IPv6]:PORT" in proc.stderr

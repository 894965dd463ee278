"""The simulated parts over real TLS and DNS: what each serves, and what each fault changes."""

from __future__ import annotations

import io
import json
import socket
import ssl
import time

import dns.message
import dns.query
import dns.rcode
import pypdf
import pytest

from controlplane.probes.sitefetch import Fetched, Fetcher, FetchError
from controlplane.sandbox.faults import FaultError, FaultSwitch
from controlplane.sandbox.platform import ENVIRONMENTS, env_by_name
from controlplane.sandbox.runner import Sandbox

PROD = env_by_name("production")


def get(sb: Sandbox, url: str) -> Fetched:
    return Fetcher(sb.ca_file, sb.nameserver, 20).request("GET", url)


def query(sb: Sandbox, name: str, rdtype: str = "A") -> dns.message.Message:
    host, port = sb.nameserver.split(":")
    return dns.query.udp(dns.message.make_query(name, rdtype), host, port=int(port), timeout=10)


def cert_days_left(sb: Sandbox, host: str) -> float:
    ctx = ssl.create_default_context(cafile=sb.ca_file)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", sb.port("bic_agent")), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der or b"")
    return (cert.not_valid_after_utc.timestamp() - time.time()) / 86400


@pytest.mark.parametrize("env", [e.name for e in ENVIRONMENTS])
def test_dns_answers_every_platform_host_with_loopback(sandbox: Sandbox, env: str) -> None:
    for host in env_by_name(env).hosts.values():
        answer = query(sandbox, host)
        assert [r.to_text() for rrset in answer.answer for r in rrset] == ["127.0.0.1"]


def test_dns_unknown_name_in_zone_is_nxdomain(sandbox: Sandbox) -> None:
    assert query(sandbox, "nope.halo360.ai").rcode() == dns.rcode.NXDOMAIN


def test_dns_refuses_names_outside_the_platform(sandbox: Sandbox) -> None:
    assert query(sandbox, "example.com").rcode() == dns.rcode.REFUSED


def test_dns_wrong_ip_fault_changes_only_its_host(sandbox: Sandbox) -> None:
    sandbox.faults.set("dns_wrong_ip", params={"ip": "127.0.0.9"})
    assert [r.to_text() for s in query(sandbox, PROD.frontend).answer for r in s] == ["127.0.0.9"]
    assert [r.to_text() for s in query(sandbox, PROD.api).answer for r in s] == ["127.0.0.1"]


def test_bic_agent_serves_the_app_shell(sandbox: Sandbox) -> None:
    got = get(sandbox, sandbox.env_url(PROD, "frontend"))
    assert got.status == 200 and "<app-root></app-root>" in got.text()


@pytest.mark.parametrize("env", [e.name for e in ENVIRONMENTS])
def test_appconfig_points_at_its_own_environment(sandbox: Sandbox, env: str) -> None:
    e = env_by_name(env)
    config = json.loads(get(sandbox, sandbox.env_url(e, "frontend", "/assets/appconfig.json")).body)
    assert config["environment"] == e.name
    assert config["apiUrl"] == f"https://{e.api}:{sandbox.port('halo_task')}"


def test_appconfig_fault_serves_the_staging_config_in_production(sandbox: Sandbox) -> None:
    sandbox.faults.set("appconfig_staging")
    got = get(sandbox, sandbox.env_url(PROD, "frontend", "/assets/appconfig.json"))
    config = json.loads(got.body)
    assert config["environment"] == "staging"
    assert config["apiUrl"].startswith("https://api-halo-task-staging.techhalo.ai:")


def test_card_page_links_the_pdf_which_names_the_client(sandbox: Sandbox) -> None:
    fetch = Fetcher(sandbox.ca_file, sandbox.nameserver, 20)
    resp = fetch.request("POST", sandbox.env_url(PROD, "api", "/api/idcards/send-link"),
                         headers={"Authorization": f"Bearer {sandbox.halo_token}",
                                  "Content-Type": "application/json"},
                         body=b'{"clientId": "c-42", "phoneNumber": "+15550100001", '
                              b'"fullName": "Grace Hopper"}')
    assert resp.status == 202
    link = next(link for link in sandbox.links.values() if link.client_id == "c-42")
    page = fetch.request("GET", link.url)
    assert "Grace Hopper" in page.text() and "Download PDF" in page.text()
    pdf = fetch.request("GET", sandbox.env_url(PROD, "api", f"/api/idcards/{link.token}/pdf"))
    assert pdf.content_type == "application/pdf"
    text = pypdf.PdfReader(io.BytesIO(pdf.body)).pages[0].extract_text()
    assert "Name: Grace Hopper" in text and "Client ID: c-42" in text


def test_halo_task_rejects_a_missing_token_with_problem_details(sandbox: Sandbox) -> None:
    got = Fetcher(sandbox.ca_file, sandbox.nameserver, 20).request(
        "POST", sandbox.env_url(PROD, "api", "/api/idcards/send-link"), body=b"{}")
    assert got.status == 401 and got.content_type == "application/problem+json"


def test_halo_task_500_fault_breaks_health_too(sandbox: Sandbox) -> None:
    assert get(sandbox, sandbox.env_url(PROD, "api", "/health")).status == 200
    sandbox.faults.set("halo_task_500")
    assert get(sandbox, sandbox.env_url(PROD, "api", "/health")).status == 500


def test_voice360_answers_its_liveness_probe(sandbox: Sandbox) -> None:
    got = get(sandbox, sandbox.env_url(PROD, "voice", "/"))
    assert got.status == 200 and b'"service":"voice360"' in got.body


def test_certificates_are_valid_for_90_days(sandbox: Sandbox) -> None:
    assert 89 < cert_days_left(sandbox, PROD.frontend) <= 90


def test_cert_expiring_fault_serves_a_5_day_certificate(sandbox: Sandbox) -> None:
    sandbox.faults.set("cert_expiring")
    assert 4.9 < cert_days_left(sandbox, PROD.frontend) <= 5
    assert cert_days_left(sandbox, PROD.bic_agent) > 89


def test_cert_expired_fault_fails_verification(sandbox: Sandbox) -> None:
    sandbox.faults.set("cert_expired")
    with pytest.raises(FetchError) as info:
        get(sandbox, sandbox.env_url(PROD, "frontend"))
    assert str(info.value).endswith("certificate has expired")


def test_unknown_fault_names_the_valid_ones() -> None:
    with pytest.raises(FaultError) as info:
        FaultSwitch().set("sms_lost")
    assert str(info.value).startswith("unknown fault 'sms_lost'; use one of: sms_delayed, ")


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(FaultError) as info:
        FaultSwitch().set("sms_dropped", env="qa")
    assert str(info.value) == ("unknown environment 'qa'; use one of: production, release, "
                               "staging, dev")


def test_unknown_parameter_is_refused() -> None:
    with pytest.raises(FaultError) as info:
        FaultSwitch().set("sms_delayed", params={"seconds": "5"})
    assert str(info.value) == "fault sms_delayed has no parameter 'seconds'; parameters: delay"


def test_bad_delay_is_refused() -> None:
    with pytest.raises(FaultError) as info:
        FaultSwitch().set("sms_delayed", params={"delay": "soon"})
    assert str(info.value) == "sms_delayed: delay must be a number of seconds >= 0"


def test_clear_by_env_keeps_the_others() -> None:
    switch = FaultSwitch()
    switch.set("sms_dropped", "production")
    switch.set("sms_dropped", "staging")
    assert switch.clear("sms_dropped", "staging") == 1
    assert [(f.name, f.env) for f in switch.list()] == [("sms_dropped", "production")]


def test_host_fault_for_a_host_outside_the_environment_is_refused() -> None:
    with pytest.raises(FaultError) as info:
        FaultSwitch().set("cert_expired", "dev", {"host": "bic-sky.halo360.ai"})
    assert str(info.value) == ("cert_expired: host 'bic-sky.halo360.ai' is not a dev hostname; "
                               "use one of: 360voice-dev.techhalo.ai, halovoice-dev.techhalo.ai,"
                               " api-halo-task-dev.techhalo.ai, dev-sky.halo360.ai")


def test_each_host_gets_its_own_certificate(sandbox: Sandbox) -> None:
    ctx = ssl.create_default_context(cafile=sandbox.ca_file)
    address = ("127.0.0.1", sandbox.port("bic_agent"))
    for host in ("release-sky.halo360.ai", "halovoice-dev.techhalo.ai"):
        with socket.create_connection(address, timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as tls:
            cert = tls.getpeercert()
        assert cert is not None
        assert dict(x[0] for x in cert["subject"]) == {"commonName": host}

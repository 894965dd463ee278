"""The vendor_status probe against the Statuspage contract fake (controlplane/sandbox)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from controlplane.probes.vendor_status import VendorStatusConfig, VendorStatusProbe
from controlplane.results import Result, Status
from controlplane.sandbox.statuspage_fake import StatuspageFake
from tests.services.certs import CertFactory
from tests.services.common import free_port


@pytest.fixture
def pages() -> Iterator[StatuspageFake]:
    fake = StatuspageFake()
    fake.add_page("openai", "OpenAI", ["ChatGPT", "Sora"],
                  groups={"APIs": ["Chat Completions", "Embeddings", "Realtime"]})
    fake.add_page("twilio", "Twilio", ["SMS", "Voice", "Programmable Messaging API"])
    fake.start()
    yield fake
    fake.stop()


def probe(fake: StatuspageFake, slug: str = "openai", **fields: Any) -> Result:
    base: dict[str, Any] = {"id": f"vendor-{slug}", "vendor": slug.capitalize(),
                            "page_url": f"{fake.url}/{slug}", "timeout": 3}
    return VendorStatusProbe(VendorStatusConfig(**{**base, **fields})).execute()


def test_the_fake_serves_the_statuspage_summary_shape(pages: StatuspageFake) -> None:
    body = requests.get(f"{pages.url}/openai/api/v2/summary.json", timeout=5).json()
    assert set(body) == {"page", "components", "incidents", "scheduled_maintenances", "status"}
    assert set(body["page"]) == {"id", "name", "url", "time_zone", "updated_at"}
    group = next(c for c in body["components"] if c["group"])
    assert group["name"] == "APIs" and len(group["components"]) == 3
    assert body["status"] == {"indicator": "none", "description": "All Systems Operational"}


def test_all_operational_is_ok(pages: StatuspageFake) -> None:
    result = probe(pages)
    assert result.status == Status.OK
    assert result.message == "Openai: 5 component(s) operational"
    assert result.details["indicator"] == "none"


def test_outage_of_a_watched_component_fails(pages: StatuspageFake) -> None:
    pages.set_component("openai", "Chat Completions", "major_outage")
    result = probe(pages, vendor="OpenAI", components=["APIs"])
    assert result.status == Status.FAILING
    assert result.message == "OpenAI: Chat Completions is major outage"
    assert result.metrics["components"] == 3
    assert result.metrics["components_not_operational"] == 1


def test_outage_of_an_unwatched_component_is_ignored(pages: StatuspageFake) -> None:
    pages.set_component("openai", "Sora", "major_outage")
    pages.open_incident("openai", "Sora video generation failing", "major", ["Sora"])
    result = probe(pages, vendor="OpenAI", components=["Chat Completions", "Embeddings"])
    assert result.status == Status.OK
    assert result.details["incidents"] == []


def test_degraded_performance_is_degraded_and_can_be_made_failing(
        pages: StatuspageFake) -> None:
    pages.set_component("twilio", "SMS", "degraded_performance")
    assert probe(pages, "twilio", components=["SMS"]).status == Status.DEGRADED
    result = probe(pages, "twilio", components=["SMS"], degraded_performance="failing")
    assert result.status == Status.FAILING
    assert result.message == "Twilio: SMS is degraded performance"


def test_open_incident_on_a_watched_component_counts_by_impact(pages: StatuspageFake) -> None:
    pages.set_component("twilio", "SMS", "partial_outage")
    incident = pages.open_incident("twilio", "Delayed SMS delivery to US carriers",
                                   "critical", ["SMS"])
    result = probe(pages, "twilio", vendor="Twilio", components=["SMS"])
    assert result.status == Status.FAILING
    assert result.message == ("Twilio incident: Delayed SMS delivery to US carriers "
                              "(investigating, impact critical) (and 1 more problem)")
    assert result.details["incidents"][0]["shortlink"].startswith("https://stspg.io/")
    pages.resolve_incident("twilio", incident)
    pages.set_component("twilio", "SMS", "operational")
    assert probe(pages, "twilio", components=["SMS"]).status == Status.OK


def test_maintenance_counts_as_degraded(pages: StatuspageFake) -> None:
    pages.set_component("twilio", "Voice", "under_maintenance")
    pages.start_maintenance("twilio", "Voice carrier upgrade", ["Voice"])
    result = probe(pages, "twilio", vendor="Twilio", components=["Voice"])
    assert result.status == Status.DEGRADED
    assert result.details["problems"] == ["Twilio: Voice is under maintenance",
                                          "Twilio maintenance in progress: Voice carrier upgrade"]


def test_a_renamed_component_is_degraded_naming_it(pages: StatuspageFake) -> None:
    result = probe(pages, vendor="OpenAI", components=["Completions (legacy)"])
    assert result.status == Status.DEGRADED
    assert result.message == ("OpenAI: component 'Completions (legacy)' is not on the status "
                              "page (renamed? update the check)")


def test_a_status_page_that_is_down_is_an_error(pages: StatuspageFake) -> None:
    pages.page_down("openai", 503)
    result = probe(pages, vendor="OpenAI")
    assert result.status == Status.ERROR
    assert result.message == (f"OpenAI status page unreadable: HTTP 503 from "
                              f"{pages.url}/openai/api/v2/summary.json")


def test_a_page_that_is_not_json_is_an_error(pages: StatuspageFake) -> None:
    pages.page_down("openai", 200, b"<html>maintenance</html>")
    result = probe(pages, vendor="OpenAI")
    assert result.status == Status.ERROR
    assert result.message.endswith("/openai/api/v2/summary.json is not JSON")


def test_a_slow_page_is_an_error_within_the_timeout(pages: StatuspageFake) -> None:
    pages.slow("openai", 5)
    t0 = time.monotonic()
    result = probe(pages, vendor="OpenAI", timeout=1)
    assert time.monotonic() - t0 < 3
    assert result.status == Status.ERROR
    assert result.message == "OpenAI status page: no answer within 1s"


def test_unreachable_and_unresolvable_pages_are_errors() -> None:
    port = free_port()
    down = VendorStatusProbe(VendorStatusConfig(
        id="v", vendor="Stripe", page_url=f"http://127.0.0.1:{port}")).execute()
    assert (down.status, down.message) == (
        Status.ERROR, "Stripe status page unreadable: connection refused")
    dns = VendorStatusProbe(VendorStatusConfig(
        id="v", vendor="Stripe", page_url="https://status.stripe.invalid")).execute()
    assert (dns.status, dns.message) == (
        Status.ERROR, "Stripe status page unreadable: cannot resolve the host")


def test_untrusted_certificate_is_an_error(tmp_path: Path) -> None:
    files = CertFactory(tmp_path).server(["localhost"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(files.cert_file), str(files.key_file))
    fake = StatuspageFake(tls_context=ctx)
    fake.add_page("stripe", "Stripe", ["API"])
    fake.start()
    try:
        trusted = probe(fake, "stripe", ca_file=str(files.ca_file))
        untrusted = probe(fake, "stripe", ca_file=str(CertFactory(tmp_path / "o")
                                                      .self_signed().ca_file))
    finally:
        fake.stop()
    assert trusted.status == Status.OK
    assert (untrusted.status, untrusted.message) == (
        Status.ERROR, "Stripe status page unreadable: TLS certificate not trusted "
                      "(certificate verify failed)")

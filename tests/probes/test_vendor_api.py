"""The vendor_api probe against the Twilio, OpenAI and Stripe contract fakes."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.probes.vendor_api import VendorApiConfig, VendorApiProbe
from controlplane.results import Result, Status
from controlplane.sandbox.vendor_api_fake import VendorApiFake
from tests.services.certs import CertFactory, ServerFiles
from tests.services.common import free_port


@pytest.fixture
def vendors() -> Iterator[VendorApiFake]:
    fake = VendorApiFake()
    fake.start()
    yield fake
    fake.stop()


def probe(fake: VendorApiFake, vendor: str, **fields: Any) -> Result:
    a = fake.accounts
    creds: dict[str, dict[str, Any]] = {
        "twilio": {"account_sid": a.twilio_sid, "api_key": a.twilio_token},
        "openai": {"api_key": a.openai_key}, "stripe": {"api_key": a.stripe_key}}
    base: dict[str, Any] = {"id": f"api-{vendor}", "vendor": vendor, "api_base": fake.url,
                            "timeout": 3, **creds[vendor]}
    return VendorApiProbe(VendorApiConfig(**{**base, **fields})).execute()


def test_twilio_active_account_is_ok(vendors: VendorApiFake) -> None:
    result = probe(vendors, "twilio")
    assert result.status == Status.OK
    assert result.message.startswith(f"twilio: account {vendors.accounts.twilio_sid} active (")
    assert vendors.calls == [f"GET /2010-04-01/Accounts/{vendors.accounts.twilio_sid}.json"]


def test_twilio_suspended_account_fails(vendors: VendorApiFake) -> None:
    vendors.accounts.twilio_status = "suspended"
    result = probe(vendors, "twilio")
    assert result.status == Status.FAILING
    assert result.message == (f"twilio account {vendors.accounts.twilio_sid} is suspended: "
                              "SMS and calls are refused")


def test_openai_lists_the_expected_models(vendors: VendorApiFake) -> None:
    result = probe(vendors, "openai", expect_models=["gpt-4o", "whisper-1"])
    assert result.status == Status.OK
    assert result.metrics["models"] == 4
    missing = probe(vendors, "openai", expect_models=["gpt-4o", "o3-pro"])
    assert missing.status == Status.FAILING
    assert missing.message == "openai: model(s) not available to this key: o3-pro"


def test_stripe_balance_below_the_floor_is_degraded(vendors: VendorApiFake) -> None:
    assert probe(vendors, "stripe").metrics["available:usd"] == 12500
    result = probe(vendors, "stripe", min_available={"usd": 50000, "eur": 1})
    assert result.status == Status.DEGRADED
    assert result.message == ("stripe available balance below the floor: usd 12500 < 50000; "
                              "eur 0 < 1 (minor units)")


@pytest.mark.parametrize(("vendor", "code"), [("twilio", "20003"),
                                              ("openai", "invalid_api_key"),
                                              ("stripe", "invalid_request_error")])
def test_wrong_key_fails_without_showing_it(vendors: VendorApiFake, vendor: str,
                                            code: str) -> None:
    result = probe(vendors, vendor, api_key="sk-hunter2-wrong-key-9876")
    assert result.status == Status.FAILING
    assert result.message == (f"{vendor} API: credentials rejected: the key is wrong, revoked "
                              f"or expired (HTTP 401, {code})")
    dumped = result.model_dump_json()
    assert "hunter2" not in dumped and "9876" not in dumped


def test_rate_limit_and_outage_are_errors(vendors: VendorApiFake) -> None:
    vendors.fail("/v1/models", 429)
    limited = probe(vendors, "openai")
    assert (limited.status, limited.message) == (
        Status.ERROR, "openai API rate-limited this call (HTTP 429, rate_limit_exceeded)")
    vendors.clear()
    vendors.fail("/Accounts", 503)
    down = probe(vendors, "twilio")
    assert (down.status, down.message) == (Status.ERROR,
                                           "twilio API answered HTTP 503, 20503")


def test_slow_answer_is_an_error_within_the_timeout(vendors: VendorApiFake) -> None:
    vendors.delay_s = 3
    t0 = time.monotonic()
    result = probe(vendors, "stripe", timeout=1)
    assert time.monotonic() - t0 < 2.5
    assert (result.status, result.message) == (Status.ERROR,
                                               "stripe API: no answer within 1s")


def test_slow_but_answering_is_degraded_over_max_response(vendors: VendorApiFake) -> None:
    vendors.delay_s = 0.3
    result = probe(vendors, "stripe", max_response_s=0.1)
    assert result.status == Status.DEGRADED
    assert result.message.startswith("stripe answered in 0.3")


def test_unreachable_and_unresolvable_apis_are_errors() -> None:
    port = free_port()
    down = VendorApiProbe(VendorApiConfig(id="a", vendor="openai", api_key="k",
                                          api_base=f"http://127.0.0.1:{port}")).execute()
    assert (down.status, down.message) == (
        Status.ERROR, f"openai API http://127.0.0.1:{port}: connection refused")
    dns = VendorApiProbe(VendorApiConfig(id="a", vendor="openai", api_key="k",
                                         api_base="https://api.openai.invalid")).execute()
    assert dns.message == "openai API https://api.openai.invalid: cannot resolve the host"


def test_silent_api_is_an_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        result = VendorApiProbe(VendorApiConfig(
            id="a", vendor="stripe", api_key="k", timeout=1,
            api_base=f"http://127.0.0.1:{silent.getsockname()[1]}")).execute()
    assert (result.status, result.message) == (Status.ERROR,
                                               "stripe API: no answer within 1s")


def test_empty_credentials_are_an_error_naming_them() -> None:
    result = VendorApiProbe(VendorApiConfig(id="a", vendor="twilio")).execute()
    assert (result.status, result.message) == (
        Status.ERROR, "not configured: account_sid and api_key empty; set them (from the "
                      "environment) in the check")


def test_vendor_specific_fields_are_checked() -> None:
    with pytest.raises(ValueError, match="expect_models is for vendor openai only"):
        VendorApiConfig(id="a", vendor="stripe", expect_models=["gpt-4o"])


def https_fake(files: ServerFiles) -> VendorApiFake:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(files.cert_file), str(files.key_file))
    fake = VendorApiFake()
    fake.start(ssl_context=ctx)
    return fake


def test_self_signed_endpoint_fails_without_sending_the_key(certs: CertFactory) -> None:
    fake = https_fake(certs.self_signed(["127.0.0.1", "localhost"]))
    try:
        result = probe(fake, "openai", api_base=fake.url)
    finally:
        fake.stop()
    assert result.status == Status.FAILING
    assert result.message == (f"openai API {fake.url}: TLS certificate not trusted (self-signed "
                              "certificate); set ca_file if it uses a private CA")
    assert fake.calls == []  # the handshake failed: no request, no key sent


def test_private_ca_endpoint_passes_once_its_ca_is_configured(certs: CertFactory) -> None:
    files = certs.server(["127.0.0.1", "localhost"])
    fake = https_fake(files)
    try:
        untrusted = probe(fake, "twilio", api_base=fake.url)
        trusted = probe(fake, "twilio", api_base=fake.url, ca_file=str(files.ca_file))
    finally:
        fake.stop()
    assert untrusted.status == Status.FAILING
    assert untrusted.message == (f"twilio API {fake.url}: TLS certificate not trusted (unable "
                                 "to get local issuer certificate); set ca_file if it uses a "
                                 "private CA")
    assert trusted.status == Status.OK, trusted.message
    assert trusted.message.startswith(f"twilio: account {fake.accounts.twilio_sid} active (")
    assert fake.calls == [f"GET /2010-04-01/Accounts/{fake.accounts.twilio_sid}.json"]


def test_certificate_for_another_host_fails_even_from_a_trusted_ca(certs: CertFactory) -> None:
    files = certs.server(["api.other.test"])
    fake = https_fake(files)
    try:
        base = fake.url.replace("https://127.0.0.1", "https://localhost")
        result = probe(fake, "stripe", api_base=base, ca_file=str(files.ca_file))
    finally:
        fake.stop()
    assert result.status == Status.FAILING
    assert result.message == (f"stripe API {base}: TLS certificate not trusted (Hostname "
                              "mismatch, certificate is not valid for 'localhost'); set ca_file "
                              "if it uses a private CA")
    assert fake.calls == []

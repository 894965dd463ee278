"""`vendor_api` checks: the cheapest authenticated call a vendor offers, made with our key.

A vendor's status page says the vendor is up; this says *our* credentials still work
there (an expired key, a suspended account, a revoked token are found here first):

- ``twilio``: ``GET /2010-04-01/Accounts/{account_sid}.json``; the account must be active.
- ``openai``: ``GET /v1/models``; every ``expect_models`` id must be listed.
- ``stripe``: ``GET /v1/balance``; optionally ``min_available`` per currency (minor units).

Plain HTTPS through requests, one call per run. Vendor error bodies are never copied into
results (OpenAI's and Stripe's quote the key, masked or not); only their codes are.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, model_validator

from controlplane.lazyimport import lazy_module
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.findings import Findings, connection_reason
from controlplane.results import Status

if TYPE_CHECKING:
    import requests
else:  # requests loads when a probe runs, not when a config validates
    requests = lazy_module("requests")

log = logging.getLogger(__name__)

API_BASES = {"twilio": "https://api.twilio.com", "openai": "https://api.openai.com",
             "stripe": "https://api.stripe.com"}


class VendorApiConfig(CheckConfig):
    kind: Literal["vendor_api"] = "vendor_api"
    vendor: Literal["twilio", "openai", "stripe"]
    api_base: str | None = Field(default=None, description="default: the vendor's API")
    account_sid: str = Field(default="", description="twilio only")
    api_key: SecretStr = Field(default=SecretStr(""), description="Twilio auth token, "
                               "OpenAI or Stripe secret key")
    expect_models: list[str] = Field(default_factory=list, description="openai only")
    min_available: dict[str, int] = Field(default_factory=dict, description="stripe only: "
                                          "currency -> minor units, e.g. {usd: 10000}")
    max_response_s: float | None = Field(default=None, gt=0, description="slower: degraded")
    ca_file: str | None = None

    @model_validator(mode="after")
    def _vendor_fields(self) -> VendorApiConfig:
        if self.expect_models and self.vendor != "openai":
            raise ValueError("expect_models is for vendor openai only")
        if self.min_available and self.vendor != "stripe":
            raise ValueError("min_available is for vendor stripe only")
        return self

    @property
    def base(self) -> str:
        return (self.api_base or API_BASES[self.vendor]).rstrip("/")


class VendorApiProbe(Probe[VendorApiConfig]):
    kind = "vendor_api"
    config_model = VendorApiConfig

    def check(self) -> Outcome:
        c = self.config
        key = c.api_key.get_secret_value()
        if not key or (c.vendor == "twilio" and not c.account_sid):
            need = "account_sid and api_key" if c.vendor == "twilio" else "api_key"
            raise ProbeError(f"not configured: {need} empty; set them (from the environment) "
                             "in the check")
        found = Findings()
        t0 = time.monotonic()
        try:
            body = self._call(key)
        except _Refusal as exc:
            return found.failed("call", str(exc), duration_s=time.monotonic() - t0)
        took = round(time.monotonic() - t0, 6)
        metrics: dict[str, float | None] = {"response_s": took}
        if c.max_response_s is not None and took > c.max_response_s:
            found.add("call", Status.DEGRADED, f"{c.vendor} answered in {took:.2f}s, over "
                      f"{c.max_response_s:g}s", took)
        else:
            found.add("call", duration_s=took)
        details: dict[str, Any] = {"vendor": c.vendor, "api_base": c.base}
        ok = getattr(self, f"_judge_{c.vendor}")(body, found, metrics, details)
        return found.outcome(f"{c.vendor}: {ok} ({took * 1000:.0f} ms)", metrics, details)

    def _call(self, key: str) -> Any:
        c = self.config
        if c.vendor == "twilio":
            url = f"{c.base}/2010-04-01/Accounts/{c.account_sid}.json"
            kw: dict[str, Any] = {"auth": (c.account_sid, key)}
        else:
            url = f"{c.base}/v1/{'models' if c.vendor == 'openai' else 'balance'}"
            kw = {"headers": {"Authorization": f"Bearer {key}"}}
        try:
            resp = requests.get(url, timeout=c.timeout, verify=c.ca_file or True,
                                allow_redirects=False, **kw)
        except requests.Timeout:
            raise ProbeError(f"{c.vendor} API: no answer within {c.timeout:g}s") from None
        except requests.exceptions.SSLError as exc:
            # an endpoint we cannot trust is a finding (interception, a wrong host, a private
            # CA not configured), never a call to make anyway with the key in it
            raise _Refusal(f"{c.vendor} API {c.base}: TLS certificate not trusted "
                           f"({_verify_reason(exc)}); set ca_file if it uses a private CA") \
                from None
        except requests.RequestException as exc:
            raise ProbeError(f"{c.vendor} API {c.base}: {connection_reason(exc)}") from None
        if resp.status_code in (401, 403):
            raise _refused(c.vendor, resp, "credentials rejected: the key is wrong, revoked "
                           "or expired")
        if resp.status_code == 404 and c.vendor == "twilio":
            raise _refused(c.vendor, resp, f"account {c.account_sid} not found")
        if resp.status_code == 429:
            raise ProbeError(f"{c.vendor} API rate-limited this call (HTTP 429{_code(resp)})")
        if resp.status_code != 200:
            raise ProbeError(f"{c.vendor} API answered HTTP {resp.status_code}{_code(resp)}")
        try:
            return resp.json()
        except ValueError:
            raise ProbeError(f"{c.vendor} API answered something that is not JSON") from None

    def _judge_twilio(self, body: dict[str, Any], found: Findings,
                      metrics: dict[str, float | None], details: dict[str, Any]) -> str:
        status = body.get("status")
        details.update(account_sid=body.get("sid"), account_status=status,
                       account_type=body.get("type"))
        if status != "active":
            found.add("account", Status.FAILING, f"twilio account {body.get('sid')} is "
                      f"{status}: SMS and calls are refused")
        else:
            found.add("account", message="active")
        return f"account {body.get('sid')} active"

    def _judge_openai(self, body: dict[str, Any], found: Findings,
                      metrics: dict[str, float | None], details: dict[str, Any]) -> str:
        models = {m.get("id") for m in body.get("data") or [] if isinstance(m, dict)}
        metrics["models"] = len(models)
        missing = [m for m in self.config.expect_models if m not in models]
        details["missing_models"] = missing
        if missing:
            found.add("models", Status.FAILING, f"openai: model(s) not available to this key: "
                      f"{', '.join(missing)}")
        else:
            found.add("models", message=f"{len(models)} models listed")
        return f"{len(models)} models listed"

    def _judge_stripe(self, body: dict[str, Any], found: Findings,
                      metrics: dict[str, float | None], details: dict[str, Any]) -> str:
        available = {b.get("currency"): int(b.get("amount") or 0)
                     for b in body.get("available") or [] if isinstance(b, dict)}
        details.update(available=available, livemode=body.get("livemode"))
        for currency, amount in available.items():
            metrics[f"available:{currency}"] = amount
        low = [f"{cur} {available.get(cur, 0)} < {floor}"
               for cur, floor in self.config.min_available.items()
               if available.get(cur, 0) < floor]
        if low:
            found.add("balance", Status.DEGRADED, f"stripe available balance below the floor: "
                      f"{'; '.join(low)} (minor units)")
        else:
            found.add("balance", message="balance readable")
        return "balance readable"


def _refused(vendor: str, resp: requests.Response, why: str) -> ProbeError:
    # A refusal is a finding about our credentials: check() makes it failing, not error.
    return _Refusal(f"{vendor} API: {why} (HTTP {resp.status_code}{_code(resp)})")


class _Refusal(ProbeError):
    pass


def _verify_reason(exc: requests.exceptions.SSLError) -> str:
    """OpenSSL's verify message from the nested error ("self-signed certificate", …)."""
    match = re.search(r"certificate verify failed: (.+?)\.? \(_ssl\.c", str(exc))
    return match.group(1) if match else connection_reason(exc)


def _code(resp: requests.Response) -> str:
    """The vendor's error code (never its message: it may quote the key)."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    err = body.get("error")
    code = (err.get("code") or err.get("type")) if isinstance(err, dict) else body.get("code")
    return f", {code}" if code else ""

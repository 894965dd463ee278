"""A generic webhook: every notification POSTed as JSON, signed with HMAC-SHA256.

The body is the notification (``action``, ``incident``, ``idempotency_key`` and the
incident snapshot). Headers: ``X-Controlplane-Timestamp`` (unix seconds),
``X-Controlplane-Signature: sha256=<hex>`` = HMAC-SHA256(secret, ``{timestamp}.{body}``)
and ``X-Controlplane-Idempotency-Key``. A receiver checks the signature, refuses stale
timestamps and ignores a key it has already seen: a resend after a lost answer carries the
same key (there is no way to ask an arbitrary receiver what it got).

2xx is delivered; 408, 425, 429 (``Retry-After``) and 5xx are retried; other 4xx are
permanent (the receiver refused this request); a refused connection or a timeout is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import requests
from pydantic import Field, SecretStr, field_validator

from controlplane.durations import Duration
from controlplane.notifiers.base import (
    ACTIONS,
    Clock,
    Event,
    FilteredConfig,
    Incident,
    Notification,
    Notifier,
    Refs,
    Severity,
    TransportError,
    system_clock,
)

log = logging.getLogger(__name__)

RETRYABLE = {408, 425, 429}
SIGNATURE_HEADER = "X-Controlplane-Signature"
TIMESTAMP_HEADER = "X-Controlplane-Timestamp"
KEY_HEADER = "X-Controlplane-Idempotency-Key"


class WebhookConfig(FilteredConfig):
    url: str
    secret: SecretStr = Field(description="shared HMAC-SHA256 key; the receiver checks it")
    min_severity: Severity = "minor"
    events: list[Event] = Field(default_factory=lambda: list(ACTIONS))
    timeout: Duration = 10.0
    headers: dict[str, str] = Field(default_factory=dict)
    ca_file: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as https://hooks.example.com/cp")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("you must give a secret of at least 16 characters; the "
                             "receiver verifies every request with it")
        return v


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookNotifier(Notifier[WebhookConfig]):
    """Every event of ``min_severity`` or worse (configurable ``events``) to one URL."""

    channel = "webhook"
    config_model = WebhookConfig

    def __init__(self, cfg: WebhookConfig, clock: Clock = system_clock) -> None:
        super().__init__(cfg, clock)
        self._session: requests.Session | None = None

    def secrets(self) -> list[str]:
        return [self.cfg.secret.get_secret_value()]

    def route(self, incident: Incident) -> list[str]:
        return [self.cfg.url]

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False  # the URL is ours to choose, not a proxy's
        return self._session

    def notify(self, n: Notification) -> Refs:
        body = json.dumps({"action": n.action, "incident": n.incident_id,
                           "idempotency_key": n.idempotency_key,
                           "payload": {k: v for k, v in n.payload.items() if k != "to"}},
                          sort_keys=True).encode()
        stamp = str(int(time.time()))  # wire time for the receiver's freshness check
        headers = {**self.cfg.headers, "Content-Type": "application/json",
                   TIMESTAMP_HEADER: stamp, KEY_HEADER: n.idempotency_key,
                   SIGNATURE_HEADER: sign(self.cfg.secret.get_secret_value(), stamp, body)}
        try:  # always the configured URL: a stored entry cannot send our signature elsewhere
            resp = self.session.post(self.cfg.url, data=body, headers=headers,
                                     timeout=self.cfg.timeout,
                                     verify=self.cfg.ca_file or True, allow_redirects=False)
        except requests.RequestException as exc:
            raise TransportError(f"webhook unreachable: {type(exc).__name__}") from None
        if 200 <= resp.status_code < 300:
            return {}
        raise _classify(resp)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


def _classify(resp: requests.Response) -> TransportError:
    status = resp.status_code
    if status == 429 or status == 503:
        after = _retry_after(resp.headers.get("Retry-After"))
        if after is not None:
            return TransportError(f"webhook unavailable: HTTP {status}, retry after "
                                  f"{after:g}s", retry_after=after)
    if status >= 500 or status in RETRYABLE:
        return TransportError(f"webhook unavailable: HTTP {status}")
    return TransportError(f"webhook rejected the request: HTTP {status} "
                          f"{resp.reason or ''}".rstrip(), permanent=True)


def _retry_after(raw: Any) -> float | None:
    try:
        return max(1.0, float(raw)) if raw is not None else None
    except ValueError:
        return None

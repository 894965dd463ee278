"""A Twilio REST client pointed at a configurable API base (the real one or the sandbox fake).

The SDK hard-codes ``https://api.twilio.com`` on its Api domain; we override that domain's
``base_url`` and give its HTTP session our CA bundle, so every call still goes through the
SDK's own request building, paging and error handling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the SDK (and requests) load when a client is made: start-up stays quick
    from twilio.rest import Client

DEFAULT_API_BASE = "https://api.twilio.com"


def twilio_client(account_sid: str, auth_token: str, api_base: str = DEFAULT_API_BASE,
                  ca_file: str | None = None, timeout: float = 10.0) -> Client:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    http = TwilioHttpClient(timeout=timeout)
    if http.session is not None:
        # Proxies from the environment must not reroute a probe, and the CA is ours to choose.
        http.session.trust_env = False
        if ca_file:
            http.session.verify = ca_file
    client = Client(account_sid, auth_token, http_client=http, environment={})
    client.api.base_url = api_base.rstrip("/")
    return client

"""Contract fakes of three vendors' cheapest authenticated calls, on one loopback server.

- Twilio ``GET /2010-04-01/Accounts/{Sid}.json`` (HTTP basic auth, SID:token): the account
  resource; 401 is Twilio's ``{"code": 20003, "message": "Authenticate", ...}``.
- OpenAI ``GET /v1/models`` (``Authorization: Bearer sk-...``): ``{"object": "list", ...}``;
  401 is ``invalid_api_key`` whose message quotes the key masked, as OpenAI's does.
- Stripe ``GET /v1/balance`` (bearer or basic with the key as user): the balance object;
  401 is ``{"error": {"type": "invalid_request_error", "message": "Invalid API Key ..."}}``.

Shapes written by hand from the vendors' API references. ``fail(path_part, status)``
answers that path with the vendor's error for ``status`` (429, 500, 503) until cleared;
``delay_s`` slows every answer.
"""

from __future__ import annotations

import base64
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from controlplane.sandbox.fakehttp import FakeServer, Request, Response


@dataclass
class VendorAccounts:
    twilio_sid: str = "AC" + "0" * 31 + "1"
    twilio_token: str = "twilio-auth-token-fake"
    twilio_status: str = "active"  # active | suspended | closed
    openai_key: str = "sk-proj-fakekey0000000000000000abcd"
    openai_models: list[str] = field(default_factory=lambda: [
        "gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "whisper-1"])
    stripe_key: str = "sk_test_fake00000000000000001234"
    stripe_available_usd: int = 125_00


class VendorApiFake:
    def __init__(self, accounts: VendorAccounts | None = None) -> None:
        self.accounts = accounts or VendorAccounts()
        self.server = FakeServer(self._handle)
        self.delay_s = 0.0
        self.calls: list[str] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.server.url

    def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        """Serve on a free loopback port; HTTPS with ``ssl_context`` (tests of trust)."""
        return self.server.start(ssl_context=ssl_context)

    def stop(self) -> None:
        self.server.stop()

    def fail(self, path_part: str, status: int, count: int | None = None) -> None:
        self.server.add_fault(path_part, Response(status, _error_for(path_part, status)),
                              count)

    def clear(self) -> None:
        self.server.clear_faults()

    def _handle(self, req: Request) -> Response:
        with self._lock:
            self.calls.append(f"{req.method} {req.path}")
        if self.delay_s:
            time.sleep(self.delay_s)
        if req.path.startswith("/2010-04-01/Accounts/"):
            return self._twilio(req)
        if req.path == "/v1/models":
            return self._openai(req)
        if req.path == "/v1/balance":
            return self._stripe(req)
        return Response(404, {"error": "not found"})

    def _twilio(self, req: Request) -> Response:
        a = self.accounts
        sid = req.path.removeprefix("/2010-04-01/Accounts/").removesuffix(".json")
        if _basic(req) != (a.twilio_sid, a.twilio_token) or sid != a.twilio_sid:
            return Response(401, _twilio_error(401))
        return Response(200, {
            "auth_token": "[redacted]", "date_created": "Tue, 04 Jun 2019 17:21:57 +0000",
            "date_updated": "Tue, 04 Jun 2019 17:21:57 +0000", "friendly_name": "Techhalo",
            "owner_account_sid": a.twilio_sid, "sid": a.twilio_sid, "status": a.twilio_status,
            "subresource_uris": {"messages": f"/2010-04-01/Accounts/{sid}/Messages.json"},
            "type": "Full", "uri": f"/2010-04-01/Accounts/{sid}.json"})

    def _openai(self, req: Request) -> Response:
        a = self.accounts
        key = req.headers.get("authorization", "").removeprefix("Bearer ")
        if key != a.openai_key:
            shown = f"{key[:3]}*{'*' * 8}{key[-4:]}" if len(key) > 8 else "***"
            return Response(401, {"error": {
                "message": f"Incorrect API key provided: {shown}. You can find your API key "
                           "at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
        return Response(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 1715367049, "owned_by": "system"}
            for m in a.openai_models]})

    def _stripe(self, req: Request) -> Response:
        a = self.accounts
        auth = req.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else \
            (_basic(req) or ("", ""))[0]
        if key != a.stripe_key:
            return Response(401, {"error": {
                "message": f"Invalid API Key provided: {key[:8]}{'*' * 8}{key[-4:]}",
                "type": "invalid_request_error"}})
        return Response(200, {"object": "balance", "livemode": False,
                              "available": [{"amount": a.stripe_available_usd,
                                             "currency": "usd",
                                             "source_types": {"card": a.stripe_available_usd}}],
                              "pending": [{"amount": 0, "currency": "usd",
                                           "source_types": {"card": 0}}]})


def _basic(req: Request) -> tuple[str, str] | None:
    auth = req.headers.get("authorization", "")
    if not auth.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
    return user, password


def _twilio_error(status: int) -> dict[str, Any]:
    code, message = {401: (20003, "Authenticate"), 429: (20429, "Too Many Requests"),
                     500: (20500, "Internal Server Error"),
                     503: (20503, "Service Unavailable")}.get(status, (20500, "Error"))
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def _error_for(path_part: str, status: int) -> dict[str, Any]:
    if "Accounts" in path_part:
        return _twilio_error(status)
    kind = {429: "rate_limit_exceeded" if "models" in path_part else "rate_limit_error",
            500: "server_error" if "models" in path_part else "api_error",
            503: "server_error" if "models" in path_part else "api_error"}.get(status, "api_error")
    return {"error": {"message": "The server is overloaded.", "type": kind}}

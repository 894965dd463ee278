"""``http.request``: one HTTP request, failing on an unexpected status or body."""

from __future__ import annotations

import time
from typing import ClassVar

import requests
from pydantic import Field, field_validator

from controlplane.durations import Duration
from controlplane.logs import redact
from controlplane.runbooks.base import Action, ActionArgs, ActionFailed, ActionResult, StepContext

BODY_KEPT = 2000


class HttpArgs(ActionArgs):
    url: str
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    expect_status: list[int] = Field(default_factory=lambda: [200])
    contains: str | None = None
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        v = v.upper()
        if v not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            raise ValueError("must be one of GET, HEAD, POST, PUT, PATCH, DELETE")
        return v


class HttpRequest(Action[HttpArgs]):
    name = "http.request"
    args_model = HttpArgs
    summary = "send one HTTP request; fail on an unexpected status or missing text"
    default_timeout = 60.0
    example_args: ClassVar[dict[str, object]] = {"url": "https://example.com/healthz"}

    def plan(self) -> list[str]:
        a = self.args
        lines = [f"{a.method} {redact(a.url)}" + (f" with a {len(a.body)}-byte body"
                                                   if a.body else ""),
                 f"expect status {' or '.join(map(str, a.expect_status))}"]
        if a.contains:
            lines.append(f"expect the body to contain {a.contains!r}")
        return lines

    def run(self, ctx: StepContext) -> ActionResult:
        a = self.args
        t0 = time.monotonic()
        try:
            resp = requests.request(a.method, a.url, headers=a.headers, data=a.body,
                                    timeout=min(a.timeout, max(0.1, ctx.remaining())))
        except requests.RequestException as exc:
            raise ActionFailed(redact(f"{a.method} {a.url} failed: {type(exc).__name__}: "
                                      f"{exc}")) from None
        elapsed = round(time.monotonic() - t0, 3)
        outputs = {"status": resp.status_code, "body": resp.text[:BODY_KEPT],
                   "elapsed_s": elapsed}
        if resp.status_code not in a.expect_status:
            raise ActionFailed(f"{a.method} {redact(a.url)} answered {resp.status_code}, "
                               f"expected {' or '.join(map(str, a.expect_status))}", outputs)
        if a.contains and a.contains not in resp.text:
            raise ActionFailed(f"the body of {redact(a.url)} does not contain "
                               f"{a.contains!r}", outputs)
        return ActionResult(f"{a.method} {redact(a.url)}: {resp.status_code} in {elapsed:g}s",
                            outputs)

"""Kind ``http``: request a URL and judge status, body, JSON fields; time every phase.

Phases (summed over redirects, as blackbox_exporter sums them) go to ``metrics``:
``dns_s``, ``connect_s``, ``tls_s``, ``first_byte_s``, ``transfer_s`` and ``total_s``.
See docs/http-dns.md for the fields and the verdicts.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import ssl
import time
from typing import Any, ClassVar, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator

from controlplane.deadline import Deadline
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.httpclient import (
    ExchangeError,
    Request,
    Response,
    Timings,
    exchange,
)
from controlplane.probes.jsonpath import JsonPathError, compile_path, lookup, same_value
from controlplane.results import Status

log = logging.getLogger(__name__)

REDIRECT_CODES = (301, 302, 303, 307, 308)
PHASES = ("dns_s", "connect_s", "tls_s", "first_byte_s", "transfer_s")


class HttpCheckConfig(CheckConfig):
    kind: Literal["http"] = "http"
    url: str
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    contains: str | None = None
    regex: str | None = None
    json_path: dict[str, Any] = Field(default_factory=dict,
                                      validation_alias=AliasChoices("json", "json_path"))
    follow_redirects: bool = True
    max_redirects: int = Field(default=10, ge=0, le=50)
    ca_file: str | None = None
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("do not put credentials in the URL; send them in `headers` "
                             "(e.g. Authorization) from a ${VARIABLE}")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"{v!r} has an invalid port") from None
        return v

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z]+", v):
            raise ValueError(f"{v!r} is not an HTTP method such as GET, HEAD or POST")
        return v.upper()

    @field_validator("expect_status")
    @classmethod
    def _codes(cls, v: list[int]) -> list[int]:
        bad = [c for c in v if not 100 <= c <= 599]
        if bad:
            raise ValueError(f"{bad[0]} is not an HTTP status code (100-599)")
        return v

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return v

    @field_validator("json_path")
    @classmethod
    def _paths(cls, v: dict[str, Any]) -> dict[str, Any]:
        for path in v:
            try:
                compile_path(path)
            except JsonPathError as exc:
                raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _ca_file_needs_verification(self) -> HttpCheckConfig:
        if self.ca_file and not self.verify_tls:
            raise ValueError("ca_file is set but verify_tls is false; drop one of them")
        return self


class HttpProbe(Probe[HttpCheckConfig]):
    kind: ClassVar[str] = "http"
    config_model: ClassVar[type[CheckConfig]] = HttpCheckConfig
    cli_name: ClassVar[str | None] = "http"

    def check(self) -> Outcome:
        cfg = self.config
        context: ssl.SSLContext | None = None
        deadline = Deadline(cfg.timeout)
        hops: list[Timings] = []
        redirects: list[dict[str, Any]] = []
        request = Request(cfg.method, cfg.url, dict(cfg.headers),
                          cfg.body.encode() if cfg.body is not None else None)
        while True:
            hops.append(Timings())
            if context is None and _needs_tls(request.url):
                context = self._tls_context()
            try:
                response = exchange(request, deadline, context, hops[-1])
            except ExchangeError as exc:
                return self._unreachable(exc, hops, redirects, request.url, deadline)
            follow = self._next_request(request, response, redirects)
            if follow is None:
                break
            if len(redirects) > cfg.max_redirects:
                return self._outcome(Status.FAILING, f"stopped after {cfg.max_redirects} "
                                     f"redirects at {request.url}", hops, redirects,
                                     request.url, deadline, response)
            request = follow
        status, message = self._judge(response)
        return self._outcome(status, message, hops, redirects, request.url, deadline, response)

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.config
        if not cfg.verify_tls:
            return _tls_context(None, None, False)
        if cfg.ca_file is None:
            return _tls_context(None, None, True)
        try:
            mtime = os.stat(cfg.ca_file).st_mtime_ns
        except OSError:
            raise ProbeError(f"ca_file {cfg.ca_file} does not exist; "
                             "give a PEM bundle path") from None
        try:
            return _tls_context(cfg.ca_file, mtime, True)
        except ssl.SSLError as exc:
            raise ProbeError(f"ca_file {cfg.ca_file} is not a PEM bundle: {exc}") from None

    def _next_request(self, request: Request, response: Response,
                      redirects: list[dict[str, Any]]) -> Request | None:
        """The request a browser would send next, or None when this response is final."""
        location = response.headers.get("location")
        if not (self.config.follow_redirects and response.status in REDIRECT_CODES
                and location):
            return None
        target = urljoin(request.url, location)
        redirects.append({"status": response.status, "from": request.url, "to": target})
        if urlsplit(target).scheme not in ("http", "https"):
            return None
        # 303, and 301/302 after POST, turn into GET without body (RFC 9110 §15.4).
        if response.status == 303 or (response.status in (301, 302)
                                      and request.method == "POST"):
            return Request("GET" if request.method != "HEAD" else "HEAD", target,
                           _without_body_headers(request.headers), None)
        same_origin = _origin(target) == _origin(request.url)
        headers = request.headers if same_origin else _without_credentials(request.headers)
        return Request(request.method, target, headers, request.body)

    def _judge(self, response: Response) -> tuple[Status, str]:
        cfg = self.config
        if response.status not in cfg.expect_status:
            return Status.FAILING, (f"expected status {_codes(cfg.expect_status)}, "
                                    f"got {response.status}")
        problems = _body_problems(cfg, response.body)
        if problems:
            return Status.FAILING, "; ".join(problems)
        return Status.OK, f"{response.status} {response.reason}".strip()

    def _unreachable(self, exc: ExchangeError, hops: list[Timings],
                     redirects: list[dict[str, Any]], url: str, deadline: Deadline) -> Outcome:
        log.info("http probe failed check=%s phase=%r reason=%r", self.config.id,
                 exc.phase, str(exc))
        outcome = self._outcome(Status.FAILING, str(exc), hops, redirects, url, deadline, None)
        outcome.details["phase"] = exc.phase
        outcome.details["timed_out"] = exc.timed_out
        return outcome

    def _outcome(self, status: Status, message: str, hops: list[Timings],
                 redirects: list[dict[str, Any]], url: str, deadline: Deadline,
                 response: Response | None) -> Outcome:
        metrics = _phase_sums(hops)
        metrics["total_s"] = round(time.monotonic() - deadline.start, 6)
        metrics["redirects"] = float(len(redirects))
        details: dict[str, Any] = {"method": self.config.method, "url": self.config.url,
                                   "final_url": url, "redirects": redirects}
        if response is not None:
            metrics["status_code"] = float(response.status)
            metrics["body_bytes"] = float(len(response.body))
            details.update(status_code=response.status, reason=response.reason,
                           peer=response.peer, tls_version=response.tls_version,
                           content_type=response.headers.get("content-type"),
                           body_truncated=response.truncated)
        return Outcome(status, message, metrics, details)

    # -- `controlplane probe http URL ...` --------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("url", help="http:// or https:// URL")
        parser.add_argument("--method", default="GET", help="HTTP method (default GET)")
        parser.add_argument("--expect-status", type=int, action="append", metavar="N",
                            help="accepted status code; repeat for several (default 200)")
        parser.add_argument("--contains", metavar="TEXT", help="the body must contain TEXT")
        parser.add_argument("--regex", metavar="RE", help="the body must match RE")
        parser.add_argument("--header", action="append", metavar="NAME:VALUE", default=[],
                            help="request header; repeat for several")
        parser.add_argument("--no-follow-redirects", action="store_true",
                            help="judge a redirect response itself")
        parser.add_argument("--ca-file", metavar="F", help="PEM bundle of trusted CAs")
        parser.add_argument("--insecure", action="store_true",
                            help="do not verify the server certificate")
        parser.add_argument("--timeout", default="10s", metavar="S",
                            help="whole-exchange timeout (default 10s)")
        parser.add_argument("--json", action="store_true", help="print the Result as JSON")

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> CheckConfig:
        headers: dict[str, str] = {}
        for item in args.header:
            name, sep, value = item.partition(":")
            if not sep or not name.strip():
                raise ValueError(f"--header {item!r}: write it as NAME:VALUE")
            headers[name.strip()] = value.strip()
        data: dict[str, Any] = {
            "id": "adhoc-http", "url": args.url, "method": args.method, "headers": headers,
            "expect_status": args.expect_status or [200], "contains": args.contains,
            "regex": args.regex, "follow_redirects": not args.no_follow_redirects,
            "ca_file": args.ca_file, "verify_tls": not args.insecure, "timeout": args.timeout,
        }
        return HttpCheckConfig.model_validate(data)


@functools.lru_cache(maxsize=64)
def _tls_context(ca_file: str | None, _mtime: int | None, verify: bool) -> ssl.SSLContext:
    """Shared per CA bundle (and its mtime, so a rotated bundle is re-read).

    Loading the system trust store costs ~20 ms of CPU; at thousands of checks a minute
    that must happen once, not per run. SSLContext is safe to share between threads.
    """
    if not verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=ca_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _body_problems(cfg: HttpCheckConfig, body: bytes) -> list[str]:
    text = body.decode("utf-8", errors="replace")
    problems: list[str] = []
    if cfg.contains is not None and cfg.contains not in text:
        problems.append(f"body does not contain {json.dumps(cfg.contains)}")
    if cfg.regex is not None and not re.search(cfg.regex, text):
        problems.append(f"body does not match /{cfg.regex}/")
    if cfg.json_path:
        problems += _json_problems(cfg.json_path, text)
    return problems


def _json_problems(expected: dict[str, Any], text: str) -> list[str]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return [f"body is not JSON ({exc.args[0] if exc.args else exc})"]
    problems = []
    for path, want in expected.items():
        found, got = lookup(doc, compile_path(path))
        if not found:
            problems.append(f"{path} not found in the JSON body")
        elif not same_value(got, want):
            problems.append(f"{path} is {json.dumps(got)}, expected {json.dumps(want)}")
    return problems


def _phase_sums(hops: list[Timings]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in PHASES:
        values = [getattr(h, name) for h in hops if getattr(h, name) is not None]
        out[name] = round(sum(values), 6) if values else None
    return out


def _codes(codes: list[int]) -> str:
    names = [str(c) for c in codes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _needs_tls(url: str) -> bool:
    return urlsplit(url).scheme == "https"


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    return p.scheme, (p.hostname or "").lower(), p.port


def _without_body_headers(headers: dict[str, str]) -> dict[str, str]:
    drop = {"content-type", "content-length", "content-encoding"}
    return {k: v for k, v in headers.items() if k.lower() not in drop}


def _without_credentials(headers: dict[str, str]) -> dict[str, str]:
    """Never forward credentials to another origin (what browsers and requests do)."""
    drop = {"authorization", "cookie", "proxy-authorization"}
    return {k: v for k, v in headers.items() if k.lower() not in drop}

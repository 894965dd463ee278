"""`idcard_sms`: the ID-card SMS round trip, as a client lives it, step by step.

(a) request_link: ask halo-task API to text the ID-card link to the synthetic client;
(b) receive_sms: get that SMS (poll Twilio's Messages API, or the inbound webhook);
(c) check_link_host: the link's host is the environment's front end;
(d) open_link: the link opens over verified TLS, 200, with the app shell;
(e) check_appconfig: that host's appconfig.json points at the environment's API host;
(f) download_pdf: the card's PDF link gives a valid PDF holding the client's name.

Each step is timed and has an SLA; a slow step makes the run degraded, a broken one
failing, and the message names the step and why.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from controlplane.durations import Duration
from controlplane.probes import idcard_browser
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeContext, ProbeError
from controlplane.probes.inbox import LINK, Sms
from controlplane.probes.sitefetch import Fetched, Fetcher, FetchError
from controlplane.probes.sms_inbox import lookback, poll_twilio, twilio_snapshot
from controlplane.probes.twilio_api import DEFAULT_API_BASE, twilio_client
from controlplane.results import Status, Step, StepFailed, StepRecorder, worst

if TYPE_CHECKING:  # the SDK loads when the probe makes its client
    from twilio.rest import Client

log = logging.getLogger(__name__)

STEPS = ("request_link", "receive_sms", "check_link_host", "open_link", "check_appconfig",
         "download_pdf")
PDF_LINK = r"""href=["']([^"']*(?:\.pdf|/pdf)(?:\?[^"']*)?)["']"""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TwilioSettings(_Model):
    # Empty is allowed so a shipped config validates without secrets; a run then says
    # which setting is missing.
    account_sid: str = Field(default="", pattern=r"^(AC[0-9a-fA-F]{32})?$")
    auth_token: SecretStr = SecretStr("")
    api_base: str = DEFAULT_API_BASE
    ca_file: str | None = None


class IdCardSla(_Model):
    request_link: Duration = 5.0
    receive_sms: Duration = 60.0
    check_link_host: Duration = 1.0
    open_link: Duration = 5.0
    check_appconfig: Duration = 5.0
    download_pdf: Duration = 10.0
    total: Duration = 90.0


class IdCardSmsConfig(CheckConfig):
    kind: Literal["idcard_sms"] = "idcard_sms"
    api_url: str | None = Field(default=None, description="default https://<halo_task_api host>")
    api_path: str = "/api/idcards/send-link"
    api_token: SecretStr
    request_body: dict[str, Any] = Field(default_factory=lambda: {
        "clientId": "{client_id}", "phoneNumber": "{phone}", "fullName": "{client_name}"})
    client_id: str = "synthetic-monitor"
    client_name: str = "Ada Synthetic"
    phone: str = ""
    receive: Literal["poll", "webhook"] = "poll"
    poll_interval: Duration = 2.0
    clock_skew: Duration = 5.0
    twilio: TwilioSettings
    frontend_host: str | None = None
    api_host: str | None = None
    shell_marker: str = "<app-root"
    appconfig_path: str = "/assets/appconfig.json"
    appconfig_api_key: str = "apiUrl"
    pdf_link_pattern: str = PDF_LINK
    pdf: idcard_browser.PdfSettings = Field(default_factory=idcard_browser.PdfSettings)
    ca_file: str | None = None
    nameserver: str | None = Field(default=None, pattern=r"^[0-9a-fA-F.:\[\]]+$")
    cert_warn_days: float = Field(default=14.0, ge=0)
    sla: IdCardSla = Field(default_factory=IdCardSla)

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        if v and not re.fullmatch(r"\+[1-9]\d{6,14}", v):
            raise ValueError(f"{v!r} is not an E.164 number; write it like +15550100001")
        return v

    @model_validator(mode="after")
    def _timeout_covers_sla(self) -> Self:
        if self.timeout < self.sla.total:
            raise ValueError(f"timeout ({self.timeout:g}s) is shorter than sla.total "
                             f"({self.sla.total:g}s): the run would be cut off before the SMS "
                             f"may arrive; set timeout to at least {self.sla.total:g}s")
        try:
            re.compile(self.pdf_link_pattern)
        except re.error as exc:
            raise ValueError(f"pdf_link_pattern is not a valid regular expression: {exc}") \
                from None
        return self


class IdCardSmsProbe(Probe[IdCardSmsConfig]):
    kind = "idcard_sms"
    config_model = IdCardSmsConfig

    def __init__(self, config: IdCardSmsConfig, context: ProbeContext | None = None) -> None:
        super().__init__(config, context)
        self._consumed: deque[str] = deque(maxlen=200)  # SIDs and links earlier runs used
        self._client: Client | None = None

    # -- the run -------------------------------------------------------------------------------

    def check(self) -> Outcome:
        cfg = self.config
        missing = [name for name, value in (
            ("api_token", cfg.api_token.get_secret_value()), ("phone", cfg.phone),
            ("twilio.account_sid", cfg.twilio.account_sid),
            ("twilio.auth_token", cfg.twilio.auth_token.get_secret_value())) if not value]
        if missing:
            raise ProbeError(f"not configured: {', '.join(missing)} empty; set the environment "
                             "variables the check reads them from (see docs/idcard.md)")
        chromium = idcard_browser.preflight(cfg.pdf) if cfg.pdf.mode == "browser" else ""
        frontend, api_host = self._host("idcard_frontend", cfg.frontend_host), \
            self._host("halo_task_api", cfg.api_host)
        fetch = Fetcher(cfg.ca_file, cfg.nameserver, min(cfg.timeout, 30.0))
        rec = StepRecorder()
        run = _Run(frontend=frontend, api_host=api_host)
        t0 = run.t0 = time.monotonic()
        run.chromium = chromium
        failed: Step | None = None
        try:
            with rec.step("request_link") as s:
                s.message = self._request_link(fetch, run)
            with rec.step("receive_sms") as s:
                s.message = self._receive(run, t0)
            with rec.step("check_link_host") as s:
                s.message = self._check_link_host(run)
            with rec.step("open_link") as s:
                s.message, s.status = self._open_link(fetch, run)
            with rec.step("check_appconfig") as s:
                s.message = self._check_appconfig(fetch, run)
            with rec.step("download_pdf") as s:
                s.message = self._download_pdf(fetch, run)
        except StepFailed:
            failed = rec.steps[-1]
        total = time.monotonic() - t0
        return self._outcome(rec.steps, failed, total, run)

    def _host(self, role: str, explicit: str | None) -> str:
        if explicit:
            return explicit
        env = self.context.environments.get(self.config.env)
        if env is None:
            raise ProbeError(f"environment {self.config.env!r} is not configured; add it under "
                             f"environments or set frontend_host and api_host on the check")
        try:
            return str(env.host(role))
        except KeyError:
            raise ProbeError(f"environment {self.config.env!r} has no {role} host; add "
                             f"hosts.{role} to it or set it on the check") from None

    # -- steps -----------------------------------------------------------------------------------

    def _request_link(self, fetch: Fetcher, run: _Run) -> str:
        cfg = self.config
        api_host = run.api_host
        run.sent_at = datetime.now(UTC)
        url = urljoin((cfg.api_url or f"https://{api_host}").rstrip("/") + "/", cfg.api_path
                      .lstrip("/"))
        body = json.dumps(_fill(cfg.request_body, {"client_id": cfg.client_id,
                                                   "phone": cfg.phone,
                                                   "client_name": cfg.client_name}))
        # Texts already there (earlier runs, other senders) are not the answer to this request.
        run.exclude = set(self._consumed) | (
            self.context.services.sms_inbox.snapshot(cfg.phone) if cfg.receive == "webhook"
            else twilio_snapshot(self._twilio(), cfg.phone,
                                 time.monotonic() + cfg.sla.request_link, cfg.poll_interval))
        headers = {"Authorization": f"Bearer {cfg.api_token.get_secret_value()}",
                   "Content-Type": "application/json", "Accept": "application/json"}
        try:
            got = fetch.request("POST", url, headers=headers, body=body.encode())
        except FetchError as exc:
            raise StepFailed(f"halo-task API unreachable: {exc}") from None
        if got.status >= 300:
            raise StepFailed(f"halo-task API answered {got.status} to POST {cfg.api_path}"
                             f"{_problem_detail(got)}")
        return f"halo-task API accepted the request ({got.status})"

    def _receive(self, run: _Run, t0: float) -> str:
        cfg = self.config
        since = lookback(run.sent_at, cfg.clock_skew)
        deadline = time.monotonic() + min(cfg.sla.receive_sms,
                                          max(0.0, cfg.timeout - (time.monotonic() - t0) - 1))
        exclude = run.exclude
        waited = time.monotonic()
        sms: Sms | None
        if cfg.receive == "webhook":
            sms = self.context.services.sms_inbox.wait_for(cfg.phone, since, deadline, exclude)
            seen = ("nothing valid came to /webhooks/twilio/sms; check the number's SmsUrl "
                    "points at this control plane")
        else:
            sms, seen = poll_twilio(self._twilio(), cfg.phone, since, deadline,
                                    cfg.poll_interval, exclude)
        if sms is None:
            raise StepFailed(f"no SMS delivered to {cfg.phone} within "
                             f"{cfg.sla.receive_sms:g}s ({seen})")
        self._consumed.append(sms.sid)
        match = LINK.search(sms.body)
        if match is None:
            raise StepFailed(f"the SMS {sms.sid} holds no link: {sms.body[:120]!r}")
        self._consumed.append(match.group(0))
        run.link = match.group(0).rstrip(".,;)")
        run.sms_latency = time.monotonic() - waited
        return f"SMS {sms.sid} {sms.status} after {run.sms_latency:.1f}s"

    def _twilio(self) -> Client:
        """One SDK client (and its HTTP session) per probe, kept across runs."""
        if self._client is None:
            cfg = self.config
            self._client = twilio_client(cfg.twilio.account_sid,
                                         cfg.twilio.auth_token.get_secret_value(),
                                         cfg.twilio.api_base, cfg.twilio.ca_file or cfg.ca_file,
                                         10.0)
        return self._client

    def close(self) -> None:
        session = getattr(self._client.http_client, "session", None) if self._client else None
        if session is not None:
            session.close()
        self._client = None

    def _check_link_host(self, run: _Run) -> str:
        host = (urlsplit(run.link).hostname or "").lower()
        if urlsplit(run.link).scheme != "https":
            raise StepFailed(f"the link is not https: {redact(run.link)}")
        if host != run.frontend.lower():
            raise StepFailed(f"link host {host} is not {self.config.env or 'the'} front end "
                             f"{run.frontend} ({redact(run.link)})")
        return f"link host is {host}"

    def _open_link(self, fetch: Fetcher, run: _Run) -> tuple[str, Status]:
        try:
            got = fetch.request("GET", run.link)
        except FetchError as exc:
            raise StepFailed(str(exc)) from None
        if got.status != 200:
            raise StepFailed(f"{redact(run.link)} answered {got.status}, expected 200")
        if self.config.shell_marker not in got.text():
            raise StepFailed(f"the page is not the app shell: {self.config.shell_marker!r} "
                             f"not found in {len(got.body)} bytes")
        run.page = got
        status, note = Status.OK, f"200, app shell, {len(got.body)} bytes"
        if got.cert_not_after is not None:
            days = (got.cert_not_after - time.time()) / 86400
            run.cert_days_left = days
            if days < self.config.cert_warn_days:
                host = urlsplit(run.link).hostname
                status, note = Status.DEGRADED, (f"certificate of {host} expires in "
                                                 f"{days:.1f} days")
        return note, status

    def _check_appconfig(self, fetch: Fetcher, run: _Run) -> str:
        parts = urlsplit(run.link)
        url = f"{parts.scheme}://{parts.netloc}/{self.config.appconfig_path.lstrip('/')}"
        try:
            got = fetch.request("GET", url, headers={"Accept": "application/json"})
        except FetchError as exc:
            raise StepFailed(f"cannot fetch appconfig.json: {exc}") from None
        if got.status != 200:
            raise StepFailed(f"{url} answered {got.status}, expected 200")
        try:
            data = json.loads(got.body)
        except ValueError:
            raise StepFailed(f"{url} is not JSON") from None
        key = self.config.appconfig_api_key
        value = _dig(data, key)
        if not isinstance(value, str):
            raise StepFailed(f"appconfig.json has no string {key}")
        host = (urlsplit(value).hostname or "").lower()
        if host != run.api_host.lower():
            raise StepFailed(f"appconfig.json {key} is {value}, expected host {run.api_host}")
        return f"{key} points at {host}"

    def _download_pdf(self, fetch: Fetcher, run: _Run) -> str:
        assert run.page is not None
        if self.config.pdf.mode == "browser":
            return self._download_pdf_rendered(run)
        text = run.page.text()
        match = re.search(self.config.pdf_link_pattern, text)
        if match is None:
            raise StepFailed("the card page has no PDF download link" + _app_hint(
                text, self.config.shell_marker))
        url = urljoin(run.page.url, match.group(1).replace("&amp;", "&"))
        return self._fetch_pdf(fetch, url, run)

    def _download_pdf_rendered(self, run: _Run) -> str:
        """pdf.mode browser: the link the page's JavaScript renders, within the step's SLA."""
        cfg = self.config
        start = time.monotonic()
        deadline = min(start + cfg.sla.download_pdf, run.t0 + cfg.timeout - 1)
        limit = (f"download_pdf's {cfg.sla.download_pdf:g}s SLA"
                 if deadline == start + cfg.sla.download_pdf else "the check's timeout")
        fetch = Fetcher(cfg.ca_file, cfg.nameserver, max(0.5, min(deadline - start, 30.0)))
        try:
            found = idcard_browser.render_card(run.link, cfg.pdf, run.chromium, fetch,
                                               deadline, limit)
        finally:
            log.info("idcard browser render check=%s took=%.1fs", cfg.id,
                     time.monotonic() - start)
        run.browser_hosts = found.hosts
        if found.url is not None:
            return self._fetch_pdf(fetch, found.url, run)
        assert found.body is not None
        return self._check_pdf(found.body, found.content_type, run)

    def _fetch_pdf(self, fetch: Fetcher, url: str, run: _Run) -> str:
        try:
            got = fetch.request("GET", url, headers={"Accept": "application/pdf"})
        except FetchError as exc:
            raise StepFailed(f"PDF download failed: {exc}") from None
        if got.status != 200:
            raise StepFailed(f"PDF download answered {got.status}, expected 200")
        return self._check_pdf(got.body, got.content_type, run)

    def _check_pdf(self, body: bytes, content_type: str | None, run: _Run) -> str:
        """The same checks whichever way the PDF came (a download event may have no type)."""
        if content_type is not None and content_type != "application/pdf":
            raise StepFailed(f"PDF download has Content-Type {content_type or 'none'}, "
                             "expected application/pdf")
        text = _pdf_text(body)
        if self.config.client_name.lower() not in " ".join(text.split()).lower():
            raise StepFailed(f"the PDF ({len(body)} bytes) does not contain the client's "
                             f"name {self.config.client_name!r}")
        run.pdf_bytes = len(body)
        return f"valid PDF, {len(body)} bytes, names {self.config.client_name}"

    # -- verdict ---------------------------------------------------------------------------------

    def _outcome(self, steps: list[Step], failed: Step | None, total: float,
                 run: _Run) -> Outcome:
        sla = self.config.sla
        slow: list[str] = []
        token = urlsplit(run.link).path.rstrip("/").rsplit("/", 1)[-1] if run.link else ""
        if len(token) > 8:  # no message may carry the link's token (a redirect could echo it)
            for step in steps:
                step.message = step.message.replace(token, "…" + token[-4:])
        for step in steps:
            limit = getattr(sla, step.name)
            if step.status == Status.OK and step.duration_s > limit:
                step.status = Status.DEGRADED
                step.message += f" (took {step.duration_s:.1f}s, over its {limit:g}s SLA)"
                slow.append(f"{step.name} took {step.duration_s:.1f}s (SLA {limit:g}s)")
        metrics: dict[str, float | None] = {"total_seconds": round(total, 3),
                                            "sms_latency_seconds": _round(run.sms_latency),
                                            "cert_days_left": _round(run.cert_days_left)}
        details: dict[str, Any] = {
            "link": redact(run.link) if run.link else None, "pdf_bytes": run.pdf_bytes,
            "steps_passed": sum(1 for s in steps if s.status != Status.FAILING)}
        if run.browser_hosts is not None:  # where the rendered page's requests went
            details["browser_hosts"] = run.browser_hosts
        if failed is not None:
            return Outcome(failed.status, f"{failed.name}: {failed.message}", metrics, details,
                           steps)
        if total > sla.total:
            slow.append(f"whole flow took {total:.1f}s (SLA {sla.total:g}s)")
        status = worst([s.status for s in steps] + ([Status.DEGRADED] if slow else []))
        if status == Status.DEGRADED:
            reasons = slow + [f"{s.name}: {s.message}" for s in steps
                              if s.status == Status.DEGRADED and not s.message.endswith("SLA)")]
            return Outcome(status, "; ".join(reasons), metrics, details, steps)
        return Outcome(Status.OK, f"ID card delivered by SMS in {run.sms_latency or 0:.1f}s, "
                       f"whole flow {total:.1f}s", metrics, details, steps)


class _Run:
    """What one run learns on the way, for later steps and the result."""

    def __init__(self, frontend: str, api_host: str) -> None:
        self.frontend, self.api_host = frontend, api_host
        self.link = ""
        self.sent_at = datetime.now(UTC)
        self.exclude: set[str] = set()
        self.page: Fetched | None = None
        self.sms_latency: float | None = None
        self.cert_days_left: float | None = None
        self.pdf_bytes: int | None = None
        self.t0 = time.monotonic()
        self.chromium = ""  # the browser to launch in pdf.mode browser
        self.browser_hosts: list[str] | None = None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def redact(url: str) -> str:
    """The link without its token: whoever holds the token sees the card, no login."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    if segments and len(segments[-1]) > 8:
        segments[-1] = "…" + segments[-1][-4:]
    return f"{parts.scheme}://{parts.netloc}{'/'.join(segments)}"


def _fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        out = template
        for k, v in values.items():
            out = out.replace("{" + k + "}", v)
        return out
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template


def _dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _app_hint(page: str, shell_marker: str) -> str:
    """Why a page may lack the link: a JavaScript app adds it only when its script runs."""
    scripts = len(re.findall(r"<script\b", page, re.IGNORECASE))
    if not scripts and shell_marker not in page:
        return ""
    parts = ([f"{shell_marker}>"] if shell_marker in page else []) + (
        [f"{scripts} <script> tag{'s' if scripts != 1 else ''}"] if scripts else [])
    return (f" in its HTML; it is a JavaScript app ({', '.join(parts)}) that adds the link "
            "when its script runs: set pdf.mode: browser on the check to render it in "
            "headless chromium")


def _problem_detail(got: Fetched) -> str:
    try:
        body = json.loads(got.body)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    text = " ".join(str(body[k]) for k in ("title", "detail") if body.get(k))
    return f": {text[:200]}" if text else ""


def _pdf_text(data: bytes) -> str:
    import pypdf  # imported here: only this step needs it

    if not data.startswith(b"%PDF-"):
        raise StepFailed(f"the download is not a PDF ({len(data)} bytes, starts "
                         f"{data[:8]!r})")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=True)
        return "\n".join(page.extract_text() or "" for page in reader.pages)
    except Exception as exc:  # pypdf raises many types for a damaged file
        raise StepFailed(f"the PDF ({len(data)} bytes) cannot be opened: "
                         f"{type(exc).__name__}: {exc}") from None

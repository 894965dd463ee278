"""`idcard_sms` with ``pdf.mode: browser``: render the card page in headless chromium.

The real front end (bic-sky) is an Angular single-page app: the card page's HTML is an
empty ``<app-root>`` and the PDF download link exists only once the app's JavaScript has
fetched the card. This module opens the SMS link in chromium (Python ``playwright``, sync
API, so it runs in the probe's worker thread), waits for the download control, and hands
back either its ``href`` (which the probe then fetches and checks exactly as link mode does)
or, for a control without an href, the bytes of the download it triggers.

Chromium makes no connection of its own: every request the page makes is intercepted and
answered by the probe's :class:`Fetcher`, so the page sees the same verified TLS (the check's
``ca_file``), the same DNS (``nameserver``) and the same certificate checks as every other
step, and its own resolver is switched off as a second guard.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, field_validator

from controlplane.probes.base import ProbeError
from controlplane.probes.sitefetch import Fetcher, FetchError
from controlplane.results import StepFailed

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

log = logging.getLogger(__name__)

DEFAULT_SELECTOR = "a.download, a[download]"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]
# Always added: chromium resolves nothing itself, so nothing it does can leave through its
# own network stack; the page's requests all go through the probe's fetcher.
NO_OWN_NETWORK = "--host-resolver-rules=MAP * ~NOTFOUND"
# Request headers the fetcher sets itself, or that would make the server compress a body
# the fetcher does not decode.
_DROP_REQUEST = {"host", "connection", "content-length", "accept-encoding", "user-agent",
                 "transfer-encoding"}
_DROP_RESPONSE = {"content-length", "transfer-encoding", "connection", "keep-alive"}
INSTALL = "install it (apt-get install chromium, as scripts/setup.d/40-chromium.sh does)"


class PdfSettings(BaseModel):
    """How the download_pdf step finds the card's PDF."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["link", "browser"] = "link"
    selector: str = DEFAULT_SELECTOR
    executable_path: str | None = None
    args: list[str] = list(BROWSER_ARGS)

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("pdf.selector is empty; write a CSS selector for the card "
                             f"page's download control, e.g. {DEFAULT_SELECTOR!r}")
        return v

    @field_validator("executable_path")
    @classmethod
    def _executable(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("pdf.executable_path is empty; remove it to use chromium from "
                             "PATH, or write the browser's path, e.g. /usr/bin/chromium")
        return v

    @field_validator("args")
    @classmethod
    def _args(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not a.startswith("--")]
        if bad:
            raise ValueError(f"pdf.args must be chromium switches starting with '--'; fix "
                             f"{', '.join(repr(a) for a in bad)}")
        return v


def preflight(settings: PdfSettings) -> str:
    """The chromium to launch; a :class:`ProbeError` saying what to install if it is missing.

    Run before the flow starts, so a machine without a browser does not spend an SMS.
    """
    try:
        import playwright.sync_api  # noqa: F401  (only browser mode needs it)
    except ImportError:
        raise ProbeError("pdf.mode: browser needs the playwright Python package; "
                         "pip install playwright (it is in controlplane's dependencies)") \
            from None
    path = settings.executable_path
    if path is None:
        found = shutil.which("chromium")
        if found is None:
            raise ProbeError(f"pdf.mode: browser needs chromium, and there is no chromium on "
                             f"PATH; {INSTALL} or set pdf.executable_path")
        return found
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ProbeError(f"pdf.executable_path {path} is not an executable file; {INSTALL} "
                         "or point pdf.executable_path at the browser")
    return path


@dataclass
class Rendered:
    """What chromium found: the control's ``href``, or the bytes its download gave."""

    url: str | None = None
    body: bytes | None = None
    content_type: str | None = None
    hosts: list[str] = field(default_factory=list)


class _Traffic:
    """Answers every request of the page through the probe's fetcher, and remembers them."""

    def __init__(self, fetch: Fetcher, deadline: float) -> None:
        self.fetch, self.deadline = fetch, deadline
        self.hosts: list[str] = []
        self.types: dict[str, str] = {}
        self.errors: list[str] = []

    def serve(self, route: Route) -> None:
        req = route.request
        parts = urlsplit(req.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            route.abort("blockedbyclient")
            return
        if parts.hostname not in self.hosts:
            self.hosts.append(parts.hostname)
        if time.monotonic() >= self.deadline:
            route.abort("timedout")
            return
        headers = {k: v for k, v in req.headers.items() if k.lower() not in _DROP_REQUEST}
        try:
            got = self.fetch.request(req.method, req.url, headers=headers,
                                     body=req.post_data_buffer, follow=False)
        except FetchError as exc:
            self.errors.append(str(exc))
            route.abort("failed")
            return
        self.types[req.url] = got.content_type
        route.fulfill(status=got.status, body=got.body,
                      headers={k: v for k, v in got.headers.items()
                               if k not in _DROP_RESPONSE})


def render_card(link: str, settings: PdfSettings, executable: str, fetch: Fetcher,
                deadline: float, limit: str) -> Rendered:
    """Open ``link`` in chromium and find the download control before ``deadline``.

    ``limit`` names the deadline in messages (e.g. "download_pdf's 10s SLA"). The browser
    is closed on every path.
    """
    from playwright.sync_api import Error, sync_playwright

    traffic = _Traffic(fetch, deadline)
    try:
        with sync_playwright() as pw:
            try:
                browser = pw.chromium.launch(executable_path=executable, headless=True,
                                             args=[*settings.args, NO_OWN_NETWORK],
                                             timeout=_ms(deadline))
            except Error as exc:
                raise StepFailed(f"headless chromium ({executable}) did not start: "
                                 f"{_first_line(exc)}") from None
            try:
                context = browser.new_context(service_workers="block", accept_downloads=True)
                context.route("**/*", traffic.serve)
                page = context.new_page()
                _open(page, link, traffic, limit, deadline)
                found = _find_control(page, settings.selector, traffic, limit, deadline)
            finally:
                browser.close()
    except Error as exc:  # anything else chromium reports (a crash, a closed page)
        raise StepFailed(f"headless chromium failed: {_first_line(exc)}") from None
    found.hosts = traffic.hosts
    return found


def _open(page: Page, link: str, traffic: _Traffic, limit: str, deadline: float) -> None:
    from playwright.sync_api import Error, TimeoutError

    try:
        response = page.goto(link, wait_until="domcontentloaded", timeout=_ms(deadline))
    except TimeoutError:
        raise StepFailed(f"the card page did not load in chromium within {limit}") from None
    except Error as exc:
        why = traffic.errors[0] if traffic.errors else _first_line(exc)
        raise StepFailed(f"the card page did not load in chromium: {why}") from None
    if response is not None and response.status != 200:
        raise StepFailed(f"the card page answered {response.status} in chromium, expected 200")


def _find_control(page: Page, selector: str, traffic: _Traffic, limit: str,
                  deadline: float) -> Rendered:
    from playwright.sync_api import TimeoutError

    control = page.locator(selector).first
    try:
        control.wait_for(state="attached", timeout=_ms(deadline))
    except TimeoutError:
        shown = " ".join(str(page.evaluate(
            "document.body ? document.body.innerText : ''")).split())[:120]
        why = f"; the page's requests failed: {traffic.errors[0]}" if traffic.errors else ""
        raise StepFailed(f"no download control matching {selector!r} appeared on the card "
                         f"page within {limit} (the page shows {shown!r}{why})") from None
    href = control.get_attribute("href")
    if href and urlsplit(urljoin(page.url, href)).scheme in ("http", "https"):
        return Rendered(url=urljoin(page.url, href))
    # No fetchable href (a click handler, a blob: URL): take the file the click downloads.
    try:
        with page.expect_download(timeout=_ms(deadline)) as info:
            control.click(timeout=_ms(deadline))
        download = info.value
    except TimeoutError:
        raise StepFailed(f"the download control matching {selector!r} has no href and "
                         f"clicking it started no download within {limit}") from None
    path = download.path()
    with open(path, "rb") as fh:
        body = fh.read()
    return Rendered(body=body, content_type=traffic.types.get(download.url))


def _ms(deadline: float) -> float:
    # Playwright reads 0 as "no timeout": never pass it, however late we are.
    return max(1.0, (deadline - time.monotonic()) * 1000)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

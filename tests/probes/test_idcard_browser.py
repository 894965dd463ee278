"""idcard_sms's download_pdf step against a single-page card page (as the real bic-sky).

The sandbox's bic-agent serves its card page as the bare app shell whose script fetches the
card and adds the PDF link (``card_page = "spa"``): link mode cannot see the link, browser
mode renders the page in headless Debian chromium (as tests/browser launches it).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError

from controlplane.probes.idcard_browser import PdfSettings
from controlplane.probes.idcard_sms import STEPS, IdCardSmsProbe
from controlplane.probes.sitefetch import Fetcher
from controlplane.results import Result, Status
from controlplane.sandbox import pdfcard
from controlplane.sandbox.platform import env_by_name
from controlplane.sandbox.runner import Sandbox
from tests.services.sandbox import idcard_config, sandbox_context

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) or shutil.which("chromium") is None,
    reason="Debian chromium is not installed (scripts/setup.d/40-chromium.sh installs it)")
PROD = env_by_name("production")
SLA = {"request_link": 30, "receive_sms": 30, "check_link_host": 30, "open_link": 30,
       "check_appconfig": 30, "download_pdf": 30, "total": 60}
APP_HINT = ("download_pdf: the card page has no PDF download link in its HTML; it is a "
            "JavaScript app (<app-root>, 1 <script> tag) that adds the link when its script "
            "runs: set pdf.mode: browser on the check to render it in headless chromium")


@pytest.fixture
def spa(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The shared sandbox with bic-agent serving the single-page card; restored after."""
    sandbox.card_page = "spa"
    yield sandbox
    sandbox.card_page = "server"


def browser_run(sb: Sandbox, pdf: dict[str, object] | None = None,
                **overrides: object) -> Result:
    cfg = idcard_config(sb, pdf={"mode": "browser", "executable_path": CHROMIUM, **(pdf or {})},
                        **overrides)
    return IdCardSmsProbe(cfg, sandbox_context()).execute()


def expected_pdf_bytes() -> int:
    return len(pdfcard.render("Ada Synthetic", "synthetic-monitor", PROD.label))


def chromium_children() -> list[int]:
    """Chromium processes this test process started (directly or through playwright)."""
    me, found = os.getpid(), []
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        names[int(entry.name)] = cmd
    for pid, cmd in names.items():
        p = pid
        while p > 1 and p != me:
            p = parents.get(p, 1)
        if p == me and "chromium" in cmd:
            found.append(pid)
    return found


def no_chromium_left() -> bool:
    deadline = time.monotonic() + 30
    while chromium_children():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# -- link mode ------------------------------------------------------------------------------

def test_link_mode_on_the_single_page_card_fails_suggesting_browser_mode(spa: Sandbox) -> None:
    result = IdCardSmsProbe(idcard_config(spa), sandbox_context()).execute()
    assert result.status == Status.FAILING
    assert [s.name for s in result.steps] == list(STEPS)
    assert all(s.status == Status.OK for s in result.steps[:-1])
    assert result.message == APP_HINT


def test_link_mode_on_the_server_rendered_card_still_passes(sandbox: Sandbox) -> None:
    result = IdCardSmsProbe(idcard_config(sandbox), sandbox_context()).execute()
    assert result.status == Status.OK, result.message
    assert result.details["pdf_bytes"] == expected_pdf_bytes()
    assert "browser_hosts" not in result.details


# -- browser mode ---------------------------------------------------------------------------

@needs_chromium
@pytest.mark.browser
def test_browser_mode_renders_the_single_page_card_and_passes(spa: Sandbox) -> None:
    result = browser_run(spa)
    assert result.status == Status.OK, result.message
    assert [s.name for s in result.steps] == list(STEPS)
    assert all(s.status == Status.OK for s in result.steps)
    assert result.steps[-1].message == (f"valid PDF, {expected_pdf_bytes()} bytes, names "
                                        "Ada Synthetic")
    assert result.details["pdf_bytes"] == expected_pdf_bytes()
    assert result.message.startswith("ID card delivered by SMS in ")
    assert no_chromium_left()


@needs_chromium
@pytest.mark.browser
def test_every_request_of_the_rendered_page_stays_on_loopback(spa: Sandbox) -> None:
    result = browser_run(spa)
    assert result.status == Status.OK, result.message
    # The page read the card from the API its appconfig.json names, and nothing else.
    assert result.details["browser_hosts"] == [PROD.frontend, PROD.api]
    resolver = Fetcher(spa.ca_file, spa.nameserver, 10)
    assert {resolver.resolve(h) for h in result.details["browser_hosts"]} == {"127.0.0.1"}


@needs_chromium
@pytest.mark.browser
def test_browser_mode_runs_in_a_worker_thread_as_the_scheduler_runs_probes(
        spa: Sandbox) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(browser_run, spa).result(timeout=120)
    assert result.status == Status.OK, result.message
    assert result.details["pdf_bytes"] == expected_pdf_bytes()


@needs_chromium
@pytest.mark.browser
def test_browser_mode_passes_on_the_server_rendered_card_too(sandbox: Sandbox) -> None:
    result = browser_run(sandbox)
    assert result.status == Status.OK, result.message
    assert result.details["pdf_bytes"] == expected_pdf_bytes()
    assert result.details["browser_hosts"] == [PROD.frontend]


@needs_chromium
@pytest.mark.browser
def test_a_button_without_href_is_clicked_and_its_download_checked(sandbox: Sandbox) -> None:
    sandbox.card_page = "spa-blob"
    try:
        result = browser_run(sandbox, pdf={"selector": "button.download"})
    finally:
        sandbox.card_page = "server"
    assert result.status == Status.OK, result.message
    assert result.steps[-1].message == (f"valid PDF, {expected_pdf_bytes()} bytes, names "
                                        "Ada Synthetic")
    assert result.details["pdf_bytes"] == expected_pdf_bytes()


@needs_chromium
@pytest.mark.browser
def test_download_control_that_never_appears_fails_at_the_download_step_within_its_sla(
        sandbox: Sandbox) -> None:
    # The app's markup changed (a button, not a link): the default selector finds nothing.
    sandbox.card_page = "spa-blob"
    try:
        result = browser_run(sandbox, sla={**SLA, "download_pdf": 5})
    finally:
        sandbox.card_page = "server"
    assert result.status == Status.FAILING
    assert [s.name for s in result.steps] == list(STEPS)
    assert result.message == (
        "download_pdf: no download control matching 'a.download, a[download]' appeared on "
        "the card page within download_pdf's 5s SLA (the page shows 'ID card Ada Synthetic "
        "Download PDF')")
    assert result.steps[-1].duration_s >= 5  # it waited for the control, then gave up
    assert result.details["pdf_bytes"] is None
    assert no_chromium_left()


@needs_chromium
@pytest.mark.browser
def test_a_broken_pdf_behind_the_rendered_link_fails_as_in_link_mode(spa: Sandbox) -> None:
    import requests

    resp = requests.post(f"{spa.url('control')}/faults", timeout=10,
                         json={"name": "pdf_broken", "env": "production", "params": {}})
    assert resp.status_code == 201, resp.text
    result = browser_run(spa)
    assert result.message == ("download_pdf: the PDF (73 bytes) cannot be opened: "
                              "PdfReadError: EOF marker not found")


def test_browser_mode_with_a_missing_executable_is_an_error_before_texting(
        sandbox: Sandbox) -> None:
    links = len(sandbox.links)
    result = browser_run(sandbox, pdf={"executable_path": "/nonexistent/chromium"})
    assert result.status == Status.ERROR
    assert result.message == (
        "pdf.executable_path /nonexistent/chromium is not an executable file; install it "
        "(apt-get install chromium, as scripts/setup.d/40-chromium.sh does) or point "
        "pdf.executable_path at the browser")
    assert result.steps == []
    assert len(sandbox.links) == links  # no SMS was spent


def test_browser_mode_without_chromium_on_path_is_an_error_naming_the_install(
        sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no browser on it
    cfg = idcard_config(sandbox, pdf={"mode": "browser"})
    result = IdCardSmsProbe(cfg, sandbox_context()).execute()
    assert result.status == Status.ERROR
    assert result.message == (
        "pdf.mode: browser needs chromium, and there is no chromium on PATH; install it "
        "(apt-get install chromium, as scripts/setup.d/40-chromium.sh does) or set "
        "pdf.executable_path")


# -- the pdf setting ------------------------------------------------------------------------

def test_pdf_defaults_to_link_mode_with_the_card_markup_selector(sandbox: Sandbox) -> None:
    pdf = idcard_config(sandbox).pdf
    assert (pdf.mode, pdf.selector, pdf.executable_path) == ("link", "a.download, a[download]",
                                                             None)
    assert "--no-sandbox" in pdf.args


@pytest.mark.parametrize(("given", "message"), [
    ({"mode": "chrome"}, "Input should be 'link' or 'browser'"),
    ({"selector": " "}, "pdf.selector is empty; write a CSS selector for the card page's "
                        "download control, e.g. 'a.download, a[download]'"),
    ({"executable_path": ""}, "pdf.executable_path is empty; remove it to use chromium from "
                              "PATH, or write the browser's path, e.g. /usr/bin/chromium"),
    ({"args": ["no-sandbox"]}, "pdf.args must be chromium switches starting with '--'; fix "
                               "'no-sandbox'"),
    ({"browser": "chromium"}, "Extra inputs are not permitted"),
])
def test_bad_pdf_settings_are_rejected_saying_what_to_write(given: dict[str, object],
                                                            message: str) -> None:
    with pytest.raises(ValidationError) as info:
        PdfSettings.model_validate(given)
    assert [re.sub(r"^Value error, ", "", e["msg"]) for e in info.value.errors()] == [message]

"""Run a runbook from /runbooks in a real browser (Debian chromium + playwright) against
`controlplane run`: dry-run, run with the admin token, approve, watch the steps complete."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.runbooks.conftest import TOKEN, runbook, step, write_site
from tests.runbooks.server import ServerProcess

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    config = write_site(tmp_path, [runbook("restore", [
        step("ask", "approve", args={"message": "Restore into {{ params.db }}?"}),
        step("settle", "wait", args={"duration": "1s"}),
        step("tell", "note", args={"text": "restored into {{ params.db }}"}),
    ], parameters={"db": {"type": "string", "default": "restored"}},
        description="Restore drill for the browser test.")],
        extra={"web": {"admin_token": TOKEN, "port": 0}})
    proc = ServerProcess(config)
    yield proc
    proc.stop()


def test_run_a_runbook_with_an_approval_from_the_dashboard(server: ServerProcess) -> None:
    assert os.path.exists(CHROMIUM), "Debian chromium is missing (scripts/setup.d)"
    from playwright.sync_api import Dialog, Route, expect, sync_playwright

    offsite: list[str] = []

    def guard(route: Route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            offsite.append(route.request.url)
            route.abort()

    def answer(dialog: Dialog) -> None:
        assert dialog.type == "prompt" and "Admin token" in dialog.message
        dialog.accept(TOKEN)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", guard)
            page.on("dialog", answer)
            page.goto(f"{server.url}/runbooks")
            expect(page.locator("#runbooks")).to_contain_text("never")
            page.click("text=restore")
            page.fill("input[name=db]", "voice360_restored")
            page.click("#dry-run")
            expect(page.locator("#plan")).to_contain_text(
                "ask for approval: 'Restore into voice360_restored?'")
            page.click("#run")
            page.wait_for_url("**/runbooks/runs/*")
            expect(page.locator("#run-status")).to_have_text("waiting_approval", timeout=20000)
            expect(page.locator("#approve")).to_be_visible()
            page.click("#approve")
            expect(page.locator("#run-status")).to_have_text("succeeded", timeout=30000)
            rows = page.locator("#run-steps tr[data-step]")
            expect(rows).to_have_count(3)
            expect(rows.nth(0)).to_contain_text("approved by dashboard")
            expect(rows.nth(2)).to_contain_text("restored into voice360_restored")
            for i in range(3):
                expect(rows.nth(i).locator(".status")).to_have_text("succeeded")
            expect(page.locator("#approve")).to_be_hidden()
            expect(page.locator("#decisions")).to_contain_text("approved")
            page.goto(f"{server.url}/runbooks")
            expect(page.locator("#runbooks")).to_contain_text("succeeded")
        finally:
            browser.close()
    assert offsite == []

"""The /oncall page in headless chromium: adding and removing an override with the admin
token goes through the page's own script (no inline script)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from werkzeug.serving import make_server

from controlplane.app import Runtime
from controlplane.oncall.service import OncallService
from controlplane.web import create_app
from tests.oncall.conftest import TOKEN

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ZONE = ZoneInfo("Europe/Berlin")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not os.path.exists(CHROMIUM):
    pytest.skip("Debian chromium is not installed (scripts/setup.d/40-chromium.sh installs it)",
                allow_module_level=True)


@pytest.fixture
def site(rt: Runtime) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, create_app(rt), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_an_override_added_and_removed_on_the_page(rt: Runtime, site: str) -> None:
    from playwright.sync_api import Dialog, expect, sync_playwright

    svc = OncallService(rt.config.oncall, rt.store)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(timezone_id="Europe/Berlin")
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        def answer(dialog: Dialog) -> None:
            dialog.accept(TOKEN)

        page.on("dialog", answer)
        page.goto(f"{site}/oncall")
        expect(page.locator("#schedule-primary .oncall-now")).to_contain_text("On call now:")
        start = datetime.now(UTC) + timedelta(days=1)
        local = start.astimezone(ZONE).replace(second=0, microsecond=0)
        form = page.locator("#override-form")
        form.locator("select[name=schedule]").select_option("secondary")
        form.locator("select[name=person]").select_option("alice")
        form.locator("input[name=from]").fill(local.strftime("%Y-%m-%dT%H:%M"))
        form.locator("input[name=to]").fill((local + timedelta(hours=6)).strftime(
            "%Y-%m-%dT%H:%M"))
        form.locator("input[name=reason]").fill("dentist")
        form.locator("button[type=submit]").click()
        expect(page.locator("#overrides")).to_contain_text("dentist")
        [ov] = svc.list_overrides()
        # The browser's wall clock (Berlin) was sent as an absolute time.
        assert (ov["schedule"], ov["person"], ov["from"]) == (
            "secondary", "alice", local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        page.locator(f"button.remove-override[data-id='{ov['id']}']").click()
        expect(page.locator("body")).to_contain_text("No overrides: the rotations decide.")
        assert svc.list_overrides() == []
        assert errors == []
        browser.close()




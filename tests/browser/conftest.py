"""Headless Debian chromium driven by Python playwright; every request must stay on loopback."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.services.common import ROOT
from tests.services.sandbox import DemoProcess

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "test-output" / "browser"

if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
    pytest.skip("Debian chromium is not installed (scripts/setup.d/40-chromium.sh installs it)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    proc = DemoProcess(tmp_path_factory.mktemp("demo-cache"), "--no-timeline")
    proc.wait_line("demo: control plane on ")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


class Recorder:
    """Every URL the page asked for; the test asserts none leaves the machine."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def offsite(self) -> list[str]:
        return [u for u in self.urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")
                and urlsplit(u).hostname not in ("127.0.0.1", "localhost")]


@pytest.fixture
def page(browser: object) -> Iterator[tuple[object, Recorder]]:
    from playwright.sync_api import Browser, Route

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    recorder = Recorder()

    def guard(route: Route) -> None:
        recorder.urls.append(route.request.url)
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            route.abort()  # recorded above, so the test fails naming it

    context.route("**/*", guard)
    pg = context.new_page()
    yield pg, recorder
    context.close()


def shot(pg: object, name: str) -> Path:
    from playwright.sync_api import Page

    assert isinstance(pg, Page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    return path

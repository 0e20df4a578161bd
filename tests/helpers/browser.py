"""A real headless Chromium for tests of the admin web view (Playwright's sync API).

The system's Chromium (Debian's /usr/bin/chromium) is always the one launched:
Playwright never downloads a browser here. Tests skip, saying why, when it is absent.
An aiohttp app can be served from a thread with its own event loop, since Playwright's
sync API must not run inside one.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from aiohttp import web

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
# Playwright's own waits (expect, locators) give up after this, in milliseconds.
TIMEOUT_MS = 10_000


def skip_without_chromium() -> pytest.MarkDecorator:
    """Mark a test to skip, with the reason shown, when there is no browser to run."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright (Python) is not installed"
    return pytest.mark.skipif(reason is not None, reason=reason or "")


@dataclass
class PageProblems:
    """What went wrong inside a page: uncaught errors and console errors (a Content
    Security Policy violation shows up as one)."""

    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def assert_none(self, allow_console: tuple[str, ...] = ()) -> None:
        console = [c for c in self.console if not any(a in c for a in allow_console)]
        assert not self.errors, f"errors in the page: {self.errors}"
        assert not console, f"console errors: {console}"


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium (a playwright Browser) for the `with` block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_page(
    browser: Browser, width: int = VIEWPORT["width"], height: int = VIEWPORT["height"]
) -> Iterator[tuple[Page, PageProblems]]:
    """A page in a fresh context (its own sessionStorage), and what goes wrong in it."""
    context = browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=1,
        locale="en-US",
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems = PageProblems()
    page.on("pageerror", lambda exc: problems.errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: problems.console.append(msg.text) if msg.type == "error" else None,
    )
    try:
        yield page, problems
    finally:
        context.close()


class ThreadedApp:
    """An aiohttp app served on 127.0.0.1 from a thread running its own event loop."""

    def __init__(self, make_app: Callable[[], web.Application]) -> None:
        self._make_app = make_app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def _start(self) -> int:
        runner = web.AppRunner(self._make_app(), access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        return int(runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> ThreadedApp:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


# ---- the admin web view --------------------------------------------------------------


def open_admin(page: Page, base_url: str, key: str | None) -> None:
    """Open the web view, handing it `key` the way the CLI's link does (#key=...)."""
    url = f"{base_url}/" + (f"#key={quote(key, safe='')}" if key is not None else "")
    page.goto(url)


def wait_live(page: Page) -> None:
    """Until the view's live stream is connected."""
    from playwright.sync_api import expect

    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")


def decision_row(page: Page, decision_id: int) -> Locator:
    """The table row of one decision."""
    return page.locator(f'#decisions tr[data-decision-id="{decision_id}"]')


def decision_rows(page: Page) -> Locator:
    return page.locator("#decisions tbody tr[data-decision-id]")


def detail(page: Page) -> Locator:
    return page.locator("#detail")


def key_form(page: Page) -> Locator:
    return page.locator("#key-form")

"""Headless Chromium for the Web UI tests: Debian's ``chromium``, driven by Playwright.

Why Playwright: its Python package is a well-kept driver (waiting, frames, screenshots)
that launches any Chromium given by ``executable_path``; the package itself downloads no
browser (only ``playwright install`` would, and nothing here calls it). The browser is
the system's ``/usr/bin/chromium`` from Debian, which ``ensure_chromium`` installs with
``apt-get`` when it is missing, so a fresh machine's ``make test`` needs nothing but the
Debian and PyPI registries.

Chromium runs headless with ``--no-sandbox`` (the tests run as root, where Chromium's
sandbox refuses to start) and ``--disable-background-networking`` (no calls home: the
machine reaches no internet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright
from playwright.async_api import Error as PlaywrightError

#: Chromium's command-line flags for the tests (see the module docstring).
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-background-networking")
#: Upper bound for installing Debian's chromium (download and unpack, about a minute).
INSTALL_TIMEOUT = 900
#: Upper bound for the Web UI to show what a test waits for (the SPA loads, asks the
#: server, renders); a healthy page takes one to four seconds.
UI_TIMEOUT = 20.0
#: How often a wait looks at the page again.
POLL_INTERVAL = 0.1
#: The viewport of every page: wide enough for the list's columns.
VIEWPORT: ViewportSize = {"width": 1560, "height": 480}


class BrowserUnavailable(Exception):
    """Chromium is missing and could not be installed; the message says what to do."""


def ensure_chromium() -> Path:
    """The system's Chromium, after installing Debian's ``chromium`` package if it is
    missing (``apt-get update`` then ``apt-get install -y chromium``, as root).

    Raises:
        BrowserUnavailable: not installed and not root, or apt-get failed (its last
            output lines are in the message).
    """
    found = shutil.which("chromium")
    if found:
        return Path(found)
    if os.geteuid() != 0:
        raise BrowserUnavailable("chromium is not installed and installing it takes root: "
                                 "run `apt-get install -y chromium` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A fresh machine's package lists may be empty: update them first.
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise BrowserUnavailable(f"`{' '.join(command)}` failed ({done.returncode}):\n{tail}")
    found = shutil.which("chromium")
    if not found:
        raise BrowserUnavailable("apt-get installed chromium, but no `chromium` is on PATH")
    return Path(found)


@contextlib.asynccontextmanager
async def chromium(executable: Path) -> AsyncIterator[Browser]:
    """Headless ``executable`` (a Chromium) under Playwright, closed on exit.

    Raises:
        playwright.async_api.Error: Chromium did not start.
    """
    # Belt and braces: no Playwright code path may fetch a browser of its own.
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(executable), headless=True,
                                               args=list(CHROMIUM_FLAGS))
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def browser_context(browser: Browser,
                          local_storage: dict[str, Any] | None = None
                          ) -> AsyncIterator[BrowserContext]:
    """A fresh browser context (its own cache, cookies and storage; its pages share
    them). ``local_storage`` (values JSON-encoded) is set before any page's scripts run,
    as if the viewer had saved those settings in their browser."""
    context = await browser.new_context(viewport=VIEWPORT)
    if local_storage:
        entries = {key: json.dumps(value) for key, value in local_storage.items()}
        await context.add_init_script(
            "for (const [k, v] of Object.entries(" + json.dumps(entries) + "))"
            " window.localStorage.setItem(k, v);")
    try:
        yield context
    finally:
        await context.close()


@dataclass
class UiPage:
    """One page of the Web UI, with waits that poll the DOM within ``UI_TIMEOUT``."""

    page: Page
    #: What the page's scripts wrote to the browser console (``"<type>: <text>"``) and
    #: their uncaught errors (``"pageerror: <message>"``), in order.
    console: list[str] = field(default_factory=list)

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, context: BrowserContext) -> AsyncIterator[UiPage]:
        """A new page in ``context``, closed on exit, its console recorded."""
        page = await context.new_page()
        opened = cls(page)
        page.on("console", lambda message: opened.console.append(
            f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: opened.console.append(f"pageerror: {error}"))
        try:
            yield opened
        finally:
            await page.close()

    async def goto(self, url: str) -> None:
        """Load ``url`` (the SPA then renders on its own: wait with ``wait_for_text``)."""
        await self.page.goto(url)

    async def text(self) -> str:
        """The visible text of the page and of every frame in it (the UI renders a
        workflow's summary and details in an iframe). Frames that go away while read
        (the SPA re-renders) are skipped."""
        parts = []
        for frame in self.page.frames:
            with contextlib.suppress(PlaywrightError):
                parts.append(await frame.locator("body").inner_text(timeout=1000))
        return "\n".join(parts)

    async def html(self) -> str:
        """The HTML of the page and of every frame in it (what is hidden too)."""
        parts = []
        for frame in self.page.frames:
            with contextlib.suppress(PlaywrightError):
                parts.append(await frame.content())
        return "\n".join(parts)

    async def wait_for_text(self, expected: Iterable[str], timeout: float = UI_TIMEOUT) -> str:
        """Poll the page until its text holds every string of ``expected``; returns it.

        Raises:
            AssertionError: not all of them within ``timeout`` seconds (names the missing
                ones and shows the page's last text).
        """
        wanted = list(expected)
        deadline = time.monotonic() + timeout
        while True:
            text = await self.text()
            missing = [item for item in wanted if item not in text]
            if not missing:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"not on {self.page.url} within {timeout:.0f} s: "
                                     f"{missing}; the page shows:\n{text[:3000]}")
            await asyncio.sleep(POLL_INTERVAL)

    async def wait_for_no_text(self, gone: Iterable[str], timeout: float = UI_TIMEOUT) -> str:
        """Poll the page until its text holds none of ``gone``; returns it.

        Raises:
            AssertionError: some are still there after ``timeout`` seconds (names them).
        """
        unwanted = list(gone)
        deadline = time.monotonic() + timeout
        while True:
            text = await self.text()
            present = [item for item in unwanted if item in text]
            if not present:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"still on {self.page.url} after {timeout:.0f} s: "
                                     f"{present}")
            await asyncio.sleep(POLL_INTERVAL)

    async def wait_for_listing(self, url: str, shown: Iterable[str], hidden: Iterable[str],
                               timeout: float = UI_TIMEOUT, reload_every: float = 5.0) -> str:
        """Load ``url`` and poll until its text holds every string of ``shown`` and none
        of ``hidden``; returns that text. The page is loaded again every
        ``reload_every`` seconds while it does not: the UI's list asks visibility once per
        load, and visibility is eventually consistent (a search attribute upserted a
        moment ago may not be indexed yet).

        Raises:
            AssertionError: not so within ``timeout`` seconds (names what is missing and
                what should not be there, and shows the page's last text).
        """
        wanted, unwanted = list(shown), list(hidden)
        deadline = time.monotonic() + timeout
        while True:
            await self.goto(url)
            reload_at = min(deadline, time.monotonic() + reload_every)
            while True:
                text = await self.text()
                missing = [item for item in wanted if item not in text]
                present = [item for item in unwanted if item in text]
                if not missing and not present:
                    return text
                if time.monotonic() > reload_at:
                    break
                await asyncio.sleep(POLL_INTERVAL)
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.page.url} within {timeout:.0f} s: missing "
                                     f"{missing}, present {present}; the page shows:\n"
                                     f"{text[:3000]}")

    async def scroll_to_heading(self, name: str) -> None:
        """Scroll the page until its heading ``name`` is at the top of the viewport.

        Why: the Web UI's Timeline is a virtualised chart. It measures its own position
        against the viewport and puts in the page only the rows that are inside it, so
        with the chart below the fold (a real case's long ciphertext Input card pushes it
        there) the page holds none of its rows until it is scrolled to.

        Raises:
            playwright.async_api.Error: no such heading within ``UI_TIMEOUT``.
        """
        heading = self.page.get_by_role("heading", name=name, exact=True).first
        await heading.evaluate("element => element.scrollIntoView({block: 'start'})",
                               timeout=UI_TIMEOUT * 1000)

    async def scroll_to_top(self) -> None:
        """Scroll the page, and every scrolled element in it, back to its top."""
        await self.page.evaluate("for (const element of document.querySelectorAll('*'))"
                                 " if (element.scrollTop) element.scrollTop = 0;"
                                 " window.scrollTo(0, 0);")

    async def click_tab(self, name: str) -> None:
        """Click the workflow page's tab labelled ``name``."""
        await self.page.get_by_text(name, exact=True).first.click(timeout=UI_TIMEOUT * 1000)

    async def screenshot(self, path: Path) -> None:
        """Save the viewport as a PNG at ``path`` (its folder is made)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(path))

"""Headless Chromium for the panel's browser tests: Debian's /usr/bin/chromium driven by Playwright (no browser
download), with screenshots of every page saved under test-artifacts/screenshots/.

Where Chromium is missing the browser tests skip, saying how to install it, unless CROSSDOCK_REQUIRE_BROWSER is
set (CI sets it, after installing Chromium), in which case they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


def require_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    message = "Chromium is not installed: apt-get install -y chromium (the panel's browser tests use it)"
    if os.environ.get("CROSSDOCK_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


def fresh_screenshots(name: str) -> Path:
    folder = SCREENSHOTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


async def shoot(page: Page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000, f"the screenshot {path} is empty"
    return path

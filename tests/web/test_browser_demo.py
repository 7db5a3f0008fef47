"""`make demo` seen through the panel in headless Chromium, as a newcomer sees it.

One run of the demo on a fresh home: sign in with the printed user; a shipped order shows in the panel within
60 s of `make demo` starting; its label opens; a second Shopify shop is connected through the sandbox's OAuth
consent screen; a label purchase made to fail at the Shippo sandbox lands on the Failures page and, once the
sandbox is well again, the Retry button there ships the order. Screenshots of each page go to
test-artifacts/screenshots/demo/.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.demo_process import banner_sandboxes, keep_reading, read_banner, start_demo
from tests.support import free_port
from tests.web.browser import chromium, fresh_screenshots, require_chromium, shoot

TOKEN = "demo-browser-token-0123456789"
# What the Shippo sandbox answers a purchase while fail_labels is on.
INJECTED = "did not answer in time"


@dataclass
class Demo:
    url: str
    started: float
    sandboxes: dict[str, str]
    email: str
    password: str


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    require_chromium()
    port = free_port()
    started = time.monotonic()
    proc = start_demo(tmp_path, port, TOKEN)
    try:
        text = read_banner(proc, started + 60)
        keep_reading(proc)
        sign_in = re.search(r"sign in\s+.*?(\S+@\S+?),? password (\S+)", text)
        assert sign_in, f"the banner names no user to sign in with:\n{text}"
        yield Demo(
            f"http://127.0.0.1:{port}", started, banner_sandboxes(text), sign_in.group(1), sign_in.group(2)
        )
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("make demo did not stop within 20 s of Ctrl-C") from None


async def _until(page: Page, url: str, found: str, seconds: float) -> None:
    """Reload `url` until a link or cell matching `found` shows, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        await page.goto(url)
        if await page.locator(found).count():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} showed no {found} within {seconds:.0f} s")
        await asyncio.sleep(1.5)


async def test_the_demo_in_the_panel(demo: Demo) -> None:
    shots = fresh_screenshots("demo")
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()

        # Sign in with the user the banner printed.
        await page.goto(f"{demo.url}/")
        await expect(page).to_have_url(re.compile(r"/login"))
        await shoot(page, shots, "01-sign-in")
        await page.get_by_label("E-mail address").fill(demo.email)
        await page.get_by_label("Password", exact=True).fill(demo.password)
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.locator("h1")).to_have_text("Dashboard")

        # A shipped order within 60 s of `make demo` starting.
        left = 60 - (time.monotonic() - demo.started)
        await _until(page, f"{demo.url}/orders?status=shipped", "table tbody tr a[href^='/orders/']", left)
        shipped_after = time.monotonic() - demo.started
        assert shipped_after <= 60, f"the first shipped order showed after {shipped_after:.0f} s"
        await shoot(page, shots, "02-orders-shipped")
        await page.goto(f"{demo.url}/")
        await shoot(page, shots, "03-dashboard")
        # The figures refresh in place (live.js), without reloading the page.
        await page.locator("[data-live='figures'][data-refreshed-at]").wait_for(timeout=15_000)

        # Its order page, and its label opens as a PDF.
        await page.goto(f"{demo.url}/orders?status=shipped")
        await page.locator("table tbody tr a[href^='/orders/']").first.click()
        await expect(page.locator("h1")).to_contain_text("Order")
        await shoot(page, shots, "04-order")
        label = page.locator("a[href*='/label']").first
        href = await label.get_attribute("href")
        assert href, "the shipped order's page has no label link"
        answer = await context.request.get(f"{demo.url}{href}")
        assert answer.status == 200 and answer.headers["content-type"].startswith("application/pdf")
        assert (await answer.body()).startswith(b"%PDF")

        # Connect a second Shopify shop through the sandbox's consent screen.
        await page.goto(f"{demo.url}/connections")
        await shoot(page, shots, "05-connections")
        before = await page.locator("[id^='c-']").count()
        await page.locator("#oauth-shopify-shop").fill("crossdock-demo.myshopify.com")
        await page.get_by_role("button", name="Connect with Shopify").click()
        await expect(page.locator("#install")).to_be_visible()
        assert page.url.startswith(demo.sandboxes["Shopify"])
        await shoot(page, shots, "06-shopify-consent")
        await page.locator("#install").click()
        await expect(page).to_have_url(re.compile(r"/connections"))
        assert await page.locator("[id^='c-']").count() == before + 1
        await shoot(page, shots, "07-connected")
        # eBay and Amazon sellers the same way, through their sandboxes' consent pages.
        for title, consent_button in (("eBay", "#submit"), ("Amazon Selling Partner API", "#confirm")):
            await page.get_by_role("button", name=f"Connect with {title}").click()
            await expect(page.locator(consent_button)).to_be_visible()
            await page.locator(consent_button).click()
            await expect(page).to_have_url(re.compile(r"/connections"))
        assert await page.locator("[id^='c-']").count() == before + 3

        # A label purchase fails at Shippo, shows on the Failures page, and its Retry ships the order.
        shippo = demo.sandboxes["Shippo"]
        async with httpx.AsyncClient(base_url=shippo) as sandbox:
            assert (await sandbox.post("/_sandbox/settings", json={"fail_labels": True})).status_code == 200
            try:
                await _until(page, f"{demo.url}/failures", f"text={INJECTED}", 90)
            finally:
                await sandbox.post("/_sandbox/settings", json={"fail_labels": False})
        await shoot(page, shots, "08-failures")
        # The failure the sandbox was made to give (an order may also fail for its own reasons, such as an
        # address without a postcode, which a retry cannot mend).
        row = page.locator("tr", has_text=INJECTED).first
        order_link = await row.locator("a[href^='/orders/']").first.get_attribute("href")
        assert order_link
        await row.get_by_role("button", name=re.compile(r"^Retry")).click()
        await expect(page.locator(".notice")).to_be_visible()
        deadline = time.monotonic() + 60
        while True:
            await page.goto(f"{demo.url}{order_link}")
            status = await page.locator("h1 .badge").first.inner_text()
            if status.strip() in ("shipped", "delivered"):
                break
            if time.monotonic() > deadline:
                timeline = await page.locator("main").inner_text()
                raise AssertionError(f"the retried order is still {status} after 60 s:\n{timeline}")
            await asyncio.sleep(1.5)
        await shoot(page, shots, "09-retried-order")
        await page.goto(f"{demo.url}/rules")
        await shoot(page, shots, "10-rules")
        await page.goto(f"{demo.url}/webhooks")
        await shoot(page, shots, "11-webhooks")

        # Every page reads at phone width: nothing makes the page itself scroll sideways (tables scroll inside).
        await page.set_viewport_size({"width": 375, "height": 800})
        for path in ("/", "/orders", order_link, "/connections", "/failures", "/rules", "/webhooks"):
            await page.goto(f"{demo.url}{path}")
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a 375px screen"
        await shoot(page, shots, "12-webhooks-phone")
        await context.close()

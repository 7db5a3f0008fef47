"""The panel in headless Chromium: sign in with the keyboard alone, at phone width, and the skip link."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn

from crossdock.api.app import create_app
from crossdock.hub import Hub
from tests.support import Tenant, free_port
from tests.web.browser import chromium, fresh_screenshots, shoot
from tests.web.support import PASSWORD, make_user


@pytest.fixture
async def served(hub: Hub) -> AsyncIterator[str]:
    """The hub's app served over real HTTP on loopback, for the browser."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(hub), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_signing_in_with_the_keyboard_alone_at_phone_width(served: str, hub: Hub, acme: Tenant) -> None:
    email = await make_user(hub, acme)
    shots = fresh_screenshots("basics")
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 375, "height": 740})
        await page.goto(f"{served}/")
        assert page.url == f"{served}/login"
        # The address field has the focus; Tab goes to the password, Enter sends the form.
        await page.keyboard.type(email)
        await page.keyboard.press("Tab")
        await page.keyboard.type(PASSWORD)
        await shoot(page, shots, "login-phone")
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        assert page.url == f"{served}/"
        assert await page.locator("h1").inner_text() == "Dashboard"
        assert "No orders yet" in await page.locator("main").inner_text()
        # Nothing wider than a phone's screen: no sideways scrolling of the page itself.
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the dashboard is {overflow}px wider than a 375px screen"
        await shoot(page, shots, "dashboard-phone")
        # The first Tab reaches the skip link, and following it puts the focus on the content.
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "main"


async def test_a_wrong_password_is_announced_next_to_the_form(served: str, hub: Hub, acme: Tenant) -> None:
    email = await make_user(hub, acme)
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{served}/login")
        await page.get_by_label("E-mail address").fill(email)
        await page.get_by_label("Password", exact=True).fill("not the password")
        await page.get_by_role("button", name="Sign in", exact=True).click()
        alert = page.get_by_role("alert")
        assert "password is wrong" in await alert.inner_text()
        assert await page.get_by_label("E-mail address").input_value() == email

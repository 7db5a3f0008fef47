"""OAuth callbacks for every connector with a flow (Shopify, eBay, Amazon), against their sandboxes: a callback
finished in another browser, a state carried to another connector's callback, and the same callback replayed
after it succeeded are all refused, and none of them stores a connection or a secret. (tests/api/test_oauth.py
has the happy paths, a shop other than the one that started, and the races.)"""

# ruff: noqa: F811 - the fixtures imported from tests/api/test_oauth.py are the parameters of the test

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crossdock.api import routes_oauth
from crossdock.hub import Hub
from crossdock.security.oauth import FlowRefused
from crossdock.store import tables as t
from tests.api.test_oauth import (  # noqa: F401 - fixtures
    SHOP,
    _hub_client,
    amazon_url,
    assert_refused,
    browser,
    consent,
    ebay_url,
    local,
    oauth_hub,
    remote,
    shopify_url,
    start,
)
from tests.support import Tenant

FLOWS = {
    "shopify": ({"shop": SHOP}, "install"),
    "ebay": ({}, "agree"),
    "amazon": ({}, "confirm"),
}


async def stored(hub: Hub) -> tuple[int, int, int]:
    """Connections, secrets in the vault, and OAuth states not used yet."""
    async with hub.db.session() as session:

        async def count(table: Any, *where: Any) -> int:
            return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)

        return (
            await count(t.Connection),
            await count(t.ConnectionSecret),
            await count(t.OAuthState, t.OAuthState.used_at.is_(None)),
        )


@pytest.mark.parametrize("connector", list(FLOWS))
async def test_a_callback_is_taken_once_by_the_browser_that_started_it(
    connector: str,
    oauth_hub: Hub,
    browser: httpx.AsyncClient,
    remote: httpx.AsyncClient,
    acme: Tenant,
) -> None:
    params, decision = FLOWS[connector]
    back = local(await consent(remote, await start(browser, acme, connector, **params), decision))
    assert await stored(oauth_hub) == (0, 0, 1)

    # Someone else's browser (no cookie, then a made-up one of the right name).
    async with _hub_client(oauth_hub) as stranger:
        assert_refused(await stranger.get(back), 403, "another browser")
        for cookie in browser.cookies.jar:
            stranger.cookies.set(cookie.name, "forged", domain=cookie.domain, path=cookie.path)
        assert_refused(await stranger.get(back), 403, "another browser")
    # The state presented at another connector's callback (the browser's cookie is scoped to this one's path).
    for other in FLOWS:
        if other != connector:
            wrong = back.replace(f"/oauth/{connector}/", f"/oauth/{other}/", 1)
            response = await browser.get(wrong)
            assert 400 <= response.status_code < 500, (other, response.text)
    assert await stored(oauth_hub) == (0, 0, 1)

    done = await browser.get(back)
    assert done.status_code == 200, done.text
    after = await stored(oauth_hub)
    assert after[0] == 1 and after[1] >= 1 and after[2] == 0

    replayed = await browser.get(back)
    assert_refused(replayed, 400, "cannot be replayed", f"/oauth/{connector}/start")
    assert await stored(oauth_hub) == after


@pytest.mark.parametrize(
    ("connector", "params", "details", "missing"),
    [
        ("shopify", {"shop": "acme.myshopify.com"}, {"shop": "acme.myshopify.com"}, "code"),
        ("ebay", {"state": "s"}, {}, "code"),
        ("shippo", {"code": ""}, {}, "code"),
        ("amazon", {"selling_partner_id": "A1"}, {}, "spapi_oauth_code"),
        ("amazon", {"spapi_oauth_code": "c"}, {}, "selling_partner_id"),
    ],
)
def test_a_callback_without_what_the_remote_sends_back_is_refused_naming_it(
    connector: str, params: dict[str, str], details: dict[str, str], missing: str
) -> None:
    with pytest.raises(FlowRefused) as refused:
        routes_oauth.FLOWS[connector].callback_code(params, details)
    assert (refused.value.field, refused.value.status) == (missing, 400)
    assert f"callback has no {missing}" in refused.value.message

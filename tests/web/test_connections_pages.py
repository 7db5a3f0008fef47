"""The Connections pages: the list with each connection's last pull, pause, resume, pull now, disconnect with a
confirmation, connecting with a token (checked against the Shopify sandbox) and with OAuth, all scoped to the
signed-in account and refused without the session's CSRF token."""

from __future__ import annotations

import dataclasses
import html
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from crossdock.api.app import create_app
from crossdock.engine.sync import SYNC_JOB
from crossdock.hub import Hub
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig, run_in_thread
from crossdock.security.oauth import OAuthApp
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.support import Tenant
from tests.web.support import signed_in

SHOP = "panel-test.myshopify.com"
TOKEN = "shpat_panel_token_0123456789"
APP_SECRET = "shpss_panel-oauth-secret"


@pytest.fixture(scope="module")
def shop() -> Iterator[tuple[str, Any]]:
    app = create_sandbox_app(
        "shopify",
        SandboxConfig(
            seed=5,
            token=TOKEN,
            fast_limits=True,
            client_id="panel-client",
            client_secret=APP_SECRET,
            extra={"shop": SHOP},
        ),
    )
    with run_in_thread(app) as url:
        yield url, app.state.sandbox


def subscriptions(state: Any) -> list[str]:
    return sorted(s.address for s in state.subscriptions.values())


async def add_connection(
    client: httpx.AsyncClient, who: Tenant, connector: str = "shopify", **body: Any
) -> str:
    defaults: dict[str, Any] = {
        "shopify": {"settings": {"shop": SHOP}, "secrets": {"access_token": TOKEN}},
        "shippo": {"settings": {}, "secrets": {"api_token": "shippo_test_abc"}},
    }[connector]
    made = await client.post(
        "/api/v1/connections",
        json={"connector": connector, "name": f"{connector} of {who.id[:4]}", **defaults, **body},
        headers=who.headers,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def connection(hub: Hub, ident: str) -> t.Connection | None:
    async with hub.db.session() as session:
        return await session.get(t.Connection, uuid.UUID(ident))


async def set_status(hub: Hub, ident: str, status: str, reason: str | None = None) -> None:
    async with hub.db.transaction() as session:
        row = await session.get(t.Connection, uuid.UUID(ident))
        assert row is not None
        row.status, row.status_reason = status, reason


async def sync_jobs(hub: Hub, ident: str) -> list[t.Job]:
    async with hub.db.session() as session:
        rows = await session.scalars(select(t.Job).where(t.Job.kind == SYNC_JOB))
        return [job for job in rows.all() if job.payload.get("connection_id") == ident]


def row_of(page: str, ident: str) -> str:
    found = re.search(rf'<tr id="c-{ident}">(.*?)</tr>', page, re.S)
    assert found, f"no row for connection {ident}"
    return found.group(1)


# -- the list ----------------------------------------------------------------------------------------------------


async def test_an_account_without_connections_is_told_how_to_add_one(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    page = await client.get("/connections")
    assert page.status_code == 200
    assert "No connections yet" in page.text
    for title in ("Shopify", "eBay", "Amazon Selling Partner API", "Shippo", "MyParcel.com", "Carriers"):
        assert title in page.text
    # No OAuth app in this hub: what to configure instead of a Connect button.
    assert "oauth_apps.shopify.client_id and oauth_apps.shopify.client_secret" in page.text
    assert 'action="/oauth/shopify/start"' not in page.text


async def test_each_connection_shows_its_connector_status_and_last_pull(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    shopify = await add_connection(client, acme, base_url="http://127.0.0.1:9/sandbox")
    shippo = await add_connection(client, acme, "shippo")
    await set_status(hub, shopify, "needs_reauth", "Shopify refused the access token: reinstall the app")
    async with hub.db.transaction() as session:
        started = utcnow() - timedelta(minutes=3)
        for at, created in ((started - timedelta(hours=1), 1), (started, 7)):
            session.add(
                t.SyncRun(
                    account_id=uuid.UUID(acme.id),
                    connection_id=uuid.UUID(shopify),
                    stream="orders",
                    trigger="manual",
                    status="failed",
                    pages=2,
                    read=12,
                    created=created,
                    updated=2,
                    skipped=1,
                    invalid=2,
                    error="Shopify answered 503: try again later",
                    started_at=at,
                    finished_at=at + timedelta(seconds=40),
                )
            )
    await signed_in(client, hub, acme)
    page = (await client.get("/connections")).text

    row = row_of(page, shopify)
    assert "Shopify" in row and "needs reauth" in row
    assert "reinstall the app" in row
    assert "API at <code>http://127.0.0.1:9/sandbox</code>" in row
    assert "12 read: 7 new, 2 updated, 1 unchanged, 2 invalid" in row
    assert "Shopify answered 503: try again later" in row and 'href="/failures"' in row
    assert "Disconnect" in row and "Pause" not in row and "Sync now" not in row
    other = row_of(page, shippo)
    assert "Shippo" in other and "nothing to pull" in other and "API at" not in other
    assert TOKEN not in page and "shippo_test_abc" not in page
    # The live region answers alone.
    region = await client.get("/connections", headers={"X-Live-Block": "connections"})
    assert region.status_code == 200 and f'id="c-{shopify}"' in region.text and "<html" not in region.text


# -- actions -----------------------------------------------------------------------------------------------------


async def test_pause_resume_and_sync_now_change_the_connection_and_queue_a_pull(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    ident = await add_connection(client, acme)
    csrf = await signed_in(client, hub, acme)

    synced = await client.post(f"/connections/{ident}/sync", data={"csrf_token": csrf})
    assert synced.status_code == 303
    assert (
        synced.headers["location"].startswith("/connections?notice=")
        and f"#c-{ident}" in synced.headers["location"]
    )
    [job] = await sync_jobs(hub, ident)
    assert job.status == "queued" and job.payload["trigger"] == "manual"
    again = await client.post(f"/connections/{ident}/sync", data={"csrf_token": csrf})
    assert "already%20waiting" in again.headers["location"]
    assert len(await sync_jobs(hub, ident)) == 1
    assert "A pull is waiting or running" in row_of((await client.get("/connections")).text, ident)

    paused = await client.post(f"/connections/{ident}/pause", data={"csrf_token": csrf})
    assert paused.status_code == 303
    assert (await connection(hub, ident)).status == "paused"  # type: ignore[union-attr]
    page = await client.get(paused.headers["location"])
    assert "is paused" in page.text and "Resume" in row_of(page.text, ident)
    refused = await client.post(f"/connections/{ident}/sync", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "resume or re-authorise it first" in refused.text
    again = await client.post(f"/connections/{ident}/pause", data={"csrf_token": csrf})
    assert again.status_code == 409 and "resume or re-authorise it on Connections" in again.text

    resumed = await client.post(f"/connections/{ident}/resume", data={"csrf_token": csrf})
    assert resumed.status_code == 303
    assert (await connection(hub, ident)).status == "active"  # type: ignore[union-attr]


async def test_a_connection_that_needs_reauthorisation_is_not_resumed_by_the_panel(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    ident = await add_connection(client, acme, "shippo")
    await set_status(hub, ident, "needs_reauth", "Shippo refused the API token")
    csrf = await signed_in(client, hub, acme)
    answer = await client.post(f"/connections/{ident}/resume", data={"csrf_token": csrf})
    assert answer.status_code == 409 and "authorised again first" in answer.text
    assert (await connection(hub, ident)).status == "needs_reauth"  # type: ignore[union-attr]
    row = row_of((await client.get("/connections")).text, ident)
    assert "crossdock connections update" in row  # what to do, for a connector without OAuth


async def test_every_action_is_refused_without_the_csrf_token(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    ident = await add_connection(client, acme)
    paused = await add_connection(client, acme, name="Paused shop")
    await set_status(hub, paused, "paused")
    await signed_in(client, hub, acme)
    for path in (
        f"/connections/{ident}/pause",
        f"/connections/{ident}/sync",
        f"/connections/{ident}/disconnect",
        f"/connections/{paused}/resume",
    ):
        answer = await client.post(path, data={"csrf_token": "forged"})
        assert answer.status_code == 403 and "Reload the page" in answer.text, path
    made = await client.post(
        "/connections/new/shippo", data={"name": "Forged", "secrets.api_token": "shippo_test_x"}
    )
    assert made.status_code == 403
    assert (await connection(hub, ident)).status == "active"  # type: ignore[union-attr]
    assert (await connection(hub, paused)).status == "paused"  # type: ignore[union-attr]
    assert await sync_jobs(hub, ident) == []
    async with hub.db.session() as session:
        assert len((await session.scalars(select(t.Connection))).all()) == 2


async def test_another_accounts_connection_is_neither_listed_nor_touched(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, globex: Tenant
) -> None:
    theirs = await add_connection(client, globex, name="Globex shop")
    csrf = await signed_in(client, hub, acme)
    page = await client.get("/connections")
    assert "Globex shop" not in page.text and theirs not in page.text
    for path in ("pause", "sync", "disconnect"):
        answer = await client.post(f"/connections/{theirs}/{path}", data={"csrf_token": csrf})
        assert answer.status_code == 404 and "Connection not found" in answer.text, path
    confirm = await client.get(f"/connections/{theirs}/disconnect")
    assert confirm.status_code == 404 and "Globex shop" not in confirm.text
    assert (await client.get("/connections/not-a-uuid/disconnect")).status_code == 404
    row = await connection(hub, theirs)
    assert row is not None and row.status == "active"
    assert await sync_jobs(hub, theirs) == []


# -- connecting with a token, disconnecting ----------------------------------------------------------------------


async def test_a_shop_connected_with_a_token_is_checked_subscribed_and_unsubscribed_on_disconnect(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, shop: tuple[str, Any]
) -> None:
    url, state = shop
    csrf = await signed_in(client, hub, acme)
    form = await client.get("/connections/new/shopify")
    assert form.status_code == 200 and 'name="secrets.access_token"' in form.text
    assert 'type="password"' in form.text

    made = await client.post(
        "/connections/new/shopify",
        data={
            "csrf_token": csrf,
            "name": "Panel shop",
            "base_url": url,
            "settings.shop": f"https://{SHOP.upper()}/",
            "secrets.access_token": TOKEN,
            "secrets.api_secret": "",
        },
    )
    assert made.status_code == 303, made.text
    async with hub.db.session() as session:
        [row] = (await session.scalars(select(t.Connection))).all()
    assert (row.name, row.settings, row.base_url, str(row.account_id)) == (
        "Panel shop",
        {"shop": SHOP},
        url,
        acme.id,
    )
    address = f"{hub.settings.public_url.rstrip('/')}/hooks/{row.id}"
    assert subscriptions(state) == [address] * 3
    page = await client.get(made.headers["location"])
    assert "Panel shop is connected" in page.text and "3 webhook subscription(s)" in page.text
    assert TOKEN not in page.text

    confirm = await client.get(f"/connections/{row.id}/disconnect")
    assert confirm.status_code == 200
    assert (
        "Disconnect Panel shop?" in confirm.text
        and "webhook subscriptions at Shopify are removed" in confirm.text
    )
    assert f'<form method="post" action="/connections/{row.id}/disconnect"' in confirm.text
    gone = await client.post(f"/connections/{row.id}/disconnect", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert subscriptions(state) == []
    assert await connection(hub, str(row.id)) is None
    after = await client.get(gone.headers["location"])
    assert "Panel shop is disconnected; removed 3 webhook subscription(s) at Shopify" in after.text


async def test_the_token_form_names_the_field_at_fault_and_never_echoes_a_secret(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, shop: tuple[str, Any]
) -> None:
    url, _ = shop
    csrf = await signed_in(client, hub, acme)
    secret = "shpat_do_not_echo_me_42"

    missing = await client.post(
        "/connections/new/shopify",
        data={"csrf_token": csrf, "name": "Kept name", "secrets.access_token": secret, "base_url": url},
    )
    assert missing.status_code == 422
    assert "Shop domain:" in missing.text and "required" in missing.text
    assert 'value="Kept name"' in missing.text and f'value="{url}"' in missing.text
    assert secret not in missing.text
    assert 'aria-invalid="true"' in missing.text

    bad_shop = await client.post(
        "/connections/new/shopify",
        data={"csrf_token": csrf, "settings.shop": "evil.example.com", "secrets.access_token": secret},
    )
    assert (
        bad_shop.status_code == 422
        and "Shop domain: must be the shop&#39;s myshopify.com domain" in bad_shop.text
    )
    assert 'value="evil.example.com"' in bad_shop.text and secret not in bad_shop.text

    bad_url = await client.post(
        "/connections/new/shippo",
        data={"csrf_token": csrf, "base_url": "ftp://files.example.com", "secrets.api_token": secret},
    )
    assert bad_url.status_code == 422 and "Base URL:" in bad_url.text and secret not in bad_url.text

    refused = await client.post(
        "/connections/new/shopify",
        data={
            "csrf_token": csrf,
            "settings.shop": SHOP,
            "base_url": url,
            "secrets.access_token": secret,
        },
    )
    assert refused.status_code == 422 and "Shopify refused the connection" in refused.text
    assert secret not in refused.text
    async with hub.db.session() as session:
        assert (await session.scalars(select(t.Connection))).all() == []
    assert (await client.get("/connections/new/nosuch")).status_code == 404


# -- OAuth -------------------------------------------------------------------------------------------------------


@pytest.fixture
def oauth_hub(hub: Hub, shop: tuple[str, Any]) -> Hub:
    url, _ = shop
    app = OAuthApp(
        client_id="panel-client",
        client_secret=SecretStr(APP_SECRET),
        authorize_url=f"{url}/admin/oauth/authorize",
        token_url=f"{url}/admin/oauth/access_token",
        api_base_url=url,
    )
    settings = hub.settings.model_copy(update={"oauth_apps": {"shopify": app}})
    return dataclasses.replace(hub, settings=settings)


@pytest.fixture
async def browser(oauth_hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(oauth_hub))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        yield client


def form_named(page: str, action: str) -> tuple[str, str]:
    """The method and the body of the form with this action."""
    found = re.search(rf'<form method="(\w+)" action="{re.escape(action)}"(.*?)</form>', page, re.S)
    assert found, f"no form to {action}"
    return found.group(1), found.group(2)


async def consent(url: str) -> str:
    """The shop owner installs the app on the sandbox's consent page: the redirect back to the hub."""
    async with httpx.AsyncClient(timeout=10) as remote:
        page = await remote.get(url)
        assert page.status_code == 200, page.text
        fields = {
            html.unescape(name): html.unescape(value)
            for name, value in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text)
        }
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert action is not None
        answer = await remote.post(urljoin(url, action.group(1)), data={**fields, "decision": "install"})
    assert answer.status_code == 302, answer.text
    return str(answer.headers["location"])


async def test_connect_with_shopify_goes_through_the_consent_page_and_back_to_connections(
    browser: httpx.AsyncClient, oauth_hub: Hub, acme: Tenant, shop: tuple[str, Any]
) -> None:
    url, _ = shop
    await signed_in(browser, oauth_hub, acme)
    page = (await browser.get("/connections")).text
    method, body = form_named(page, "/oauth/shopify/start")
    assert method == "get"
    assert '<label for="oauth-shopify-shop">Shop domain</label>' in body
    assert 'name="return_to" value="/connections"' in body and 'name="name"' in body
    assert "oauth_apps.shopify" not in page  # configured: no sentence about it
    assert "oauth_apps.ebay.client_id" in page  # eBay has no app in this hub

    start = await browser.get(
        "/oauth/shopify/start", params={"shop": SHOP, "name": "Via OAuth", "return_to": "/connections"}
    )
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    assert authorize.startswith(f"{url}/admin/oauth/authorize?")

    back = await consent(authorize)
    parts = urlsplit(back)
    done = await browser.get(f"{parts.path}?{parts.query}")
    assert done.status_code == 303 and done.headers["location"].startswith("/connections?")
    listed = await browser.get(done.headers["location"])
    assert "Shopify is connected." in listed.text and "Via OAuth" in listed.text
    async with oauth_hub.db.session() as session:
        [row] = (await session.scalars(select(t.Connection))).all()

    # A connection whose token stopped working is re-authorised through the same flow.
    await set_status(oauth_hub, str(row.id), "needs_reauth", "Shopify refused the access token")
    row_html = row_of((await browser.get("/connections")).text, str(row.id))
    link = f"/oauth/shopify/start?connection_id={row.id}&amp;return_to=/connections"
    assert f'href="{link}"' in row_html and "Re-authorise" in row_html
    again = await browser.get(html.unescape(link))
    assert again.status_code == 302 and again.headers["location"].startswith(f"{url}/admin/oauth/authorize?")


async def test_a_refused_connect_from_the_panel_is_a_page_saying_what_to_do(
    browser: httpx.AsyncClient, oauth_hub: Hub, acme: Tenant
) -> None:
    await signed_in(browser, oauth_hub, acme)
    refused = await browser.get(
        "/oauth/shopify/start",
        params={"shop": "not a shop", "return_to": "/connections"},
        headers={"Accept": "text/html"},
    )
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("text/html")
    assert (
        "myshopify.com" in refused.text and '<a href="/connections">Back to Connections</a>' in refused.text
    )
    # A script asking for JSON still gets the problem document.
    as_json = await browser.get("/oauth/shopify/start", params={"shop": "not a shop", "format": "json"})
    assert as_json.status_code == 422 and as_json.headers["content-type"] == "application/problem+json"


async def test_connect_from_a_browser_whose_session_ended_leads_to_sign_in_and_back(
    browser: httpx.AsyncClient,
) -> None:
    answer = await browser.get(
        "/oauth/shopify/start",
        params={"shop": SHOP, "return_to": "/connections"},
        headers={"Accept": "text/html"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=/oauth/shopify/start%3Fshop%3D")

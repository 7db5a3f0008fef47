"""OAuth flows against the real sandboxes: a browser (httpx with cookies, redirects followed by hand) starts at
the hub, consents on the sandbox's page, and comes back to the callback, which stores the connection with its
credentials in the vault. Every refused callback stores nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update

from crossdock.api.app import create_app
from crossdock.hub import Hub
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig, run_in_thread
from crossdock.security.oauth import OAuthApp
from crossdock.security.signatures import sign_shopify_query
from crossdock.store import tables as t
from crossdock.store.repo import Tenant as Repo
from crossdock.store.types import utcnow
from tests.support import Tenant

PUBLIC = "http://127.0.0.1:8000"  # the hub's default public_url: callbacks are built on it
SHOP = "acme-store.myshopify.com"
SHOPIFY_SECRET = "shpss_oauth-test-secret"
EBAY_SECRET = "PRD-ebay-cert-secret"
AMAZON_SECRET = "amzn1.oa2-cs.v1.lwa-secret"
RU_NAME = "Acme_Hub-AcmeHub-crossd-abcdef"
SELLER = "A3SANDBOXSELLER"


@pytest.fixture(scope="module")
def shopify_url() -> Iterator[str]:
    config = SandboxConfig(client_id="shp-client", client_secret=SHOPIFY_SECRET, extra={"shop": SHOP})
    with run_in_thread(create_sandbox_app("shopify", config)) as url:
        yield url


@pytest.fixture(scope="module")
def ebay_url() -> Iterator[str]:
    config = SandboxConfig(
        client_id="Acme-Hub-PRD-client",
        client_secret=EBAY_SECRET,
        extra={"ru_name": RU_NAME, "accept_url": f"{PUBLIC}/oauth/ebay/callback"},
    )
    with run_in_thread(create_sandbox_app("ebay", config)) as url:
        yield url


@pytest.fixture(scope="module")
def amazon_url() -> Iterator[str]:
    config = SandboxConfig(
        client_id="amzn1.application-oa2-client.test",
        client_secret=AMAZON_SECRET,
        extra={"application_id": "amzn1.sp.solution.test", "selling_partner_id": SELLER},
    )
    with run_in_thread(create_sandbox_app("amazon", config)) as url:
        yield url


def apps(shopify_url: str, ebay_url: str, amazon_url: str) -> dict[str, OAuthApp]:
    return {
        "shopify": OAuthApp(
            client_id="shp-client",
            client_secret=SecretStr(SHOPIFY_SECRET),
            authorize_url=f"{shopify_url}/admin/oauth/authorize",
            token_url=f"{shopify_url}/admin/oauth/access_token",
            api_base_url=shopify_url,
        ),
        "ebay": OAuthApp(
            client_id="Acme-Hub-PRD-client",
            client_secret=SecretStr(EBAY_SECRET),
            ru_name=RU_NAME,
            authorize_url=f"{ebay_url}/oauth2/authorize",
            token_url=f"{ebay_url}/identity/v1/oauth2/token",
            api_base_url=ebay_url,
        ),
        "amazon": OAuthApp(
            client_id="amzn1.application-oa2-client.test",
            client_secret=SecretStr(AMAZON_SECRET),
            application_id="amzn1.sp.solution.test",
            draft=True,
            marketplace_ids=["ATVPDKIKX0DER"],
            authorize_url=f"{amazon_url}/apps/authorize/consent",
            token_url=f"{amazon_url}/auth/o2/token",
            api_base_url=amazon_url,
        ),
    }


@pytest.fixture
def oauth_hub(hub: Hub, shopify_url: str, ebay_url: str, amazon_url: str) -> Hub:
    settings = hub.settings.model_copy(update={"oauth_apps": apps(shopify_url, ebay_url, amazon_url)})
    return dataclasses.replace(hub, settings=settings)


def _hub_client(hub: Hub) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hub.test")


@pytest.fixture
async def browser(oauth_hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    """The user's browser as the hub sees it: it keeps the cookies the hub sets."""
    async with _hub_client(oauth_hub) as client:
        yield client


@pytest.fixture
async def remote() -> AsyncIterator[httpx.AsyncClient]:
    """The same browser on the remote's consent pages."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def start(browser: httpx.AsyncClient, who: Tenant, connector: str, **params: str) -> str:
    r = await browser.get(f"/oauth/{connector}/start", params=params, headers=who.headers)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def consent(remote: httpx.AsyncClient, authorize_url: str, decision: str) -> str:
    """GET the consent page, POST its form with the button pressed: the remote's redirect to our callback."""
    page = await remote.get(authorize_url)
    assert page.status_code == 200, page.text
    # The sandboxes' pages quote their attributes with " or with '.
    form = {
        html.unescape(name): html.unescape(value)
        for _, name, _, value in re.findall(
            r"""<input type=["']hidden["'] name=(["'])(.*?)\1 value=(["'])(.*?)\3>""", page.text
        )
    }
    action = re.search(r"""<form method=["']post["'] action=["']([^"']+)["']""", page.text)
    assert action is not None
    answer = await remote.post(urljoin(authorize_url, action.group(1)), data={**form, "decision": decision})
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(PUBLIC), location
    return location


def local(url: str) -> str:
    """The callback URL as the hub serves it (path and query)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def connections(hub: Hub) -> list[t.Connection]:
    async with hub.db.transaction() as session:
        return list((await session.scalars(select(t.Connection))).all())


async def secrets_of(hub: Hub, who: Tenant, connection_id: str) -> dict[str, str]:
    async with hub.db.transaction() as session:
        return await Repo(session, uuid.UUID(who.id)).get_secrets(uuid.UUID(connection_id), hub.vault)


def assert_refused(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    detail = r.json()["detail"]
    for word in words:
        assert word in detail, detail


# -- happy paths ---------------------------------------------------------------------------------------------


async def test_shopify_install_stores_the_shop_token_in_the_vault_and_answers_no_secret(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant, shopify_url: str
) -> None:
    authorize = await start(browser, acme, "shopify", shop=SHOP, name="Acme store")
    sent = query_of(authorize)
    assert authorize.startswith(f"{shopify_url}/admin/oauth/authorize?")
    assert sent["client_id"] == "shp-client"
    assert sent["redirect_uri"] == f"{PUBLIC}/oauth/shopify/callback"
    assert "read_orders" in sent["scope"].split(",")

    back = await consent(remote, authorize, "install")
    code = query_of(back)["code"]
    r = await browser.get(local(back))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "connected" and body["connector"] == "shopify"
    assert SHOP in body["reached"]  # the new token was proven with a call to the shop

    [row] = await connections(oauth_hub)
    assert str(row.id) == body["connection_id"]
    assert (row.name, row.settings, row.base_url) == ("Acme store", {"shop": SHOP}, shopify_url)
    stored = await secrets_of(oauth_hub, acme, body["connection_id"])
    assert stored["access_token"].startswith("shpua_")
    assert stored["api_secret"] == SHOPIFY_SECRET  # Shopify signs the shop's webhooks with the app's secret
    for secret in (stored["access_token"], SHOPIFY_SECRET, code):
        assert secret not in r.text
    # The state nonce is stored hashed, never as sent.
    async with oauth_hub.db.transaction() as session:
        state_row = (await session.scalars(select(t.OAuthState))).one()
    assert state_row.state_hash != sent["state"] and state_row.used_at is not None


async def test_ebay_consent_stores_the_refresh_token_in_the_vault(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant, ebay_url: str
) -> None:
    authorize = await start(browser, acme, "ebay")
    sent = query_of(authorize)
    # eBay's redirect_uri is the RuName, and its scopes are space separated.
    assert (sent["redirect_uri"], sent["response_type"]) == (RU_NAME, "code")
    assert "%20" in authorize or " " not in sent["scope"]

    back = await consent(remote, authorize, "agree")
    r = await browser.get(local(back))
    assert r.status_code == 200, r.text
    connection_id = r.json()["connection_id"]
    assert r.json()["reached"] not in ("", "not checked")

    [row] = await connections(oauth_hub)
    assert row.connector == "ebay" and row.base_url == ebay_url
    assert row.settings == {
        "client_id": "Acme-Hub-PRD-client",
        "ru_name": RU_NAME,
        "scopes": "https://api.ebay.com/oauth/api_scope/sell.fulfillment",
    }
    stored = await secrets_of(oauth_hub, acme, connection_id)
    assert stored["client_secret"] == EBAY_SECRET
    assert stored["refresh_token"]
    # The access token the exchange gave is kept with its expiry, so the runtime's first call needs no refresh.
    assert stored["access_token"]
    expires = datetime.fromisoformat(stored["access_token_expires_at"])
    assert timedelta(minutes=100) < expires - datetime.now(UTC) <= timedelta(hours=2)
    for secret in stored.values():
        assert secret not in r.text


async def test_amazon_website_authorization_stores_the_refresh_token_in_the_vault(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant, amazon_url: str
) -> None:
    # A script asks for the URL as JSON; the browser-binding cookie comes with it all the same.
    r = await browser.get("/oauth/amazon/start?format=json", headers=acme.headers)
    assert r.status_code == 200, r.text
    authorize = r.json()["authorization_url"]
    assert any(name.startswith("crossdock_oauth_") for name in browser.cookies)
    sent = query_of(authorize)
    assert sent["application_id"] == "amzn1.sp.solution.test"
    assert sent["version"] == "beta"  # the app is in draft (SP-API authorization errors, MD1000)

    back = await consent(remote, authorize, "confirm")
    assert {"spapi_oauth_code", "selling_partner_id", "state"} <= set(query_of(back))
    r = await browser.get(local(back), headers={"Accept": "text/html"})
    assert r.status_code == 200, r.text
    assert "Amazon Selling Partner API connected" in r.text

    [row] = await connections(oauth_hub)
    assert row.name == f"Amazon {SELLER}" and row.base_url == amazon_url
    assert row.settings["client_id"] == "amzn1.application-oa2-client.test"
    assert row.settings["marketplace_ids"] == "ATVPDKIKX0DER"
    assert row.settings["lwa_url"] == f"{amazon_url}/auth/o2/token"
    stored = await secrets_of(oauth_hub, acme, str(row.id))
    assert stored["refresh_token"].startswith("Atzr|")
    assert stored["client_secret"] == AMAZON_SECRET
    assert stored["refresh_token"] not in r.text


async def test_return_to_gets_the_browser_back_with_the_connection_id(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant
) -> None:
    authorize = await start(browser, acme, "ebay", return_to="/connections?tab=channels")
    r = await browser.get(local(await consent(remote, authorize, "agree")))
    assert r.status_code == 303, r.text
    [row] = await connections(oauth_hub)
    assert r.headers["location"] == f"/connections?tab=channels&connection_id={row.id}&connected=ebay"


async def test_reauthorising_replaces_the_token_of_the_same_connection(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant
) -> None:
    first = await browser.get(
        local(await consent(remote, await start(browser, acme, "shopify", shop=SHOP), "install"))
    )
    connection_id = first.json()["connection_id"]
    old = (await secrets_of(oauth_hub, acme, connection_id))["access_token"]

    # The shop comes from the connection itself.
    authorize = await start(browser, acme, "shopify", connection_id=connection_id)
    r = await browser.get(local(await consent(remote, authorize, "install")))
    assert r.status_code == 200, r.text
    assert r.json()["connection_id"] == connection_id
    assert len(await connections(oauth_hub)) == 1
    assert (await secrets_of(oauth_hub, acme, connection_id))["access_token"] not in ("", old)


# -- refusals ------------------------------------------------------------------------------------------------


async def test_a_forged_shopify_hmac_is_refused_and_spends_nothing(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant
) -> None:
    back = await consent(remote, await start(browser, acme, "shopify", shop=SHOP), "install")
    forged = back.replace("code=", "code=0", 1)  # same hmac, other code
    assert_refused(await browser.get(local(forged)), 403, "hmac", "start")
    assert await connections(oauth_hub) == []
    # The genuine callback still works: the forgery did not use the state up.
    assert (await browser.get(local(back))).status_code == 200


async def _signed_callback(authorize: str, **overrides: str) -> str:
    params = {
        "code": "0123456789abcdef",
        "shop": SHOP,
        "state": query_of(authorize)["state"],
        "timestamp": str(int(time.time())),
    }
    params.update(overrides)
    signed = sign_shopify_query(params, SHOPIFY_SECRET)
    return "/oauth/shopify/callback?" + str(httpx.QueryParams(signed))


async def test_a_shopify_callback_older_than_a_day_is_refused(
    oauth_hub: Hub, browser: httpx.AsyncClient, acme: Tenant
) -> None:
    authorize = await start(browser, acme, "shopify", shop=SHOP)
    old = str(int(time.time() - 25 * 3600))
    assert_refused(await browser.get(await _signed_callback(authorize, timestamp=old)), 400, "older than")
    assert await connections(oauth_hub) == []


async def test_a_callback_for_another_shop_is_refused(
    oauth_hub: Hub, browser: httpx.AsyncClient, acme: Tenant
) -> None:
    authorize = await start(browser, acme, "shopify", shop=SHOP)
    r = await browser.get(await _signed_callback(authorize, shop="other-store.myshopify.com"))
    assert_refused(r, 400, "other-store.myshopify.com", SHOP)
    assert await connections(oauth_hub) == []


async def test_a_shop_that_is_not_a_shop_domain_is_refused(
    oauth_hub: Hub, browser: httpx.AsyncClient, acme: Tenant
) -> None:
    r = await browser.get("/oauth/shopify/start", params={"shop": "evil.example.com"}, headers=acme.headers)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "shop"

    authorize = await start(browser, acme, "shopify", shop=SHOP)
    r = await browser.get(await _signed_callback(authorize, shop="evil.example.com"))
    assert_refused(r, 400, "not a shop domain")
    assert await connections(oauth_hub) == []


async def test_a_replayed_callback_is_refused_even_when_it_races_the_first(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant
) -> None:
    back = local(await consent(remote, await start(browser, acme, "amazon"), "confirm"))
    first, second = await asyncio.gather(browser.get(back), browser.get(back))
    assert sorted([first.status_code, second.status_code]) == [200, 400]
    refused = first if first.status_code == 400 else second
    assert "already completed" in refused.json()["detail"]
    assert len(await connections(oauth_hub)) == 1

    later = await browser.get(back)
    assert_refused(later, 400, "cannot be replayed", "/oauth/amazon/start")
    assert len(await connections(oauth_hub)) == 1


async def test_a_callback_from_another_browser_is_refused(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant
) -> None:
    authorize = await start(browser, acme, "ebay")
    back = local(await consent(remote, authorize, "agree"))
    async with _hub_client(oauth_hub) as stranger:
        assert_refused(await stranger.get(back), 403, "another browser")
        # A cookie of the right name with another value is no better.
        name = next(iter(browser.cookies.jar)).name
        stranger.cookies.set(name, "not-the-browser-secret", domain="hub.test", path="/oauth/ebay/callback")
        assert_refused(await stranger.get(back), 403, "another browser")
    assert await connections(oauth_hub) == []
    # The browser that started the flow can still finish it.
    assert (await browser.get(back)).status_code == 200


async def test_an_expired_or_unknown_state_is_refused(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant
) -> None:
    back = local(await consent(remote, await start(browser, acme, "ebay"), "agree"))
    async with oauth_hub.db.transaction() as session:
        await session.execute(update(t.OAuthState).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert_refused(await browser.get(back), 400, "expired", "/oauth/ebay/start")
    unknown = re.sub(r"state=[^&]+", "state=made-up", back)
    assert_refused(await browser.get(unknown), 400, "unknown")
    assert_refused(await browser.get("/oauth/ebay/callback?code=abc"), 400, "no state")
    assert await connections(oauth_hub) == []


async def test_declining_at_the_remote_says_so_and_stores_nothing(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant
) -> None:
    back = await consent(remote, await start(browser, acme, "ebay"), "deny")
    assert query_of(back)["error"] == "access_denied"
    assert_refused(await browser.get(local(back)), 400, "declined", "/oauth/ebay/start")
    back = await consent(remote, await start(browser, acme, "amazon"), "cancel")
    assert_refused(await browser.get(local(back)), 400, "declined at Amazon")
    assert await connections(oauth_hub) == []


async def test_a_connector_without_an_oauth_app_names_the_settings_to_set(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant, oauth_hub: Hub
) -> None:
    r = await client.get("/oauth/shopify/start", params={"shop": SHOP}, headers=acme.headers)
    assert_refused(
        r, 409, "oauth_apps.shopify.client_id", "oauth_apps.shopify.client_secret", "CROSSDOCK_OAUTH_APPS"
    )
    # An eBay app without its RuName cannot build eBay's consent URL.
    ebay = oauth_hub.settings.oauth_apps["ebay"].model_copy(update={"ru_name": None})
    settings = hub.settings.model_copy(update={"oauth_apps": {"ebay": ebay}})
    async with _hub_client(dataclasses.replace(hub, settings=settings)) as other:
        assert_refused(
            await other.get("/oauth/ebay/start", headers=acme.headers), 409, "oauth_apps.ebay.ru_name"
        )
    r = await client.get("/oauth/myparcelcom/start", headers=acme.headers)
    assert_refused(r, 404, "no OAuth flow")
    async with hub.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(t.OAuthState)) == 0


async def test_start_needs_an_api_token_and_a_path_of_this_hub_to_return_to(
    oauth_hub: Hub, browser: httpx.AsyncClient, acme: Tenant
) -> None:
    assert (await browser.get("/oauth/ebay/start")).status_code == 401
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "connections"):
        r = await browser.get("/oauth/ebay/start", params={"return_to": target}, headers=acme.headers)
        assert r.status_code == 422, (target, r.text)
        assert r.json()["errors"][0]["field"] == "return_to"
    async with oauth_hub.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(t.OAuthState)) == 0


async def test_the_browser_cookie_is_httponly_lax_and_scoped_to_the_callback(
    browser: httpx.AsyncClient, acme: Tenant
) -> None:
    r = await browser.get("/oauth/ebay/start", headers=acme.headers)
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/oauth/ebay/callback" in cookie
    assert "secure" not in cookie  # public_url is http here; https makes it Secure
    assert r.headers["cache-control"] == "no-store"


async def test_a_start_signed_by_shopify_must_verify(
    browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant, shopify_url: str
) -> None:
    """Opening the app from the Shopify admin sends Shopify's signed install query to the start URL."""
    install = await remote.get(
        f"{shopify_url}/_sandbox/install", params={"app_url": f"{PUBLIC}/oauth/shopify/start"}
    )
    signed = install.json()["url"]
    r = await browser.get(local(signed), headers=acme.headers)
    assert r.status_code == 302, r.text
    assert query_of(r.headers["location"])["redirect_uri"] == f"{PUBLIC}/oauth/shopify/callback"
    tampered = local(signed).replace(f"shop={SHOP}", "shop=other-store.myshopify.com")
    assert_refused(await browser.get(tampered, headers=acme.headers), 403, "hmac")


async def test_a_code_the_remote_refuses_stores_nothing_and_is_not_repeated_back(
    oauth_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant, amazon_url: str
) -> None:
    back = await consent(remote, await start(browser, acme, "amazon"), "confirm")
    code = query_of(back)["spapi_oauth_code"]
    # Someone else exchanged the code first (codes are single-use).
    spent = await remote.post(
        f"{amazon_url}/auth/o2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "amzn1.application-oa2-client.test",
            "client_secret": AMAZON_SECRET,
        },
    )
    assert spent.status_code == 200
    r = await browser.get(local(back))
    assert_refused(r, 400, "refused the authorisation code", "/oauth/amazon/start")
    assert code not in r.text and AMAZON_SECRET not in r.text
    assert await connections(oauth_hub) == []
    async with oauth_hub.db.transaction() as session:
        calls = (await session.scalars(select(t.RemoteCall))).all()
    assert [(c.operation, c.status) for c in calls] == [("oauth.token", 400)]
    assert all(code not in (c.url + (c.error or "")) for c in calls)

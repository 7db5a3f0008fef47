"""Shippo's partner OAuth against the Shippo sandbox: a browser starts at the hub, allows on the sandbox's consent
page (goshippo.com/oauth/authorize in production) and comes back to the callback registered with Shippo; the
hub exchanges the code (POST /oauth/access_token), proves the token on Shippo's API and keeps it in the vault."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import SecretStr

from crossdock.hub import Hub
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig, run_in_thread
from crossdock.security.oauth import OAuthApp
from tests.api.test_oauth import PUBLIC, _hub_client, connections, consent, local, query_of, secrets_of, start
from tests.support import Tenant

PARTNER_ID = "acme-hub-partner"
PARTNER_SECRET = "shippo-partner-secret-for-tests"
CALLBACK = f"{PUBLIC}/oauth/shippo/callback"


@pytest.fixture(scope="module")
def shippo_url() -> Iterator[str]:
    # The callback URL is registered with Shippo when the partner app is made; the consent URL names none.
    config = SandboxConfig(
        client_id=PARTNER_ID, client_secret=PARTNER_SECRET, extra={"oauth_redirect_uri": CALLBACK}
    )
    with run_in_thread(create_sandbox_app("shippo", config)) as url:
        yield url


@pytest.fixture
def shippo_hub(hub: Hub, shippo_url: str) -> Hub:
    app = OAuthApp(
        client_id=PARTNER_ID,
        client_secret=SecretStr(PARTNER_SECRET),
        authorize_url=f"{shippo_url}/oauth/authorize",
        token_url=f"{shippo_url}/oauth/access_token",
        api_base_url=shippo_url,
    )
    return dataclasses.replace(hub, settings=hub.settings.model_copy(update={"oauth_apps": {"shippo": app}}))


@pytest.fixture
async def browser(shippo_hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with _hub_client(shippo_hub) as client:
        yield client


@pytest.fixture
async def remote() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def test_allowing_stores_the_oauth_token_in_the_vault_and_proves_it_on_the_api(
    shippo_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant, shippo_url: str
) -> None:
    authorize = await start(browser, acme, "shippo")
    sent = query_of(authorize)
    # goshippo.com/docs/oauth: response_type, client_id, scope "*" and state; the redirect is registered.
    assert sent == {"response_type": "code", "client_id": PARTNER_ID, "scope": "*", "state": sent["state"]}
    assert len(sent["state"]) >= 32

    back = await consent(remote, authorize, "allow")
    assert back.startswith(f"{CALLBACK}?")  # the callback registered with Shippo
    assert query_of(back)["state"] == sent["state"] and query_of(back)["code"]
    r = await browser.get(local(back))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "connected" and body["connector"] == "shippo"
    # connect() checked the token on the sandbox's API (Authorization: Bearer oauth.…), which refuses others.
    assert body["reached"] not in ("", "not checked")

    [row] = await connections(shippo_hub)
    assert (row.connector, row.base_url, row.status, row.name) == ("shippo", shippo_url, "active", "Shippo")
    stored = await secrets_of(shippo_hub, acme, body["connection_id"])
    assert stored["api_token"].startswith("oauth.")
    assert len(stored["webhook_token"]) >= 24  # the connection takes Shippo's webhooks at once
    for secret in stored.values():
        assert secret not in r.text


async def test_denying_stores_nothing_and_says_so(
    shippo_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant
) -> None:
    back = await consent(remote, await start(browser, acme, "shippo"), "deny")
    assert query_of(back)["error"] == "access_denied"
    r = await browser.get(local(back))
    assert r.status_code == 400, r.text
    assert "declined at Shippo" in r.json()["detail"]
    assert await connections(shippo_hub) == []


async def test_authorising_again_replaces_the_token_and_keeps_the_webhook_token(
    shippo_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant
) -> None:
    first = await browser.get(local(await consent(remote, await start(browser, acme, "shippo"), "allow")))
    connection_id = first.json()["connection_id"]
    before = await secrets_of(shippo_hub, acme, connection_id)

    again = await start(browser, acme, "shippo", connection_id=connection_id)
    r = await browser.get(local(await consent(remote, again, "allow")))
    assert r.status_code == 200, r.text
    assert r.json()["connection_id"] == connection_id
    after = await secrets_of(shippo_hub, acme, connection_id)
    assert after["api_token"].startswith("oauth.") and after["api_token"] != before["api_token"]
    # The hook URL registered in Shippo carries the webhook token: authorising again must not break it.
    assert after["webhook_token"] == before["webhook_token"]
    assert len(await connections(shippo_hub)) == 1


async def test_a_code_used_twice_is_refused_by_shippo_and_stores_nothing_more(
    shippo_hub: Hub, browser: httpx.AsyncClient, remote: httpx.AsyncClient, acme: Tenant, shippo_url: str
) -> None:
    back = await consent(remote, await start(browser, acme, "shippo"), "allow")
    code = query_of(back)["code"]
    assert (await browser.get(local(back))).status_code == 200
    # Shippo's token endpoint takes a code once (the sandbox answers invalid_grant to the second use).
    reused = await remote.post(
        f"{shippo_url}/oauth/access_token",
        data={
            "client_id": PARTNER_ID,
            "client_secret": PARTNER_SECRET,
            "code": code,
            "grant_type": "authorization_code",
        },
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # The hub's callback with the same state is refused before Shippo is asked again.
    replay = await browser.get(local(back))
    assert replay.status_code == 400, replay.text
    assert len(await connections(shippo_hub)) == 1

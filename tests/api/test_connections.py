import httpx

from tests.support import Tenant

SHOPIFY = {
    "connector": "shopify",
    "name": "Main shop",
    "settings": {"shop": "acme.myshopify.com"},
    "secrets": {"access_token": "shpat_0123456789abcdef", "api_secret": "whsec_zyx987"},
}


async def test_secrets_are_write_only(client: httpx.AsyncClient, acme: Tenant) -> None:
    created = await client.post("/api/v1/connections", json=SHOPIFY, headers=acme.headers)
    assert created.status_code == 201, created.text
    for response in (
        created,
        await client.get(f"/api/v1/connections/{created.json()['id']}", headers=acme.headers),
        await client.get("/api/v1/connections", headers=acme.headers),
    ):
        assert "shpat_0123456789abcdef" not in response.text
        assert "whsec_zyx987" not in response.text
    assert created.json()["secret_names"] == ["access_token", "api_secret"]


async def test_update_replaces_and_removes_secrets(client: httpx.AsyncClient, acme: Tenant) -> None:
    conn = (await client.post("/api/v1/connections", json=SHOPIFY, headers=acme.headers)).json()
    r = await client.patch(
        f"/api/v1/connections/{conn['id']}",
        json={
            "name": "Renamed",
            "secrets": {"api_secret": None, "access_token": "shpat_new"},
            "status": "paused",
        },
        headers=acme.headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["status"], body["secret_names"]) == ("Renamed", "paused", ["access_token"])
    assert "shpat_new" not in r.text


async def test_unknown_connector_setting_or_secret_is_named(client: httpx.AsyncClient, acme: Tenant) -> None:
    cases = [
        (SHOPIFY | {"connector": "myspace"}, "connector"),
        (SHOPIFY | {"settings": {}}, "settings.shop"),
        (SHOPIFY | {"settings": {"shop": "a.myshopify.com", "colour": "red"}}, "settings.colour"),
        (SHOPIFY | {"secrets": {}}, "secrets.access_token"),
        (SHOPIFY | {"secrets": {"access_token": "x", "password": "y"}}, "secrets.password"),
        (SHOPIFY | {"base_url": "ftp://files.example.com"}, "base_url"),
    ]
    for body, field in cases:
        r = await client.post("/api/v1/connections", json=body, headers=acme.headers)
        assert r.status_code == 422, (field, r.text)
        assert r.json()["errors"][0]["field"] == field
    assert (await client.get("/api/v1/connections", headers=acme.headers)).json()["items"] == []


async def test_private_base_url_is_refused_unless_allowed(
    client: httpx.AsyncClient, acme: Tenant, hub
) -> None:  # type: ignore[no-untyped-def]
    hub.settings.allow_private_urls = False
    for url in (
        "http://127.0.0.1:9000",
        "http://10.0.0.5/",
        "http://169.254.169.254/latest",
        "http://localhost:8080",
    ):
        r = await client.post("/api/v1/connections", json=SHOPIFY | {"base_url": url}, headers=acme.headers)
        assert r.status_code == 422, url
        assert r.json()["errors"][0]["field"] == "base_url"
        assert "CROSSDOCK_ALLOW_PRIVATE_URLS" in r.json()["detail"]
    hub.settings.allow_private_urls = True
    r = await client.post(
        "/api/v1/connections", json=SHOPIFY | {"base_url": "http://127.0.0.1:9000"}, headers=acme.headers
    )
    assert r.status_code == 201


async def test_delete_connection(client: httpx.AsyncClient, acme: Tenant) -> None:
    conn = (await client.post("/api/v1/connections", json=SHOPIFY, headers=acme.headers)).json()
    assert (await client.delete(f"/api/v1/connections/{conn['id']}", headers=acme.headers)).status_code == 204
    assert (await client.get(f"/api/v1/connections/{conn['id']}", headers=acme.headers)).status_code == 404

"""The shipping policy through the API: read, replace as a whole with the version it was read at, refused with
409 when someone saved meanwhile or when a rule names a connection that is not one of the account's shipping
connections, 422 naming the field for a rule that does not make sense."""

from __future__ import annotations

import httpx

from tests.support import Tenant


async def _connection(
    client: httpx.AsyncClient, owner: Tenant, connector: str, secrets: dict[str, str]
) -> str:
    body: dict[str, object] = {"connector": connector, "name": connector, "secrets": secrets}
    if connector == "shopify":
        body["settings"] = {"shop": "policy-test.myshopify.com"}
    r = await client.post("/api/v1/connections", json=body, headers=owner.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


POLICY = {
    "ship_from": {
        "company": "Acme",
        "line1": "Hafenstr. 1",
        "city": "Hamburg",
        "postal_code": "20457",
        "country": "DE",
    },
    "packing": {
        "packaging_weight": {"value": 120, "unit": "g"},
        "max_weight": {"value": "31.5", "unit": "kg"},
    },
    "rules": [
        {"match": {"countries": ["DE"], "max_weight": {"value": 2, "unit": "kg"}}, "strategy": "cheapest"},
        {"match": {"sku_tags": ["fragile"]}, "strategy": "fixed", "service": "ups:standard"},
    ],
    "fallback": {"strategy": "fastest"},
    "auto_ship": True,
}


async def test_read_replace_and_read_again(client: httpx.AsyncClient, acme: Tenant) -> None:
    empty = (await client.get("/api/v1/shipping/policy", headers=acme.headers)).json()
    assert empty["version"] == 0 and empty["policy"]["rules"] == [] and empty["policy"]["auto_ship"] is False

    saved = await client.put(
        "/api/v1/shipping/policy", json={"version": 0, "policy": POLICY}, headers=acme.headers
    )

    assert saved.status_code == 200, saved.text
    read = (await client.get("/api/v1/shipping/policy", headers=acme.headers)).json()
    assert read["version"] == 1
    assert read["policy"]["rules"][0]["match"]["countries"] == ["DE"]
    assert read["policy"]["rules"][1]["service"] == "ups:standard"
    assert read["policy"]["fallback"]["strategy"] == "fastest"
    assert read["policy"]["ship_from"]["city"] == "Hamburg"


async def test_an_edit_made_on_an_old_version_is_refused(client: httpx.AsyncClient, acme: Tenant) -> None:
    await client.put("/api/v1/shipping/policy", json={"version": 0, "policy": POLICY}, headers=acme.headers)
    second = await client.put(
        "/api/v1/shipping/policy", json={"version": 1, "policy": POLICY}, headers=acme.headers
    )
    assert second.json()["version"] == 2

    stale = await client.put(
        "/api/v1/shipping/policy", json={"version": 1, "policy": {"auto_ship": False}}, headers=acme.headers
    )
    first_again = await client.put(
        "/api/v1/shipping/policy", json={"version": 0, "policy": {"auto_ship": False}}, headers=acme.headers
    )

    for refused in (stale, first_again):
        assert refused.status_code == 409
        problem = refused.json()
        assert problem["errors"][0]["field"] == "version" and "load it again" in problem["detail"]
    assert (await client.get("/api/v1/shipping/policy", headers=acme.headers)).json()["policy"][
        "auto_ship"
    ] is True


async def test_rules_name_only_the_accounts_shipping_connections(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    shippo = await _connection(client, acme, "shippo", {"api_token": "shippo_test_policy"})
    shop = await _connection(client, acme, "shopify", {"access_token": "shpat_policy"})
    theirs = await _connection(client, globex, "shippo", {"api_token": "shippo_test_other"})

    ok = await client.put(
        "/api/v1/shipping/policy",
        json={
            "version": 0,
            "policy": {"rules": [{"connection_id": shippo}], "fallback": {"connection_id": shippo}},
        },
        headers=acme.headers,
    )
    assert ok.status_code == 200, ok.text
    for connection_id, words in ((shop, "which does not ship"), (theirs, "does not exist in this account")):
        refused = await client.put(
            "/api/v1/shipping/policy",
            json={
                "version": 1,
                "policy": {"rules": [{"connection_id": shippo}, {"connection_id": connection_id}]},
            },
            headers=acme.headers,
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["errors"][0]["field"] == "rules[1].connection_id"
        assert words in refused.json()["detail"]


async def test_a_rule_that_makes_no_sense_is_422_naming_the_field(
    client: httpx.AsyncClient, acme: Tenant
) -> None:
    r = await client.put(
        "/api/v1/shipping/policy",
        json={"version": 0, "policy": {"rules": [{"strategy": "cheapest"}, {"strategy": "fixed"}]}},
        headers=acme.headers,
    )
    assert r.status_code == 422
    problem = r.json()
    assert any(
        "rules" in (e.get("field") or "") and "1" in (e.get("field") or "") for e in problem["errors"]
    ), problem
    assert "carrier:service_code" in r.text


async def test_a_version_beyond_what_is_stored_is_422(client: httpx.AsyncClient, acme: Tenant) -> None:
    # Found by schemathesis (tests/security/test_openapi_fuzz.py): 2**63 failed in the SQLite driver with a 500.
    response = await client.put(
        "/api/v1/shipping/policy", json={"version": 2**63, "policy": POLICY}, headers=acme.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "version"
    # And 2**31 - 1, found by its long run: the edit stores the version after it, which PostgreSQL's INTEGER
    # cannot hold (a 500 from asyncpg).
    response = await client.put(
        "/api/v1/shipping/policy", json={"version": 2**31 - 1, "policy": POLICY}, headers=acme.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "version"
    highest = await client.put(
        "/api/v1/shipping/policy", json={"version": 2**31 - 2, "policy": POLICY}, headers=acme.headers
    )
    assert highest.status_code == 409, highest.text  # valid, but no such version was saved

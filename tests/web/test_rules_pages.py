"""The panel's Shipping rules page: the stored policy in words; edits saved through the API's own model and save
(what GET /api/v1/shipping/policy then returns), refused edits named on their form with nothing saved; rules
added, moved and removed; the fallback and settings; "try it" against a Shippo sandbox with the rules' own
explanation and the connections left out; CSRF on every form; and another account's policy and connections out
of reach."""

from __future__ import annotations

import html
from contextlib import ExitStack
from typing import Any

import httpx

from crossdock.hub import Hub
from tests.flows.test_rating import set_status, shippo_connection, shippo_sandbox
from tests.support import Tenant
from tests.web.support import signed_in

API = "/api/v1/shipping/policy"
BOX = {"length": {"value": "30", "unit": "cm"}, "width": {"value": "20", "unit": "cm"},
       "height": {"value": "10", "unit": "cm"}}  # fmt: skip


async def shipping_connection(client: httpx.AsyncClient, owner: Tenant, name: str) -> str:
    made = await client.post(
        "/api/v1/connections",
        json={"connector": "shippo", "name": name, "secrets": {"api_token": "shippo_test_x"}},
        headers=owner.headers,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def put_policy(
    client: httpx.AsyncClient, owner: Tenant, policy: dict[str, Any], version: int = 0
) -> None:
    saved = await client.put(API, json={"version": version, "policy": policy}, headers=owner.headers)
    assert saved.status_code == 200, saved.text


async def stored(client: httpx.AsyncClient, owner: Tenant) -> dict[str, Any]:
    answer = await client.get(API, headers=owner.headers)
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()
    return result


def two_rules(connection_id: str) -> dict[str, Any]:
    return {
        "packing": {"packaging_weight": {"value": "120", "unit": "g"}, "default_box": BOX},
        "rules": [
            {
                "name": "Germany, light",
                "match": {"countries": ["DE", "AT"], "max_weight": {"value": "2", "unit": "kg"}},
                "connection_id": connection_id,
                "strategy": "cheapest",
            },
            {"match": {"sku_tags": ["fragile"]}, "strategy": "fixed", "service": "ups:standard"},
        ],
        "fallback": {"strategy": "fastest"},
        "auto_ship": True,
    }


def rule_form(csrf: str, version: int, **fields: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf,
        "version": str(version),
        "name": "",
        "countries": "",
        "min_weight_value": "",
        "min_weight_unit": "kg",
        "max_weight_value": "",
        "max_weight_unit": "kg",
        "min_value": "",
        "max_value": "",
        "currency": "",
        "sku_tags": "",
        "strategy": "cheapest",
        "connection_id": "",
        "service": "",
    }
    return form | fields


def text(page: httpx.Response) -> str:
    return html.unescape(page.text)


async def test_the_stored_policy_is_shown_in_words(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    east = await shipping_connection(client, acme, "Shippo East")
    await put_policy(client, acme, two_rules(east))
    await signed_in(client, hub, acme)
    page = await client.get("/rules")
    assert page.status_code == 200
    words = text(page)
    assert "Rule 1: Germany, light" in words
    assert "Germany (DE), Austria (AT)" in words and "under 2 kg" in words
    assert "the cheapest service" in words and "Shippo East" in words
    assert "Rule 2" in words and "fragile" in words and "the fixed service ups:standard" in words
    assert "any shipping connection" in words  # rule 2 and the fallback use any
    assert "the fastest service (fewest days in transit, then the lower price)" in words
    assert "yes, when an order placed within the last 7 days" in words
    assert "120 g added to every parcel" in words and "30 cm" in words and "10 cm" in words
    assert 'aria-current="page">Shipping rules' in page.text
    assert f'<option value="{east}">Shippo East (shippo)</option>' in page.text
    assert f'<option value="{east}" selected>Shippo East (shippo)</option>' in page.text  # rule 1's form


async def test_an_empty_policy_says_what_is_missing(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    words = text(await client.get("/rules"))
    assert "No shipping connections yet" in words and 'href="/connections"' in words
    assert "No rules yet" in words and "No fallback" in words
    assert "no, only when someone asks" in words


async def test_a_valid_edit_is_what_the_api_then_returns(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    east = await shipping_connection(client, acme, "Shippo East")
    await put_policy(client, acme, two_rules(east))
    csrf = await signed_in(client, hub, acme)
    fields = rule_form(
        csrf,
        1,
        name="Fragile to the Alps",
        countries="ch, at",
        min_weight_value="500",
        min_weight_unit="g",
        max_weight_value="5",
        max_value="500",
        currency="chf",
        sku_tags="fragile, glass",
        strategy="fixed",
        service="ups:express",
        connection_id=east,
    )
    saved = await client.post("/rules/rule/2", data=fields)
    assert saved.status_code == 303 and saved.headers["location"].startswith("/rules?notice=")
    after = await stored(client, acme)
    assert after["version"] == 2
    assert after["policy"]["rules"][1] == {
        "name": "Fragile to the Alps",
        "match": {
            "countries": ["CH", "AT"],
            "min_weight": {"value": "500", "unit": "g"},
            "max_weight": {"value": "5", "unit": "kg"},
            "min_value": None,
            "max_value": {"amount": "500.00", "currency": "CHF"},
            "sku_tags": ["fragile", "glass"],
        },
        "connection_id": east,
        "strategy": "fixed",
        "service": "ups:express",
    }
    assert after["policy"]["rules"][0]["name"] == "Germany, light"  # the others untouched
    assert after["policy"]["ship_from"] is None and after["policy"]["fallback"] == {
        "name": None,
        "match": {
            "countries": [],
            "min_weight": None,
            "max_weight": None,
            "min_value": None,
            "max_value": None,
            "sku_tags": [],
        },
        "connection_id": None,
        "strategy": "fastest",
        "service": None,
    }
    assert "Rule 2 saved." in text(await client.get(saved.headers["location"]))

    settings = await client.post(
        "/rules/settings",
        data={
            "csrf_token": csrf,
            "version": "2",
            "auto_ship_max_age_days": "3",
            "packaging_weight_value": "0.25",
            "packaging_weight_unit": "kg",
            "default_item_weight_value": "",
            "default_item_weight_unit": "g",
            "max_weight_value": "31.5",
            "max_weight_unit": "kg",
            "box_length": "",
            "box_width": "",
            "box_height": "",
            "box_unit": "cm",
        },
    )
    assert settings.status_code == 303
    policy = (await stored(client, acme))["policy"]
    assert policy["auto_ship"] is False and policy["auto_ship_max_age_days"] == 3
    assert policy["packing"] == {
        "packaging_weight": {"value": "0.25", "unit": "kg"},
        "default_box": None,
        "default_item_weight": None,
        "max_weight": {"value": "31.5", "unit": "kg"},
    }


async def test_an_invalid_edit_names_the_field_and_saves_nothing(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    east = await shipping_connection(client, acme, "Shippo East")
    await put_policy(client, acme, two_rules(east))
    before = await stored(client, acme)
    csrf = await signed_in(client, hub, acme)
    cases = [
        (
            "/rules/rule/2",
            rule_form(csrf, 1, min_weight_value="3", max_weight_value="2"),
            'rule 2: "weight up to" must be more than "weight from"',
        ),
        (
            "/rules/rule/1",
            rule_form(csrf, 1, countries="DE, XX"),
            "rule 1, destination countries: 'XX' is not",
        ),
        ("/rules/new", rule_form(csrf, 1, strategy="fixed"), "rule 3: a fixed rule needs service"),
        (
            "/rules/rule/1",
            rule_form(csrf, 1, min_weight_value="-1"),
            "rule 1, weight from: weight cannot be negative",
        ),
        (
            "/rules/settings",
            {
                "csrf_token": csrf,
                "version": "1",
                "auto_ship_max_age_days": "0",
                "packaging_weight_value": "1",
            },
            "only for orders placed within (days): Input should be greater than or equal to 1",
        ),
    ]
    for path, data, expected in cases:
        refused = await client.post(path, data=data)
        assert refused.status_code == 422, (path, refused.text[-500:])
        assert expected in text(refused), (expected, path)
        assert 'role="alert"' in refused.text
    # What was typed stays in the form that had the error.
    refused = await client.post("/rules/rule/2", data=rule_form(csrf, 1, name="Heavy", min_weight_value="3",
                                                                max_weight_value="2"))  # fmt: skip
    assert 'value="Heavy"' in refused.text and "<details open>" in refused.text
    assert await stored(client, acme) == before


async def test_a_rule_naming_another_accounts_connection_is_refused(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, globex: Tenant
) -> None:
    theirs = await shipping_connection(client, globex, "Globex Shippo")
    csrf = await signed_in(client, hub, acme)
    page = await client.get("/rules")
    assert "Globex Shippo" not in page.text and theirs not in page.text
    refused = await client.post("/rules/new", data=rule_form(csrf, 0, connection_id=theirs))
    assert refused.status_code == 409
    assert f"connection {theirs} does not exist in this account" in text(refused)
    assert (await stored(client, acme))["version"] == 0
    # B's policy is B's: A's page never shows it.
    await put_policy(client, globex, two_rules(theirs))
    assert "Germany, light" not in (await client.get("/rules")).text
    assert (
        await client.post("/rules/rule/1/remove", data={"csrf_token": csrf, "version": "1"})
    ).status_code == 404
    assert len((await stored(client, globex))["policy"]["rules"]) == 2


async def test_rules_are_added_moved_and_removed(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    csrf = await signed_in(client, hub, acme)
    for version, name in enumerate(("first", "second", "third")):
        added = await client.post("/rules/new", data=rule_form(csrf, version, name=name))
        assert added.status_code == 303, added.text
    names = [r["name"] for r in (await stored(client, acme))["policy"]["rules"]]
    assert names == ["first", "second", "third"]

    up = await client.post("/rules/rule/3/move", data={"csrf_token": csrf, "version": "3", "direction": "up"})
    assert up.status_code == 303 and "Rule 3 is now rule 2" in text(await client.get(up.headers["location"]))
    down = await client.post(
        "/rules/rule/1/move", data={"csrf_token": csrf, "version": "4", "direction": "down"}
    )
    assert down.status_code == 303
    assert [r["name"] for r in (await stored(client, acme))["policy"]["rules"]] == [
        "third",
        "first",
        "second",
    ]
    top = await client.post(
        "/rules/rule/1/move", data={"csrf_token": csrf, "version": "5", "direction": "up"}
    )
    assert top.status_code == 404 and "There is no rule 0" in top.text

    removed = await client.post("/rules/rule/2/remove", data={"csrf_token": csrf, "version": "5"})
    assert removed.status_code == 303
    after = await stored(client, acme)
    assert [r["name"] for r in after["policy"]["rules"]] == ["third", "second"] and after["version"] == 6

    fallback = await client.post("/rules/fallback", data=rule_form(csrf, 6, strategy="fastest"))
    assert fallback.status_code == 303
    assert (await stored(client, acme))["policy"]["fallback"]["strategy"] == "fastest"
    gone = await client.post("/rules/fallback/remove", data={"csrf_token": csrf, "version": "7"})
    assert gone.status_code == 303 and (await stored(client, acme))["policy"]["fallback"] is None


async def test_a_form_made_on_an_older_version_saves_nothing(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    csrf = await signed_in(client, hub, acme)
    page = await client.get("/rules")
    assert 'name="version" value="0"' in page.text
    await put_policy(client, acme, {"rules": [{"name": "from the API"}]})  # someone else saves meanwhile
    stale = await client.post("/rules/new", data=rule_form(csrf, 0, name="from the panel"))
    assert stale.status_code == 409 and "the shipping policy changed meanwhile" in text(stale)
    assert [r["name"] for r in (await stored(client, acme))["policy"]["rules"]] == ["from the API"]


async def test_try_it_answers_with_the_rules_explanation_and_the_connections_left_out(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    with ExitStack() as stack:
        remote = stack.enter_context(shippo_sandbox())
        east = await shippo_connection(hub, acme, remote, name="Shippo East")
        paused = await shippo_connection(hub, acme, remote, name="Shippo Paused")
        await set_status(hub, acme, paused, "paused")
        policy = two_rules(str(east))
        await put_policy(client, acme, policy)
        csrf = await signed_in(client, hub, acme)
        tried = await client.post(
            "/rules/try",
            data={
                "csrf_token": csrf,
                "country": "us",
                "weight": "0.5",
                "weight_unit": "kg",
                "value": "40",
                "currency": "usd",
                "skus": "",
            },
        )
        await remote.admin.aclose()
    assert tried.status_code == 200, tried.text[-800:]
    words = text(tried)
    assert "The fallback chooses" in words and "Why: " in words
    assert "fallback: fastest -> " in words
    assert "rule 1: the shipment goes to US, not DE, AT" in words
    assert "rule 2: the shipment has no SKU tagged fragile" in words
    assert "Parcels: 620 g" in words  # 500 g and 120 g of packaging
    assert "Rates offered, cheapest first" in words and "Shippo East" in words
    assert "Shippo Paused" in words and "is paused" in words


async def test_try_it_names_bad_input(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    csrf = await signed_in(client, hub, acme)
    base = {"csrf_token": csrf, "country": "DE", "weight": "1", "weight_unit": "kg", "value": "10",
            "currency": "EUR", "skus": ""}  # fmt: skip
    country = await client.post("/rules/try", data=base | {"country": "XX"})
    assert country.status_code == 422 and "destination country: " in text(country)
    no_weight = await client.post("/rules/try", data=base | {"weight": ""})
    assert no_weight.status_code == 422 and "weight: give the shipment's weight" in text(no_weight)
    currency = await client.post("/rules/try", data=base | {"currency": "EURO"})
    assert currency.status_code == 422 and "currency: " in text(currency)
    empty = await client.post("/rules/try", data=base)
    assert empty.status_code == 200
    assert (
        "No rule chooses a service: no shipping rule could choose a service: there are no shipping rules"
        in (text(empty))
    )


async def test_every_form_is_refused_without_its_csrf_token(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    east = await shipping_connection(client, acme, "Shippo East")
    await put_policy(client, acme, two_rules(east))
    before = await stored(client, acme)
    await signed_in(client, hub, acme)
    for path in (
        "/rules/settings",
        "/rules/new",
        "/rules/rule/1",
        "/rules/rule/1/remove",
        "/rules/rule/1/move",
        "/rules/fallback",
        "/rules/fallback/remove",
        "/rules/try",
    ):
        form = rule_form("", 1, name="sneaky", direction="down", country="DE", value="1", currency="EUR")
        del form["csrf_token"]
        refused = await client.post(path, data=form)
        assert refused.status_code == 403, path
        assert "Reload the page" in refused.text
    assert await stored(client, acme) == before


async def test_signed_out_browsers_are_sent_to_sign_in(client: httpx.AsyncClient) -> None:
    answer = await client.get("/rules")
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/rules"

"""POST /api/v1/rates/quote end to end: a checkout's cart and destination in, against Shippo sandboxes on real
sockets; rates from every shipping connection cheapest first, the rules' choice with its sentence, slow and
failing connections named in left_out, the catalog's weights and tags used, bad input named by field, and
another account's connections never asked."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from tests.connectors.test_shippo_client import Shippo
from tests.flows.test_rating import SLOW, rate_posts, shippo_connection, shippo_sandbox
from tests.support import Tenant as Account

URL = "/api/v1/rates/quote"
BOX = {"length": {"value": "30", "unit": "cm"}, "width": {"value": "20", "unit": "cm"},
       "height": {"value": "10", "unit": "cm"}}  # fmt: skip
PACKING = {"packaging_weight": {"value": "100", "unit": "g"}, "default_box": BOX}

Sandboxes = Callable[..., Shippo]


@pytest.fixture
async def sandboxes() -> AsyncIterator[Sandboxes]:
    """`sandboxes(faults="")`: another Shippo sandbox, stopped when the test ends."""
    made: list[Shippo] = []
    with ExitStack() as stack:

        def make(faults: str = "") -> Shippo:
            made.append(stack.enter_context(shippo_sandbox(faults)))
            return made[-1]

        yield make
        for remote in made:
            await remote.admin.aclose()


def item(
    sku: str = "MUG-1", quantity: int = 2, grams: str | None = "350", price: str = "12.50", **more: Any
) -> Any:
    body: dict[str, Any] = {"sku": sku, "quantity": quantity, "price": {"amount": price, "currency": "USD"}}
    if grams is not None:
        body["weight"] = {"value": grams, "unit": "g"}
    return body | more


def cart(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "destination": {"country": "US", "postal_code": "10118"},
        "items": [item()],
        "budget_ms": 5000,
    }
    return body | changes


async def set_policy(client: httpx.AsyncClient, account: Account, **policy: Any) -> None:
    r = await client.put(
        "/api/v1/shipping/policy",
        json={"version": 0, "policy": {"packing": PACKING, **policy}},
        headers=account.headers,
    )
    assert r.status_code == 200, r.text


def field_of(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return str(response.json()["errors"][0]["field"])


async def test_a_quote_lists_every_connections_rates_cheapest_first_and_the_rules_choice(
    client: httpx.AsyncClient, hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    east = await shippo_connection(hub, acme, sandboxes(), name="Shippo East")
    west = await shippo_connection(hub, acme, sandboxes(), name="Shippo West")
    await set_policy(
        client,
        acme,
        rules=[
            {"name": "Germany", "match": {"countries": ["DE"]}, "strategy": "fastest"},
            {"connection_id": str(west), "strategy": "cheapest"},
        ],
    )

    r = await client.post(URL, json=cart(), headers=acme.headers)

    assert r.status_code == 200, r.text
    quote = r.json()
    assert quote["parcels"] == [
        {
            "weight": {"value": "800", "unit": "g"},  # 2 x 350 g and 100 g of packaging
            "dimensions": BOX,
            "items": [{"sku": "MUG-1", "quantity": 2}],
        }
    ]
    rates = quote["rates"]
    assert {rate["connection_id"] for rate in rates} == {str(east), str(west)}
    assert all(rate["connector"] == "shippo" and rate["carrier"] and rate["service"] for rate in rates)
    prices = [Decimal(rate["price"]["amount"]) for rate in rates]
    assert prices == sorted(prices) and all(rate["price"]["currency"] == "USD" for rate in rates)
    chosen = quote["chosen"]
    assert chosen["rule_number"] == 2
    assert chosen["rate"]["connection_id"] == str(west)
    west_prices = [Decimal(rate["price"]["amount"]) for rate in rates if rate["connection_id"] == str(west)]
    assert Decimal(chosen["rate"]["price"]["amount"]) == min(west_prices)
    assert chosen["explanation"].startswith("rule 2: cheapest -> ")
    assert chosen["explanation"].endswith(f"{chosen['rate']['price']['amount']} USD")
    assert quote["not_chosen"] is None
    assert quote["left_out"] == []
    assert isinstance(quote["elapsed_ms"], int)


async def test_a_slow_connection_is_left_out_and_named_and_the_others_rates_answer(
    client: httpx.AsyncClient, hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    quick = await shippo_connection(hub, acme, sandboxes(), name="Shippo")
    slow = await shippo_connection(hub, acme, sandboxes(SLOW), name="Shippo (slow)")
    await set_policy(client, acme, fallback={"strategy": "cheapest"})

    r = await client.post(URL, json=cart(budget_ms=3000), headers=acme.headers)

    assert r.status_code == 200, r.text
    quote = r.json()
    assert quote["left_out"] == [
        {"connection_id": str(slow), "connector": "shippo", "reason": "Shippo answered nothing within 3 s"}
    ]
    assert quote["rates"] and {rate["connection_id"] for rate in quote["rates"]} == {str(quick)}
    assert quote["chosen"]["rate"]["connection_id"] == str(quick)
    assert quote["chosen"]["explanation"].startswith("fallback: cheapest -> ")


async def test_failing_and_unconfigured_connections_are_named_in_their_own_words(
    client: httpx.AsyncClient, hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    working = await shippo_connection(hub, acme, sandboxes())
    failing = await shippo_connection(hub, acme, sandboxes("5xx=1.0"), name="Shippo (down)")
    no_origin = await shippo_connection(hub, acme, sandboxes(), name="Shippo (new)", settings={})
    await set_policy(client, acme)  # no ship_from, no rules

    r = await client.post(URL, json=cart(), headers=acme.headers)

    assert r.status_code == 200, r.text
    quote = r.json()
    assert {rate["connection_id"] for rate in quote["rates"]} == {str(working)}
    reasons = {entry["connection_id"]: entry["reason"] for entry in quote["left_out"]}
    assert set(reasons) == {str(failing), str(no_origin)}
    assert "500" in reasons[str(failing)]
    assert (
        "the Shippo connection has no from_address: set it to the address parcels ship from"
        in reasons[str(no_origin)]
    )
    assert all(entry["connector"] == "shippo" for entry in quote["left_out"])
    assert quote["chosen"] is None
    assert quote["not_chosen"] == "no shipping rule could choose a service: there are no shipping rules"


async def test_the_catalog_gives_weights_and_tags_the_rules_match(
    client: httpx.AsyncClient, hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    first = await shippo_connection(hub, acme, sandboxes(), name="Shippo East")
    await shippo_connection(hub, acme, sandboxes(), name="Shippo West")
    product = await client.post(
        "/api/v1/products",
        json={
            "title": "Vase",
            "tags": ["fragile"],
            "variants": [{"sku": "VASE-1", "weight": {"value": "1.5", "unit": "kg"}}],
        },
        headers=acme.headers,
    )
    assert product.status_code == 201, product.text
    await set_policy(
        client,
        acme,
        rules=[{"match": {"sku_tags": ["fragile"]}, "connection_id": str(first), "strategy": "fastest"}],
    )

    r = await client.post(URL, json=cart(items=[item("VASE-1", 1, grams=None)]), headers=acme.headers)

    assert r.status_code == 200, r.text
    quote = r.json()
    assert quote["parcels"][0]["weight"] == {"value": "1600", "unit": "g"}
    assert quote["chosen"]["rule_number"] == 1 and quote["chosen"]["rate"]["connection_id"] == str(first)
    assert quote["chosen"]["explanation"].startswith("rule 1: fastest with SKUs tagged fragile -> ")


async def test_every_remote_call_of_a_quote_is_recorded_and_no_order_is_stored(
    client: httpx.AsyncClient, hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    connection = await shippo_connection(hub, acme, sandboxes())
    await set_policy(client, acme)

    r = await client.post(URL, json=cart(), headers=acme.headers)

    assert r.status_code == 200 and r.json()["rates"], r.text
    async with hub.db.session() as session:
        calls = (
            await session.scalars(select(t.RemoteCall).where(t.RemoteCall.connection_id == connection))
        ).all()
        orders = (await session.scalars(select(t.Order))).all()
    assert [(c.method, c.status) for c in calls] == [("POST", 201)]
    assert orders == []


async def test_a_fixed_rule_on_a_connection_without_rates_is_left_out_of_a_quote(
    client: httpx.AsyncClient, hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    """A label flow ships a fixed rule's service through MyParcel.com at a price not quoted; a checkout needs a
    price to show, so its quote names the connection in left_out and lets the next rule choose."""
    shippo = await shippo_connection(hub, acme, sandboxes())
    async with hub.db.transaction() as session:
        mpc = await Tenant(session, uuid.UUID(acme.id)).create_connection(
            connector="myparcelcom",
            name="MyParcel.com",
            vault=hub.vault,
            settings={"client_id": "id", "shop_id": str(uuid.uuid4())},
            secrets={"client_secret": "secret"},
        )
    await set_policy(
        client,
        acme,
        rules=[
            {"connection_id": str(mpc.id), "strategy": "fixed", "service": "dpd:dpd-classic"},
            {"connection_id": str(shippo), "strategy": "cheapest"},
        ],
    )

    r = await client.post(URL, json=cart(), headers=acme.headers)

    assert r.status_code == 200, r.text
    quote = r.json()
    assert quote["left_out"] == [
        {
            "connection_id": str(mpc.id),
            "connector": "myparcelcom",
            "reason": f"MyParcel.com connection {mpc.id} has no rates capability",
        }
    ]
    assert {rate["connection_id"] for rate in quote["rates"]} == {str(shippo)}
    assert all(rate["price"] is not None for rate in quote["rates"])
    assert quote["chosen"]["rule_number"] == 2
    assert quote["chosen"]["rate"]["connection_id"] == str(shippo)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"items": [item(grams=None)]}, "items[0].weight"),
        ({"items": [item(grams="-5")]}, "items[0].weight.value"),
        ({"items": [item(), item(quantity=0)]}, "items[1].quantity"),
        ({"items": [item(quantity=True)]}, "items[0].quantity"),
        (
            {"items": [item(), {**item(), "price": {"amount": "3.00", "currency": "EUR"}}]},
            "items[1].price.currency",
        ),
        ({"items": [item(price="1.234")]}, "items[0].price"),
        ({"items": []}, "items"),
        ({"destination": {"country": "XX"}}, "destination.country"),
        ({"destination": {"postal_code": "10118"}}, "destination.country"),
        ({"budget_ms": 60_000}, "budget_ms"),
        ({"currency": "EUR"}, "items[0].price.currency"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, acme: Account, change: dict[str, Any], field: str
) -> None:
    r = await client.post(URL, json=cart(**change), headers=acme.headers)
    assert field_of(r).startswith(field)


async def test_an_item_without_any_weight_says_what_to_set(client: httpx.AsyncClient, acme: Account) -> None:
    r = await client.post(URL, json=cart(items=[item("SOCK-1", grams=None)]), headers=acme.headers)
    assert field_of(r) == "items[0].weight"
    assert "set the account's default item weight" in r.json()["detail"]


async def test_an_item_heavier_than_a_parcel_may_be_is_named(
    client: httpx.AsyncClient, acme: Account
) -> None:
    await set_policy(client, acme, packing={**PACKING, "max_weight": {"value": "1", "unit": "kg"}})
    r = await client.post(
        URL, json=cart(items=[item(), item("ANVIL-1", 1, grams="5000")]), headers=acme.headers
    )
    assert field_of(r) == "items[1].weight"
    assert "ship it with a service that takes heavier parcels" in r.json()["detail"]


async def test_another_accounts_connections_are_never_asked(
    client: httpx.AsyncClient, hub: Hub, acme: Account, globex: Account, sandboxes: Sandboxes
) -> None:
    remote = sandboxes()
    await shippo_connection(hub, acme, remote)
    await set_policy(client, globex, fallback={"strategy": "cheapest"})

    r = await client.post(URL, json=cart(), headers=globex.headers)

    assert r.status_code == 200, r.text
    assert r.json()["rates"] == [] and r.json()["left_out"] == [] and r.json()["chosen"] is None
    assert rate_posts(remote) == 0


async def test_a_quote_needs_a_token(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=cart())
    assert r.status_code == 401

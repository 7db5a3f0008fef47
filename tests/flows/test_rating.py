"""Rates gathered from an account's shipping connections within one time budget, against Shippo sandboxes on real
sockets: rates from two connections are merged, each marked with its connection; a slow connection is left out
and named while the others' rates arrive; a refusing or unconfigured connection is named with its own words;
paused, non-rating, unknown and other accounts' connections are never asked; the rules' callback asks each
connection once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest

from crossdock.flows.rating import gather_rates, priced_rates, rates_source
from crossdock.flows.rules import Facts, ShippingRule, decide
from crossdock.hub import Hub
from crossdock.model import (
    Address,
    Dimensions,
    Length,
    Money,
    Order,
    OrderLine,
    Parcel,
    Rate,
    Shipment,
    Weight,
)
from crossdock.sandbox.common import FaultSpec, SandboxConfig, run_in_thread
from crossdock.sandbox.shippo import create_app
from crossdock.store.repo import Tenant
from tests.connectors.test_shippo_client import LIVE_TOKEN, ORIGIN, Front, Shippo
from tests.support import Tenant as Account

# Room for a quick sandbox to answer on a busy machine.
BUDGET_S = 3.0
# Far beyond the budget: the slow sandbox's answer can never be the one that arrives in time.
SLOW = "latency=10s"


@contextmanager
def shippo_sandbox(faults: str = "") -> Iterator[Shippo]:
    app = create_app(
        SandboxConfig(
            seed=5, token=LIVE_TOKEN, faults=FaultSpec.parse(faults), extra={"async_delay_s": "0.05"}
        )
    )
    front = Front(app)
    with run_in_thread(front) as url:
        yield Shippo(url, front, app.state.sandbox)


Sandboxes = Callable[..., Shippo]


@pytest.fixture
async def sandboxes() -> AsyncIterator[Sandboxes]:
    """`sandboxes(faults="")`: another Shippo sandbox, stopped when the test ends."""
    opened: list[Any] = []
    made: list[Shippo] = []

    def make(faults: str = "") -> Shippo:
        context = shippo_sandbox(faults)
        made.append(context.__enter__())
        opened.append(context)
        return made[-1]

    yield make
    for remote in made:
        await remote.admin.aclose()
    for context in reversed(opened):
        context.__exit__(None, None, None)


async def shippo_connection(
    hub: Hub,
    account: Account,
    remote: Shippo,
    *,
    name: str = "Shippo",
    settings: dict[str, Any] | None = None,
    token: str = LIVE_TOKEN,
) -> uuid.UUID:
    async with hub.db.transaction() as session:
        row = await Tenant(session, uuid.UUID(account.id)).create_connection(
            connector="shippo",
            name=name,
            vault=hub.vault,
            settings={"from_address": ORIGIN} if settings is None else settings,
            base_url=remote.url,
            secrets={"api_token": token},
        )
        return row.id


async def set_status(hub: Hub, account: Account, connection_id: uuid.UUID, status: str) -> None:
    async with hub.db.transaction() as session:
        row = await Tenant(session, uuid.UUID(account.id)).get_connection(connection_id)
        row.status = status


def an_order() -> Order:
    return Order(
        id=uuid.uuid4(),
        currency="USD",
        shipping_address=Address(
            line1="350 5th Ave", city="New York", subdivision="US-NY", postal_code="10118", country="US"
        ),
        lines=[OrderLine(sku="MUG-1", title="Mug", quantity=2, unit_price=Money.of("12.50", "USD"))],
    )


def a_shipment(order: Order) -> Shipment:
    assert order.id is not None
    box = Dimensions(length=Length(value="30", unit="cm"), width=Length(value="20", unit="cm"),
                     height=Length(value="10", unit="cm"))  # fmt: skip
    return Shipment(
        order_id=order.id, parcels=[Parcel(weight=Weight(value="1.2", unit="kg"), dimensions=box)]
    )


def rate_posts(remote: Shippo) -> int:
    return len(remote.front.requests("POST", "/shipments"))


def no_rating_tasks_left() -> bool:
    return not [t for t in asyncio.all_tasks() if t.get_name().startswith("rates ") and not t.done()]


async def test_rates_from_two_connections_are_merged_and_marked_with_their_connection(
    hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    first = await shippo_connection(hub, acme, sandboxes(), name="Shippo East")
    second = await shippo_connection(hub, acme, sandboxes(), name="Shippo West")
    order = an_order()

    gathered = await gather_rates(hub, uuid.UUID(acme.id), a_shipment(order), order, budget_s=5.0)

    assert gathered.left_out == {}
    by_connection = {rate.connection_id for rate in gathered.rates}
    assert by_connection == {first, second}
    assert all(rate.price.amount > Decimal(0) and rate.carrier for rate in gathered.rates)
    assert all(rate.remote_id for rate in gathered.rates)  # what buying one of them needs


async def test_a_slow_connection_is_left_out_and_named_while_the_others_rates_arrive(
    hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    quick = await shippo_connection(hub, acme, sandboxes(), name="Shippo")
    slow = await shippo_connection(hub, acme, sandboxes(SLOW), name="Shippo (slow)")
    order = an_order()

    gathered = await gather_rates(hub, uuid.UUID(acme.id), a_shipment(order), order, budget_s=BUDGET_S)

    assert set(gathered.left_out) == {slow}
    assert gathered.left_out[slow] == f"Shippo answered nothing within {BUDGET_S:g} s"
    assert gathered.rates and {rate.connection_id for rate in gathered.rates} == {quick}
    assert no_rating_tasks_left()


async def test_a_refusing_connection_is_named_with_its_words_and_spoils_nothing(
    hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    working = await shippo_connection(hub, acme, sandboxes())
    failing = await shippo_connection(hub, acme, sandboxes("5xx=1.0"))
    unconfigured = await shippo_connection(hub, acme, sandboxes(), settings={})
    order = an_order()

    gathered = await gather_rates(hub, uuid.UUID(acme.id), a_shipment(order), order, budget_s=5.0)

    assert {rate.connection_id for rate in gathered.rates} == {working}
    assert set(gathered.left_out) == {failing, unconfigured}
    assert "500" in gathered.left_out[failing]
    # No sender address anywhere: the connector's own error says what to set.
    assert "has no from_address" in gathered.left_out[unconfigured]
    assert "set it to the address parcels ship from" in gathered.left_out[unconfigured]
    assert all(LIVE_TOKEN not in reason for reason in gathered.left_out.values())


async def test_paused_and_unauthorised_connections_are_named_not_asked(
    hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    remote = sandboxes()
    working = await shippo_connection(hub, acme, remote)
    paused = await shippo_connection(hub, acme, remote, name="Paused")
    reauth = await shippo_connection(hub, acme, remote, name="Revoked")
    await set_status(hub, acme, paused, "paused")
    await set_status(hub, acme, reauth, "needs_reauth")
    order = an_order()

    gathered = await gather_rates(hub, uuid.UUID(acme.id), a_shipment(order), order, budget_s=5.0)

    assert {rate.connection_id for rate in gathered.rates} == {working}
    assert "is paused: resume it with" in gathered.left_out[paused]
    assert "needs to be authorised again" in gathered.left_out[reauth]
    assert rate_posts(remote) == 1


async def test_named_connections_that_cannot_rate_are_named_with_why(
    hub: Hub, acme: Account, globex: Account, sandboxes: Sandboxes
) -> None:
    remote = sandboxes()
    theirs = await shippo_connection(hub, globex, remote, name="Globex's Shippo")
    async with hub.db.transaction() as session:
        shop = await Tenant(session, uuid.UUID(acme.id)).create_connection(
            connector="shopify",
            name="Shop",
            vault=hub.vault,
            settings={"shop": "acme.myshopify.com"},
            secrets={"access_token": "shpat_0123456789"},
        )
    order = an_order()

    gathered = await gather_rates(
        hub, uuid.UUID(acme.id), a_shipment(order), order, connection_ids=[shop.id, theirs], budget_s=5.0
    )

    assert gathered.rates == []
    assert gathered.left_out == {
        shop.id: f"Shopify connection {shop.id} has no rates capability",
        theirs: f"connection {theirs} does not exist in this account",
    }
    assert rate_posts(remote) == 0


async def test_another_accounts_connections_are_never_asked(
    hub: Hub, acme: Account, globex: Account, sandboxes: Sandboxes
) -> None:
    remote = sandboxes()
    await shippo_connection(hub, acme, remote)
    order = an_order()

    gathered = await gather_rates(hub, uuid.UUID(globex.id), a_shipment(order), order, budget_s=5.0)

    assert gathered.rates == [] and gathered.left_out == {}
    assert rate_posts(remote) == 0


async def test_the_rules_callback_asks_each_connection_once(
    hub: Hub, acme: Account, sandboxes: Sandboxes
) -> None:
    east, west = sandboxes(), sandboxes()
    first = await shippo_connection(hub, acme, east, name="Shippo East")
    second = await shippo_connection(hub, acme, west, name="Shippo West")
    order = an_order()
    shipment = a_shipment(order)
    rules = [
        # Names a service no sandbox offers: skipped, after asking only the first connection.
        ShippingRule(connection_id=first, strategy="fixed", service="nowhere:express"),
        ShippingRule(connection_id=second, strategy="fastest", match={"countries": ["DE"]}),
    ]
    facts = Facts(country="US", weight=Weight(value="1.2", unit="kg"), value=Money.of("25.00", "USD"))
    source = rates_source(hub, uuid.UUID(acme.id), shipment, order, budget_s=5.0)

    decision = await decide(rules, ShippingRule(strategy="cheapest"), facts, source)

    assert decision.rate is not None and decision.rule_number is None
    assert decision.explanation.startswith("fallback: cheapest -> ")
    assert decision.skipped[0] == "rule 1: nowhere:express was not offered"
    every = await source(None)
    assert decision.rate == min(every, key=lambda r: (r.price.amount, r.estimated_days or 10**6))
    assert {rate.connection_id for rate in every} == {first, second}
    assert (rate_posts(east), rate_posts(west)) == (1, 1)
    assert source.left_out == {}


def test_a_rate_without_a_price_is_no_quote() -> None:
    """Rules and checkouts compare prices: a connector's rate without one (a defect: the mappers give each rate
    its price) never reaches them, and a connection whose rates all lack one is named with why."""
    priced = Rate(carrier="USPS", service_code="usps_priority", price=Money.of("9.45", "USD"))
    unpriced = Rate(carrier="USPS", service_code="usps_ground", price=None)
    assert priced_rates("Shippo", [unpriced, priced]) == ([priced], None)
    assert priced_rates("Shippo", [unpriced]) == ([], "Shippo quoted no price for any of its rates")
    assert priced_rates("Shippo", []) == ([], None)

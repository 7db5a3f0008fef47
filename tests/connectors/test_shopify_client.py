"""The Shopify connector against the Shopify sandbox on a real socket, opened through the engine from a connection
stored in the hub: check, windowed pulls with cursor pages and resume, webhook subscriptions, fulfillments,
stock, and a refused token."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crossdock.connectors.base import Page, PullWindow
from crossdock.connectors.remote_json import version_of
from crossdock.connectors.shopify.client import ORDER_TOPICS
from crossdock.connectors.shopify.mapping import map_order
from crossdock.engine.connections import open_connector
from crossdock.engine.errors import PermanentError, RetryableError
from crossdock.engine.http import RemoteConfigurationError
from crossdock.hub import Hub
from crossdock.model import Fulfillment, FulfillmentLine, StockLevel
from crossdock.sandbox.common import FaultSpec, SandboxConfig, run_in_thread
from crossdock.sandbox.shopify import ShopState, create_app
from crossdock.store import repo
from crossdock.store import tables as t

TOKEN = "shpat_connector_test_token_0123456789"
API = "/admin/api/2025-01"
SHOP = "crossdock-demo.myshopify.com"


@dataclass
class Shop:
    url: str
    state: ShopState

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url)

    def at(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, UTC)


def _serve(orders: int) -> Iterator[Shop]:
    app = create_app(SandboxConfig(orders=orders, token=TOKEN, fast_limits=True, seed=11))
    with run_in_thread(app) as url:
        yield Shop(url, app.state.sandbox)


@pytest.fixture
def shop() -> Iterator[Shop]:
    yield from _serve(0)


@pytest.fixture
def busy_shop() -> Iterator[Shop]:
    yield from _serve(560)


@dataclass
class Conn:
    hub: Hub
    account_id: uuid.UUID
    connection_id: uuid.UUID

    def open(self) -> Any:
        return open_connector(self.hub, self.account_id, self.connection_id)

    async def calls(self) -> list[t.RemoteCall]:
        async with self.hub.db.session() as session:
            stmt = select(t.RemoteCall).where(t.RemoteCall.connection_id == self.connection_id)
            return list((await session.scalars(stmt)).all())

    async def row(self) -> t.Connection:
        async with self.hub.db.session() as session:
            return await repo.Tenant(session, self.account_id).get_connection(self.connection_id)


async def connect(hub: Hub, shop: Shop, token: str = TOKEN) -> Conn:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, f"Acme {uuid.uuid4().hex[:6]}")
        connection = await repo.Tenant(session, account.id).create_connection(
            connector="shopify",
            name="Acme shop",
            vault=hub.vault,
            settings={"shop": SHOP, "api_version": "2025-01"},
            base_url=shop.url,
            secrets={"access_token": token},
        )
    return Conn(hub, account.id, connection.id)


@pytest.fixture
async def conn(hub: Hub, shop: Shop) -> Conn:
    return await connect(hub, shop)


async def pages(connector: Any, window: PullWindow, resume: dict[str, Any] | None = None) -> list[Page]:
    return [page async for page in connector.pull_orders(window, resume)]


def ids(found: list[Page]) -> list[int]:
    return [int(m.external_id) for page in found for m in page.records]


def in_window(state: ShopState, since: float | None, until: float) -> set[int]:
    return {o.id for o in state.orders() if (since is None or o.updated_ts >= since) and o.updated_ts < until}


async def test_check_names_the_shop(conn: Conn) -> None:
    async with conn.open() as (_row, connector):
        assert await connector.check() == f"Shopify shop Crossdock Demo ({SHOP})"


# -- orders.pull ----------------------------------------------------------------------------------------------


def window_of(state: ShopState) -> tuple[float, float]:
    """A window whose ends fall on orders' own updated_at: the one at `since` is in, the one at `until` out."""
    updated = sorted({o.updated_ts for o in state.orders()})
    return updated[20], updated[-20]


async def test_a_window_over_several_pages_yields_each_order_once_and_nothing_outside(
    hub: Hub, busy_shop: Shop
) -> None:
    conn = await connect(hub, busy_shop)
    since, until = window_of(busy_shop.state)
    expected = in_window(busy_shop.state, since, until)
    assert len(expected) > 500  # three pages of 250
    async with conn.open() as (_row, connector):
        found = await pages(connector, PullWindow(busy_shop.at(since), busy_shop.at(until)))
    got = ids(found)
    assert len(found) == 3
    assert len(got) == len(set(got)) and set(got) == expected
    assert [p.resume is None for p in found] == [False, False, True]
    assert all(m.ok and m.raw["id"] == int(m.external_id) for p in found for m in p.records)
    at_until = {o.id for o in busy_shop.state.orders() if o.updated_ts == until}
    at_since = {o.id for o in busy_shop.state.orders() if o.updated_ts == since}
    assert at_until and not at_until & set(got)
    assert at_since and at_since <= set(got)
    # Every call is recorded, the first with the window's filters, the others with the cursor only.
    calls = await conn.calls()
    assert len(calls) == 3 and all(c.status == 200 and c.operation == "rest" for c in calls)
    assert "updated_at_min=" in calls[0].url and "status=any" in calls[0].url
    assert all("page_info=" in c.url and "updated_at" not in c.url for c in calls[1:])
    assert not any(TOKEN in f"{c.url} {c.error}" for c in calls)


async def test_resuming_from_a_page_continues_without_gap_or_repeat(hub: Hub, busy_shop: Shop) -> None:
    conn = await connect(hub, busy_shop)
    since, until = window_of(busy_shop.state)
    window = PullWindow(busy_shop.at(since), busy_shop.at(until))
    async with conn.open() as (_row, connector):
        first = await anext(aiter(connector.pull_orders(window, None)))
    assert first.resume is not None and set(first.resume) == {"page_info"}
    async with conn.open() as (_row, connector):  # a later run, resuming the stored page
        rest = await pages(connector, window, first.resume)
    got = ids([first, *rest])
    assert len(got) == len(set(got)) and set(got) == in_window(busy_shop.state, since, until)


async def test_a_pull_left_after_its_first_page_leaves_no_request_running(hub: Hub, busy_shop: Shop) -> None:
    conn = await connect(hub, busy_shop)
    since, until = window_of(busy_shop.state)
    window = PullWindow(busy_shop.at(since), busy_shop.at(until))

    def requests_running() -> list[asyncio.Task[Any]]:
        return [
            task
            for task in asyncio.all_tasks()
            if not task.done() and task.get_coro().__qualname__ == "RemoteClient.request"  # type: ignore[union-attr]
        ]

    async with conn.open() as (_row, connector):
        pull = connector.pull_orders(window, None)
        first = await anext(pull)
        assert first.resume is not None
        assert len(requests_running()) == 1  # the second page's, sent while the first is handed over
        await pull.aclose()
        assert requests_running() == []


async def test_an_order_edited_during_a_pull_leaves_the_window_and_is_read_by_the_next(
    hub: Hub, busy_shop: Shop
) -> None:
    conn = await connect(hub, busy_shop)
    state = busy_shop.state
    until = state.now_ts()
    # Three pages: the request for the next page leaves before a page is handed over, so the edit made after
    # the first page is in hand lands on the third, which was not asked for yet.
    since = sorted(o.updated_ts for o in state.orders())[-540]
    window = PullWindow(busy_shop.at(since), busy_shop.at(until))
    expected = in_window(state, since, until)
    async with conn.open() as (_row, connector):
        pull = connector.pull_orders(window, None)
        first = await anext(pull)
        edited = min(expected - set(ids([first])))  # on a later page
        async with busy_shop.admin() as admin:
            response = await admin.post(f"/_sandbox/orders/{edited}/update", json={"note": "Ring twice"})
            response.raise_for_status()
        rest = [page async for page in pull]
        got = ids([first, *rest])
        assert len(got) == len(set(got)) and set(got) == expected - {edited}
        edited_at = state.get(edited).updated_ts  # type: ignore[union-attr]
        following = await pages(connector, PullWindow(busy_shop.at(until), busy_shop.at(edited_at + 1)))
    assert edited in ids(following)
    edited_record = next(m for p in following for m in p.records if m.external_id == str(edited))
    assert edited_record.value is not None and edited_record.value.notes == "Ring twice"


async def test_a_cursor_shopify_no_longer_accepts_restarts_the_window(conn: Conn, shop: Shop) -> None:
    async with shop.admin() as admin:
        made = [(await admin.post("/_sandbox/orders", json={})).json()["order"]["id"] for _ in range(3)]
    window = PullWindow(None, shop.at(shop.state.now_ts() + 1))
    async with conn.open() as (_row, connector):
        found = await pages(connector, window, {"page_info": "c3RhbGU"})
    assert sorted(ids(found)) == sorted(made)
    assert [c.status for c in await conn.calls()] == [400, 200]


# -- webhook subscriptions ------------------------------------------------------------------------------------


async def test_subscribing_twice_keeps_one_set_and_unsubscribing_removes_only_them(
    conn: Conn, shop: Shop
) -> None:
    address = "https://hub.example.com/hooks/abc"
    other = shop.state.subscribe("orders/create", "https://elsewhere.example.com/hook", "json", "2025-01")
    async with conn.open() as (_row, connector):
        first = await connector.subscribe(address)
        second = await connector.subscribe(address)
        mine = [s for s in shop.state.subscriptions.values() if s.address == address]
        assert first == second and len(first) == 3
        assert sorted(s.topic for s in mine) == sorted(ORDER_TOPICS)
        assert {str(s.id) for s in mine} == set(first) and {s.format for s in mine} == {"json"}
        assert await connector.unsubscribe(address) == 3
        assert await connector.unsubscribe(address) == 0
    assert list(shop.state.subscriptions.values()) == [other]


# -- fulfillments.push ----------------------------------------------------------------------------------------


async def new_order(conn: Conn, shop: Shop) -> tuple[dict[str, Any], uuid.UUID]:
    """A paid order in the sandbox and its canonical copy in the hub (calls are recorded against it)."""
    spec = {
        "financial_status": "paid",
        "line_items": [{"sku": "TSHIRT-BLK-M", "quantity": 2}, {"sku": "HOODIE-GRY-S", "quantity": 1}],
    }
    async with shop.admin() as admin:
        response = await admin.post("/_sandbox/orders", json=spec)
        response.raise_for_status()
    order = response.json()["order"]
    mapped = map_order(order)
    assert mapped.value is not None
    async with conn.hub.db.transaction() as session:
        row = await repo.Tenant(session, conn.account_id).create_order(mapped.value, source="shopify")
    return order, row.id


def fulfillment_of(order: dict[str, Any], order_id: uuid.UUID, number: str) -> Fulfillment:
    return Fulfillment(
        order_id=order_id,
        lines=[
            FulfillmentLine(line_external_id=str(li["id"]), quantity=li["quantity"])
            for li in order["line_items"]
        ],
        carrier="ups",
        tracking_number=number,
        tracking_url=f"https://www.ups.com/track?tracknum={number}",
    )


async def shop_fulfillments(shop: Shop, order_id: int) -> list[dict[str, Any]]:
    async with shop.admin() as admin:
        response = await admin.get(
            f"{API}/orders/{order_id}/fulfillments.json", headers={"X-Shopify-Access-Token": TOKEN}
        )
    return list(response.json()["fulfillments"])


async def test_a_pushed_fulfillment_fulfils_the_order_and_is_found_and_retracked(
    conn: Conn, shop: Shop
) -> None:
    order, order_id = await new_order(conn, shop)
    fulfillment = fulfillment_of(order, order_id, "1Z999AA10123456784")
    async with conn.open() as (_row, connector):
        assert await connector.find_fulfillment(str(order["id"]), fulfillment) is None
        pushed = await connector.push_fulfillment(str(order["id"]), fulfillment, "key-1")
        found = await connector.find_fulfillment(str(order["id"]), fulfillment)
        after_push = shop.state.render(shop.state.get(order["id"]))  # type: ignore[arg-type]
        assert after_push["fulfillment_status"] == "fulfilled"
        assert pushed.order_version == version_of(datetime.fromisoformat(after_push["updated_at"]))
        assert found is not None and found.external_id == pushed.external_id
        [on_shop] = await shop_fulfillments(shop, order["id"])
        assert (on_shop["id"], on_shop["tracking_number"], on_shop["tracking_company"]) == (
            int(pushed.external_id),
            "1Z999AA10123456784",
            "UPS",
        )
        assert on_shop["tracking_url"] == "https://www.ups.com/track?tracknum=1Z999AA10123456784"

        retracked = fulfillment.model_copy(
            update={"tracking_number": "1Z999AA10123456785", "carrier": "fedex"}
        )
        updated = await connector.update_tracking(str(order["id"]), pushed.external_id, retracked)
        assert updated.external_id == pushed.external_id
        [on_shop] = await shop_fulfillments(shop, order["id"])
        assert (on_shop["tracking_number"], on_shop["tracking_company"]) == ("1Z999AA10123456785", "FedEx")
        again = await connector.find_fulfillment(str(order["id"]), retracked)
        assert again is not None and again.external_id == pushed.external_id
    calls = await conn.calls()
    assert any(
        c.method == "POST" and c.url.endswith("/fulfillments.json") and c.order_id == order_id for c in calls
    )


async def test_a_second_push_of_the_same_lines_is_refused_and_find_fulfillment_prevents_it(
    conn: Conn, shop: Shop
) -> None:
    order, order_id = await new_order(conn, shop)
    fulfillment = fulfillment_of(order, order_id, "1Z999AA10123456799")
    async with conn.open() as (_row, connector):
        pushed = await connector.push_fulfillment(str(order["id"]), fulfillment, "key-1")
        # What the engine does before any retry: the fulfillment is already there, so it is not pushed again.
        known = await connector.find_fulfillment(str(order["id"]), fulfillment)
        assert known is not None and known.external_id == pushed.external_id
        with pytest.raises(PermanentError, match="already fulfilled"):
            await connector.push_fulfillment(str(order["id"]), fulfillment, "key-2")
    assert len(await shop_fulfillments(shop, order["id"])) == 1


def seed_where(p: float, wanted: list[bool]) -> int:
    """A fault seed whose first draws fail (True) or pass (False) as listed: the sandbox draws one
    random.Random(seed).random() per API request and fails it when the draw is below p (docs/sandboxes.md)."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if all((rng.random() < p) == fail for fail in wanted):
            return seed
    raise AssertionError("no such seed")


async def test_a_push_whose_answer_was_lost_is_found_before_any_retry(hub: Hub) -> None:
    # Requests: GET fulfillment orders, POST fulfillments.json (answered with a truncated body after the
    # fulfillment was made), then find_fulfillment's two GETs.
    seed = seed_where(0.5, [False, True, False, False])
    app = create_app(
        SandboxConfig(token=TOKEN, fast_limits=True, faults=FaultSpec(p_malformed=0.5, seed=seed))
    )
    with run_in_thread(app) as url:
        shop = Shop(url, app.state.sandbox)
        conn = await connect(hub, shop)
        order, order_id = await new_order(conn, shop)
        fulfillment = fulfillment_of(order, order_id, "1Z999AA10123456777")
        async with conn.open() as (_row, connector):
            with pytest.raises(RetryableError):
                await connector.push_fulfillment(str(order["id"]), fulfillment, "key-1")
            found = await connector.find_fulfillment(str(order["id"]), fulfillment)
        [made] = shop.state.fulfillment(shop.state.get(order["id"])).fulfillments  # type: ignore[arg-type]
        assert shop.state.faults.log == [(2, "malformed")]  # the POST's answer, and only it, was lost
    assert found is not None and found.external_id == str(made.id)


# -- inventory.push -------------------------------------------------------------------------------------------


async def test_push_stock_sets_levels_and_names_those_it_cannot_place(conn: Conn, shop: Shop) -> None:
    state = shop.state
    main, overflow = (loc["id"] for loc in state.locations)
    async with shop.admin() as admin:
        items = {
            i["sku"]: i["inventory_item_id"] for i in (await admin.get("/_sandbox/inventory")).json()["items"]
        }
    levels = [
        StockLevel(sku="TSHIRT-BLK-M", location="default", available=17),
        StockLevel(sku="HOODIE-GRY-S", location="Overflow Store", available=3),
        StockLevel(sku="NO-SUCH-SKU", location="default", available=1),
        StockLevel(sku="TSHIRT-WHT-L", location="Nowhere", available=2),
        StockLevel(sku="TSHIRT-WHT-L", location=str(overflow), available=0),
    ]
    async with conn.open() as (_row, connector):
        pushed = await connector.push_stock(levels)
        again = await connector.push_stock(levels[:2])
    assert pushed.set == [levels[0], levels[1], levels[4]] and again.set == levels[:2] and not again.refused
    assert set(pushed.refused) == {("NO-SUCH-SKU", "default"), ("TSHIRT-WHT-L", "Nowhere")}
    assert pushed.refused[("NO-SUCH-SKU", "default")] == "no Shopify product variant has this SKU"
    assert "location" in pushed.refused[("TSHIRT-WHT-L", "Nowhere")]
    assert state.inventory[(items["TSHIRT-BLK-M"], main)][0] == 17
    assert state.inventory[(items["HOODIE-GRY-S"], overflow)][0] == 3
    assert state.inventory[(items["TSHIRT-WHT-L"], overflow)][0] == 0


# -- credentials and records ----------------------------------------------------------------------------------


async def test_a_revoked_token_marks_the_connection_needs_reauth_and_no_record_holds_it(
    conn: Conn, shop: Shop
) -> None:
    async with conn.open() as (_row, connector):
        assert (await connector.check()).startswith("Shopify shop")
        shop.state.tokens.pop(TOKEN)  # what uninstalling the app does to its token
        with pytest.raises(RemoteConfigurationError) as refused:
            await connector.check()
    assert "reinstall the app" in refused.value.message and TOKEN not in refused.value.message
    row = await conn.row()
    assert row.status == "needs_reauth" and row.status_reason and "401" in row.status_reason
    calls = await conn.calls()
    assert [(c.method, c.status) for c in calls] == [("GET", 200), ("GET", 401)]
    assert all(c.url.startswith(f"{shop.url}{API}/shop.json") for c in calls)
    assert not any(TOKEN in f"{c.url} {c.error} {c.operation}" for c in calls)
    assert TOKEN not in (row.status_reason or "")


async def test_a_token_without_a_scope_says_to_reinstall_the_app_for_it(conn: Conn, shop: Shop) -> None:
    shop.state.tokens[TOKEN] = "read_orders"  # installed before the app asked for inventory scopes
    async with conn.open() as (_row, connector):
        with pytest.raises(RemoteConfigurationError) as refused:
            await connector.push_stock([StockLevel(sku="TSHIRT-BLK-M", available=1)])
    assert refused.value.status == 403
    assert (
        "read_locations" in refused.value.message and "reinstall the app so it asks" in refused.value.message
    )


async def test_a_bad_api_version_setting_is_a_configuration_error(hub: Hub, shop: Shop) -> None:
    conn = await connect(hub, shop)
    async with hub.db.transaction() as session:
        row = await repo.Tenant(session, conn.account_id).get_connection(conn.connection_id)
        row.settings = {"shop": SHOP, "api_version": "2025-1"}
    with pytest.raises(Exception, match="YYYY-MM"):
        async with conn.open():
            pass


# -- the sandbox's GraphQL inventory search (the documented SKU lookup) --------------------------------------


@pytest.fixture
async def api(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shop.url, headers={"X-Shopify-Access-Token": TOKEN}) as client:
        yield client


async def test_sandbox_graphql_finds_inventory_items_by_sku_with_cost(api: httpx.AsyncClient) -> None:
    query = "query($q: String!) { inventoryItems(first: 5, query: $q) { nodes { id sku } pageInfo { hasNextPage } } }"
    response = await api.post(
        f"{API}/graphql.json", json={"query": query, "variables": {"q": 'sku:"TSHIRT-BLK-M" OR sku:NOPE'}}
    )
    body = response.json()
    assert response.status_code == 200 and "X-Shopify-Shop-Api-Call-Limit" not in response.headers
    [node] = body["data"]["inventoryItems"]["nodes"]
    assert node["sku"] == "TSHIRT-BLK-M" and node["id"].startswith("gid://shopify/InventoryItem/")
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] > 0 and cost["throttleStatus"]["maximumAvailable"] == 2000.0


async def test_sandbox_graphql_answers_unknown_fields_and_bad_syntax_with_errors(
    api: httpx.AsyncClient,
) -> None:
    unknown = (
        await api.post(f"{API}/graphql.json", json={"query": "{ products(first: 1) { nodes { id } } }"})
    ).json()
    broken = (
        await api.post(f"{API}/graphql.json", json={"query": "{ inventoryItems(first: 1) { nodes { id }"})
    ).json()
    assert unknown["errors"][0]["message"] == "Field 'products' doesn't exist on type 'QueryRoot'"
    assert unknown["errors"][0]["extensions"]["code"] == "undefinedField" and "data" not in unknown
    assert broken["errors"][0]["message"].startswith("Parse error")

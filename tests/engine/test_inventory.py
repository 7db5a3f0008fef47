"""Stock levels out to Shopify: a level set through the API reaches the shop through the worker, as it is at
push time; a burst of changes is one batch; a push run twice changes nothing more; an unknown SKU is named on
the dead job without holding back the others or later pushes; a paused connection catches up when resumed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crossdock.engine import inventory
from crossdock.engine.connect import set_status
from crossdock.hub import Hub
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig
from crossdock.sandbox.common.server import run_in_thread
from crossdock.store import repo
from crossdock.store import tables as t
from tests.engine.support import eventually, fast, running_worker
from tests.support import Tenant

TOKEN = "shpat_inventory_test"
SHOP = "stock-test.myshopify.com"


@pytest.fixture
def shop() -> Iterator[tuple[str, Any]]:
    config = SandboxConfig(seed=5, token=TOKEN, fast_limits=True, extra={"shop": SHOP})
    app = create_sandbox_app("shopify", config)
    with run_in_thread(app) as url:
        yield url, app.state.sandbox


async def _connect(hub: Hub, account: Tenant, url: str) -> uuid.UUID:
    async with hub.db.transaction() as session:
        row = await repo.Tenant(session, uuid.UUID(account.id)).create_connection(
            connector="shopify",
            name="Stock shop",
            vault=hub.vault,
            settings={"shop": SHOP},
            base_url=url,
            secrets={"access_token": TOKEN},
        )
    return row.id


async def _levels(url: str) -> dict[str, int]:
    """SKU -> available at the shop's primary location, as the sandbox's admin API shows it."""
    async with httpx.AsyncClient(base_url=url) as admin:
        body = (await admin.get("/_sandbox/inventory")).json()
    primary = body["locations"][0]["id"]
    return {
        item["sku"]: level["available"]
        for item in body["items"]
        for level in item["levels"]
        if level["location_id"] == primary
    }


async def _jobs(hub: Hub) -> list[t.Job]:
    async with hub.db.session() as session:
        stmt = select(t.Job).where(t.Job.kind == inventory.PUSH_JOB).order_by(t.Job.created_at)
        return list((await session.scalars(stmt)).all())


async def _settled(hub: Hub) -> None:
    async def done() -> bool:
        return all(j.status in {"succeeded", "dead", "cancelled"} for j in await _jobs(hub))

    async with running_worker(fast(hub)):
        await eventually(done)


async def _put(
    client: httpx.AsyncClient, account: Tenant, sku: str, available: int, location: str = "default"
) -> None:
    r = await client.put(
        "/api/v1/stock-levels",
        json={"sku": sku, "location": location, "available": available},
        headers=account.headers,
    )
    assert r.status_code == 200, r.text


async def _set_calls(hub: Hub) -> int:
    async with hub.db.session() as session:
        calls = (await session.scalars(select(t.RemoteCall.url))).all()
    return sum(1 for url in calls if url.endswith("inventory_levels/set.json"))


async def test_levels_set_through_the_api_reach_the_shop_once_each(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant, shop: tuple[str, Any]
) -> None:
    url, _state = shop
    await _connect(hub, acme, url)
    await _put(client, acme, "TSHIRT-BLK-M", 5)
    await _put(client, acme, "TSHIRT-BLK-M", 7)  # a burst: the waiting push takes the newest quantity
    await _put(client, acme, "HOODIE-GRY-S", 11)
    assert len(await _jobs(hub)) == 1

    await _settled(hub)

    levels = await _levels(url)
    assert (levels["TSHIRT-BLK-M"], levels["HOODIE-GRY-S"]) == (7, 11)
    assert [j.status for j in await _jobs(hub)] == ["succeeded"]
    assert await _set_calls(hub) == 2

    await _put(client, acme, "HOODIE-GRY-S", 4)
    await _settled(hub)
    assert (await _levels(url))["HOODIE-GRY-S"] == 4
    assert await _set_calls(hub) == 3  # only the level that changed

    # The same push again (a redelivered job, a retry after a crash) finds nothing left to set.
    async with hub.db.transaction() as session:
        await inventory.request_push(session, uuid.UUID(acme.id))
    await _settled(hub)
    assert await _set_calls(hub) == 3


async def test_an_unknown_sku_is_named_on_the_dead_job_and_holds_nothing_back(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant, shop: tuple[str, Any]
) -> None:
    url, _state = shop
    await _connect(hub, acme, url)
    await _put(client, acme, "NO-SUCH-SKU", 3)
    await _put(client, acme, "TSHIRT-BLK-M", 9)

    await _settled(hub)

    assert (await _levels(url))["TSHIRT-BLK-M"] == 9
    (dead,) = await _jobs(hub)
    assert dead.status == "dead"
    assert "NO-SUCH-SKU at default (no Shopify product variant has this SKU)" in (dead.last_error or "")
    assert "set 1 of 2" in (dead.last_error or "")

    await _put(client, acme, "TSHIRT-BLK-M", 8)  # a later push is not held back by the unknown SKU
    await _settled(hub)
    assert (await _levels(url))["TSHIRT-BLK-M"] == 8
    assert [j.status for j in await _jobs(hub)] == ["dead", "succeeded"]


async def test_a_paused_connection_gets_the_levels_changed_meanwhile_when_resumed(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant, shop: tuple[str, Any]
) -> None:
    url, _state = shop
    connection_id = await _connect(hub, acme, url)
    await set_status(hub, uuid.UUID(acme.id), connection_id, "paused")
    await _put(client, acme, "TSHIRT-BLK-M", 21)
    assert await _jobs(hub) == []  # nothing is queued for a paused connection

    await set_status(hub, uuid.UUID(acme.id), connection_id, "active")
    await _settled(hub)

    assert (await _levels(url))["TSHIRT-BLK-M"] == 21


async def test_more_levels_than_one_push_takes_go_out_in_successive_pushes(
    hub: Hub,
    client: httpx.AsyncClient,
    acme: Tenant,
    shop: tuple[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _state = shop
    monkeypatch.setattr(inventory, "BATCH", 2)
    await _connect(hub, acme, url)
    wanted = {"TSHIRT-BLK-M": 1, "HOODIE-GRY-S": 2, "TSHIRT-WHT-L": 3}
    for sku, available in wanted.items():
        await _put(client, acme, sku, available)

    await _settled(hub)

    levels = await _levels(url)
    assert {sku: levels[sku] for sku in wanted} == wanted
    assert [j.status for j in await _jobs(hub)] == ["succeeded", "succeeded"]
    assert await _set_calls(hub) == 3

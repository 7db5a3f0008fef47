"""The dashboard's figures: orders by state, orders in over the last hour and day, failures and the queue, of the
signed-in account only."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update

from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.support import Tenant, order_body
from tests.web.support import signed_in
from tests.web.test_failures_pages import add_shop, dead_job, quarantined


def _words(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_the_figures_count_the_accounts_orders_by_window_failures_and_queue(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, globex: Tenant
) -> None:
    ids = []
    for who in (acme, acme, acme, globex):
        made = await client.post("/api/v1/orders", json=order_body(), headers=who.headers)
        assert made.status_code == 201, made.text
        ids.append(uuid.UUID(made.json()["id"]))
    now = utcnow()
    async with hub.db.transaction() as session:
        for ident, age in ((ids[0], timedelta(hours=3)), (ids[1], timedelta(days=2))):
            await session.execute(update(t.Order).where(t.Order.id == ident).values(created_at=now - age))
    shop = await add_shop(client, acme, "Dashboard shop")
    await dead_job(hub, acme, shop)
    running = await dead_job(hub, acme, shop)
    await dead_job(hub, acme, shop)
    await quarantined(hub, acme, shop, {"id": 1}, reason="unreadable")
    await dead_job(hub, globex, await add_shop(client, globex, "Globex shop"))
    async with hub.db.transaction() as session:
        await session.execute(update(t.Job).where(t.Job.id == uuid.UUID(running)).values(status="running"))
        queued = await session.scalar(
            select(func.count()).where(t.Job.account_id == uuid.UUID(acme.id), t.Job.status == "queued")
        )
    await signed_in(client, hub, acme)
    figures = _words((await client.get("/", headers={"X-Live-Block": "figures"})).text)
    assert "last hour 1 0" in figures and "last day 2 0" in figures
    assert "2 failed jobs and 1 quarantined payload wait" in figures
    assert f"{queued} job{'s' if queued != 1 else ''} waiting, 1 running" in figures

"""Helpers for the shipping-flow tests: the account's shipping policy put through the API, the account's jobs
run by an in-process worker until none is due, and what the flow stored for an order."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import or_, select

from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.engine.support import eventually, fast, running_worker
from tests.support import Tenant as Account

# Packing for channel orders whose lines carry no weight or size: 300 g a unit, in a 30 x 20 x 10 cm box.
PACKING: dict[str, Any] = {
    "packaging_weight": {"value": "100", "unit": "g"},
    "default_item_weight": {"value": "300", "unit": "g"},
    "default_box": {
        "length": {"value": "300", "unit": "mm"},
        "width": {"value": "200", "unit": "mm"},
        "height": {"value": "100", "unit": "mm"},
    },
}


async def put_policy(
    client: httpx.AsyncClient,
    account: Account,
    *,
    auto_ship: bool,
    rules: list[dict[str, Any]],
    packing: dict[str, Any] | None = None,
) -> None:
    policy = {"auto_ship": auto_ship, "packing": PACKING if packing is None else packing, "rules": rules}
    r = await client.put(
        "/api/v1/shipping/policy", json={"version": 0, "policy": policy}, headers=account.headers
    )
    assert r.status_code == 200, r.text


async def settled(hub: Hub, account_id: str) -> bool:
    async with hub.db.session() as session:
        busy = await session.scalar(
            select(t.Job.id)
            .where(
                t.Job.account_id == uuid.UUID(account_id),
                or_(
                    t.Job.status.in_(("queued", "running")),
                    (t.Job.status == "failed") & (t.Job.run_at <= utcnow()),
                ),
            )
            .limit(1)
        )
    return busy is None


async def run_all(hub: Hub, account_id: str) -> None:
    async with running_worker(fast(hub), run_periodic=False):
        await eventually(lambda: settled(hub, account_id), within_s=60)


async def shipments_of(hub: Hub, order_id: uuid.UUID) -> list[t.Shipment]:
    async with hub.db.session() as session:
        return list((await session.scalars(select(t.Shipment).where(t.Shipment.order_id == order_id))).all())


async def jobs_of(hub: Hub, order_id: uuid.UUID, kind: str) -> list[t.Job]:
    async with hub.db.session() as session:
        stmt = select(t.Job).where(t.Job.order_id == order_id, t.Job.kind == kind)
        return list((await session.scalars(stmt)).all())

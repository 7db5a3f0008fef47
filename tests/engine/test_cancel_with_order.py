"""A cancelled order takes its not-yet-run shipment work with it: waiting jobs enqueued with cancel_with_order
are cancelled in the same transaction as the order, whichever path cancels it; other jobs and running ones
are left alone, and the order's timeline says what was cancelled."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from crossdock.engine.jobs import enqueue
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t
from tests.engine.support import new_shop, timeline
from tests.engine.test_importer import _import, _payload
from tests.support import Tenant, order_body


async def _jobs(hub: Hub, account_id: uuid.UUID, order_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """A label purchase that dies with the order, one already running, and a push that must not."""
    async with hub.db.transaction() as session:
        ids = {
            "label": await enqueue(
                session,
                account_id=account_id,
                kind="shipment.buy_label",
                payload={},
                order_id=order_id,
                cancel_with_order=True,
            ),
            "running": await enqueue(
                session,
                account_id=account_id,
                kind="shipment.buy_label",
                payload={"parcel": 2},
                order_id=order_id,
                cancel_with_order=True,
            ),
            "other": await enqueue(
                session, account_id=account_id, kind="fulfillment.push", payload={}, order_id=order_id
            ),
        }
    async with hub.db.transaction() as session:
        running = await session.get(t.Job, ids["running"])
        assert running is not None
        running.status = "running"
    return {k: v for k, v in ids.items() if v is not None}


async def _statuses(hub: Hub, ids: dict[str, uuid.UUID]) -> dict[str, tuple[str, str | None]]:
    async with hub.db.session() as session:
        rows = (await session.scalars(select(t.Job).where(t.Job.id.in_(ids.values())))).all()
    by_id = {row.id: (row.status, row.last_error) for row in rows}
    return {name: by_id[job_id] for name, job_id in ids.items()}


async def test_a_cancellation_pulled_from_the_channel_cancels_the_waiting_label_job(hub: Hub) -> None:
    shop = await new_shop(hub)
    created = await _import(hub, shop.account_id, shop.connection_id, _payload())
    assert created.order_id is not None
    ids = await _jobs(hub, shop.account_id, created.order_id)

    await _import(
        hub,
        shop.account_id,
        shop.connection_id,
        _payload(cancelled_at="2024-03-14T10:00:00-04:00", updated_at="2024-03-14T10:00:00-04:00"),
    )

    statuses = await _statuses(hub, ids)
    assert statuses["label"] == ("cancelled", "cancelled: order cancelled")
    assert statuses["running"] == ("running", None)  # left to finish; its handler sees the order's status
    assert statuses["other"] == ("queued", None)
    events = [e for e in await timeline(hub, created.order_id) if e.kind == "jobs.cancelled"]
    assert len(events) == 1
    assert "1 waiting job(s) (shipment.buy_label)" in events[0].summary
    assert events[0].detail["job_ids"] == [str(ids["label"])]


async def test_a_cancellation_through_the_api_cancels_the_waiting_label_job_of_that_order_only(
    client: httpx.AsyncClient, acme: Tenant, hub: Hub
) -> None:
    mine = (await client.post("/api/v1/orders", json=order_body(), headers=acme.headers)).json()
    other = (
        await client.post("/api/v1/orders", json=order_body(external_number="M-2"), headers=acme.headers)
    ).json()
    account_id = uuid.UUID(acme.id)
    ids = await _jobs(hub, account_id, uuid.UUID(mine["id"]))
    untouched = await _jobs(hub, account_id, uuid.UUID(other["id"]))

    r = await client.post(f"/api/v1/orders/{mine['id']}/cancel", headers=acme.headers)

    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (await _statuses(hub, ids))["label"][0] == "cancelled"
    assert (await _statuses(hub, untouched))["label"] == ("queued", None)


async def test_a_job_cannot_die_with_an_order_it_does_not_name(hub: Hub) -> None:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, "Acme")
        with pytest.raises(ValueError, match="order_id"):
            await enqueue(session, account_id=account.id, kind="x", payload={}, cancel_with_order=True)

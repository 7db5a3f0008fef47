"""Order pulls end to end on every channel (Shopify, eBay, Amazon): the channel's sandbox on a loopback socket,
the real connector, the real database.

A backfill stores every order of the channel once and counts the run; the next pull picks up the orders edited
and cancelled on the remote side, and nothing else. (On Shopify, test_sync.py also shows a pull cut short
resuming and a record that does not map being quarantined; test_sync_kill.py kills a worker during a backfill of
10,000 orders on each channel.)
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from crossdock.engine import sync
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t
from tests.engine.channels import CHANNELS, LONG_AGO, Channel, serve_channel

ORDERS = 300


@pytest.fixture(params=CHANNELS)
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[Channel]:
    async with serve_channel(str(request.param), seed=7, orders=ORDERS) as served:
        yield served


async def connect(hub: Hub, channel: Channel) -> tuple[uuid.UUID, uuid.UUID]:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, "Acme")
    return account.id, await channel.connect(hub, account.id)


async def stored_orders(hub: Hub, connection_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """external id -> status, notes and last change of every order stored from the connection. Raises when an
    external id is stored twice."""
    async with hub.db.session() as session:
        rows = (
            await session.execute(
                select(t.Order.external_id, t.Order.status, t.Order.notes, t.Order.updated_at).where(
                    t.Order.connection_id == connection_id
                )
            )
        ).all()
    orders = {str(row[0]): {"status": row[1], "notes": row[2], "updated_at": row[3]} for row in rows}
    assert len(orders) == len(rows), "an external id is stored twice"
    return orders


async def test_a_backfill_stores_every_order_of_the_channel_once_and_counts_the_run(
    hub: Hub, channel: Channel
) -> None:
    account_id, connection_id = await connect(hub, channel)
    seen: list[int] = []

    run = await sync.run_pull(
        hub, account_id, connection_id, since=LONG_AGO, progress=lambda r: seen.append(r.read)
    )

    assert run.status == "succeeded" and run.error is None
    stored = await stored_orders(hub, connection_id)
    assert set(stored) == channel.order_ids()
    assert len(stored) == ORDERS
    assert (run.read, run.created, run.updated, run.skipped, run.invalid) == (ORDERS, ORDERS, 0, 0, 0)
    assert run.pages == math.ceil(ORDERS / channel.page_size)
    assert seen == sorted(seen) and seen[-1] == ORDERS  # progress after every page, never backwards
    async with hub.db.session() as session:
        cursor = await session.get(t.SyncCursor, (connection_id, sync.STREAM))
        bindings = await session.scalar(
            select(func.count()).select_from(t.Binding).where(t.Binding.connection_id == connection_id)
        )
    assert cursor is not None and cursor.resume is None
    assert cursor.watermark is not None and cursor.watermark == run.cursor_to
    assert cursor.watermark > channel.newest_change()  # the window covered every order's last change
    assert bindings == ORDERS


async def test_the_next_pull_picks_up_edits_and_cancellations_and_nothing_else(
    hub: Hub, channel: Channel
) -> None:
    account_id, connection_id = await connect(hub, channel)
    await sync.run_pull(hub, account_id, connection_id, since=LONG_AGO)
    before = await stored_orders(hub, connection_id)
    edited, cancelled = channel.changeable(edits=3, cancellations=2)
    for order_id in edited:
        await channel.edit(order_id)
    for order_id in cancelled:
        await channel.cancel(order_id)

    run = await sync.run_pull(hub, account_id, connection_id)

    assert run.status == "succeeded"
    assert (run.created, run.updated, run.invalid) == (0, 5, 0)
    assert run.skipped == run.read - 5
    assert run.read < ORDERS  # the window starts at the last pull's end, less the look-back
    after = await stored_orders(hub, connection_id)
    assert set(after) == set(before)
    changed = {order_id for order_id in after if after[order_id] != before[order_id]}
    assert changed == {*edited, *cancelled}
    column, value = channel.edited_column, channel.edited_value
    assert all(before[order_id][column] != value for order_id in edited)
    assert [after[order_id][column] for order_id in edited] == [value] * 3
    assert all(before[order_id]["status"] != "cancelled" for order_id in cancelled)
    assert [after[order_id]["status"] for order_id in cancelled] == ["cancelled"] * 2

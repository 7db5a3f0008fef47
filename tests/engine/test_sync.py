"""Order pulls end to end on Shopify: the sandbox on a loopback socket, the real connector, the real database.

A pull cut short resumes from its last stored page with no gap and no duplicate; a record that does not map is
quarantined with its reason and does not stop the pull. (Backfills and incremental pulls on every channel:
test_sync_channels.py; a worker killed mid-backfill: test_sync_kill.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from crossdock.engine import sync
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t
from tests.engine.channels import LONG_AGO, Shopify, serve_channel


class Crash(Exception):
    """Stands for the process dying between two pages."""


@pytest.fixture
async def shop() -> AsyncIterator[Shopify]:
    async with serve_channel("shopify", seed=7, orders=600) as channel:
        assert isinstance(channel, Shopify)
        yield channel


async def connect_shop(hub: Hub, shop: Shopify) -> tuple[uuid.UUID, uuid.UUID]:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, "Acme")
    return account.id, await shop.connect(hub, account.id)


async def stored_orders(hub: Hub, account_id: uuid.UUID) -> dict[str, str]:
    """external id -> status of every stored order of the account."""
    async with hub.db.session() as session:
        rows = (
            await session.execute(
                select(t.Order.external_id, t.Order.status).where(t.Order.account_id == account_id)
            )
        ).all()
    return {str(row[0]): row[1] for row in rows}


async def test_a_pull_cut_short_resumes_from_its_last_stored_page(hub: Hub, shop: Shopify) -> None:
    account_id, connection_id = await connect_shop(hub, shop)
    pages: list[int] = []

    def crash_after_two_pages(run: t.SyncRun) -> None:
        pages.append(run.pages)
        if run.pages == 2:
            raise Crash

    with pytest.raises(Crash):
        await sync.run_pull(hub, account_id, connection_id, since=LONG_AGO, progress=crash_after_two_pages)
    first = await stored_orders(hub, account_id)
    assert len(first) == 500
    async with hub.db.session() as session:
        cursor = await session.get(t.SyncCursor, (connection_id, sync.STREAM))
        failed = (
            await session.scalars(select(t.SyncRun).where(t.SyncRun.connection_id == connection_id))
        ).one()
    assert cursor is not None and cursor.resume is not None and cursor.resume["page"] is not None
    assert failed.status == "failed" and "Crash" in (failed.error or "")

    run = await sync.run_pull(hub, account_id, connection_id)

    assert run.pages == 1 and run.read == 100  # only the page that was not stored
    assert run.created == 100
    stored = await stored_orders(hub, account_id)
    assert set(stored) == shop.order_ids()  # no gap
    async with hub.db.session() as session:
        total = await session.scalar(
            select(func.count()).select_from(t.Order).where(t.Order.account_id == account_id)
        )
    assert total == 600  # no duplicate


async def test_a_record_that_does_not_map_is_quarantined_and_the_pull_goes_on(
    hub: Hub, shop: Shopify
) -> None:
    account_id, connection_id = await connect_shop(hub, shop)
    broken = sorted(shop.state.orders(), key=lambda o: o.id)[10]
    shop.state.update_order(broken, {"shipping_address": {"country_code": "XX", "address1": "Nowhere 1"}})

    run = await sync.run_pull(hub, account_id, connection_id, since=LONG_AGO)

    assert run.status == "succeeded"
    assert run.invalid == 1 and run.created == 599
    async with hub.db.session() as session:
        kept = (
            await session.scalars(
                select(t.InboxMessage).where(
                    t.InboxMessage.connection_id == connection_id, t.InboxMessage.status == "quarantined"
                )
            )
        ).one()
    assert str(broken.id) in kept.body.decode()
    assert "country" in (kept.error or "")

"""Order pulls end to end: the Shopify sandbox on a loopback socket, the real connector, the real database.

A backfill stores every order once with the run's counts; the next pull picks up edits and cancellations and
nothing else; a pull cut short resumes from its last stored page with no gap and no duplicate; a record that
does not map is quarantined with its reason and does not stop the pull.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from crossdock.engine import sync
from crossdock.hub import Hub
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig
from crossdock.sandbox.common.server import run_in_thread
from crossdock.store import repo
from crossdock.store import tables as t

TOKEN = "shpat_sandbox_sync_test"
SHOP = "sync-test.myshopify.com"
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


class Crash(Exception):
    """Stands for the process dying between two pages."""


@pytest.fixture
def shop() -> Iterator[tuple[str, object]]:
    app = create_sandbox_app(
        "shopify",
        SandboxConfig(seed=7, orders=600, token=TOKEN, fast_limits=True, extra={"shop": SHOP}),
    )
    with run_in_thread(app) as url:
        yield url, app.state.sandbox


async def connect_shop(hub: Hub, url: str) -> tuple[uuid.UUID, uuid.UUID]:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, "Acme")
        connection = await repo.Tenant(session, account.id).create_connection(
            connector="shopify",
            name="Acme shop",
            vault=hub.vault,
            settings={"shop": SHOP},
            base_url=url,
            secrets={"access_token": TOKEN, "api_secret": "sandbox-client-secret"},
        )
    return account.id, connection.id


async def stored_orders(hub: Hub, account_id: uuid.UUID) -> dict[str, str]:
    """external id -> status of every stored order of the account."""
    async with hub.db.session() as session:
        rows = (
            await session.execute(
                select(t.Order.external_id, t.Order.status).where(t.Order.account_id == account_id)
            )
        ).all()
    return {row[0]: row[1] for row in rows}


def sandbox_ids(state: object) -> set[str]:
    return {str(order.id) for order in state.orders()}  # type: ignore[attr-defined]


async def test_a_backfill_stores_every_order_once_and_counts_the_run(
    hub: Hub, shop: tuple[str, object]
) -> None:
    url, state = shop
    account_id, connection_id = await connect_shop(hub, url)
    seen: list[int] = []

    run = await sync.run_pull(
        hub, account_id, connection_id, since=LONG_AGO, progress=lambda r: seen.append(r.read)
    )

    assert run.status == "succeeded" and run.error is None
    stored = await stored_orders(hub, account_id)
    assert set(stored) == sandbox_ids(state)
    assert run.read == run.created == len(stored) == 600
    assert run.pages >= 3  # 250 a page
    assert seen == sorted(seen) and seen[-1] == 600  # progress after every page, never backwards
    async with hub.db.session() as session:
        cursor = await session.get(t.SyncCursor, (connection_id, sync.STREAM))
        bindings = await session.scalar(
            select(func.count()).select_from(t.Binding).where(t.Binding.connection_id == connection_id)
        )
    assert cursor is not None and cursor.resume is None
    assert cursor.watermark == run.cursor_to
    assert bindings == 600


async def test_the_next_pull_picks_up_edits_and_cancellations_only(
    hub: Hub, shop: tuple[str, object]
) -> None:
    url, state = shop
    account_id, connection_id = await connect_shop(hub, url)
    await sync.run_pull(hub, account_id, connection_id, since=LONG_AGO)
    orders = sorted(state.orders(), key=lambda o: o.id)  # type: ignore[attr-defined]
    open_orders = [
        o
        for o in orders
        if o.cancelled_ts is None and o.financial_status == "paid" and not state.fulfillment(o).fulfillments  # type: ignore[attr-defined]
    ][:5]
    for order in open_orders[:3]:
        state.update_order(order, {"note": "leave at the back door"})  # type: ignore[attr-defined]
    for order in open_orders[3:]:
        state.cancel_order(order, "customer")  # type: ignore[attr-defined]

    run = await sync.run_pull(hub, account_id, connection_id)

    assert run.status == "succeeded"
    assert (run.created, run.updated) == (0, 5)
    assert run.read < 600  # the window starts at the last pull's end, less the look-back
    stored = await stored_orders(hub, account_id)
    assert {stored[str(o.id)] for o in open_orders[3:]} == {"cancelled"}
    async with hub.db.session() as session:
        notes = (
            await session.scalars(
                select(t.Order.notes).where(t.Order.external_id.in_([str(o.id) for o in open_orders[:3]]))
            )
        ).all()
    assert notes == ["leave at the back door"] * 3


async def test_a_pull_cut_short_resumes_from_its_last_stored_page(hub: Hub, shop: tuple[str, object]) -> None:
    url, state = shop
    account_id, connection_id = await connect_shop(hub, url)
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
    assert set(stored) == sandbox_ids(state)  # no gap
    async with hub.db.session() as session:
        total = await session.scalar(
            select(func.count()).select_from(t.Order).where(t.Order.account_id == account_id)
        )
    assert total == 600  # no duplicate


async def test_a_record_that_does_not_map_is_quarantined_and_the_pull_goes_on(
    hub: Hub, shop: tuple[str, object]
) -> None:
    url, state = shop
    account_id, connection_id = await connect_shop(hub, url)
    broken = sorted(state.orders(), key=lambda o: o.id)[10]  # type: ignore[attr-defined]
    state.update_order(broken, {"shipping_address": {"country_code": "XX", "address1": "Nowhere 1"}})  # type: ignore[attr-defined]

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

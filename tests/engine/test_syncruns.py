"""Sync runs and cursors: the watermark commits with the page's records, never moves back, and the next pull
starts a look-back window before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crossdock.engine.syncruns import PageCounts, commit_page, finish_run, get_cursor, read_from, start_run
from crossdock.hub import Hub
from crossdock.store import tables as t
from tests.engine.support import new_shop

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def test_the_cursor_moves_only_with_the_transaction_that_stores_the_page(hub: Hub) -> None:
    shop = await new_shop(hub)
    async with hub.db.transaction() as session:
        run = await start_run(
            session, account_id=shop.account_id, connection_id=shop.connection_id, stream="orders"
        )
        await commit_page(session, run, T0, PageCounts(read=2, created=2))
    with pytest.raises(RuntimeError):
        async with hub.db.transaction() as session:
            await commit_page(session, run, T0 + timedelta(hours=1), PageCounts(read=5, created=5))
            raise RuntimeError("storing the page's records failed")
    async with hub.db.session() as session:
        assert await get_cursor(session, connection_id=shop.connection_id, stream="orders") == T0
        row = await session.get(t.SyncRun, run.id)
    assert row is not None and (row.pages, row.read, row.created) == (1, 2, 2) and row.cursor_to == T0


async def test_the_watermark_never_moves_back_and_counts_add_up(hub: Hub) -> None:
    shop = await new_shop(hub)
    async with hub.db.transaction() as session:
        run = await start_run(
            session, account_id=shop.account_id, connection_id=shop.connection_id, stream="orders"
        )
        await commit_page(session, run, T0 + timedelta(minutes=30), PageCounts(read=3, updated=1, skipped=2))
        # A page from the look-back window ends earlier than the watermark: counted, watermark kept.
        await commit_page(session, run, T0, PageCounts(read=4, created=1, invalid=1, skipped=2))
        await commit_page(session, run, None, PageCounts())
        await finish_run(session, run)
    async with hub.db.session() as session:
        row = await session.get(t.SyncRun, run.id)
        assert await get_cursor(session, connection_id=shop.connection_id, stream="orders") == T0 + timedelta(
            minutes=30
        )
        start = await read_from(
            session, connection_id=shop.connection_id, stream="orders", lookback=timedelta(minutes=5)
        )
        other = await read_from(session, connection_id=shop.connection_id, stream="products")
    assert row is not None and row.status == "succeeded" and row.finished_at is not None
    assert (row.pages, row.read, row.created, row.updated, row.skipped, row.invalid) == (3, 7, 1, 1, 4, 1)
    assert start == T0 + timedelta(minutes=25) and other is None


async def test_a_new_run_starts_from_the_previous_watermark_and_a_failed_run_keeps_its_error(
    hub: Hub,
) -> None:
    shop = await new_shop(hub)
    async with hub.db.transaction() as session:
        first = await start_run(
            session, account_id=shop.account_id, connection_id=shop.connection_id, stream="orders"
        )
        await commit_page(session, first, T0, PageCounts(read=1, created=1))
        await finish_run(session, first)
    async with hub.db.transaction() as session:
        second = await start_run(
            session,
            account_id=shop.account_id,
            connection_id=shop.connection_id,
            stream="orders",
            trigger="manual",
        )
        await finish_run(
            session, second, error="Shopify answered 503 three times; the next run will try again"
        )
    assert second.cursor_from == T0 and second.trigger == "manual"
    assert (
        second.status == "failed"
        and second.error is not None
        and second.error.startswith("Shopify answered 503")
    )


async def test_a_naive_cursor_is_refused(hub: Hub) -> None:
    shop = await new_shop(hub)
    async with hub.db.transaction() as session:
        run = await start_run(
            session, account_id=shop.account_id, connection_id=shop.connection_id, stream="orders"
        )
        with pytest.raises(ValueError, match="aware"):
            await commit_page(session, run, datetime(2026, 3, 1), PageCounts())


async def test_a_run_left_running_by_a_dead_process_is_closed_by_the_next_one(hub: Hub) -> None:
    shop = await new_shop(hub)
    async with hub.db.transaction() as session:
        dead = await start_run(
            session, account_id=shop.account_id, connection_id=shop.connection_id, stream="orders"
        )
        other = await start_run(
            session, account_id=shop.account_id, connection_id=shop.connection_id, stream="stock"
        )
    async with hub.db.transaction() as session:
        fresh = await start_run(
            session, account_id=shop.account_id, connection_id=shop.connection_id, stream="orders"
        )
    async with hub.db.session() as session:
        closed = await session.get(t.SyncRun, dead.id)
        untouched = await session.get(t.SyncRun, other.id)
        running = await session.get(t.SyncRun, fresh.id)
    assert closed is not None and closed.status == "failed" and closed.finished_at is not None
    assert (
        closed.error
        == f"interrupted: the process running it stopped; run {fresh.id} goes on from its last stored page"
    )
    assert untouched is not None and untouched.status == "running"  # another stream's run is its own
    assert running is not None and running.status == "running"

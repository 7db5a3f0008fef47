"""The inbox: stored with its processing job in one transaction, deduplicated by the unique index, secrets
left out of stored headers, processed once, replayable, purged after the retention period."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.engine import inbox
from crossdock.engine.inbox import PROCESSORS, Processed, clean_headers, processor, receive
from crossdock.engine.jobs import JobContext
from crossdock.hub import Hub
from crossdock.logs import REDACTED
from crossdock.store import tables as t
from crossdock.store.repo import NotFound
from crossdock.store.types import utcnow
from tests.engine.support import Shop, eventually, fast, new_shop, running_worker, timeline

KIND = "test.orders_create"
CALLS: list[uuid.UUID] = []


@pytest.fixture(autouse=True)
def order_processor() -> Any:
    """A processor for KIND that records each call and says which order the payload concerns."""

    @processor(KIND)
    async def process(session: AsyncSession, ctx: JobContext, row: t.InboxMessage) -> Processed:
        CALLS.append(row.id)
        order_id = uuid.UUID(row.headers["x-test-order"])
        return Processed(order_id=order_id, summary=f"Received orders/create webhook {row.dedup_key}")

    CALLS.clear()
    yield
    del PROCESSORS[KIND]


def _headers(shop: Shop) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Hmac-Sha256": "c2lnbmF0dXJl",
        "Authorization": "Bearer shpat_secret",
        "X-Shopify-Webhook-Id": "b54557e4",
        "X-Test-Order": str(shop.order_id),
    }


async def _receive(hub: Hub, shop: Shop, dedup_key: str = "b54557e4") -> inbox.InboxResult:
    async with hub.db.transaction() as session:
        return await receive(
            session,
            account_id=shop.account_id,
            connection_id=shop.connection_id,
            kind=KIND,
            dedup_key=dedup_key,
            headers=_headers(shop),
            body=b'{"id": 820982911946154508}',
        )


async def _count(hub: Hub, table: Any, **where: Any) -> int:
    async with hub.db.session() as session:
        return int(
            (await session.execute(select(func.count()).select_from(table).filter_by(**where))).scalar_one()
        )


async def test_a_payload_and_its_processing_job_commit_together_or_not_at_all(hub: Hub) -> None:
    shop = await new_shop(hub)
    with pytest.raises(RuntimeError):
        async with hub.db.transaction() as session:
            await receive(
                session,
                account_id=shop.account_id,
                connection_id=shop.connection_id,
                kind=KIND,
                dedup_key="k1",
                headers={},
                body=b"{}",
            )
            raise RuntimeError("the request failed before it was acknowledged")
    assert await _count(hub, t.InboxMessage) == 0 and await _count(hub, t.Job) == 0
    result = await _receive(hub, shop)
    assert result.stored and not result.duplicate and result.inbox_id == result.original_id
    async with hub.db.session() as session:
        row = await session.get(t.InboxMessage, result.inbox_id)
        jobs = (await session.scalars(select(t.Job))).all()
    assert row is not None and row.body == b'{"id": 820982911946154508}' and row.status == "received"
    assert [(j.kind, j.payload["inbox_id"]) for j in jobs] == [("inbox.process", str(row.id))]


async def test_signatures_and_credentials_are_not_stored_with_the_headers(hub: Hub) -> None:
    shop = await new_shop(hub)
    result = await _receive(hub, shop)
    async with hub.db.session() as session:
        row = await session.get(t.InboxMessage, result.inbox_id)
    assert row is not None
    assert row.headers["x-shopify-hmac-sha256"] == REDACTED and row.headers["authorization"] == REDACTED
    assert (
        row.headers["x-shopify-webhook-id"] == "b54557e4"
        and row.headers["content-type"] == "application/json"
    )


def test_stored_headers_have_lowercase_names_and_withhold_credentials_whatever_their_case() -> None:
    headers = {
        "X-Shopify-HMAC-Sha256": "c2lnbmF0dXJl",
        "x-shopify-hmac-sha256": "c2lnbmF0dXJl",
        "Authorization": "Bearer abc",
        "X-Api-Key": "k",
        "Content-Type": "application/json",
        "X-Callback": "https://shop.example/cb?token=abc&x=1",
    }
    for _ in range(2):  # the second time, every name's decision is one already made
        assert clean_headers(headers) == {
            "x-shopify-hmac-sha256": REDACTED,
            "authorization": REDACTED,
            "x-api-key": REDACTED,
            "content-type": "application/json",
            "x-callback": f"https://shop.example/cb?token={REDACTED}&x=1",
        }


async def test_the_same_payload_stored_three_times_at_once_is_processed_once(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    results = await asyncio.gather(*(_receive(hub, shop) for _ in range(3)))
    originals = [r for r in results if not r.duplicate]
    assert len(originals) == 1 and all(r.stored for r in results)
    assert {r.original_id for r in results} == {originals[0].inbox_id}
    assert await _count(hub, t.InboxMessage, status="duplicate") == 2
    assert await _count(hub, t.Job, kind="inbox.process") == 1

    async with running_worker(hub):
        await eventually(lambda: _processed(hub, originals[0].inbox_id))
    assert [originals[0].inbox_id] == CALLS
    events = [e for e in await timeline(hub, shop.order_id) if e.kind == "inbox.processed"]
    assert [e.summary for e in events] == ["Received orders/create webhook b54557e4"]
    assert events[0].detail["inbox_id"] == str(originals[0].inbox_id)


async def _processed(hub: Hub, inbox_id: uuid.UUID) -> bool:
    async with hub.db.session() as session:
        row = await session.get(t.InboxMessage, inbox_id)
    return row is not None and row.status == "processed"


async def test_replay_processes_stored_payloads_again_and_only_once_per_replay(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    first = await _receive(hub, shop, "a")
    await _receive(hub, shop, "b")
    await _receive(hub, shop, "b")  # a duplicate is never replayed: its original is
    async with running_worker(hub):
        await eventually(lambda: _processed(hub, first.inbox_id))
        await eventually(lambda: _jobs_done(hub, 2))
        async with hub.db.transaction() as session:
            assert await inbox.replay(session, connection_id=shop.connection_id) == 2
            # Replaying again before the first replay ran queues nothing more (one waiting job per payload).
            assert await inbox.replay(session, connection_id=shop.connection_id) == 0
            later = utcnow() + timedelta(minutes=1)
            assert await inbox.replay(session, connection_id=shop.connection_id, since=later) == 0
        await eventually(lambda: _jobs_done(hub, 4))
    assert sorted(CALLS).count(first.inbox_id) == 2 and len(CALLS) == 4
    summaries = [e.summary for e in await timeline(hub, shop.order_id) if e.kind == "inbox.processed"]
    assert summaries.count("Received orders/create webhook a again (replay)") == 1


async def _jobs_done(hub: Hub, n: int) -> bool:
    return await _count(hub, t.Job, kind="inbox.process", status="succeeded") >= n


async def test_a_payload_nobody_can_process_goes_dead_with_a_reason(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    async with hub.db.transaction() as session:
        result = await receive(
            session,
            account_id=shop.account_id,
            connection_id=shop.connection_id,
            kind="acme.unknown_topic",
            dedup_key="1",
            headers={},
            body=b"{}",
        )
    async with running_worker(hub):
        await eventually(lambda: _count_is(hub, t.Job, 1, kind="inbox.process", status="dead"))
    async with hub.db.session() as session:
        row = await session.get(t.InboxMessage, result.inbox_id)
    assert row is not None and row.status == "failed"
    assert row.error is not None and "does not know how to process inbound 'acme.unknown_topic'" in row.error


async def _count_is(hub: Hub, table: Any, n: int, **where: Any) -> bool:
    return await _count(hub, table, **where) == n


async def test_a_connection_of_another_account_is_refused(hub: Hub) -> None:
    shop = await new_shop(hub)
    other = await new_shop(hub, "Globex")
    with pytest.raises(NotFound):
        async with hub.db.transaction() as session:
            await receive(
                session,
                account_id=other.account_id,
                connection_id=shop.connection_id,
                kind=KIND,
                dedup_key="x",
                headers={},
                body=b"{}",
            )
    assert await _count(hub, t.InboxMessage) == 0


async def test_the_purge_keeps_recent_and_unprocessed_payloads(hub: Hub) -> None:
    shop = await new_shop(hub)
    old_done = await _receive(hub, shop, "old-done")
    old_dup = await _receive(hub, shop, "old-done")
    old_waiting = await _receive(hub, shop, "old-waiting")
    recent = await _receive(hub, shop, "recent")
    long_ago = utcnow() - timedelta(days=31)
    async with hub.db.transaction() as session:
        await session.execute(
            update(t.InboxMessage)
            .where(t.InboxMessage.id.in_([old_done.inbox_id, old_dup.inbox_id, old_waiting.inbox_id]))
            .values(received_at=long_ago)
        )
        await session.execute(
            update(t.InboxMessage)
            .where(t.InboxMessage.id.in_([old_done.inbox_id, recent.inbox_id]))
            .values(status="processed")
        )
    async with hub.db.transaction() as session:
        deleted = await inbox.purge(
            session, older_than=utcnow() - timedelta(days=hub.settings.inbox_retention_days)
        )
    assert deleted == 2
    async with hub.db.session() as session:
        left = set((await session.scalars(select(t.InboxMessage.id))).all())
    assert left == {old_waiting.inbox_id, recent.inbox_id}

"""The inbox writer: deliveries that arrive together share a transaction, each answered only once its row and
processing job are stored; redeliveries and twins within a batch end as duplicates, as with `receive`; one
delivery that cannot be stored fails alone."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from crossdock.engine import inbox, inbox_sqlite
from crossdock.engine.inbox import PROCESS_JOB, Delivery, InboxResult, InboxWriter
from crossdock.engine.inbox_pg import split_columns
from crossdock.engine.jobs import add_waker, remove_waker
from crossdock.hub import Hub
from crossdock.logs import REDACTED
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.store.db import driver_connection
from crossdock.store.repo import NotFound
from crossdock.store.types import utcnow
from tests.engine.support import Shop, jobs_notifications, new_shop, queries_heard

KIND = "test.orders_create"


def _delivery(shop: Shop, key: str, body: bytes = b'{"id": 1}') -> Delivery:
    headers = {
        "X-Shopify-Webhook-Id": key,
        "X-Shopify-Hmac-Sha256": "c2lnbmF0dXJl",
        "Content-Type": "application/json",
    }
    return Delivery(shop.account_id, shop.connection_id, KIND, key, headers, body)


async def _rows(hub: Hub) -> list[t.InboxMessage]:
    async with hub.db.session() as session:
        return list(
            (await session.scalars(select(t.InboxMessage).order_by(t.InboxMessage.received_at))).all()
        )


async def _jobs(hub: Hub) -> list[t.Job]:
    async with hub.db.session() as session:
        return list((await session.scalars(select(t.Job).where(t.Job.kind == PROCESS_JOB))).all())


@contextmanager
def _transactions(hub: Hub) -> Iterator[list[str]]:
    """The transactions the database runs meanwhile, as the driver hears them. SQLite: each BEGIN, the sqlite3
    module's implicit one included. PostgreSQL: a batch is one statement sent outside a transaction block, which
    PostgreSQL runs as a transaction of its own; the batch's statements are counted, and any BEGIN, which would
    start another."""
    starts = ("BEGIN", _BATCH.upper()) if hub.db.dialect == "postgresql" else ("BEGIN",)
    with queries_heard(hub, lambda query: query.upper().startswith(starts)) as sent:
        yield sent


def _batch_statements(hub: Hub) -> AbstractContextManager[list[str]]:
    """PostgreSQL: the batch statements the writer sends meanwhile."""
    return queries_heard(hub, lambda query: query.startswith(_BATCH))


_BATCH = "WITH delivered"


async def test_concurrent_deliveries_are_stored_together_each_with_its_processing_job(hub: Hub) -> None:
    shop = await new_shop(hub)
    writer = InboxWriter(hub.db)
    with _transactions(hub) as began:
        results = await asyncio.gather(
            *(writer.store(_delivery(shop, f"w-{n}", b"%d" % n)) for n in range(20))
        )

    assert len(began) == 1  # twenty deliveries, one transaction
    rows = {row.id: row for row in await _rows(hub)}
    assert set(rows) == {r.inbox_id for r in results}
    assert all(not r.duplicate and r.original_id == r.inbox_id for r in results)
    assert {rows[r.inbox_id].dedup_key for r in results} == {f"w-{n}" for n in range(20)}
    assert rows[results[3].inbox_id].body == b"3"
    assert all(
        row.status == "received" and row.headers["x-shopify-hmac-sha256"] == REDACTED for row in rows.values()
    )
    jobs = await _jobs(hub)
    assert sorted(job.payload["inbox_id"] for job in jobs) == sorted(str(r.inbox_id) for r in results)
    assert {job.queueing_key for job in jobs} == {f"inbox:{r.inbox_id}" for r in results}


async def test_redeliveries_and_twins_in_one_batch_are_stored_as_duplicates_of_one_original(hub: Hub) -> None:
    shop = await new_shop(hub)
    writer = InboxWriter(hub.db)
    first = await writer.store(_delivery(shop, "w-1"))
    with _transactions(hub) as began:
        again, twin_a, twin_b = await asyncio.gather(
            writer.store(_delivery(shop, "w-1")),
            writer.store(_delivery(shop, "w-2")),
            writer.store(_delivery(shop, "w-2")),
        )
    assert len(began) == 1  # the redelivery and the twin are stored with the batch, not one by one after it
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.original_id == first.inbox_id
    assert sorted([twin_a.duplicate, twin_b.duplicate]) == [False, True]
    original = twin_a if not twin_a.duplicate else twin_b
    assert (twin_a.original_id, twin_b.original_id) == (original.inbox_id, original.inbox_id)

    rows = await _rows(hub)
    assert len(rows) == 4
    assert sorted(row.status for row in rows) == ["duplicate", "duplicate", "received", "received"]
    # Only the originals are processed.
    assert sorted(job.payload["inbox_id"] for job in await _jobs(hub)) == sorted(
        [str(first.inbox_id), str(original.inbox_id)]
    )


async def test_a_delivery_that_cannot_be_stored_fails_alone(hub: Hub) -> None:
    kept, removed = await new_shop(hub, "Kept"), await new_shop(hub, "Removed")
    async with hub.db.transaction() as session:
        await repo.Tenant(session, removed.account_id).delete_connection(removed.connection_id)
    writer = InboxWriter(hub.db)
    outcomes = await asyncio.gather(
        writer.store(_delivery(kept, "w-1")),
        writer.store(_delivery(removed, "w-2")),
        writer.store(_delivery(kept, "w-3")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], InboxResult) and isinstance(outcomes[2], InboxResult)
    assert isinstance(outcomes[1], NotFound)
    assert sorted(row.dedup_key for row in await _rows(hub)) == ["w-1", "w-3"]
    assert len(await _jobs(hub)) == 2


async def test_a_sender_that_goes_away_leaves_its_delivery_stored_and_the_writer_serving_others(
    hub: Hub,
) -> None:
    shop = await new_shop(hub)
    writer = InboxWriter(hub.db)
    gone = asyncio.create_task(writer.store(_delivery(shop, "w-gone")))
    await asyncio.sleep(0)  # queued, and the writer started
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    later = await writer.store(_delivery(shop, "w-later"))
    assert not later.duplicate
    assert sorted(row.dedup_key for row in await _rows(hub)) == ["w-gone", "w-later"]


async def test_batches_are_capped(hub: Hub) -> None:
    shop = await new_shop(hub)
    writer = InboxWriter(hub.db, max_batch=4)
    with _transactions(hub) as began:
        await asyncio.gather(*(writer.store(_delivery(shop, f"w-{n}")) for n in range(10)))
    assert len(began) == 3
    async with hub.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(t.InboxMessage)) == 10


async def test_an_unknown_connection_id_fails_with_not_found(hub: Hub) -> None:
    shop = await new_shop(hub)
    writer = InboxWriter(hub.db)
    stray = Delivery(shop.account_id, uuid.uuid4(), KIND, "w-1", {}, b"{}")
    with pytest.raises(NotFound):
        await writer.store(stray)
    assert await _rows(hub) == []


async def test_stored_jobs_wake_this_process_workers(hub: Hub) -> None:
    shop = await new_shop(hub)
    writer = InboxWriter(hub.db)
    waker = asyncio.Event()
    add_waker(waker)
    try:
        await asyncio.gather(*(writer.store(_delivery(shop, f"w-{n}")) for n in range(3)))
    finally:
        remove_waker(waker)
    assert waker.is_set()


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_on_postgresql_a_batch_is_one_statement_and_one_notification(hub: Hub) -> None:
    shop = await new_shop(hub)
    first = await InboxWriter(hub.db).store(_delivery(shop, "w-0"))
    checkouts: list[object] = []
    event.listen(hub.db.engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))
    async with jobs_notifications(hub) as notified:
        with _batch_statements(hub) as statements:
            writer = InboxWriter(hub.db, max_batch=4)
            # Ten deliveries, one a redelivery: three batches, three statements, on one connection of the pool.
            results = await asyncio.gather(
                *(writer.store(_delivery(shop, f"w-{n}")) for n in range(10)), return_exceptions=True
            )
        assert all(isinstance(r, InboxResult) for r in results)
        for _ in range(50):
            if len(notified) == 3:
                break
            await asyncio.sleep(0.02)
    assert len(statements) == 3
    assert len(checkouts) == 1
    assert len(notified) == 3  # one per batch that enqueued jobs, once it committed
    redelivered = results[0]
    assert isinstance(redelivered, InboxResult)
    assert (redelivered.duplicate, redelivered.original_id) == (True, first.inbox_id)
    assert len(await _jobs(hub)) == 10


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_on_postgresql_a_large_body_is_stored_compressed_with_lz4_and_read_back_whole(hub: Hub) -> None:
    async with hub.db.engine.connect() as connection:
        methods = await connection.scalar(
            text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
        )
    if "lz4" not in methods:
        pytest.skip("this PostgreSQL server was built without lz4; the inbox keeps pglz (migration 0012)")
    shop = await new_shop(hub)
    # An order's JSON of some 20 kB: well past the size from which PostgreSQL compresses a value.
    body = json.dumps(
        {"id": 1, "line_items": [{"title": f"Item {n}", "sku": f"SKU-{n}"} for n in range(500)]}
    )
    stored = await InboxWriter(hub.db).store(_delivery(shop, "w-big", body.encode()))
    async with hub.db.engine.connect() as connection:
        method, kept = (
            await connection.execute(
                text("SELECT pg_column_compression(body), body FROM inbox WHERE id = :id"),
                {"id": stored.inbox_id},
            )
        ).one()
    assert method == "lz4"
    assert kept == body.encode()


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_on_postgresql_a_batch_that_fails_stores_nothing_of_it_and_the_writer_goes_on(hub: Hub) -> None:
    kept, removed = await new_shop(hub, "Kept"), await new_shop(hub, "Removed")
    async with hub.db.transaction() as session:
        await repo.Tenant(session, removed.account_id).delete_connection(removed.connection_id)
    writer = InboxWriter(hub.db, max_batch=2)
    with _batch_statements(hub) as statements:
        outcomes = await asyncio.gather(
            writer.store(_delivery(removed, "w-1")),
            writer.store(_delivery(kept, "w-2")),
            writer.store(_delivery(kept, "w-3")),
            writer.store(_delivery(kept, "w-4")),
            return_exceptions=True,
        )
    assert isinstance(outcomes[0], NotFound)
    assert all(isinstance(outcome, InboxResult) for outcome in outcomes[1:])
    assert sorted(row.dedup_key for row in await _rows(hub)) == ["w-2", "w-3", "w-4"]
    assert len(await _jobs(hub)) == 3
    # The failed batch's statement, then each of its deliveries on its own, then the next batch in one statement.
    assert len(statements) == 2


async def test_a_delivery_queued_while_the_writer_gives_its_connection_back_is_stored(hub: Hub) -> None:
    shop = await new_shop(hub)
    writer = InboxWriter(hub.db)
    # Each delivery comes as soon as the one before is answered, while its writer is still ending.
    for n in range(5):
        await asyncio.wait_for(writer.store(_delivery(shop, f"w-{n}")), timeout=10)
    assert len(await _rows(hub)) == 5


async def test_a_batch_from_several_shops_stores_each_delivery_under_its_own_connection_and_account(
    hub: Hub,
) -> None:
    # On PostgreSQL the account and connection are sent once for a batch that shares them, as arrays for one that
    # does not: both kinds of batch, and a batch of one, store the same rows.
    acme, globex = await new_shop(hub, "Acme"), await new_shop(hub, "Globex")
    writer = InboxWriter(hub.db)
    alone = await writer.store(_delivery(acme, "w-alone"))
    with _transactions(hub) as began:
        mixed = await asyncio.gather(
            *(writer.store(_delivery(shop, f"w-{n}")) for n, shop in enumerate([acme, globex] * 3))
        )
    assert len(began) == 1
    rows = {row.id: row for row in await _rows(hub)}
    jobs = {job.payload["inbox_id"]: job for job in await _jobs(hub)}
    for result, shop in [(alone, acme), *zip(mixed, [acme, globex] * 3, strict=True)]:
        row = rows[result.inbox_id]
        assert (row.connection_id, row.account_id, row.status) == (
            shop.connection_id,
            shop.account_id,
            "received",
        )
        assert jobs[str(result.inbox_id)].account_id == shop.account_id
    assert len(rows) == len(jobs) == 7


def test_a_batch_sends_once_what_its_rows_share_and_as_arrays_what_they_do_not() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    rows = [{"id": uuid.uuid4(), "account_id": a, "payload": {"n": 1}, "key": None} for _ in range(3)]
    rows[2]["payload"] = {"n": 2}
    values: dict[str, Any] = {}
    assert split_columns("j_", ["id", "account_id", "payload", "key"], rows, values) == {"account_id", "key"}
    assert values["j_account_id"] == a and values["j_key"] is None
    assert values["j_id"] == [row["id"] for row in rows]
    assert values["j_payload"] == [{"n": 1}, {"n": 1}, {"n": 2}]
    rows[1]["account_id"] = b
    assert split_columns("j_", ["id", "account_id"], rows, {}) == set()
    # A batch of one shares everything but its ids, which are always arrays: there is always a row to unnest.
    assert split_columns("d_", ["id", "account_id", "payload"], rows[:1], {}) == {"account_id", "payload"}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_on_sqlite_a_batch_past_the_statement_limit_is_cut_into_statements_of_one_transaction(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At most 20 values a statement: two rows of eight inbox columns, one row of a job's.
    monkeypatch.setattr(inbox_sqlite, "_MAX_VALUES", 20)
    shop = await new_shop(hub)
    writer = InboxWriter(hub.db)
    first = await writer.store(_delivery(shop, "w-0"))
    # One listener: SQLite's trace callback is one a connection.
    with queries_heard(hub, lambda query: query.upper().startswith(("BEGIN", "INSERT"))) as heard:
        results = await asyncio.gather(
            *(writer.store(_delivery(shop, key)) for key in ["w-0", "w-1", "w-2", "w-2", "w-3", "w-4"])
        )
    assert [query.split()[0].upper() for query in heard].count("BEGIN") == 1
    # Originals: 6 rows in 3 statements; duplicates: 2 rows in 1; jobs: 4 rows in 4.
    assert sum(query.upper().startswith("INSERT") for query in heard) == 8
    assert (results[0].duplicate, results[0].original_id) == (True, first.inbox_id)
    assert sorted([results[2].duplicate, results[3].duplicate]) == [False, True]
    assert results[2].original_id == results[3].original_id
    rows = await _rows(hub)
    assert len(rows) == 7
    assert sorted(row.status for row in rows) == ["duplicate"] * 2 + ["received"] * 5
    assert len(await _jobs(hub)) == 5


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("isolation", ["SERIALIZABLE", "AUTOCOMMIT"])
async def test_on_sqlite_a_batch_whose_last_statement_fails_stores_nothing(hub: Hub, isolation: str) -> None:
    # Whether the driver begins the transaction (its implicit BEGIN) or, on a connection in autocommit mode, the
    # batch does: the inbox rows inserted before the jobs' statement failed are rolled back with it.
    shop = await new_shop(hub)
    rows = [{"id": uuid.uuid4(), **inbox._row_values(_delivery(shop, "w-1"), utcnow())}]
    jobs = [
        inbox._process_job_values(rows[0], uuid.uuid4()) | {"account_id": uuid.uuid4()}
    ]  # no such account
    async with hub.db.engine.connect() as connection:
        await connection.execution_options(isolation_level=isolation)
        batch = inbox_sqlite.SqliteBatch(connection.dialect, list(rows[0]), list(jobs[0]))
        with pytest.raises(sqlite3.IntegrityError):
            await batch.execute(await driver_connection(connection), rows, jobs)
    assert await _rows(hub) == []
    assert await _jobs(hub) == []

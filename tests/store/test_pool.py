"""PostgreSQL's connection pool: idle connections are pinged before use, busy ones are not, and a connection
that broke while it seemed fine costs one failed statement, after which the pool has replaced all of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from crossdock.config import Settings
from crossdock.store import db as dbmodule
from crossdock.store.db import Database
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    assert POSTGRES_URL
    database = Database(Settings(database_url=POSTGRES_URL, db_pool_size=2))
    try:
        yield database
    finally:
        await database.dispose()


def count_pings(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    ping = database.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(database.engine.dialect, "do_ping", counted)
    return pings


async def backend_pid(database: Database) -> int:
    async with database.session() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def terminate(pid: int) -> None:
    """End a server session from another connection, as a restart or an administrator would."""
    assert POSTGRES_URL
    other = Database(Settings(database_url=POSTGRES_URL))
    try:
        async with other.session() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await other.dispose()


async def test_a_connection_used_a_moment_ago_is_not_pinged(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = count_pings(database, monkeypatch)
    first = await backend_pid(database)
    for _ in range(20):
        assert await backend_pid(database) == first
    assert pings == []


async def test_an_idle_connection_is_pinged_and_replaced_if_the_server_ended_it(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbmodule, "IDLE_PING_S", 0.2)
    pings = count_pings(database, monkeypatch)
    first = await backend_pid(database)
    await terminate(first)
    await asyncio.sleep(0.3)

    # The ping finds the connection dead: the pool hands out a new one and the statement succeeds.
    second = await backend_pid(database)
    assert second != first
    assert len(pings) == 1

    await asyncio.sleep(0.3)
    assert await backend_pid(database) == second  # alive: pinged and kept
    assert len(pings) == 2


async def test_a_connection_that_broke_unseen_fails_one_statement_then_the_pool_renews_itself(
    database: Database,
) -> None:
    # Two connections in the pool, both ended on the server while they were fresh (no ping before use).
    async with database.session() as one, database.session() as two:
        pids = [int((await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()) for s in (one, two)]
    for pid in pids:
        await terminate(pid)

    with pytest.raises(DBAPIError) as failed:
        await backend_pid(database)
    assert failed.value.connection_invalidated
    # The disconnect invalidated the whole pool: the other dead connection is not handed out again.
    for _ in range(3):
        assert await backend_pid(database) not in pids


async def test_statements_on_an_autocommit_connection_are_each_their_own_transaction(
    database: Database,
) -> None:
    # now() is the start of the current transaction: within one it does not move, across two it does.
    async def two_nows(conn: Any) -> tuple[Any, Any]:
        first = (await conn.execute(text("SELECT now()"))).scalar_one()
        await asyncio.sleep(0.02)
        return first, (await conn.execute(text("SELECT now()"))).scalar_one()

    async with database.autocommit() as conn:
        first, second = await two_nows(conn)
    assert second > first
    async with database.engine.begin() as conn:
        first, second = await two_nows(conn)
    assert second == first

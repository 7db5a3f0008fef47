"""Engines and sessions: SQLite (WAL, foreign keys on) by default, PostgreSQL when configured."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from crossdock.config import Settings


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while one writer commits; busy_timeout makes a second writer wait, not fail. 30 s:
    # on a busy machine (two cores shared with other work) writers were seen queueing past 10 s, and a webhook
    # or job that waits is better than one that fails with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # FULL: each commit reaches the disk before it returns. Under NORMAL a WAL commit is only synced at the next
    # checkpoint, and "might roll back following a power loss or system crash" (sqlite.org/pragma.html,
    # synchronous): a webhook acknowledged after its commit could vanish with it, and its sender would not send it
    # again. The sync costs the inbox writer about 7 % of its rate (bench/webhook_ingest.py), shared by a batch.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


# A pooled PostgreSQL connection that has sat unused for longer than this is pinged before it is handed out.
IDLE_PING_S = 1.0


def _ping_if_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection on checkout only if it has been idle for IDLE_PING_S or more.

    SQLAlchemy's `pool_pre_ping` pings on every checkout, which through asyncpg is three round trips (BEGIN, `;`,
    ROLLBACK): a busy worker spent more round trips on pings than on its own statements. A connection used a
    moment ago is as good as the ping would say, so only connections that have waited are checked, e.g. those
    left in the pool over a database restart. A connection found broken while in use is a disconnect error, on
    which SQLAlchemy invalidates every connection the pool holds from before it ("Disconnect Handling -
    Optimistic" in SQLAlchemy's pooling docs), so after a restart at most the statements already under way fail
    and are retried by their callers, as with the pre-ping.
    """
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool drops this connection and hands out another, made anew.
            raise exc.DisconnectionError(
                f"a pooled connection failed its ping: {type(error).__name__}"
            ) from error

    event.listen(engine.sync_engine, "checkin", checked_in)
    event.listen(engine.sync_engine, "checkout", checkout)


def make_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    kwargs: dict[str, Any] = {"echo": settings.sql_echo}
    if url.startswith("sqlite"):
        settings.ensure_home()
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.update(pool_size=settings.db_pool_size, max_overflow=settings.db_pool_size)
    engine = create_async_engine(url, **kwargs)
    _ping_if_idle(engine)
    return engine


async def driver_connection(connection: AsyncConnection) -> Any:
    """The driver's own connection (asyncpg's, aiosqlite's) under a SQLAlchemy connection, for statements sent
    past SQLAlchemy; the same one for as long as `connection` stays checked out."""
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("the connection has no driver connection (closed or invalidated)")
    return driver


class Database:
    """The engine and a session factory. Sessions do not expire objects on commit."""

    def __init__(self, settings: Settings, engine: AsyncEngine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on any exception."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection on which every statement commits on its own: a write of one statement is one round trip
        to PostgreSQL, where a transaction makes it three (BEGIN, the statement, COMMIT). Only for work that is
        one statement, or whose statements need not stand or fall together."""
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @asynccontextmanager
    async def autocommit_session(self) -> AsyncIterator[AsyncSession]:
        """A session on an autocommit connection (see `autocommit`): each of its statements, and each flush,
        commits as it runs. Objects added and not yet flushed are flushed when the block ends without an error,
        as a transaction's commit would."""
        async with self.autocommit() as conn, AsyncSession(bind=conn, expire_on_commit=False) as session:
            yield session
            await session.flush()

    async def dispose(self) -> None:
        await self.engine.dispose()

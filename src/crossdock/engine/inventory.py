"""Stock levels out to the channels: crossdock's stock is the truth, and every active connection that takes
inventory (`inventory.push`) gets the absolute available quantity of each SKU and location set on the remote.

A stock change enqueues one `inventory.push` job per such connection in the change's own transaction. The job
carries no quantities: it compares the account's levels with what the connection was last given
(`stock_pushes`) and sets those that differ, as they are when it runs. So a burst of changes waiting on one
queueing key goes out as one batch, a job run twice finds nothing left to set, an older job can never push a
stale quantity over a newer one, and no clock decides what is new. A level the remote cannot place (a SKU
the shop does not have) is recorded with its reason and not tried again until its quantity changes; the job
then ends dead naming those levels, after the others are set.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock import model as m
from crossdock.connectors.base import Capability, InventoryPush
from crossdock.connectors.registry import SPECS
from crossdock.engine.connections import ACTIVE, ConnectionUnavailable, open_connector
from crossdock.engine.errors import ConfigurationError, PermanentError
from crossdock.engine.jobs import JobContext, RetryPolicy, enqueue, job
from crossdock.logs import get_logger
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from crossdock.store.types import utcnow
from crossdock.store.upsert import upsert

log = get_logger(__name__)

PUSH_JOB = "inventory.push"
# Shopify sets one level per call; a job sets at most this many and queues the rest as its successor, so one
# job never outlives its timeout and a crash repeats a bounded amount of work.
BATCH = 250


def push_key(connection_id: uuid.UUID) -> str:
    return f"inventory:{connection_id}"


def inventory_connectors() -> list[str]:
    return sorted(
        name
        for name, spec in SPECS.items()
        if Capability.INVENTORY_PUSH in spec.capabilities and spec.factory
    )


async def request_push(
    session: AsyncSession, account_id: uuid.UUID, connection_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """In the caller's transaction: a push for every active connection of the account that takes stock levels
    (or for that one connection). Returns the new jobs' ids (a push already waiting takes this change too)."""
    stmt = select(t.Connection.id).where(
        t.Connection.account_id == account_id,
        t.Connection.status == ACTIVE,
        t.Connection.connector.in_(inventory_connectors()),
    )
    if connection_id is not None:
        stmt = stmt.where(t.Connection.id == connection_id)
    queued = [await _enqueue(session, account_id, target) for target in (await session.scalars(stmt)).all()]
    return [job_id for job_id in queued if job_id is not None]


async def _enqueue(
    session: AsyncSession, account_id: uuid.UUID, connection_id: uuid.UUID
) -> uuid.UUID | None:
    return await enqueue(
        session,
        account_id=account_id,
        kind=PUSH_JOB,
        payload={"connection_id": str(connection_id)},
        queueing_key=push_key(connection_id),
        lock_key=push_key(connection_id),
    )


async def set_stock(tenant: Tenant, level: m.StockLevel) -> t.StockLevel:
    """Store a stock level and, in the same transaction, queue its push to the account's channels."""
    row = await tenant.set_stock(level)
    await request_push(tenant.session, tenant.account_id)
    return row


async def pending(
    session: AsyncSession, account_id: uuid.UUID, connection_id: uuid.UUID, *, limit: int
) -> list[m.StockLevel]:
    """The account's levels whose quantity the connection was not given yet, and refused ones set again since."""
    given = t.StockPush
    stmt = (
        select(t.StockLevel)
        .outerjoin(
            given,
            and_(
                given.connection_id == connection_id,
                given.sku == t.StockLevel.sku,
                given.location == t.StockLevel.location,
            ),
        )
        .where(
            t.StockLevel.account_id == account_id,
            or_(
                given.sku.is_(None),
                given.available != t.StockLevel.available,
                # Refused before, and set again since (the SKU fixed on the shop): try it once more.
                and_(given.error.is_not(None), t.StockLevel.updated_at > given.pushed_at),
            ),
        )
        .order_by(t.StockLevel.sku, t.StockLevel.location)
        .limit(limit)
    )
    rows = (await session.scalars(stmt)).all()
    return [m.StockLevel(sku=r.sku, location=r.location, available=r.available) for r in rows]


async def _record(
    session: AsyncSession,
    account_id: uuid.UUID,
    connection_id: uuid.UUID,
    level: m.StockLevel,
    error: str | None,
) -> None:
    await upsert(
        session,
        t.StockPush,
        {
            "connection_id": connection_id,
            "sku": level.sku,
            "location": level.location,
            "account_id": account_id,
            "available": level.available,
            "error": error,
            "pushed_at": utcnow(),
        },
        conflict=("connection_id", "sku", "location"),
        update=("available", "error", "pushed_at"),
    )


@job(PUSH_JOB, retry=RetryPolicy(max_attempts=8, base_s=5.0), timeout_s=600)
async def push_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    if ctx.account_id is None:
        raise ConfigurationError("a stock push must belong to an account")
    account_id, connection_id = ctx.account_id, uuid.UUID(payload["connection_id"])
    async with ctx.session() as session:
        levels = await pending(session, account_id, connection_id, limit=BATCH)
    if not levels:
        return
    try:
        async with open_connector(ctx.hub, account_id, connection_id) as (connection, connector):
            if not isinstance(connector, InventoryPush):
                raise ConfigurationError(f"{connection.connector} connections do not take stock levels")
            result = await connector.push_stock(levels)
    except ConnectionUnavailable as exc:
        # Paused or waiting for re-authorisation: the levels wait, and the connection's return to active
        # queues a push (engine/connect.py).
        log.info("stock push skipped", connection_id=str(connection_id), reason=exc.message)
        return
    async with ctx.session() as session:
        for level in result.set:
            await _record(session, account_id, connection_id, level, None)
        for level in levels:
            reason = result.refused.get((level.sku, level.location))
            if reason is not None:
                await _record(session, account_id, connection_id, level, reason)
        if len(levels) == BATCH:
            await _enqueue(session, account_id, connection_id)  # the rest, as this push's successor
    log.info(
        "stock pushed", connection_id=str(connection_id), set=len(result.set), refused=len(result.refused)
    )
    if result.refused:
        named = ", ".join(f"{sku} at {location} ({why})" for (sku, location), why in result.refused.items())
        raise PermanentError(
            f"set {len(result.set)} of {len(levels)} stock levels on {connection.name}; these could not be "
            f"placed: {named}. Check the SKUs on the shop's products and the location names or ids, then set "
            "those levels again"
        )

"""Tracking by polling, for shipping connections whose remote sends no tracking webhooks (capability
`tracking.poll`: carriers through karrio, MyParcel.com).

Every TICK_S seconds `tracking.schedule` enqueues a `tracking.poll` job for each open shipment due in that tick.
An open shipment has its label bought, is in transit or has an exception, changed in the last OPEN_FOR days
but not in the last QUIET_FOR (it just changed: the remote has nothing newer, and a label just bought has not
been scanned yet), and belongs to an active polling connection. Each has a fixed slot in the `tracking_poll_interval_s` cycle (its
id modulo the ticks in one interval), so each is asked once per interval and the calls spread evenly over it
rather than arriving at a remote in one burst; a tick no worker ran (all stopped) skips its slot for one cycle.
A poll job opens the connection's connector, asks it for the shipment's events (TrackingSource.track) and
applies them with flows.tracking.apply_tracking, which makes a repeated poll change nothing.

Importing this module also registers the Shippo webhook processor (flows.tracking), so a worker that loads the
engine's job modules processes tracking from both ways in.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crossdock import model as m
from crossdock.connectors.base import Capability, TrackingSource
from crossdock.connectors.registry import SPECS, get_spec
from crossdock.engine.connections import ACTIVE, open_connector
from crossdock.engine.errors import ConfigurationError, PermanentError
from crossdock.engine.jobs import JobContext, RetryPolicy, enqueue, job
from crossdock.engine.periodic import periodic
from crossdock.flows.tracking import OPEN, Applied, apply_tracking
from crossdock.hub import Hub
from crossdock.logs import get_logger
from crossdock.store import tables as t
from crossdock.store.convert import row_shipment
from crossdock.store.repo import Tenant
from crossdock.store.types import utcnow

log = get_logger(__name__)

POLL_JOB = "tracking.poll"
SCHEDULE_JOB = "tracking.schedule"
TICK_S = 60.0
# A shipment whose tracking has not changed for this long is not asked about any more (a lost parcel's tracking
# stops; the carriers keep their history for a limited time).
OPEN_FOR = timedelta(days=30)
QUIET_FOR = timedelta(minutes=10)


def polling_connectors() -> list[str]:
    return sorted(
        name for name, spec in SPECS.items() if Capability.TRACKING_POLL in spec.capabilities and spec.factory
    )


def slots(interval_s: float) -> int:
    """How many ticks one polling interval spans (at least one)."""
    return max(1, round(interval_s / TICK_S))


def tick_of(at: datetime) -> int:
    return math.floor(at.timestamp() / TICK_S)


def is_due(shipment_id: uuid.UUID, tick: int, interval_s: float) -> bool:
    count = slots(interval_s)
    return shipment_id.int % count == tick % count


async def due_shipments(
    session: AsyncSession, *, tick: int, interval_s: float, now: datetime | None = None
) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    """(account, shipment, order) of the open shipments whose slot is this tick (see the module doc)."""
    now = now or utcnow()
    stmt = (
        select(t.Shipment.account_id, t.Shipment.id, t.Shipment.order_id)
        .join(t.Connection, t.Connection.id == t.Shipment.connection_id)
        .where(
            t.Connection.status == ACTIVE,
            t.Connection.connector.in_(polling_connectors()),
            t.Shipment.status.in_([s.value for s in OPEN]),
            t.Shipment.tracking_number.is_not(None),
            t.Shipment.updated_at >= now - OPEN_FOR,
            t.Shipment.updated_at <= now - QUIET_FOR,
        )
    )
    return [
        (account_id, shipment_id, order_id)
        for account_id, shipment_id, order_id in (await session.execute(stmt)).all()
        if is_due(shipment_id, tick, interval_s)
    ]


async def enqueue_poll(
    session: AsyncSession, account_id: uuid.UUID, shipment_id: uuid.UUID, order_id: uuid.UUID
) -> uuid.UUID | None:
    """A poll of one shipment, in the caller's transaction; None when one is already waiting."""
    return await enqueue(
        session,
        account_id=account_id,
        kind=POLL_JOB,
        payload={"shipment_id": str(shipment_id)},
        queueing_key=f"tracking:{shipment_id}",
        # One order's steps never race: its label purchase, fulfillment push and tracking.
        lock_key=f"order:{order_id}",
        order_id=order_id,
    )


async def schedule_polls(session: AsyncSession, *, tick: int, interval_s: float) -> int:
    """Enqueue the polls due in this tick; returns how many were queued."""
    queued = 0
    for account_id, shipment_id, order_id in await due_shipments(session, tick=tick, interval_s=interval_s):
        if await enqueue_poll(session, account_id, shipment_id, order_id):
            queued += 1
    return queued


@job(SCHEDULE_JOB, retry=RetryPolicy(max_attempts=1), timeout_s=60)
async def schedule_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    tick = tick_of(datetime.fromisoformat(payload["tick_at"]))
    async with ctx.session() as session:
        queued = await schedule_polls(
            session, tick=tick, interval_s=ctx.hub.settings.tracking_poll_interval_s
        )
    if queued:
        log.info("scheduled tracking polls", queued=queued)


async def poll_shipment(hub: Hub, account_id: uuid.UUID, shipment_id: uuid.UUID) -> Applied | None:
    """Ask the shipment's connection for its tracking and apply it; None when the shipment is gone, closed
    since it was scheduled, or has no connection. No transaction is open while the remote is asked."""
    async with hub.db.session() as session:
        row = (
            await session.scalars(
                select(t.Shipment)
                .options(selectinload(t.Shipment.parcels))
                .where(t.Shipment.id == shipment_id, t.Shipment.account_id == account_id)
            )
        ).first()
        if row is None or row.connection_id is None or m.ShipmentStatus(row.status) not in OPEN:
            return None
        if not row.parcels:
            raise PermanentError(
                f"shipment {shipment_id} has no parcels to track; it was not made by a label"
            )
        shipment, connection_id = row_shipment(row), row.connection_id
    async with open_connector(hub, account_id, connection_id) as (connection, connector):
        if not isinstance(connector, TrackingSource):
            raise ConfigurationError(
                f"the {connection.connector} connector cannot be asked for tracking; its shipments are tracked "
                "by the remote's webhooks"
            )
        events = await connector.track(shipment)
        title = get_spec(connection.connector).title
    async with hub.db.transaction() as session:
        current = await session.get(t.Shipment, shipment_id)
        if current is None:
            return None
        return await apply_tracking(
            session, Tenant(session, account_id), current, events, source=f"{title} (polled)"
        )


@job(POLL_JOB, retry=RetryPolicy(max_attempts=5, base_s=60.0, cap_s=3600.0), timeout_s=300)
async def poll_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    if ctx.account_id is None:
        raise ConfigurationError("a tracking poll must belong to an account")
    await poll_shipment(ctx.hub, ctx.account_id, uuid.UUID(payload["shipment_id"]))


periodic(SCHEDULE_JOB, every_s=TICK_S)

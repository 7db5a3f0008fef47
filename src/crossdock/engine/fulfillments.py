"""Fulfillments: what was shipped, told back to the channel the order came from, exactly once.

`record_fulfillment` stores a fulfillment (which lines, carrier, tracking) for an order, counts the lines as
shipped, moves the order to shipped or partially_shipped, and enqueues its push, all in the caller's
transaction. A shipment has at most one fulfillment (a unique index), so a flow or a person recording the same
shipment twice records it once.

The push job tells the channel through the connector's FulfillmentsPush:
1. a fulfillment already pushed whose tracking number has not changed: nothing to do (the job ran twice);
2. pushed, tracking changed since: update_tracking;
3. not pushed yet: mark it "pushing" in its own transaction, with the tracking number this attempt sends,
   then push. A fulfillment found "pushing" was attempted before with an outcome we never learned (a crash, a
   timeout): the channel is asked first (find_fulfillment, by the tracking number that attempt sent, which a
   tracking change may since have replaced) and only pushed when it does not have it. That is what makes it
   exactly once: remotes without idempotency keys (Shopify, eBay, Amazon) are looked up before any second try.
   Found with a tracking number that has changed since, it is stored as pushed and then re-tracked (2.).
The channel's fulfillment id is stored with the pushed tracking number; the binding remembers the order version
the push produced, so the channel's echo of our own change is not news.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock import model as m
from crossdock.connectors.base import Capability, FulfillmentsPush, ShipmentCarriers
from crossdock.connectors.registry import get_spec
from crossdock.engine.connections import open_connector
from crossdock.engine.errors import ConfigurationError, JobError, PermanentError
from crossdock.engine.importer import ORDER
from crossdock.engine.jobs import JobContext, RetryPolicy, enqueue, job
from crossdock.engine.timeline import add_event
from crossdock.logs import redact_text
from crossdock.store import tables as t
from crossdock.store.repo import Conflict, NotFound, Tenant
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for

PUSH_JOB = "fulfillment.push"
S = m.OrderStatus

PENDING = "pending"
PUSHING = "pushing"
PUSHED = "pushed"
FAILED = "failed"
# The order has no channel that takes fulfillments (created through the API, or a channel without the capability).
LOCAL = "local"


@dataclass(frozen=True)
class Recorded:
    fulfillment: t.Fulfillment
    created: bool
    push_job_id: uuid.UUID | None


def _lines_for(order: t.Order, lines: list[m.FulfillmentLine] | None) -> list[dict[str, Any]]:
    """The fulfillment's lines as stored: each names the order line's channel id and SKU. No lines means every
    line still to ship, in full."""
    shippable = [line for line in order.lines if line.requires_shipping]
    if not lines:
        chosen = [
            {
                "line_external_id": line.external_id,
                "sku": line.sku,
                "quantity": line.quantity - line.shipped_quantity,
            }
            for line in shippable
            if line.quantity > line.shipped_quantity
        ]
        if not chosen:
            raise Conflict("every line of this order has been shipped already", field="lines")
        return chosen
    result: list[dict[str, Any]] = []
    for i, wanted in enumerate(lines):
        match = next(
            (
                line
                for line in shippable
                if (wanted.line_external_id and line.external_id == wanted.line_external_id)
                or (not wanted.line_external_id and wanted.sku and line.sku == wanted.sku)
            ),
            None,
        )
        if match is None:
            what = wanted.line_external_id or wanted.sku or "(no id or sku)"
            raise Conflict(f"the order has no line to ship with id or SKU {what}", field=f"lines[{i}]")
        left = match.quantity - match.shipped_quantity
        if wanted.quantity > left:
            raise Conflict(
                f"{wanted.quantity} of {match.sku or match.title} to ship but only {left} not shipped yet",
                field=f"lines[{i}].quantity",
            )
        result.append({"line_external_id": match.external_id, "sku": match.sku, "quantity": wanted.quantity})
    return result


async def record_fulfillment(
    session: AsyncSession,
    tenant: Tenant,
    order_id: uuid.UUID,
    *,
    lines: list[m.FulfillmentLine] | None = None,
    carrier: str | None = None,
    tracking_number: str | None = None,
    tracking_url: str | None = None,
    shipment_id: uuid.UUID | None = None,
    locked: t.Order | None = None,
) -> Recorded:
    """Store a fulfillment and enqueue its push (see the module doc). For a shipment already recorded, the
    existing fulfillment is returned and nothing changes. Raises repo.Conflict naming the field at fault, and
    raises it before writing anything. `locked` is the order when the caller has read it already in this
    transaction, FOR UPDATE and with its lines; else it is read so here."""
    order = locked
    if order is None:
        order = (await session.scalars(tenant.orders_locked().where(t.Order.id == order_id))).first()
        if order is None:
            raise NotFound("order", order_id)
    assert order.id == order_id and order.account_id == tenant.account_id
    try:
        status = S(order.status)
        if status in (S.CANCELLED, S.REFUNDED, S.PENDING):
            raise Conflict(f"a {status} order cannot be shipped", field="order")
        stored_lines = _lines_for(order, lines)
    except Conflict:
        # A shipment recorded before is no conflict: its lines are the ones now shipped, its order may have
        # moved on since.
        existing = await _recorded(session, tenant, shipment_id)
        if existing is not None:
            return Recorded(existing, created=False, push_job_id=None)
        raise
    pushes = False
    if order.connection_id is not None and order.external_id is not None:
        connection = await session.get(t.Connection, order.connection_id)
        pushes = (
            connection is not None
            and Capability.FULFILLMENTS_PUSH in get_spec(connection.connector).capabilities
        )
    values = {
        "id": uuid.uuid4(),
        "account_id": tenant.account_id,
        "order_id": order.id,
        "shipment_id": shipment_id,
        "connection_id": order.connection_id if pushes else None,
        "status": PENDING if pushes else LOCAL,
        "lines": stored_lines,
        "carrier": carrier,
        "tracking_number": tracking_number,
        "tracking_url": tracking_url,
        "created_at": utcnow(),
    }
    # The row comes back from the INSERT itself (an ORM INSERT .. RETURNING), not from a read after it. A
    # shipment has one fulfillment (fulfillments.shipment_id is unique): one recorded already, or at the same
    # moment by another transaction, is returned as it is.
    stmt: Any = insert_for(session, t.Fulfillment).values(**values)
    row = (await session.scalars(stmt.on_conflict_do_nothing().returning(t.Fulfillment))).first()
    if row is None:
        existing = await _recorded(session, tenant, shipment_id)
        assert existing is not None
        return Recorded(existing, created=False, push_job_id=None)

    by_id = {line.external_id: line for line in order.lines if line.external_id}
    by_sku = {line.sku: line for line in order.lines if line.sku}
    for line in stored_lines:
        target = by_id.get(line["line_external_id"]) or by_sku.get(line["sku"])
        if target is not None:
            target.shipped_quantity += line["quantity"]
    done = all(line.shipped_quantity >= line.quantity for line in order.lines if line.requires_shipping)
    goal = S.SHIPPED if done else S.PARTIALLY_SHIPPED
    current = S(order.status)
    if current not in (S.SHIPPED, S.DELIVERED) and current != goal:
        for step in m.path_to(current, goal):
            await tenant.transition_order(order, step, reason="fulfillment recorded")
    tracking = f" {carrier or ''} {tracking_number}".rstrip() if tracking_number else ""
    await add_event(
        session,
        account_id=tenant.account_id,
        order_id=order.id,
        kind="fulfillment.recorded",
        summary=f"Shipped {sum(line['quantity'] for line in stored_lines)} item(s){tracking}",
        detail={"fulfillment_id": str(row.id), "lines": stored_lines},
    )
    job_id = await enqueue_push(session, row) if pushes else None
    return Recorded(row, created=True, push_job_id=job_id)


async def _recorded(
    session: AsyncSession, tenant: Tenant, shipment_id: uuid.UUID | None
) -> t.Fulfillment | None:
    """The fulfillment recorded for this shipment, if any."""
    if shipment_id is None:
        return None
    return await session.scalar(tenant.scoped(t.Fulfillment).where(t.Fulfillment.shipment_id == shipment_id))


async def enqueue_push(session: AsyncSession, row: t.Fulfillment) -> uuid.UUID | None:
    return await enqueue(
        session,
        account_id=row.account_id,
        kind=PUSH_JOB,
        payload={"fulfillment_id": str(row.id)},
        queueing_key=f"fulfillment:{row.id}",
        lock_key=f"order:{row.order_id}",
        order_id=row.order_id,
    )


async def update_tracking(
    session: AsyncSession,
    tenant: Tenant,
    fulfillment_id: uuid.UUID,
    *,
    tracking_number: str,
    carrier: str | None = None,
    tracking_url: str | None = None,
) -> t.Fulfillment:
    """Change a fulfillment's tracking; the push job tells the channel (update_tracking)."""
    row = (
        await session.scalars(tenant.scoped(t.Fulfillment).where(t.Fulfillment.id == fulfillment_id))
    ).first()
    if row is None:
        raise NotFound("fulfillment", fulfillment_id)
    row.tracking_number = tracking_number
    row.carrier = carrier or row.carrier
    row.tracking_url = tracking_url or row.tracking_url
    if row.status != LOCAL:
        if row.status == FAILED:
            # Asked again: the last attempt's error is history (its job keeps it); a new one records its own.
            row.status = PENDING if row.external_id is None else PUSHED
            row.error = None
        await enqueue_push(session, row)
    await session.flush()
    return row


Tracking = tuple[str | None, str | None, str | None]


def _tracking(row: t.Fulfillment) -> Tracking:
    """What the channel should have: tracking number, carrier and tracking URL."""
    return row.tracking_number, row.carrier, row.tracking_url


def _sent(row: t.Fulfillment) -> Tracking:
    """What the channel was last sent (or, while a push's outcome is unknown, was being sent)."""
    return row.pushed_tracking_number, row.pushed_carrier, row.pushed_tracking_url


def _pushed(tracking: Tracking) -> dict[str, str | None]:
    number, carrier, url = tracking
    return {"pushed_tracking_number": number, "pushed_carrier": carrier, "pushed_tracking_url": url}


def _canonical(row: t.Fulfillment) -> m.Fulfillment:
    return m.Fulfillment(
        id=row.id,
        order_id=row.order_id,
        shipment_id=row.shipment_id,
        lines=[m.FulfillmentLine(**line) for line in row.lines],
        carrier=row.carrier,
        tracking_number=row.tracking_number,
        tracking_url=row.tracking_url,
        external_id=row.external_id,
    )


async def _set(ctx: JobContext, fulfillment_id: uuid.UUID, **values: Any) -> None:
    async with ctx.autocommit() as session:  # one statement
        await session.execute(
            update(t.Fulfillment).where(t.Fulfillment.id == fulfillment_id).values(**values)
        )


async def _carrier_of_shipment(ctx: JobContext, row: t.Fulfillment) -> str | None:
    """The carrier of a tracked fulfillment recorded without one: the shipment's, or else asked of the shipping
    platform that made the shipment (ShipmentCarriers; MyParcel.com's status callback names no carrier) and
    kept on the fulfillment and the shipment. A platform that cannot say leaves it unknown, noted on the
    timeline: channels that take tracking without a carrier still get it, the others refuse by name."""
    if row.carrier or not row.tracking_number or row.shipment_id is None:
        return row.carrier
    assert ctx.account_id is not None
    async with ctx.autocommit() as session:
        shipment = await session.get(t.Shipment, row.shipment_id)
        if shipment is None or shipment.account_id != ctx.account_id:
            return None
        carrier, remote_id, connection_id = shipment.carrier, shipment.external_id, shipment.connection_id
    if carrier:
        await _set(ctx, row.id, carrier=carrier[:100])
        return carrier[:100]
    if not remote_id or connection_id is None:
        return None
    severity = "info"
    try:
        async with open_connector(ctx.hub, ctx.account_id, connection_id) as (connection, connector):
            if not isinstance(connector, ShipmentCarriers):
                return None
            carrier = (await connector.carrier_of(remote_id) or "")[:100] or None
            if carrier is None:
                return None
            kind = "fulfillment.carrier_learned"
            summary = f"{get_spec(connection.connector).title} says shipment {remote_id} goes with {carrier}"
    except PermanentError as exc:
        kind, severity = "fulfillment.carrier_unknown", "warning"
        summary = (
            f"The shipment's carrier could not be learned ({redact_text(exc.message)}); the tracking is sent "
            "without one. A channel that needs the carrier (eBay) refuses it: give the carrier with PATCH "
            f"/api/v1/orders/{row.order_id}/fulfillments/{row.id}"
        )
    async with ctx.session() as session:
        if carrier is not None:
            await session.execute(
                update(t.Shipment)
                .where(t.Shipment.id == row.shipment_id, t.Shipment.carrier.is_(None))
                .values(carrier=carrier)
            )
            await session.execute(
                update(t.Fulfillment).where(t.Fulfillment.id == row.id).values(carrier=carrier)
            )
        await add_event(
            session,
            account_id=ctx.account_id,
            order_id=row.order_id,
            kind=kind,
            summary=summary,
            detail={"fulfillment_id": str(row.id), "shipment_id": str(row.shipment_id)},
            severity=severity,
        )
    return carrier


@job(PUSH_JOB, retry=RetryPolicy(max_attempts=10, base_s=10.0, cap_s=3600.0), timeout_s=300)
async def push_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    fulfillment_id = uuid.UUID(payload["fulfillment_id"])
    async with ctx.autocommit() as session:  # one read: the fulfillment and its order's id at the channel
        read = (
            await session.execute(
                select(t.Fulfillment, t.Order.external_id)
                .join(t.Order, t.Order.id == t.Fulfillment.order_id)
                .where(t.Fulfillment.id == fulfillment_id, t.Fulfillment.account_id == ctx.account_id)
            )
        ).first()
        if read is None:
            return  # deleted with its order: nothing left to tell
        row, external_order = read
        session.expunge_all()
    if row.connection_id is None or external_order is None:
        return  # its connection was removed, or the order is not the channel's
    if row.status == PUSHED and _sent(row) == _tracking(row):
        return
    assert ctx.account_id is not None and row.connection_id is not None
    row.carrier = await _carrier_of_shipment(ctx, row)
    fulfillment = _canonical(row)
    wanted = _tracking(row)
    try:
        async with open_connector(ctx.hub, ctx.account_id, row.connection_id) as (connection, connector):
            spec = get_spec(connection.connector)
            if not isinstance(connector, FulfillmentsPush):
                raise ConfigurationError(f"{spec.title} connections do not take fulfillments")
            if row.status == PUSHED and row.external_id:
                result = await connector.update_tracking(external_order, row.external_id, fulfillment)
                what = f"Updated tracking at {spec.title} to {row.tracking_number}"
            else:
                found = None
                sent = wanted
                if row.status == PUSHING:
                    # Look for what the attempt with the unknown outcome sent: its tracking, not one changed
                    # (PATCH) since, which the channel cannot have yet.
                    sent = _sent(row) if row.pushed_tracking_number else wanted
                    attempted = fulfillment.model_copy(
                        update={"tracking_number": sent[0], "carrier": sent[1], "tracking_url": sent[2]}
                    )
                    found = await connector.find_fulfillment(external_order, attempted)
                if found is not None and sent != wanted:
                    # Keep what the channel has before re-tracking it: if the channel cannot re-track (eBay),
                    # the fulfillment fails with its channel id kept, and is never pushed a second time.
                    await _set(
                        ctx,
                        fulfillment_id,
                        status=PUSHED,
                        external_id=found.external_id,
                        pushed_at=utcnow(),
                        **_pushed(sent),
                    )
                    result = await connector.update_tracking(external_order, found.external_id, fulfillment)
                    what = (
                        f"{spec.title} already had this fulfillment ({found.external_id}) with tracking "
                        f"{sent[0]}; updated its tracking to {row.tracking_number}"
                    )
                elif found is not None:
                    result = found
                    what = f"{spec.title} already had this fulfillment ({found.external_id}); not sent again"
                else:
                    await _set(
                        ctx,
                        fulfillment_id,
                        status=PUSHING,
                        error=None,
                        **_pushed(wanted),
                    )
                    result = await connector.push_fulfillment(
                        external_order, fulfillment, idempotency_key=f"crossdock-fulfillment-{fulfillment_id}"
                    )
                    tracking = f" with tracking {row.tracking_number}" if row.tracking_number else ""
                    what = f"Told {spec.title} the order shipped{tracking} (fulfillment {result.external_id})"
    except JobError as exc:
        if isinstance(exc, PermanentError):
            await _set(ctx, fulfillment_id, status=FAILED, error=redact_text(exc.message)[:4000])
        raise
    async with ctx.session() as session:
        await session.execute(
            update(t.Fulfillment)
            .where(t.Fulfillment.id == fulfillment_id)
            .values(
                status=PUSHED,
                external_id=result.external_id,
                pushed_at=utcnow(),
                error=None,
                **_pushed(wanted),
            )
        )
        if result.order_version is not None:
            await session.execute(
                update(t.Binding)
                .where(
                    t.Binding.connection_id == row.connection_id,
                    t.Binding.kind == ORDER,
                    t.Binding.external_id == external_order,
                )
                .values(pushed_version=result.order_version)
            )
        await add_event(
            session,
            account_id=ctx.account_id,
            order_id=row.order_id,
            kind="fulfillment.pushed",
            summary=what,
            detail={"fulfillment_id": str(fulfillment_id), "external_id": result.external_id},
        )


async def fulfillments_of(session: AsyncSession, tenant: Tenant, order_id: uuid.UUID) -> list[t.Fulfillment]:
    stmt = (
        tenant.scoped(t.Fulfillment)
        .where(t.Fulfillment.order_id == order_id)
        .order_by(t.Fulfillment.created_at)
    )
    return list((await session.scalars(stmt)).all())

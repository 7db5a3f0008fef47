"""Tracking comes back: carrier events applied to shipments, their orders and the account's subscribers.

`apply_tracking` takes the events a remote reports for one shipment, from a webhook or a poll, in any order and
as often as the remote likes:
1. each event is stored once (the unique index on shipment, time and status decides, never a check);
2. the shipment's status follows the latest event (in_transit, delivered, exception, returned), except that a
   delivered shipment never goes back to in transit or exception, and a voided or returned one stays so;
3. when something changed, one event on the order's timeline says what happened in words, and one outbound
   `tracking.updated` goes to subscribers;
4. when every shipment of a shipped order is delivered, the order moves to delivered.
Applying the same events again changes nothing, so a redelivered webhook or a repeated poll is harmless, and
events that arrive out of order end where one in-order delivery ends.

This module also processes Shippo's webhooks from the inbox (kind SHIPPO_UPDATE): track_updated is applied to
the shipment bought as that transaction (or carrying that tracking number), a refunded label voids its
shipment, a failed one is told on the timeline, and an update for a label crossdock did not buy is acknowledged
and ignored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import case, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock import model as m
from crossdock.connectors.shippo.mapping import METADATA_PREFIX, ShippoUpdate, map_webhook
from crossdock.engine.inbox import Processed, processor
from crossdock.engine.jobs import JobContext
from crossdock.engine.webhooks_out import emit
from crossdock.logs import get_logger
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for

log = get_logger(__name__)

SS = m.ShipmentStatus
TS = m.TrackingStatus
OS = m.OrderStatus

TRACKING_UPDATED = "tracking.updated"
# Shipments whose tracking may still change: a poll asks about these only.
OPEN = (SS.LABEL_PURCHASED, SS.IN_TRANSIT, SS.EXCEPTION)
# Shipments tracking may move; a voided, failed or not yet bought one keeps its status whatever is reported.
TRACKED = (*OPEN, SS.DELIVERED, SS.RETURNED)
# Shipments that do not count when deciding whether all of an order's parcels arrived.
NOT_SHIPPING = (SS.VOIDED, SS.FAILED)

# The shipment status an event moves a shipment to; pre_transit and unknown leave it where it is.
_MOVES_TO: dict[TS, SS] = {
    TS.IN_TRANSIT: SS.IN_TRANSIT,
    TS.OUT_FOR_DELIVERY: SS.IN_TRANSIT,
    TS.EXCEPTION: SS.EXCEPTION,
    TS.DELIVERED: SS.DELIVERED,
    TS.RETURNED: SS.RETURNED,
}
# Two events at the same instant: the one further along the parcel's way is the latest.
_PROGRESS: dict[TS, int] = {
    TS.UNKNOWN: 0,
    TS.PRE_TRANSIT: 1,
    TS.IN_TRANSIT: 2,
    TS.OUT_FOR_DELIVERY: 3,
    TS.EXCEPTION: 4,
    TS.DELIVERED: 5,
    TS.RETURNED: 6,
}
# What an event says, as "<carrier> <number> <words> in <place>".
_WORDS: dict[TS, str] = {
    TS.UNKNOWN: "has a tracking update",
    TS.PRE_TRANSIT: "is waiting for the carrier",
    TS.IN_TRANSIT: "is in transit",
    TS.OUT_FOR_DELIVERY: "is out for delivery",
    TS.EXCEPTION: "could not be delivered",
    TS.DELIVERED: "was delivered",
    TS.RETURNED: "is being returned to the sender",
}


@dataclass(frozen=True)
class Applied:
    """What one apply_tracking did: events stored, the shipment's status before and after, whether the order
    was delivered by it, and what the timeline says (None when nothing changed)."""

    shipment_id: uuid.UUID
    order_id: uuid.UUID
    added: int
    previous_status: str
    status: str
    order_delivered: bool = False
    summary: str | None = None

    @property
    def changed(self) -> bool:
        return self.added > 0 or self.status != self.previous_status


def parcel_name(shipment: t.Shipment) -> str:
    """How the timeline names a parcel: "DHL 00340434161094015902", or the shipment id without a number."""
    carrier = shipment.carrier or "Parcel"
    return f"{carrier} {shipment.tracking_number}" if shipment.tracking_number else f"{carrier} {shipment.id}"


def describe(shipment: t.Shipment, event: m.TrackingEvent) -> str:
    text = f"{parcel_name(shipment)} {_WORDS[event.status]}"
    if event.location:
        text += f" in {event.location}"
    if event.description:
        text += f" ({event.description})"
    return text


def _latest(events: Sequence[m.TrackingEvent]) -> m.TrackingEvent | None:
    return max(events, key=lambda e: (e.occurred_at, _PROGRESS[e.status]), default=None)


def _event(row: t.TrackingEvent) -> m.TrackingEvent:
    return m.TrackingEvent(
        status=TS(row.status),
        occurred_at=row.occurred_at,
        description=row.description,
        location=row.location,
        raw_status=row.raw_status,
    )


def _event_doc(event: m.TrackingEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


def _target(current: SS, latest: m.TrackingEvent | None) -> SS:
    """The status the shipment takes from its latest event that moves it (see the module doc, step 2)."""
    if latest is None or current not in TRACKED or current is SS.RETURNED:
        return current
    target = _MOVES_TO[latest.status]
    if current is SS.DELIVERED and target is not SS.RETURNED:
        return current
    return target


async def apply_tracking(
    session: AsyncSession,
    tenant: Tenant,
    shipment_row: t.Shipment,
    events: list[m.TrackingEvent],
    *,
    source: str,
) -> Applied:
    """Store the events reported for this shipment and apply what they change (see the module doc), in the
    caller's transaction. `source` says where they came from ("Shippo webhook", "poll") for the timeline."""
    # The order first, then its shipment: two updates for shipments of one order wait for each other, so the
    # last one to commit sees every shipment delivered (PostgreSQL; SQLite writes one transaction at a time).
    order = (
        await session.scalars(
            tenant.scoped(t.Order).where(t.Order.id == shipment_row.order_id).with_for_update()
        )
    ).one()
    shipment = (
        await session.scalars(
            tenant.scoped(t.Shipment)
            .where(t.Shipment.id == shipment_row.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()
    previous = SS(shipment.status)

    added: list[m.TrackingEvent] = []
    for event in sorted(set(events), key=lambda e: (e.occurred_at, _PROGRESS[e.status])):
        stmt: Any = insert_for(session, t.TrackingEvent).values(
            id=uuid.uuid4(),
            account_id=tenant.account_id,
            shipment_id=shipment.id,
            status=event.status.value,
            occurred_at=event.occurred_at.astimezone(UTC),
            description=event.description,
            location=event.location,
            raw_status=event.raw_status,
        )
        stmt = stmt.on_conflict_do_nothing(index_elements=["shipment_id", "occurred_at", "status"])
        if (await session.execute(stmt.returning(t.TrackingEvent.id))).scalar() is not None:
            added.append(event)

    stored = [
        _event(row)
        for row in (
            await session.scalars(select(t.TrackingEvent).where(t.TrackingEvent.shipment_id == shipment.id))
        ).all()
    ]
    latest = _latest([e for e in stored if e.status in _MOVES_TO])
    status = _target(previous, latest)
    if not added and status is previous:
        return Applied(shipment.id, order.id, 0, previous.value, previous.value)

    shipment.status = status.value
    shipment.updated_at = utcnow()
    # The timeline tells the news: the event that moved the shipment, else the newest one that just came in.
    news = latest if status is not previous and latest is not None else _latest(added)
    assert news is not None
    summary = describe(shipment, news)
    extra = len(added) - 1 if news in added else len(added)
    if extra > 0:
        summary += f"; {extra} more tracking event{'s' if extra > 1 else ''} stored"
    await tenant.add_event(
        order.id,
        "tracking.updated",
        summary,
        {
            "shipment_id": str(shipment.id),
            "source": source,
            "from": previous.value,
            "to": status.value,
            "added": [_event_doc(e) for e in added],
        },
        severity="warning" if status is SS.EXCEPTION and previous is not SS.EXCEPTION else "info",
    )
    await emit(
        session,
        account_id=tenant.account_id,
        event_type=TRACKING_UPDATED,
        order_id=order.id,
        data={
            "order_id": str(order.id),
            "shipment_id": str(shipment.id),
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
            "tracking_url": shipment.tracking_url,
            "status": status.value,
            "previous_status": previous.value,
            "latest_event": None if latest is None else _event_doc(latest),
            "new_events": [_event_doc(e) for e in added],
        },
    )
    delivered = (
        status is SS.DELIVERED
        and previous is not SS.DELIVERED
        and await _deliver_order(session, tenant, order)
    )
    return Applied(shipment.id, order.id, len(added), previous.value, status.value, delivered, summary)


async def _deliver_order(session: AsyncSession, tenant: Tenant, order: t.Order) -> bool:
    """Move a shipped order to delivered when every one of its shipments (voided and failed ones aside) is."""
    if OS(order.status) is not OS.SHIPPED:
        # Partially shipped: lines are still to ship. Earlier states: nothing recorded as shipped yet.
        return False
    statuses = (
        await session.scalars(
            select(t.Shipment.status).where(
                t.Shipment.order_id == order.id, t.Shipment.status.not_in([s.value for s in NOT_SHIPPING])
            )
        )
    ).all()
    if not statuses or any(s != SS.DELIVERED.value for s in statuses):
        return False
    for step in m.path_to(OS(order.status), OS.DELIVERED):
        await tenant.transition_order(order, step, reason="every shipment was delivered")
    return True


async def find_shipment(
    session: AsyncSession,
    connection_id: uuid.UUID,
    *,
    external_id: str | None = None,
    tracking_number: str | None = None,
    idempotency_key: str | None = None,
) -> t.Shipment | None:
    """The connection's shipment that is this remote purchase (`external_id`, the remote's id of the label),
    else the one with this tracking number, else the one bought with this idempotency key. When a number was
    bought twice (a label voided and bought again), the newest shipment is the one. One read: the shipments
    matching any of the three, best match first (each of the three columns is indexed)."""
    wanted = [
        column == value
        for column, value in (
            (t.Shipment.external_id, external_id),
            (t.Shipment.tracking_number, tracking_number),
            (t.Shipment.idempotency_key, idempotency_key),
        )
        if value
    ]
    if not wanted:
        return None
    best = case(*((match, rank) for rank, match in enumerate(wanted)), else_=len(wanted))
    return (
        await session.scalars(
            select(t.Shipment)
            .where(t.Shipment.connection_id == connection_id, or_(*wanted))
            .order_by(best, t.Shipment.created_at.desc(), t.Shipment.id)
            .limit(1)
        )
    ).first()


# -- Shippo webhooks ---------------------------------------------------------------------------------------------

SHIPPO_UPDATE = "shippo.update"
# Events a Shippo webhook may carry that concern no label of ours (WebhookEventTypeEnum in the SDK: batches).
_NOT_OURS = frozenset({"batch_created", "batch_purchased"})


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _key_of(metadata: str | None) -> str | None:
    """The idempotency key in a transaction's metadata ("crossdock:<key>"); a hashed key names no shipment."""
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return None
    key = metadata.removeprefix(METADATA_PREFIX)
    return None if key.startswith("sha256:") else key


async def _shipment_of_raw(session: AsyncSession, connection_id: uuid.UUID, body: bytes) -> t.Shipment | None:
    """Best effort for a payload that did not map: the shipment its ids name, to put the problem on its order."""
    data = _envelope(body).get("data")
    if not isinstance(data, dict):
        return None

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and value else None

    return await find_shipment(
        session,
        connection_id,
        external_id=text("transaction") or text("object_id"),
        tracking_number=text("tracking_number"),
    )


@processor(SHIPPO_UPDATE)
async def process_shippo_update(session: AsyncSession, ctx: JobContext, row: t.InboxMessage) -> Processed:
    event = _envelope(row.body).get("event")
    if isinstance(event, str) and event in _NOT_OURS:
        log.info(
            "shippo webhook ignored", inbox_id=str(row.id), shippo_event=event, reason="not about a label"
        )
        return Processed(summary=f"Ignored Shippo {event} webhook: batches are not tracked")
    mapped = map_webhook(row.body)
    name = event if isinstance(event, str) else "webhook"
    if not mapped.ok or mapped.value is None:
        reason = "; ".join(f"{p.field}: {p.reason}" for p in mapped.problems) or "it could not be read"
        shipment = await _shipment_of_raw(session, row.connection_id, row.body)
        if shipment is not None:
            await Tenant(session, row.account_id).add_event(
                shipment.order_id,
                "tracking.quarantined",
                f"A Shippo {name} about {parcel_name(shipment)} could not be read: {reason}. It is kept in the "
                "inbox; replay it once crossdock is fixed or the payload is understood",
                {"inbox_id": str(row.id), "shipment_id": str(shipment.id)},
                severity="error",
            )
        return Processed(
            order_id=shipment.order_id if shipment else None, quarantined=f"Shippo {name}: {reason}"
        )
    update = mapped.value
    shipment = await find_shipment(
        session,
        row.connection_id,
        external_id=update.transaction_id,
        tracking_number=update.tracking_number,
        idempotency_key=_key_of(update.metadata),
    )
    if shipment is None:
        # Labels bought in Shippo's own app, or by another system on the same account: not an error.
        log.info(
            "shippo webhook ignored",
            inbox_id=str(row.id),
            shippo_event=update.event,
            transaction=update.transaction_id,
            reason="no shipment of this connection is that label",
        )
        return Processed(summary=f"Ignored Shippo {update.event} webhook: not a label crossdock bought")
    tenant = Tenant(session, row.account_id)
    if update.event == "track_updated":
        applied = await apply_tracking(
            session, tenant, shipment, update.tracking_events, source="Shippo webhook"
        )
        what = applied.summary or "nothing new"
        return Processed(order_id=shipment.order_id, summary=f"Received Shippo track_updated webhook: {what}")
    return Processed(
        order_id=shipment.order_id,
        summary=f"Received Shippo {update.event} webhook: "
        + await _transaction_update(tenant, shipment, update),
    )


async def _transaction_update(tenant: Tenant, shipment: t.Shipment, update: ShippoUpdate) -> str:
    """A transaction_created/updated for one of our labels; returns what was done, in words."""
    label = f"{parcel_name(shipment)} (Shippo transaction {update.transaction_id})"
    if update.status == "REFUNDED":
        if shipment.status == SS.VOIDED.value:
            return f"the label of {label} was voided already"
        before = shipment.status
        shipment.status = SS.VOIDED.value
        shipment.updated_at = utcnow()
        await tenant.add_event(
            shipment.order_id,
            "shipment.voided",
            f"Shippo refunded the label of {label}; the shipment is voided and its label can no longer be used",
            {"shipment_id": str(shipment.id), "from": before, "to": SS.VOIDED.value},
            severity="warning",
        )
        return "label refunded, shipment voided"
    if update.status == "ERROR":
        messages = update.messages or "Shippo gave no reason"
        await tenant.add_event(
            shipment.order_id,
            "shipping.label_error",
            f"Shippo reports the label of {label} failed: {messages}",
            {"shipment_id": str(shipment.id), "messages": messages},
            severity="error",
        )
        return f"label failed: {messages}"
    return f"label {update.status}, nothing to change"

"""apply_tracking on real databases: events stored once, the shipment's status from its latest event (never
back from delivered), one timeline event and one outbound tracking.updated per change, the order delivered
when all its shipments are, and nothing at all the second time the same events come."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import func, select

from crossdock import model as m
from crossdock.flows.tracking import TRACKING_UPDATED, Applied, apply_tracking, find_shipment
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t
from tests.engine.support import statements_sent

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


@dataclass
class Shipped:
    """An order marked shipped with label-bought shipments on one shipping connection, as the label flow
    leaves them."""

    account_id: uuid.UUID
    connection_id: uuid.UUID
    order_id: uuid.UUID
    shipment_ids: list[uuid.UUID] = field(default_factory=list)


async def shipped_order(
    hub: Hub,
    *,
    account_id: uuid.UUID | None = None,
    connection_id: uuid.UUID | None = None,
    connector: str = "carriers",
    settings: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    base_url: str | None = None,
    parcels: list[dict[str, Any]] | None = None,
    order_status: str = "shipped",
) -> Shipped:
    """Each parcel is a dict of shipment columns (tracking_number, external_id, carrier, status, ...)."""
    async with hub.db.transaction() as session:
        if account_id is None:
            account_id = (await repo.create_account(session, "Acme")).id
        tenant = repo.Tenant(session, account_id)
        if connection_id is None:
            connection = await tenant.create_connection(
                connector=connector,
                name=f"Acme on {connector}",
                vault=hub.vault,
                settings=settings or {"carrier": "ups"},
                secrets=secrets or {"client_id": "id", "client_secret": "secret"},
                base_url=base_url,
            )
            connection_id = connection.id
        order = await tenant.create_order(
            m.Order.model_validate(
                {
                    "status": order_status,
                    "currency": "EUR",
                    "external_number": f"T-{uuid.uuid4().hex[:6]}",
                    "lines": [{"sku": "MUG-1", "title": "Mug", "quantity": 1}],
                }
            )
        )
        await session.flush()
        shipped = Shipped(account_id, connection_id, order.id)
        for i, columns in enumerate(parcels or [{}]):
            values: dict[str, Any] = {
                "status": "label_purchased",
                "carrier": "DHL",
                "service_code": "dhl_express_worldwide",
                "tracking_number": f"0034043416109401590{i}",
                "external_id": f"remote-{uuid.uuid4().hex[:8]}",
                "tracking_url": None,
                **columns,
            }
            row = t.Shipment(
                id=uuid.uuid4(),
                account_id=account_id,
                order_id=order.id,
                connection_id=connection_id,
                **values,
            )
            session.add(row)
            await session.flush()
            session.add(
                t.Parcel(account_id=account_id, shipment_id=row.id, position=0, weight_g=Decimal("850"))
            )
            shipped.shipment_ids.append(row.id)
    return shipped


def event(status: str, minutes: int, where: str | None = None, text: str | None = None) -> m.TrackingEvent:
    return m.TrackingEvent(
        status=m.TrackingStatus(status),
        occurred_at=T0 + timedelta(minutes=minutes),
        location=where,
        description=text,
    )


JOURNEY = [
    event("pre_transit", 0, "Leipzig, DE", "Label created"),
    event("in_transit", 90, "Leipzig, DE", "Departed the hub"),
    event("out_for_delivery", 600, "Berlin, DE"),
    event("delivered", 700, "Berlin, DE", "Delivered at the front door"),
]


async def apply(hub: Hub, shipped: Shipped, events: list[m.TrackingEvent], index: int = 0) -> Applied:
    async with hub.db.transaction() as session:
        shipment = await session.get(t.Shipment, shipped.shipment_ids[index])
        assert shipment is not None
        return await apply_tracking(
            session, repo.Tenant(session, shipped.account_id), shipment, events, source="test"
        )


async def state(hub: Hub, shipped: Shipped) -> dict[str, Any]:
    """Everything tracking may change, in a form two runs can be compared by."""
    async with hub.db.session() as session:
        order = await session.get(t.Order, shipped.order_id)
        assert order is not None
        shipments = (
            await session.scalars(
                select(t.Shipment)
                .where(t.Shipment.order_id == shipped.order_id)
                .order_by(t.Shipment.tracking_number)
            )
        ).all()
        events = (
            await session.execute(
                select(t.TrackingEvent.shipment_id, t.TrackingEvent.status, t.TrackingEvent.occurred_at)
                .where(t.TrackingEvent.shipment_id.in_([s.id for s in shipments]))
                .order_by(t.TrackingEvent.shipment_id, t.TrackingEvent.occurred_at)
            )
        ).all()
    return {
        "order": order.status,
        "shipments": [(s.tracking_number, s.status) for s in shipments],
        "events": [(str(sid), status, at.astimezone(UTC)) for sid, status, at in events],
    }


async def timeline_kinds(hub: Hub, order_id: uuid.UUID, kind: str) -> list[str]:
    async with hub.db.session() as session:
        rows = await session.scalars(
            select(t.TimelineEvent.summary)
            .where(t.TimelineEvent.order_id == order_id, t.TimelineEvent.kind == kind)
            .order_by(t.TimelineEvent.at, t.TimelineEvent.id)
        )
        return list(rows.all())


async def outbound(hub: Hub, account_id: uuid.UUID) -> list[dict[str, Any]]:
    async with hub.db.session() as session:
        rows = await session.scalars(
            select(t.WebhookDelivery)
            .where(
                t.WebhookDelivery.account_id == account_id, t.WebhookDelivery.event_type == TRACKING_UPDATED
            )
            .order_by(t.WebhookDelivery.created_at, t.WebhookDelivery.id)
        )
        return [json.loads(row.body) for row in rows.all()]


async def subscribe(client: httpx.AsyncClient, hub: Hub, shipped: Shipped) -> None:
    """A webhook endpoint of the account that takes tracking.updated, made through the REST API."""
    async with hub.db.transaction() as session:
        _row, token = await repo.Tenant(session, shipped.account_id).create_token("hooks")
    response = await client.post(
        "/api/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/tracking", "event_types": [TRACKING_UPDATED]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text


async def test_a_journey_moves_the_shipment_and_delivers_the_order(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    shipped = await shipped_order(hub)
    await subscribe(client, hub, shipped)

    first = await apply(hub, shipped, JOURNEY[:2])
    assert (first.added, first.previous_status, first.status) == (2, "label_purchased", "in_transit")
    assert not first.order_delivered
    assert (
        first.summary
        == "DHL 00340434161094015900 is in transit in Leipzig, DE (Departed the hub); 1 more tracking event stored"
    )

    last = await apply(hub, shipped, JOURNEY)
    assert (last.added, last.status, last.order_delivered) == (2, "delivered", True)
    assert last.summary is not None and last.summary.startswith(
        "DHL 00340434161094015900 was delivered in Berlin, DE"
    )

    assert await state(hub, shipped) == {
        "order": "delivered",
        "shipments": [("00340434161094015900", "delivered")],
        "events": [(str(shipped.shipment_ids[0]), e.status.value, e.occurred_at) for e in JOURNEY],
    }
    assert len(await timeline_kinds(hub, shipped.order_id, "tracking.updated")) == 2
    assert await timeline_kinds(hub, shipped.order_id, "order.status_changed") == [
        "Status shipped -> delivered: every shipment was delivered"
    ]
    sent = await outbound(hub, shipped.account_id)
    assert [body["data"]["status"] for body in sent] == ["in_transit", "delivered"]
    assert sent[1]["data"]["previous_status"] == "in_transit"
    assert sent[1]["data"]["latest_event"]["status"] == "delivered"
    assert sent[1]["data"]["tracking_number"] == "00340434161094015900"


async def test_the_same_events_twice_change_nothing_the_second_time(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    shipped = await shipped_order(hub)
    await subscribe(client, hub, shipped)
    await apply(hub, shipped, JOURNEY)
    before = await state(hub, shipped)

    again = await apply(hub, shipped, JOURNEY)

    assert not again.changed and again.summary is None and not again.order_delivered
    assert await state(hub, shipped) == before
    assert len(await timeline_kinds(hub, shipped.order_id, "tracking.updated")) == 1
    assert len(await outbound(hub, shipped.account_id)) == 1


async def test_an_older_event_arriving_late_never_takes_a_delivered_shipment_back(hub: Hub) -> None:
    shipped = await shipped_order(hub)
    await apply(hub, shipped, [JOURNEY[3]])

    late = await apply(hub, shipped, [JOURNEY[1]])

    assert (late.added, late.previous_status, late.status) == (1, "delivered", "delivered")
    assert late.summary == "DHL 00340434161094015900 is in transit in Leipzig, DE (Departed the hub)"
    assert (await state(hub, shipped))["shipments"] == [("00340434161094015900", "delivered")]


async def test_events_in_any_order_end_where_the_in_order_journey_ends(hub: Hub) -> None:
    in_order = await shipped_order(hub)
    for i in range(1, len(JOURNEY) + 1):
        await apply(hub, in_order, JOURNEY[:i])
    shuffled = await shipped_order(hub, account_id=in_order.account_id, connection_id=in_order.connection_id)
    for batch in ([JOURNEY[3]], [JOURNEY[0], JOURNEY[2]], [JOURNEY[1]], JOURNEY[::-1]):
        await apply(hub, shuffled, batch)

    expected, got = await state(hub, in_order), await state(hub, shuffled)
    assert got["order"] == expected["order"] == "delivered"
    assert got["shipments"] == expected["shipments"]
    assert [e[1:] for e in got["events"]] == [e[1:] for e in expected["events"]]


async def test_a_delivered_shipment_can_still_be_returned(hub: Hub) -> None:
    shipped = await shipped_order(hub)
    await apply(hub, shipped, JOURNEY)

    returned = await apply(hub, shipped, [event("returned", 3000, "Berlin, DE", "Refused by the recipient")])

    assert (returned.previous_status, returned.status) == ("delivered", "returned")
    # A later exception does not move a returned parcel.
    after = await apply(hub, shipped, [event("exception", 4000)])
    assert (after.added, after.status) == (1, "returned")


async def test_an_exception_is_a_warning_on_the_timeline(hub: Hub) -> None:
    shipped = await shipped_order(hub)
    applied = await apply(hub, shipped, [event("exception", 30, "Hamburg, DE", "Address not found")])
    assert applied.status == "exception"
    assert (
        applied.summary
        == "DHL 00340434161094015900 could not be delivered in Hamburg, DE (Address not found)"
    )
    async with hub.db.session() as session:
        severity = await session.scalar(
            select(t.TimelineEvent.severity).where(
                t.TimelineEvent.order_id == shipped.order_id, t.TimelineEvent.kind == "tracking.updated"
            )
        )
    assert severity == "warning"


async def test_the_order_waits_for_every_shipment_to_be_delivered(hub: Hub) -> None:
    shipped = await shipped_order(hub, parcels=[{}, {}, {"status": "voided"}])

    first = await apply(hub, shipped, JOURNEY, index=0)
    assert first.status == "delivered" and not first.order_delivered
    assert (await state(hub, shipped))["order"] == "shipped"

    second = await apply(hub, shipped, JOURNEY, index=1)
    assert second.order_delivered
    # The voided label's parcel never travels; it does not hold the order back.
    assert (await state(hub, shipped))["order"] == "delivered"


async def test_a_partially_shipped_order_is_not_delivered_by_its_first_parcel(hub: Hub) -> None:
    shipped = await shipped_order(hub, order_status="partially_shipped")
    applied = await apply(hub, shipped, JOURNEY)
    assert applied.status == "delivered" and not applied.order_delivered
    assert (await state(hub, shipped))["order"] == "partially_shipped"


async def test_tracking_does_not_move_a_voided_shipment(hub: Hub) -> None:
    shipped = await shipped_order(hub, parcels=[{"status": "voided"}])
    applied = await apply(hub, shipped, JOURNEY)
    assert (applied.added, applied.status) == (4, "voided")
    assert (await state(hub, shipped))["order"] == "shipped"


async def test_pre_transit_alone_keeps_the_label_purchased(hub: Hub) -> None:
    shipped = await shipped_order(hub)
    applied = await apply(hub, shipped, [JOURNEY[0]])
    assert (applied.added, applied.status) == (1, "label_purchased")
    assert (
        applied.summary
        == "DHL 00340434161094015900 is waiting for the carrier in Leipzig, DE (Label created)"
    )


async def test_find_shipment_by_remote_id_then_tracking_number_on_its_connection_only(hub: Hub) -> None:
    shipped = await shipped_order(
        hub,
        parcels=[
            {"external_id": "txn-1", "tracking_number": "9400100000000000000001", "idempotency_key": "k-1"}
        ],
    )
    other = await shipped_order(
        hub, parcels=[{"external_id": "txn-1", "tracking_number": "9400100000000000000001"}]
    )
    async with hub.db.session() as session:
        by_id = await find_shipment(session, shipped.connection_id, external_id="txn-1")
        by_number = await find_shipment(
            session, shipped.connection_id, external_id="unknown", tracking_number="9400100000000000000001"
        )
        by_key = await find_shipment(session, shipped.connection_id, idempotency_key="k-1")
        elsewhere = await find_shipment(session, other.connection_id, external_id="txn-1")
        missing = await find_shipment(
            session, shipped.connection_id, external_id="txn-2", tracking_number="x"
        )
        nothing = await find_shipment(session, shipped.connection_id)
    assert by_id is not None and by_id.id == shipped.shipment_ids[0]
    assert by_number is not None and by_number.id == shipped.shipment_ids[0]
    assert by_key is not None and by_key.id == shipped.shipment_ids[0]
    assert elsewhere is not None and elsewhere.id == other.shipment_ids[0]
    assert missing is None and nothing is None


async def test_find_shipment_prefers_the_remote_id_then_the_newest_with_the_number_then_the_key_in_one_read(
    hub: Hub,
) -> None:
    now = T0
    shipped = await shipped_order(
        hub,
        parcels=[
            {"external_id": "txn-A", "created_at": now - timedelta(minutes=3)},
            {"tracking_number": "TRK-1", "created_at": now - timedelta(minutes=2)},
            # The same number bought again (a label voided and bought anew): the newer shipment is the one.
            {"tracking_number": "TRK-1", "created_at": now - timedelta(minutes=1)},
            {"idempotency_key": "k-D", "created_at": now},
        ],
    )
    a, _older, newer, d = shipped.shipment_ids
    with statements_sent(hub, "SELECT shipments.") as reads:
        async with hub.db.session() as session:
            found = [
                await find_shipment(session, shipped.connection_id, **asked)
                for asked in (
                    {"external_id": "txn-A", "tracking_number": "TRK-1", "idempotency_key": "k-D"},
                    {"external_id": "txn-X", "tracking_number": "TRK-1", "idempotency_key": "k-D"},
                    {"idempotency_key": "k-D", "tracking_number": "TRK-1"},
                    {"external_id": "txn-X", "tracking_number": "TRK-X", "idempotency_key": "k-D"},
                    {"external_id": "txn-X", "tracking_number": "TRK-X", "idempotency_key": "k-X"},
                )
            ]
    assert [None if row is None else row.id for row in found] == [a, newer, newer, d, None]
    assert len(reads) == 5  # one read each, however many of the three are given


async def test_events_are_stored_once_per_time_and_status(hub: Hub) -> None:
    shipped = await shipped_order(hub)
    same_instant_other_zone = m.TrackingEvent(
        status=m.TrackingStatus.IN_TRANSIT,
        occurred_at=(T0 + timedelta(minutes=90)).astimezone(ZoneInfo("Europe/Berlin")),
        description="Departed the hub",
    )
    applied = await apply(hub, shipped, [JOURNEY[1], same_instant_other_zone, JOURNEY[1]])
    assert applied.added == 1
    async with hub.db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(t.TrackingEvent)
            .where(t.TrackingEvent.shipment_id == shipped.shipment_ids[0])
        )
    assert count == 1

"""From a paid order to a bought label and a fulfillment on the order's channel, exactly once.

Three jobs, each safe to run twice:

1. `shipping.ship_order` (when a paid order arrives and the account ships automatically, or when someone asks):
   packs the lines still to ship into parcels (flows/parcels.py), lets the account's rules choose a connection
   and service for each parcel (flows/rules.py, with rates asked through flows/rating.py), and stores one
   shipment per parcel, each with its own idempotency key, in one transaction with one purchase job per
   shipment. An order that already has shipments in progress is not planned again.
2. `shipping.buy_label`: buys one shipment's label. Before the purchase is sent, the shipment is marked in its
   own transaction; a job that finds that mark and no label (a crash or a timeout after the request left) asks
   the remote for the label bought with the key first (`find_label`), and only buys when the remote has none.
   A remote that cannot look labels up (carriers through karrio) is never sent a second purchase: the shipment
   fails with what to check. The label file goes to the blob store (content-addressed: storing it twice keeps
   one), and the shipment, its label, the order's fulfillment (which moves the order to shipped or partially
   shipped and queues the push to the channel) and the outbound event commit together.
3. `shipping.void_label`: when an order is cancelled or refunded, each bought label is voided where the remote
   allows it; where it does not, the order's timeline says so in the remote's words.

Purchase jobs are enqueued with `cancel_with_order`, so cancelling an order cancels the purchases still
waiting in the same transaction; a purchase already running when the order is cancelled finds the order
cancelled after it bought, and voids what it bought.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crossdock import model as m
from crossdock.connectors.base import BoughtLabel, Capability, Role, ShippingLabels
from crossdock.connectors.registry import get_spec
from crossdock.engine.connections import open_connector
from crossdock.engine.errors import ConfigurationError, JobError, PermanentError, RetryableError
from crossdock.engine.fulfillments import record_fulfillment
from crossdock.engine.jobs import JobContext, RetryPolicy, enqueue, job
from crossdock.engine.timeline import add_event
from crossdock.engine.webhooks_out import emit
from crossdock.flows.catalog import Catalog, sku_tags, variants_by_sku, weighed
from crossdock.flows.parcels import ParcelError, PlannedParcel, plan
from crossdock.flows.policy import ShippingPolicy, left_as_too_old, policy_in_transaction
from crossdock.flows.rating import rates_source
from crossdock.flows.rules import Facts, ShippingRule, Strategy, decide, service_words
from crossdock.logs import redact, redact_text
from crossdock.store import tables as t
from crossdock.store.convert import money_minor, row_order, row_shipment, stored_grams
from crossdock.store.repo import Conflict, EnteredOrder, NotFound, Tenant, on_orders_status
from crossdock.store.types import utcnow

SHIP_JOB = "shipping.ship_order"
BUY_JOB = "shipping.buy_label"
VOID_JOB = "shipping.void_label"

S = m.OrderStatus
SS = m.ShipmentStatus
SHIPPABLE = (S.PAID, S.READY_TO_SHIP, S.PARTIALLY_SHIPPED)
# Shipments that still stand: a new plan is made only when an order has none of these.
ACTIVE = (SS.DRAFT, SS.RATED, SS.LABEL_PENDING, SS.LABEL_PURCHASED, SS.IN_TRANSIT, SS.DELIVERED, SS.EXCEPTION)
# How long rates may take when a job plans an order's parcels (a checkout quote has a budget of its own).
RATES_BUDGET_S = 20.0
# Orders this flow is moving itself in the current transaction: their status hooks are its own echo.
_MOVING = "crossdock.flows.labels.moving"


# -- reacting to orders ----------------------------------------------------------------------------------------
@on_orders_status
async def _orders_entered(
    session: AsyncSession, tenant: Tenant, entered: Sequence[tuple[EnteredOrder, m.OrderStatus]]
) -> None:
    moving = session.info.get(_MOVING, ())
    ships: list[uuid.UUID] = []  # paid: shipped automatically, in the order they came
    ended: dict[uuid.UUID, int] = {}  # cancelled or refunded: order id -> its place in `entered`
    for place, (row, status) in enumerate(entered):
        if row.id in moving:
            continue
        if status in (S.PAID, S.READY_TO_SHIP):
            if await _ships_automatically(session, tenant, row):
                ships.append(row.id)
        elif status in (S.CANCELLED, S.REFUNDED):
            ended.setdefault(row.id, place)
    if ships:
        await session.flush()  # the orders' rows, before the jobs that name them
        for order_id in ships:
            await enqueue_ship(session, tenant.account_id, order_id, requested_by="automatic shipping")
    if ended:
        # One read for all of them: a backfill's page brings its cancelled orders together.
        bought = (
            await session.scalars(
                tenant.scoped(t.Shipment).where(
                    t.Shipment.order_id.in_(list(ended)), t.Shipment.status == SS.LABEL_PURCHASED.value
                )
            )
        ).all()
        for shipment in sorted(bought, key=lambda shipment: ended[shipment.order_id]):
            await enqueue_void(session, shipment)


async def _ships_automatically(session: AsyncSession, tenant: Tenant, row: EnteredOrder) -> bool:
    """Whether the policy ships this paid order by itself; one too old for that gets an event saying so."""
    policy = await policy_in_transaction(session, tenant.account_id)
    if not policy.auto_ship:
        return False
    return not await left_as_too_old(
        tenant, policy, row, kind="shipping.not_automatic", not_done="Not shipped automatically"
    )


async def enqueue_ship(
    session: AsyncSession,
    account_id: uuid.UUID,
    order_id: uuid.UUID,
    *,
    requested_by: str,
    connection_id: uuid.UUID | None = None,
    service: str | None = None,
) -> uuid.UUID | None:
    """Queue the planning of an order's shipments; None when it is queued already. `connection_id` and
    `service` ("carrier:service_code") override the account's rules for this order."""
    payload: dict[str, Any] = {"order_id": str(order_id), "requested_by": requested_by}
    if connection_id is not None:
        payload["connection_id"] = str(connection_id)
    if service is not None:
        payload["service"] = service
    return await enqueue(
        session,
        account_id=account_id,
        kind=SHIP_JOB,
        payload=payload,
        queueing_key=f"ship:{order_id}",
        lock_key=f"order:{order_id}",
        order_id=order_id,
        cancel_with_order=True,
    )


async def enqueue_void(session: AsyncSession, shipment: t.Shipment) -> uuid.UUID | None:
    return await enqueue(
        session,
        account_id=shipment.account_id,
        kind=VOID_JOB,
        payload={"shipment_id": str(shipment.id)},
        queueing_key=f"void:{shipment.id}",
        lock_key=f"shipment:{shipment.id}",
        order_id=shipment.order_id,
    )


async def ask_to_void(session: AsyncSession, tenant: Tenant, shipment_id: uuid.UUID) -> uuid.UUID | None:
    """Someone asks for a bought label to be voided (the API, the panel). Raises repo.NotFound for a shipment
    of another account and repo.Conflict unless the label is bought and not yet moving."""
    row = (await session.scalars(tenant.scoped(t.Shipment).where(t.Shipment.id == shipment_id))).first()
    if row is None:
        raise NotFound("shipment", shipment_id)
    if row.status != SS.LABEL_PURCHASED.value:
        raise Conflict(
            f"only a bought label that is not moving yet can be voided; this shipment is {row.status}",
            field="shipment",
        )
    return await enqueue_void(session, row)


async def ask_to_ship(
    session: AsyncSession,
    tenant: Tenant,
    order_id: uuid.UUID,
    *,
    connection_id: uuid.UUID | None = None,
    service: str | None = None,
) -> uuid.UUID | None:
    """Someone asks for an order to be shipped now (the API, the panel). Raises repo.Conflict naming the field
    when it cannot be: the order's status, shipments already in progress, a connection that does not ship."""
    row = await tenant.get_order(order_id)
    if S(row.status) not in SHIPPABLE:
        raise Conflict(
            f"a {row.status} order is not shipped; only paid, ready_to_ship and partially_shipped ones are",
            field="order",
        )
    in_progress = await session.scalar(
        select(t.Shipment.id).where(
            t.Shipment.account_id == tenant.account_id,
            t.Shipment.order_id == order_id,
            t.Shipment.status.in_([SS.DRAFT.value, SS.RATED.value, SS.LABEL_PENDING.value]),
        )
    )
    if in_progress is not None:
        raise Conflict(
            "this order's labels are being bought already; wait for them or void them", field="order"
        )
    if connection_id is not None:
        connection = await tenant.get_connection(connection_id)
        if get_spec(connection.connector).role is not Role.SHIPPING:
            raise Conflict(
                f"connection {connection_id} is a {connection.connector} connection, which does not ship",
                field="connection_id",
            )
    if service is not None and (connection_id is None or ":" not in service):
        raise Conflict(
            "service needs connection_id too, and is written 'carrier:service_code' (e.g. 'usps:usps_priority')",
            field="service",
        )
    return await enqueue_ship(
        session,
        tenant.account_id,
        order_id,
        requested_by="request",
        connection_id=connection_id,
        service=service,
    )


# -- planning ----------------------------------------------------------------------------------------------------
def _still_to_ship(order_row: t.Order, order: m.Order, catalog: Catalog) -> list[m.OrderLine]:
    """The order's lines with the quantity not shipped yet, weighed from the catalog where the channel gave no
    weight."""
    lines: list[m.OrderLine] = []
    for stored, line in zip(order_row.lines, order.lines, strict=True):
        left = stored.quantity - stored.shipped_quantity
        if left <= 0 or not line.requires_shipping:
            continue
        lines.append(weighed(line.model_copy(update={"quantity": left}), catalog))
    return lines


@job(SHIP_JOB, retry=RetryPolicy(max_attempts=6, base_s=30.0, cap_s=3600.0), timeout_s=180)
async def ship_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    assert ctx.account_id is not None
    order_id = uuid.UUID(payload["order_id"])
    async with ctx.session() as session:
        tenant = Tenant(session, ctx.account_id)
        row = (
            await session.scalars(
                tenant.scoped(t.Order).options(selectinload(t.Order.lines)).where(t.Order.id == order_id)
            )
        ).first()
        if row is None:
            return
        if S(row.status) not in SHIPPABLE:
            await tenant.add_event(order_id, "shipping.skipped", f"Not shipped: the order is {row.status}")
            return
        standing = await session.scalar(
            select(t.Shipment.id).where(
                t.Shipment.account_id == tenant.account_id,
                t.Shipment.order_id == order_id,
                t.Shipment.status.in_([s.value for s in ACTIVE]),
            )
        )
        if standing is not None and payload.get("requested_by") != "request":
            await _requeue_pending(session, tenant, order_id)
            return
        order = row_order(row)
        policy = await policy_in_transaction(session, ctx.account_id)
        catalog = await variants_by_sku(tenant, (line.sku for line in order.lines))
        lines = _still_to_ship(row, order, catalog)
        tags = sku_tags(lines, catalog)
        session.expunge_all()
    if not lines:
        await ctx.timeline(order_id, "shipping.skipped", "Not shipped: every line has been shipped already")
        return
    try:
        parcels = plan(lines, policy.packing)
    except ParcelError as exc:
        await ctx.timeline(order_id, "shipping.failed", f"Cannot pack the order: {exc}", severity="error")
        raise PermanentError(f"cannot pack the order: {exc}") from None

    rules, fallback = _rules_for(policy, payload)
    unpriced = await _labels_only(ctx, [*rules, *([fallback] if fallback else [])])
    planned: list[tuple[PlannedParcel, m.Rate | None, uuid.UUID, str]] = []
    for number, parcel in enumerate(parcels, start=1):
        shipment = m.Shipment(
            order_id=order_id, parcels=[parcel.to_model(reference=f"{_reference(order)}-{number}")]
        )
        facts = Facts(
            country=order.shipping_address.country if order.shipping_address else None,
            weight=parcel.weight,
            value=order.totals.total,
            sku_tags=tags,
        )
        source = rates_source(ctx.hub, ctx.account_id, shipment, order, budget_s=RATES_BUDGET_S)
        decision = await decide(rules, fallback, facts, source, unpriced)
        chosen = decision.connection_id
        if chosen is None:
            where = f"parcel {number} of {len(parcels)}: " if len(parcels) > 1 else ""
            if source.left_out:
                decision.explanation += " (" + "; ".join(source.left_out.values()) + ")"
            if source.passing:
                # A connection that would have been asked failed for a passing fault (5xx, 429, a timeout):
                # asked again later it may well answer, so this is not the order's end (the worker puts the
                # attempt and its next try on the timeline).
                raise RetryableError(f"no shipping service chosen yet: {decision.explanation}")
            await ctx.timeline(
                order_id,
                "shipping.failed",
                f"Cannot choose a shipping service for {where}{decision.explanation}",
                {"skipped": decision.skipped},
                severity="error",
            )
            raise PermanentError(f"no shipping service chosen: {decision.explanation}")
        planned.append((parcel, decision.rate, chosen, decision.explanation))

    async with ctx.session() as session:
        tenant = Tenant(session, ctx.account_id)
        row = (await session.scalars(tenant.orders_locked().where(t.Order.id == order_id))).first()
        if row is None or S(row.status) not in SHIPPABLE:
            return  # cancelled while rates were asked for
        session.info.setdefault(_MOVING, set()).add(order_id)
        summaries: list[str] = []
        for number, (parcel, rate, connection_id, explanation) in enumerate(planned, start=1):
            shipment_id = uuid.uuid4()
            stored = t.Shipment(
                id=shipment_id,
                account_id=ctx.account_id,
                order_id=order_id,
                connection_id=connection_id,
                status=SS.LABEL_PENDING.value,
                carrier=None if rate is None else rate.carrier,
                service_code=None if rate is None else rate.service_code,
                # A rate from a connection that quotes none has no price until the label is bought.
                rate_minor=None if rate is None or rate.price is None else money_minor(rate.price),
                rate_currency=None if rate is None or rate.price is None else rate.price.currency,
                idempotency_key=f"crossdock-label-{shipment_id}",
                rate=None if rate is None else rate.model_dump(mode="json"),
                decision=explanation,
                lines=[_fulfillment_line(lines[item.line], item.quantity) for item in parcel.items],
            )
            stored.parcels = [
                t.Parcel(
                    account_id=ctx.account_id,
                    position=0,
                    weight_g=stored_grams(parcel.weight),
                    length_mm=None if parcel.dimensions is None else parcel.dimensions.length.in_mm,
                    width_mm=None if parcel.dimensions is None else parcel.dimensions.width.in_mm,
                    height_mm=None if parcel.dimensions is None else parcel.dimensions.height.in_mm,
                    reference=f"{_reference(order)}-{number}",
                )
            ]
            session.add(stored)
            summaries.append(explanation)
        await session.flush()
        if S(row.status) is S.PAID:
            await tenant.transition_order(row, S.READY_TO_SHIP, reason="shipping planned")
        count = len(planned)
        await tenant.add_event(
            order_id,
            "shipping.planned",
            (f"{count} parcels: " if count > 1 else "")
            + "; ".join(
                f"parcel {i}: {text}" if count > 1 else text for i, text in enumerate(summaries, start=1)
            ),
            {"requested_by": payload.get("requested_by"), "parcels": count},
        )
        await _requeue_pending(session, tenant, order_id)


async def _labels_only(ctx: JobContext, rules: list[ShippingRule]) -> dict[uuid.UUID, str]:
    """The connections the rules name that buy labels but quote no rates (MyParcel.com prices a shipment when
    it registers it), with their titles."""
    named = {rule.connection_id for rule in rules if rule.connection_id is not None}
    if not named:
        return {}
    async with ctx.autocommit() as session:
        rows = (
            await session.execute(
                select(t.Connection.id, t.Connection.connector).where(
                    t.Connection.account_id == ctx.account_id, t.Connection.id.in_(named)
                )
            )
        ).all()
    found: dict[uuid.UUID, str] = {}
    for connection_id, connector in rows:
        spec = get_spec(connector)
        if (
            Capability.SHIPPING_LABELS in spec.capabilities
            and Capability.SHIPPING_RATES not in spec.capabilities
        ):
            found[connection_id] = spec.title
    return found


def _rules_for(
    policy: ShippingPolicy, payload: dict[str, Any]
) -> tuple[list[ShippingRule], ShippingRule | None]:
    """The account's rules, or the one connection and service a request named."""
    if payload.get("connection_id") is None:
        return list(policy.rules), policy.fallback
    connection_id = uuid.UUID(payload["connection_id"])
    service = payload.get("service")
    rule = ShippingRule(
        name="asked for this order",
        connection_id=connection_id,
        strategy=Strategy.FIXED if service else Strategy.CHEAPEST,
        service=service,
    )
    return [rule], None


def _reference(order: m.Order) -> str:
    return order.external_number or order.external_id or str(order.id)[:8]


def _fulfillment_line(line: m.OrderLine, quantity: int) -> dict[str, Any]:
    return {"line_external_id": line.external_id, "sku": line.sku, "quantity": quantity}


async def _requeue_pending(session: AsyncSession, tenant: Tenant, order_id: uuid.UUID) -> None:
    """A purchase job for every shipment of the order still waiting for its label (queued once per shipment)."""
    pending = (
        await session.scalars(
            tenant.scoped(t.Shipment).where(
                t.Shipment.order_id == order_id, t.Shipment.status == SS.LABEL_PENDING.value
            )
        )
    ).all()
    for shipment in pending:
        await enqueue(
            session,
            account_id=tenant.account_id,
            kind=BUY_JOB,
            payload={"shipment_id": str(shipment.id)},
            queueing_key=f"label:{shipment.id}",
            lock_key=f"shipment:{shipment.id}",
            order_id=order_id,
            cancel_with_order=True,
        )


# -- buying ------------------------------------------------------------------------------------------------------
async def _fail(ctx: JobContext, shipment_id: uuid.UUID, order_id: uuid.UUID, message: str) -> None:
    async with ctx.session() as session:
        await session.execute(
            update(t.Shipment)
            .where(t.Shipment.id == shipment_id)
            .values(status=SS.FAILED.value, error=redact_text(message)[:4000], updated_at=utcnow())
        )
        await add_event(
            session,
            account_id=ctx.account_id,  # type: ignore[arg-type]
            order_id=order_id,
            kind="shipping.label_failed",
            summary=f"Label not bought: {message}",
            detail={"shipment_id": str(shipment_id), "job_id": str(ctx.job_id)},
            severity="error",
        )


async def _retried_by_hand(session: AsyncSession, ctx: JobContext, row: t.Shipment) -> bool:
    """Whether this run is the very job that failed the shipment, run again: only a person retrying the dead job
    does that (a failure is permanent, so the job was not retried on schedule). A different job for a failed
    shipment (a replay, a duplicate) is not a decision to try again. The failure's timeline event names the job;
    the order's other shipments (its other parcels) have failure events of their own."""
    failures = await session.scalars(
        select(t.TimelineEvent.detail)
        .where(
            t.TimelineEvent.account_id == row.account_id,
            t.TimelineEvent.order_id == row.order_id,
            t.TimelineEvent.kind == "shipping.label_failed",
        )
        .order_by(t.TimelineEvent.at.desc())
    )
    latest = next((detail for detail in failures if (detail or {}).get("shipment_id") == str(row.id)), None)
    return latest is not None and latest.get("job_id") == str(ctx.job_id)


@job(BUY_JOB, retry=RetryPolicy(max_attempts=8, base_s=15.0, cap_s=3600.0), timeout_s=300)
async def buy_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    assert ctx.account_id is not None
    shipment_id = uuid.UUID(payload["shipment_id"])
    async with ctx.session() as session:
        tenant = Tenant(session, ctx.account_id)
        row = (
            await session.scalars(
                tenant.scoped(t.Shipment)
                .options(selectinload(t.Shipment.parcels))
                .where(t.Shipment.id == shipment_id)
            )
        ).first()
        if row is not None and row.status == SS.FAILED.value and await _retried_by_hand(session, ctx, row):
            row.status, row.error = SS.LABEL_PENDING.value, None
            await tenant.add_event(
                row.order_id,
                "shipping.label_retried",
                "The label purchase is tried again: its failed job was retried by hand",
                {"shipment_id": str(row.id), "job_id": str(ctx.job_id)},
            )
            await session.flush()
        if row is not None and row.status == SS.FAILED.value:
            await tenant.add_event(
                row.order_id,
                "shipping.not_retried",
                f"The label purchase was not repeated: the shipment failed ({row.error or 'no reason kept'}). "
                "Ask for the order to be shipped again once the cause is fixed",
                {"shipment_id": str(row.id)},
                severity="warning",
            )
            return
        if row is None or row.status != SS.LABEL_PENDING.value:
            return  # bought or voided already: this run is a repeat
        order_row = (
            await session.scalars(
                tenant.scoped(t.Order).options(selectinload(t.Order.lines)).where(t.Order.id == row.order_id)
            )
        ).first()
        if order_row is None:
            return
        if S(order_row.status) in (S.CANCELLED, S.REFUNDED) and row.purchase_started_at is None:
            row.status = SS.VOIDED.value
            row.error = f"the order was {order_row.status} before its label was bought"
            await tenant.add_event(
                order_row.id, "shipping.label_cancelled", f"Label not bought: the order is {order_row.status}"
            )
            return
        order = row_order(order_row)
        shipment = row_shipment(row)
        # Stored shipments always belong to an order (shipments.order_id is NOT NULL); the connector records its
        # calls against it on the order's timeline.
        assert shipment.order_id is not None
        rate = shipment.rate
        key = row.idempotency_key or f"crossdock-label-{row.id}"
        started = row.purchase_started_at
        connection_id = row.connection_id
        order_id = row.order_id
        session.expunge_all()
    if connection_id is None:
        await _fail(ctx, shipment_id, order_id, "its shipping connection was removed; ship the order again")
        raise PermanentError("the shipment's connection was removed")
    found = sent = finds = False
    title = "the shipping connection"
    try:
        async with open_connector(ctx.hub, ctx.account_id, connection_id) as (connection, connector):
            title = get_spec(connection.connector).title
            if not isinstance(connector, ShippingLabels):
                raise ConfigurationError(f"{title} connections do not buy labels")
            label: BoughtLabel | None = None
            finds = bool(getattr(connector, "finds_labels", False))
            if started is not None:
                if not finds:
                    raise PermanentError(
                        f"a purchase of this label was sent to {title} at {started:%Y-%m-%d %H:%M:%S} UTC and its "
                        f"outcome is unknown; {title} cannot look a label up, so crossdock does not buy again. "
                        f"Check the {title} account for a label for order {_reference(order)}: void it there if it "
                        "exists, then ask for the order to be shipped again"
                    )
                label = await connector.find_label(key)
                found = label is not None
            if label is None:
                # One statement, committed before the purchase is sent.
                async with ctx.autocommit() as session:
                    await session.execute(
                        update(t.Shipment)
                        .where(t.Shipment.id == shipment_id)
                        .values(purchase_started_at=utcnow())
                    )
                sent = True
                label = await connector.buy_label(shipment, order, rate, key)
    except JobError as exc:
        if isinstance(exc, PermanentError):
            message = exc.message
            if sent and not finds:
                who = rate.carrier if rate is not None else title
                message += (
                    f". If {who} bought the label all the same, it is in the {who} account for order "
                    f"{_reference(order)}: void it there before asking for the order to be shipped again "
                    "(crossdock cannot look it up, so it never buys a second one by itself)"
                )
            await _fail(ctx, shipment_id, order_id, message)
        raise
    blob_key = ctx.hub.blobs.put(label.file)
    await _store(ctx, shipment_id, label, blob_key, title, found=found)


async def _store(
    ctx: JobContext, shipment_id: uuid.UUID, label: BoughtLabel, blob_key: str, title: str, *, found: bool
) -> None:
    assert ctx.account_id is not None
    async with ctx.session() as session:
        tenant = Tenant(session, ctx.account_id)
        # The order is locked first, before anything naming it is written: the labels of an order's parcels are
        # stored by jobs that may run at once, and each ends by recording a fulfillment, which locks the order.
        # Taken late, after rows referring to the order were inserted (which share-lock it), the two jobs would
        # each wait for the other (a deadlock, seen on PostgreSQL).
        # One read finds the order by its shipment, locks it and loads its lines, which the fulfillment below
        # is recorded against (record_fulfillment is handed the locked order rather than reading it again).
        order_of_shipment = select(t.Shipment.order_id).where(
            t.Shipment.id == shipment_id, t.Shipment.account_id == ctx.account_id
        )
        order = (
            await session.scalars(
                tenant.orders_locked().where(t.Order.id == order_of_shipment.scalar_subquery())
            )
        ).first()
        row = (
            await session.scalars(
                tenant.scoped(t.Shipment).where(t.Shipment.id == shipment_id).with_for_update()
            )
        ).first()
        if order is None or row is None or row.status != SS.LABEL_PENDING.value:
            return
        row.status = SS.LABEL_PURCHASED.value
        row.external_id = label.remote_id
        row.carrier = label.carrier
        row.service_code = label.service_code
        row.tracking_number = label.tracking_number
        row.tracking_url = label.tracking_url
        row.error = None
        if label.price is not None:
            row.rate_minor = money_minor(label.price)
            row.rate_currency = label.price.currency
        session.add(
            t.Label(
                account_id=ctx.account_id,
                shipment_id=row.id,
                format=label.file_format.value,
                blob_key=blob_key,
                size=len(label.file),
                tracking_number=label.tracking_number,
            )
        )
        price = f" for {label.price.amount} {label.price.currency}" if label.price is not None else ""
        tracking = f", tracking {label.tracking_number}" if label.tracking_number else ""
        how = "Found the label already bought" if found else "Bought a label"
        await tenant.add_event(
            row.order_id,
            "shipping.label_bought",
            f"{how} at {title}: {_service(label, row.rate)}{price}{tracking}",
            {
                "shipment_id": str(row.id),
                "remote_id": label.remote_id,
                "decision": row.decision,
                "remote": redact(label.raw),
            },
        )
        await emit(
            session,
            account_id=ctx.account_id,
            event_type="shipment.label_created",
            order_id=row.order_id,
            data={
                "order_id": str(row.order_id),
                "shipment_id": str(row.id),
                "carrier": label.carrier,
                "service_code": label.service_code,
                "tracking_number": label.tracking_number,
                "tracking_url": label.tracking_url,
            },
        )
        if S(order.status) in (S.CANCELLED, S.REFUNDED):
            await tenant.add_event(
                row.order_id,
                "shipping.label_unwanted",
                f"The order was {order.status} while its label was being bought; voiding the label",
                severity="warning",
            )
            await enqueue_void(session, row)
            return
        session.info.setdefault(_MOVING, set()).add(row.order_id)
        try:
            # No savepoint around it: record_fulfillment raises Conflict before it writes anything.
            await record_fulfillment(
                session,
                tenant,
                row.order_id,
                lines=[m.FulfillmentLine(**line) for line in row.lines] or None,
                carrier=label.carrier,
                tracking_number=label.tracking_number,
                tracking_url=label.tracking_url,
                shipment_id=row.id,
                locked=order,
            )
        except Conflict as exc:
            await tenant.add_event(
                row.order_id,
                "shipping.not_fulfilled",
                f"The label is bought but the order's lines were not marked shipped: {exc}",
                {"shipment_id": str(row.id)},
                severity="warning",
            )


def _service(label: BoughtLabel, chosen: dict[str, Any] | None) -> str:
    """ "USPS Priority Mail": the chosen rate's name when the label is for that service, else the label's code."""
    rate = None if chosen is None else m.Rate.model_validate(chosen)
    name = rate.service_name if rate is not None and rate.service_code == label.service_code else None
    return service_words(label.carrier, name or label.service_code)


# -- voiding -----------------------------------------------------------------------------------------------------
@job(VOID_JOB, retry=RetryPolicy(max_attempts=8, base_s=30.0, cap_s=3600.0), timeout_s=120)
async def void_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    assert ctx.account_id is not None
    shipment_id = uuid.UUID(payload["shipment_id"])
    async with ctx.session() as session:
        row = (
            await session.scalars(
                Tenant(session, ctx.account_id).scoped(t.Shipment).where(t.Shipment.id == shipment_id)
            )
        ).first()
        if (
            row is None
            or row.status != SS.LABEL_PURCHASED.value
            or row.connection_id is None
            or not row.external_id
        ):
            return
        connection_id, remote_id, order_id = row.connection_id, row.external_id, row.order_id
        session.expunge_all()
    async with open_connector(ctx.hub, ctx.account_id, connection_id, allow_unavailable=True) as (
        connection,
        connector,
    ):
        title = get_spec(connection.connector).title
        if not isinstance(connector, ShippingLabels):
            raise ConfigurationError(f"{title} connections do not void labels")
        outcome = await connector.void_label(remote_id)
    async with ctx.session() as session:
        values: dict[str, Any] = {"updated_at": utcnow()}
        if outcome.voided:
            values["status"] = SS.VOIDED.value
            summary = f"Voided the label at {title}" + (f": {outcome.message}" if outcome.message else "")
        else:
            values["error"] = redact_text(outcome.message)[:4000]
            summary = f"The label could not be voided at {title}: {outcome.message}"
        await session.execute(update(t.Shipment).where(t.Shipment.id == shipment_id).values(**values))
        await add_event(
            session,
            account_id=ctx.account_id,
            order_id=order_id,
            kind="shipping.label_voided" if outcome.voided else "shipping.void_refused",
            summary=summary,
            detail={"shipment_id": str(shipment_id), "remote_id": remote_id},
            severity="info" if outcome.voided else "warning",
        )

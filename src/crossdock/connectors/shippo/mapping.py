"""Shippo's JSON <-> crossdock's canonical shipping model. Pure functions: no I/O, no clock.

Requests: a canonical Shipment and Order become a POST /shipments body (addresses, parcels with their units),
and a canonical Order a POST /orders body (the order as it appears in Shippo's dashboard).
Answers: a shipment's rates become Rates, a Track becomes TrackingEvents, and the webhooks Shippo sends
(transaction_created, transaction_updated, track_updated) become a `ShippoUpdate`; what cannot be read is
reported as MappingProblems, never raised. Field facts: PROTOCOLS.md section 5 and the official SDK's models
(goshippo/shippo-python-sdk src/shippo/models/components/: Transaction, Track, TrackingStatus, Rate,
WebhookPayloadTransaction, WebhookPayloadTrack), named beside each rule.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from crossdock.connectors.base import MappingProblem
from crossdock.connectors.remote_json import INTERNAL, PushError, Reader, join, kind
from crossdock.model import (
    Address,
    LabelFormat,
    Money,
    Order,
    OrderStatus,
    Parcel,
    Rate,
    Shipment,
    TrackingEvent,
    TrackingStatus,
    Weight,
    WeightUnit,
)

# LabelFileTypeEnum (SDK components/labelfiletypeenum.py).
LABEL_FILE_TYPES = (
    "PNG",
    "PNG_2.3x7.5",
    "PDF",
    "PDF_2.3x7.5",
    "PDF_4x6",
    "PDF_4x8",
    "PDF_A4",
    "PDF_A5",
    "PDF_A6",
    "ZPLII",
)
# TransactionStatusEnum (SDK components/transactionstatusenum.py).
TRANSACTION_STATUSES = frozenset(
    {"WAITING", "QUEUED", "SUCCESS", "ERROR", "REFUNDED", "REFUNDPENDING", "REFUNDREJECTED"}
)
# A purchase Shippo has not finished: the label may still come (docs.goshippo.com api-concepts/asynchronus-api-call).
PENDING = frozenset({"WAITING", "QUEUED"})
# TrackingStatusEnum (SDK components/trackingstatusenum.py) -> canonical status. Shippo's FAILURE is "the
# carrier could not deliver" (an exception to act on), not a failure of the API.
TRACKING_STATUS: dict[str, TrackingStatus] = {
    "PRE_TRANSIT": TrackingStatus.PRE_TRANSIT,
    "TRANSIT": TrackingStatus.IN_TRANSIT,
    "DELIVERED": TrackingStatus.DELIVERED,
    "RETURNED": TrackingStatus.RETURNED,
    "FAILURE": TrackingStatus.EXCEPTION,
    "UNKNOWN": TrackingStatus.UNKNOWN,
}
# The webhook events crossdock reads (WebhookEventTypeEnum; batch events carry no label of ours).
EVENTS = ("transaction_created", "transaction_updated", "track_updated")
# metadata is "a string of up to 100 characters" (SDK components/transaction.py, Transaction.metadata).
METADATA_MAX = 100
METADATA_PREFIX = "crossdock:"
# Parcel numbers: "up to six digits in front and four digits after the decimal separator" (SDK
# components/parcelcreaterequest.py).
PARCEL_QUANTUM = Decimal("0.0001")
PARCEL_MAX = Decimal("999999.9999")


# OrderStatusEnum (SDK components/orderstatusenum.py: UNKNOWN, AWAITPAY, PAID, REFUNDED, CANCELLED,
# PARTIALLY_FULFILLED, SHIPPED) for each canonical status. Shippo has no "ready to ship" or "delivered": a
# planned order is still PAID there, a delivered one SHIPPED.
ORDER_STATUS: dict[OrderStatus, str] = {
    OrderStatus.PENDING: "AWAITPAY",
    OrderStatus.PAID: "PAID",
    OrderStatus.READY_TO_SHIP: "PAID",
    OrderStatus.PARTIALLY_SHIPPED: "PARTIALLY_FULFILLED",
    OrderStatus.SHIPPED: "SHIPPED",
    OrderStatus.DELIVERED: "SHIPPED",
    OrderStatus.CANCELLED: "CANCELLED",
    OrderStatus.REFUNDED: "REFUNDED",
}
# Order and line item weights are strings in a WeightUnitEnum unit (g, kg, lb, oz: every crossdock unit);
# four decimals, as Shippo's parcels take, are well below a gram in any of them.
ORDER_WEIGHT_QUANTUM = Decimal("0.0001")


# -- requests --------------------------------------------------------------------------------------------------


def label_format(label_file_type: str) -> LabelFormat:
    """The file format of a label file type: PNG*, ZPLII, else PDF."""
    if label_file_type.startswith("PNG"):
        return LabelFormat.PNG
    if label_file_type == "ZPLII":
        return LabelFormat.ZPL
    return LabelFormat.PDF


def metadata_for(idempotency_key: str) -> str:
    """The transaction metadata that marks a purchase as ours for this key (looked up by find_label). A key too
    long for the 100 characters is replaced by its SHA-256, so it still names one purchase."""
    text = METADATA_PREFIX + idempotency_key
    if len(text) <= METADATA_MAX:
        return text
    return f"{METADATA_PREFIX}sha256:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"


def address_request(
    address: Address, *, name: str | None = None, email: str | None = None, phone: str | None = None
) -> dict[str, Any]:
    """A Shippo address object (PROTOCOLS.md 5: name, company, street1, street2, city, state, zip, country,
    phone, email). `state` is the subdivision code without its country prefix ("US-CA" -> "CA"), as carriers
    want it; a subdivision that is not a known code is sent as written."""
    state = address.subdivision_iso.split("-", 1)[1] if address.subdivision_iso else address.subdivision
    fields = {
        "name": address.name or name,
        "company": address.company,
        "street1": address.line1,
        "street2": address.line2,
        "street3": address.line3,
        "city": address.city,
        "state": state,
        "zip": address.postal_code,
        "country": address.country,
        "phone": address.phone or phone,
        "email": address.email or email,
    }
    return {k: v for k, v in fields.items() if v}


def _number(value: Decimal, path: str, what: str) -> str:
    # Rounded up: a parcel declared lighter or smaller than it is gets a carrier's surcharge afterwards.
    rounded = value.quantize(PARCEL_QUANTUM, rounding=ROUND_CEILING)
    if rounded <= 0:
        raise PushError(path, f"the {what} must be more than 0 for Shippo (got {value})")
    if rounded > PARCEL_MAX:
        raise PushError(path, f"the {what} {value} has more than six digits before the decimal point")
    return format(rounded.normalize(), "f")


def parcel_request(parcel: Parcel, path: str) -> dict[str, Any]:
    """One Shippo parcel: length, width, height in one distance unit and weight in its mass unit. crossdock's
    units (g, kg, oz, lb; mm, cm, m, in) are all among Shippo's (WeightUnitEnum, DistanceUnitEnum)."""
    if parcel.dimensions is None:
        raise PushError(
            join(path, "dimensions"),
            "Shippo rates a parcel by its size: set the parcel's length, width and height",
        )
    # One distance_unit per parcel: the width and height follow the length's unit.
    dims = parcel.dimensions.with_unit(parcel.dimensions.length.unit)
    return {
        "length": _number(dims.length.value, join(path, "dimensions.length"), "length"),
        "width": _number(dims.width.value, join(path, "dimensions.width"), "width"),
        "height": _number(dims.height.value, join(path, "dimensions.height"), "height"),
        "distance_unit": dims.length.unit.value,
        "weight": _number(parcel.weight.value, join(path, "weight"), "weight"),
        "mass_unit": parcel.weight.unit.value,
    }


def shipment_request(shipment: Shipment, order: Order, address_from: str | dict[str, Any]) -> dict[str, Any]:
    """POST /shipments with rates inline (`async: false`, docs.goshippo.com api-concepts/asynchronus-api-call).
    `address_from` is the connection's origin: an address object or the object_id of an address in Shippo."""
    to = order.shipping_address
    if to is None:
        raise PushError("order.shipping_address", "the order has no shipping address to send the parcel to")
    customer = order.customer
    body: dict[str, Any] = {
        "address_from": address_from,
        "address_to": address_request(to, name=customer.name, email=customer.email, phone=customer.phone),
        "parcels": [parcel_request(p, join("parcels", i)) for i, p in enumerate(shipment.parcels)],
        "async": False,
    }
    if order.external_number or order.external_id:
        body["metadata"] = f"Order {order.external_number or order.external_id}"[:METADATA_MAX]
    return body


def order_number(order: Order) -> str:
    """The number a merchant knows the order by, as Shippo shows it (`order_number`, "#1068"): the channel's
    number, else its id, else crossdock's. Shippo does not require it to be unique (SDK OrderCreateRequest)."""
    number = order.external_number or order.external_id or (str(order.id) if order.id else None)
    if not number:
        raise PushError("external_number", "the order has no number or id to show in Shippo")
    return number


def placed_at_text(placed_at: datetime) -> str:
    """`placed_at` in UTC to the second ("2016-09-23T01:28:12Z", the SDK's example). Whole seconds, so that the
    value sent and the value Shippo gives back compare equal whatever precision Shippo keeps."""
    return placed_at.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _amount(money: Money | None, path: str) -> str | None:
    """Money as Shippo's order amounts are written: a decimal string ("24.93"), never a float."""
    if money is None:
        return None
    if money.amount < 0:
        raise PushError(path, f"Shippo takes no negative amounts (got {money.amount} {money.currency})")
    return format(money.amount, "f")


def _weight_text(weight: Weight) -> str:
    value = weight.value.quantize(ORDER_WEIGHT_QUANTUM, rounding=ROUND_CEILING)
    return format(value.normalize(), "f") if value else "0"


def _line_weight(weight: Weight, quantity: int) -> Weight:
    """A line item's `weight` is the weight of all its units (SDK LineItemBase: "Total weight of this/these
    item(s)"), kept in the line's own unit."""
    return Weight(value=weight.value * quantity, unit=weight.unit)


def order_request(order: Order, address_from: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """POST /orders (PROTOCOLS.md 5; SDK OrderCreateRequest, LineItemBase): `placed_at` and `to_address` are
    required, the rest is sent when the order has it. Amounts are decimal strings in the order's currency (Shippo
    wants `currency` whenever `total_price` is given, `shipping_cost_currency` with `shipping_cost`); weights are
    strings with their unit. `address_from` is the connection's origin when it is an address object (an order's
    from_address is an AddressCreateRequest, not an object_id). Data Shippo cannot take is a PushError naming
    the field."""
    if order.placed_at is None:
        raise PushError("placed_at", "Shippo needs the time the order was placed")
    to = order.shipping_address
    if to is None:
        raise PushError("shipping_address", "the order has no shipping address to show in Shippo")
    customer = order.customer
    body: dict[str, Any] = {
        "order_number": order_number(order),
        "order_status": ORDER_STATUS[order.status],
        "placed_at": placed_at_text(order.placed_at),
        "to_address": address_request(to, name=customer.name, email=customer.email, phone=customer.phone),
        "currency": order.currency,
        "line_items": [],
    }
    if address_from:
        body["from_address"] = dict(address_from)
    for i, line in enumerate(order.lines):
        path = join("lines", i)
        item: dict[str, Any] = {"title": line.title, "quantity": line.quantity}
        if line.sku:
            item["sku"] = line.sku
        total = _amount(line.total, join(path, "unit_price"))
        if total is not None:
            item["total_price"] = total
            item["currency"] = order.currency
        if line.weight is not None:
            line_weight = _line_weight(line.weight, line.quantity)
            item["weight"] = _weight_text(line_weight)
            item["weight_unit"] = line_weight.unit.value
        body["line_items"].append(item)
    weight = _order_weight(order)
    if weight is not None:
        body["weight"] = _weight_text(weight)
        body["weight_unit"] = weight.unit.value
    totals = order.totals
    amounts = {
        "subtotal_price": _amount(totals.subtotal or order.lines_total, "totals.subtotal"),
        "total_price": _amount(totals.total, "totals.total"),
        "total_tax": _amount(totals.tax, "totals.tax"),
        "shipping_cost": _amount(totals.shipping, "totals.shipping"),
    }
    body.update({k: v for k, v in amounts.items() if v is not None})
    if "shipping_cost" in body:
        body["shipping_cost_currency"] = order.currency
    if order.notes and order.notes.strip():
        body["notes"] = order.notes.strip()
    return body


def _order_weight(order: Order) -> Weight | None:
    """What the order's shipped lines weigh, in their unit when they share one (else grams); None when a line
    that ships has no weight (Shippo then shows none rather than a wrong one)."""
    total = order.weight
    if total is None:
        return None
    units = {line.weight.unit for line in order.lines if line.requires_shipping and line.weight is not None}
    unit = units.pop() if len(units) == 1 else WeightUnit.G
    return total.to(unit)


# -- answers ---------------------------------------------------------------------------------------------------


def messages_text(messages: Any) -> str:
    """Shippo's `messages` [{source, code, text}] as one line: "USPS: address_incomplete: The recipient..."."""
    if not isinstance(messages, list):
        return ""
    parts = []
    for message in messages:
        if isinstance(message, dict):
            pieces = [str(message[k]) for k in ("source", "code", "text") if message.get(k)]
            if pieces:
                parts.append(": ".join(pieces))
        elif isinstance(message, str) and message.strip():
            parts.append(message)
    return "; ".join(parts)


@dataclass
class RatesRead:
    rates: list[Rate] = field(default_factory=list)
    problems: list[MappingProblem] = field(default_factory=list)


def map_rates(shipment: Any) -> RatesRead:
    """A Shipment's `rates` -> Rates (carrier = provider, service_code = servicelevel.token, price = amount in
    currency, remote_id = the rate's object_id). A rate that cannot be read is left out and named."""
    reader = Reader()
    result = RatesRead(problems=reader.problems)
    body = reader.obj(shipment, "shipment", required=True, what="Shippo answered without a shipment")
    if body is None:
        return result
    items = reader.array(body.get("rates"), "rates") or []
    for i, raw in enumerate(items):
        rate = _read_rate(reader, raw, join("rates", i))
        if rate is not None:
            result.rates.append(rate)
    return result


def _read_rate(reader: Reader, raw: Any, path: str) -> Rate | None:
    before = len(reader.problems)
    rate = reader.obj(raw, path, required=True, what="a rate must be an object")
    if rate is None:
        return None
    remote_id = reader.ident(rate.get("object_id"), join(path, "object_id"), required=True)
    provider = reader.text(rate.get("provider"), join(path, "provider"), required=True)
    level = reader.obj(rate.get("servicelevel"), join(path, "servicelevel"), required=True) or {}
    token = reader.text(level.get("token"), join(path, "servicelevel.token"), required=True)
    currency = reader.currency(rate.get("currency"), join(path, "currency"), required=True)
    price = reader.money(rate.get("amount"), currency, join(path, "amount"), required=True)
    days = reader.integer(rate.get("estimated_days"), join(path, "estimated_days"))
    name = level.get("name") if isinstance(level.get("name"), str) else None
    if len(reader.problems) > before or not (remote_id and provider and token and price):
        return None
    return Rate(
        carrier=provider,
        service_code=token,
        service_name=name,
        price=price,
        estimated_days=days if days is not None and days >= 0 else None,
        remote_id=remote_id,
    )


def tracking_status(raw: Any) -> TrackingStatus | None:
    return TRACKING_STATUS.get(raw) if isinstance(raw, str) else None


def _place(reader: Reader, value: Any, path: str) -> str | None:
    """A TrackingStatusLocationBase {city, state, zip, country} as "Berlin, 10117, DE"; null is no place."""
    location = reader.obj(value, path)
    if location is None:
        return None
    city = location.get("city") if isinstance(location.get("city"), str) else None
    rest = [location.get(k) for k in ("state", "zip")]
    region = " ".join(p for p in rest if isinstance(p, str) and p.strip())
    country = location.get("country") if isinstance(location.get("country"), str) else None
    parts = [p.strip() for p in (city, region, country) if p and p.strip()]
    return ", ".join(parts) or None


def _read_event(reader: Reader, raw: Any, path: str) -> TrackingEvent | None:
    """One TrackingStatus {status, status_details, status_date, location, substatus} (SDK trackingstatus.py).
    status_date is when the carrier scanned it; object_created (when Shippo heard of it) stands in without one."""
    before = len(reader.problems)
    entry = reader.obj(raw, path, required=True, what="a tracking event must be an object")
    if entry is None:
        return None
    raw_status = reader.text(entry.get("status"), join(path, "status"), required=True)
    status = tracking_status(raw_status)
    if raw_status is not None and status is None:
        reader.problem(
            join(path, "status"),
            f"{raw_status!r} is not a Shippo tracking status ({', '.join(TRACKING_STATUS)})",
        )
    when_key = "status_date" if entry.get("status_date") is not None else "object_created"
    when = reader.timestamp(
        entry.get(when_key), join(path, when_key), required=True, what="a tracking event needs its time"
    )
    details = entry.get("status_details")
    substatus = entry.get("substatus")
    if (not isinstance(details, str) or not details.strip()) and isinstance(substatus, dict):
        details = substatus.get("text")
    location = _place(reader, entry.get("location"), join(path, "location"))
    if len(reader.problems) > before or status is None or when is None:
        return None
    return TrackingEvent(
        status=status,
        occurred_at=when,
        description=details.strip() if isinstance(details, str) and details.strip() else None,
        location=location,
        raw_status=raw_status,
    )


def _read_track_events(reader: Reader, track: dict[str, Any], path: str) -> list[TrackingEvent]:
    """tracking_history plus the current tracking_status when the history lacks it, oldest first."""
    history = reader.array(track.get("tracking_history"), join(path, "tracking_history")) or []
    events: list[TrackingEvent] = []
    ids: set[str] = set()
    for i, raw in enumerate(history):
        event = _read_event(reader, raw, join(join(path, "tracking_history"), i))
        if event is not None:
            events.append(event)
            if isinstance(raw, dict) and isinstance(raw.get("object_id"), str):
                ids.add(raw["object_id"])
    current = track.get("tracking_status")
    if isinstance(current, dict) and current.get("object_id") not in ids:
        event = _read_event(reader, current, join(path, "tracking_status"))
        # A number the carrier has never heard of is UNKNOWN with no history: that is no event at all.
        unheard = event is not None and event.status is TrackingStatus.UNKNOWN and not history
        if event is not None and not unheard and event not in events:
            events.append(event)
    elif current is not None and not isinstance(current, dict):
        reader.problem(join(path, "tracking_status"), f"should be an object but is {kind(current)}")
    events.sort(key=lambda e: e.occurred_at)
    return events


@dataclass
class TrackRead:
    events: list[TrackingEvent] = field(default_factory=list)
    problems: list[MappingProblem] = field(default_factory=list)


def map_track(track: Any) -> TrackRead:
    """A Track (GET /tracks/{carrier}/{tracking_number}) -> its events, oldest first; unreadable ones named."""
    reader = Reader()
    body = reader.obj(track, "track", required=True, what="Shippo answered without a track")
    if body is None:
        return TrackRead(problems=reader.problems)
    return TrackRead(_read_track_events(reader, body, ""), reader.problems)


# -- webhooks --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShippoUpdate:
    """What one Shippo webhook says about a label of ours."""

    event: str  # transaction_created | transaction_updated | track_updated
    transaction_id: str | None  # the Shippo transaction (the label), when the payload names it
    tracking_number: str | None
    # A transaction's status (QUEUED, SUCCESS, ERROR, REFUNDED, ...); None for track_updated.
    status: str | None
    tracking_status: TrackingStatus | None
    tracking_events: list[TrackingEvent] = field(default_factory=list)
    carrier: str | None = None  # track_updated: Shippo's carrier token ("usps")
    label_url: str | None = None
    metadata: str | None = None  # ours is "crossdock:<idempotency key>"
    messages: str = ""  # Shippo's messages in one line (why a purchase failed)
    test: bool = False


@dataclass
class MappedUpdate:
    value: ShippoUpdate | None = None
    problems: list[MappingProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.value is not None and not self.problems


def _guarded(read: Callable[[Any], MappedUpdate]) -> Callable[[Any], MappedUpdate]:
    """A mapper bug becomes a problem, never a crashed worker (as remote_json.guarded does for orders)."""

    def run(body: Any) -> MappedUpdate:
        try:
            return read(body)
        except Exception as exc:  # a bug in crossdock: report it instead of raising
            reason = f"crossdock could not map this payload ({type(exc).__name__}: {exc}); please report this as a bug"
            return MappedUpdate(problems=[MappingProblem(INTERNAL, reason)])

    run.__name__ = read.__name__
    run.__doc__ = read.__doc__
    return run


@_guarded
def map_webhook(body: bytes | str | Mapping[str, Any]) -> MappedUpdate:
    """A Shippo webhook body {"event", "test", "data"} (SDK WebhookPayload, discriminated on `event`) -> a
    ShippoUpdate. transaction_* carry a Transaction in `data`, track_updated a Track."""
    reader = Reader()
    payload: Any = body
    if isinstance(body, bytes | str):
        try:
            payload = json.loads(body)
        except ValueError as exc:
            reader.problem("(body)", f"is not JSON ({exc})")
            return MappedUpdate(problems=reader.problems)
    envelope = reader.obj(payload, "(body)", required=True, what="a Shippo webhook is a JSON object")
    if envelope is None:
        return MappedUpdate(problems=reader.problems)
    event = reader.text(envelope.get("event"), "event", required=True, what="it says what happened")
    if event is not None and event not in EVENTS:
        reader.problem("event", f"{event!r} is not an event crossdock handles ({', '.join(EVENTS)})")
        return MappedUpdate(problems=reader.problems)
    test = reader.boolean(envelope.get("test"), "test", default=False)
    data = reader.obj(envelope.get("data"), "data", required=True, what="it carries the transaction or track")
    if event is None or data is None:
        return MappedUpdate(problems=reader.problems)
    update = (
        _track(reader, data, test) if event == "track_updated" else _transaction(reader, event, data, test)
    )
    if reader.problems or update is None:
        return MappedUpdate(problems=reader.problems)
    return MappedUpdate(value=update)


def _transaction(reader: Reader, event: str, data: dict[str, Any], test: bool) -> ShippoUpdate | None:
    transaction_id = reader.ident(data.get("object_id"), "data.object_id", required=True)
    status = reader.text(
        data.get("status"), "data.status", required=True, what="it says how the label stands"
    )
    if status is not None and status not in TRANSACTION_STATUSES:
        reader.problem(
            "data.status",
            f"{status!r} is not a Shippo transaction status ({', '.join(sorted(TRANSACTION_STATUSES))})",
        )
    raw_tracking = reader.text(data.get("tracking_status"), "data.tracking_status")
    tracked = tracking_status(raw_tracking)
    if raw_tracking is not None and tracked is None:
        reader.problem("data.tracking_status", f"{raw_tracking!r} is not a Shippo tracking status")
    if transaction_id is None or status is None:
        return None
    return ShippoUpdate(
        event=event,
        transaction_id=transaction_id,
        tracking_number=reader.text(data.get("tracking_number"), "data.tracking_number"),
        status=status,
        tracking_status=tracked,
        label_url=reader.text(data.get("label_url"), "data.label_url"),
        metadata=reader.text(data.get("metadata"), "data.metadata"),
        messages=messages_text(data.get("messages")),
        test=test,
    )


def _track(reader: Reader, data: dict[str, Any], test: bool) -> ShippoUpdate | None:
    number = reader.text(data.get("tracking_number"), "data.tracking_number", required=True)
    carrier = reader.text(data.get("carrier"), "data.carrier", required=True, what="it names the carrier")
    events = _read_track_events(reader, data, "data")
    current = data.get("tracking_status")
    status = tracking_status(current.get("status")) if isinstance(current, dict) else None
    if status is None and events:
        status = events[-1].status
    if number is None:
        return None
    return ShippoUpdate(
        event="track_updated",
        transaction_id=reader.ident(data.get("transaction"), "data.transaction"),
        tracking_number=number,
        status=None,
        tracking_status=status,
        tracking_events=events,
        carrier=carrier,
        metadata=reader.text(data.get("metadata"), "data.metadata"),
        test=test,
    )

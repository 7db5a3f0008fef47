"""crossdock's canonical shipping model to karrio's unified models and back.

karrio's unified models (karrioapi/karrio: modules/sdk/karrio/core/models.py) are what every karrio carrier
speaks: Address, Parcel, RateRequest, ShipmentRequest, TrackingRequest in; RateDetails, ShipmentDetails,
TrackingDetails, ConfirmationDetails and Message out. These functions are pure: dicts in karrio's field names
go in, canonical values come out, and what cannot be mapped is a MappingFailed naming the field.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from crossdock.model import Address, LabelFormat, Money, Order, Rate, Shipment, TrackingEvent, TrackingStatus
from crossdock.model.money import MoneyError
from crossdock.model.units import LengthUnit, WeightUnit

# Countries that weigh in pounds and measure in inches: US carriers want LB/IN from there.
IMPERIAL = frozenset({"US", "LR", "MM"})

# karrio's normalised tracking statuses (karrio.core.units.TrackingStatus) -> ours.
STATUS: dict[str, TrackingStatus] = {
    "pending": TrackingStatus.PRE_TRANSIT,
    "picked_up": TrackingStatus.IN_TRANSIT,
    "in_transit": TrackingStatus.IN_TRANSIT,
    "on_hold": TrackingStatus.EXCEPTION,
    "delivery_delayed": TrackingStatus.IN_TRANSIT,
    "out_for_delivery": TrackingStatus.OUT_FOR_DELIVERY,
    "ready_for_pickup": TrackingStatus.OUT_FOR_DELIVERY,
    "delivered": TrackingStatus.DELIVERED,
    "delivery_failed": TrackingStatus.EXCEPTION,
    "cancelled": TrackingStatus.EXCEPTION,
    "return_to_sender": TrackingStatus.RETURNED,
    "unknown": TrackingStatus.UNKNOWN,
}
LABEL_TYPES = {LabelFormat.PDF: "PDF", LabelFormat.ZPL: "ZPL", LabelFormat.PNG: "PNG"}


class MappingFailed(ValueError):
    """A value crossdock cannot give to, or take from, karrio; the message names the field."""


def address(value: Address, *, residential: bool | None = None) -> dict[str, Any]:
    """A canonical address as karrio's Address (state_code is the subdivision without the country prefix)."""
    state = value.subdivision_iso.split("-", 1)[1] if value.subdivision_iso else value.subdivision
    lines = [line for line in (value.line2, value.line3) if line]
    result: dict[str, Any] = {
        "person_name": value.name or None,
        "company_name": value.company,
        "address_line1": value.line1,
        "address_line2": ", ".join(lines) or None,
        "city": value.city,
        "postal_code": value.postal_code,
        "state_code": state,
        "country_code": value.country,
        "phone_number": value.phone,
        "email": value.email,
    }
    if residential is not None:
        result["residential"] = residential
    return {k: v for k, v in result.items() if v is not None}


def recipient(order: Order) -> dict[str, Any]:
    if order.shipping_address is None:
        raise MappingFailed("order.shipping_address: the order has no shipping address to ship to")
    # Consumer orders go to homes unless a company is named (UPS and FedEx price residential delivery apart).
    return address(order.shipping_address, residential=not order.shipping_address.company)


def parcels(shipment: Shipment, origin_country: str) -> list[dict[str, Any]]:
    imperial = origin_country in IMPERIAL
    weight_unit, length_unit = (WeightUnit.LB, LengthUnit.IN) if imperial else (WeightUnit.KG, LengthUnit.CM)
    result = []
    for i, parcel in enumerate(shipment.parcels):
        weight = parcel.weight.to(weight_unit).value
        if weight <= 0:
            raise MappingFailed(f"shipment.parcels.{i}.weight: a parcel must weigh something to be rated")
        item: dict[str, Any] = {
            "weight": _float(weight),
            "weight_unit": weight_unit.value.upper(),
            "dimension_unit": length_unit.value.upper(),
        }
        if parcel.dimensions is not None:
            dims = parcel.dimensions.with_unit(length_unit)
            item.update(
                length=_float(dims.length.value),
                width=_float(dims.width.value),
                height=_float(dims.height.value),
            )
        if parcel.reference:
            item["reference_number"] = parcel.reference
        result.append(item)
    return result


def _float(value: Decimal) -> float:
    # karrio's models hold floats; three decimals is a gram in kilograms and finer than any carrier rounds.
    return float(round(value, 3))


def money(amount: Any, currency: Any, where: str) -> Money:
    """A carrier's amount (karrio gives floats) as exact money, rounded to the currency's minor unit."""
    if amount is None or not currency:
        raise MappingFailed(f"{where}: the carrier gave no amount or no currency")
    try:
        return Money.rounded(Decimal(str(amount)), str(currency))
    except (InvalidOperation, MoneyError) as exc:
        raise MappingFailed(f"{where}: {exc}") from None


def rate(detail: Any, connection_id: Any) -> Rate:
    """karrio's RateDetails as a Rate; `service_code` is karrio's service name (e.g. ups_ground), which is
    what a ShipmentRequest names the service by."""
    service = str(detail.service or "")
    meta = detail.meta or {}
    return Rate(
        carrier=str(detail.carrier_name),
        service_code=service,
        service_name=meta.get("service_name") or service.replace("_", " ").title() or None,
        price=money(detail.total_charge, detail.currency, f"rate {service}.total_charge"),
        estimated_days=int(detail.transit_days) if detail.transit_days is not None else None,
        remote_id=service or None,
        connection_id=connection_id,
    )


def label_bytes(encoded: str | None, where: str = "docs.label") -> bytes:
    """karrio gives every label base64 encoded (ShipmentDetails.docs.label)."""
    if not encoded:
        raise MappingFailed(f"{where}: the carrier returned no label")
    try:
        return base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise MappingFailed(f"{where}: the label is not base64 ({exc})") from None


def label_format(label_type: str | None, data: bytes, asked: LabelFormat) -> LabelFormat:
    """The label's format: what karrio says it is, else what the bytes look like, else what was asked."""
    named = {"PDF": LabelFormat.PDF, "ZPL": LabelFormat.ZPL, "PNG": LabelFormat.PNG}.get(
        (label_type or "").upper()
    )
    if named is not None:
        return named
    if data.startswith(b"%PDF"):
        return LabelFormat.PDF
    if data.startswith(b"\x89PNG"):
        return LabelFormat.PNG
    if data.lstrip().startswith(b"^XA"):
        return LabelFormat.ZPL
    return asked


def parse_time(event: Any) -> datetime:
    """An event's moment. karrio gives `timestamp` (ISO 8601) for most carriers, else `date` (YYYY-MM-DD) and
    `time` (HH:MM, the carrier's local time without an offset): a moment without an offset is taken as UTC."""
    for candidate in (event.timestamp, f"{event.date or ''}T{event.time or '00:00'}" if event.date else None):
        if not candidate:
            continue
        text = str(candidate).replace("Z", "+00:00")
        for parse in (datetime.fromisoformat, _loose_time):
            try:
                moment = parse(text)
            except ValueError:
                continue
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    raise MappingFailed(f"tracking event '{event.description or event.code}': no date the hub can read")


def _loose_time(text: str) -> datetime:
    for pattern in ("%Y-%m-%dT%H:%M %p", "%Y-%m-%dT%I:%M %p", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, pattern)  # noqa: DTZ007 - the caller adds UTC when no offset
        except ValueError:
            continue
    raise ValueError(text)


def tracking_events(details: Iterable[Any]) -> list[TrackingEvent]:
    """Every event of karrio's TrackingDetails, oldest first. An event's status is karrio's normalised one
    when the carrier gives it; the last event takes the shipment's overall status when it has none."""
    events: list[TrackingEvent] = []
    for detail in details:
        overall = STATUS.get(str(detail.status or ""), TrackingStatus.UNKNOWN)
        if detail.delivered:
            overall = TrackingStatus.DELIVERED
        raw = list(detail.events or [])
        ordered = sorted(((parse_time(e), i, e) for i, e in enumerate(raw)), key=lambda t: (t[0], -t[1]))
        for n, (moment, _i, event) in enumerate(ordered):
            status = STATUS.get(str(event.status or ""))
            if status is None:
                status = overall if n == len(ordered) - 1 else TrackingStatus.IN_TRANSIT
            events.append(
                TrackingEvent(
                    status=status,
                    occurred_at=moment,
                    description=event.description or None,
                    location=event.location or None,
                    raw_status=event.code or None,
                )
            )
    events.sort(key=lambda e: e.occurred_at)
    return events

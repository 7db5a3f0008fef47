"""Conversion between canonical model objects and table rows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from crossdock import model as m
from crossdock.store import tables as t
from crossdock.store.types import stored_decimal


def stored_grams(weight: m.Weight | None) -> Decimal | None:
    return None if weight is None else stored_decimal(weight.in_grams)


def money_minor(value: m.Money | None) -> int | None:
    return None if value is None else value.minor


def minor_money(minor: int | None, currency: str | None) -> m.Money | None:
    return None if minor is None or currency is None else m.Money.from_minor(minor, currency)


def address_doc(address: m.Address | None) -> dict[str, Any] | None:
    return None if address is None else address.model_dump(mode="json")


def doc_address(doc: dict[str, Any] | None) -> m.Address | None:
    return None if doc is None else m.Address.model_validate(doc)


def order_row(order: m.Order, account_id: Any) -> t.Order:
    row = t.Order(account_id=account_id)
    apply_order(row, order)
    return row


def order_values(order: m.Order) -> dict[str, Any]:
    """The canonical order's column values by column name (status excepted: that moves through the state
    machine), for a row object or a bulk insert alike."""
    customer, totals = order.customer, order.totals
    return {
        "connection_id": order.connection_id,
        "external_id": order.external_id,
        "external_number": order.external_number,
        "currency": order.currency,
        "customer_name": customer.name,
        "customer_email": customer.email,
        "customer_phone": customer.phone,
        "shipping_address": address_doc(order.shipping_address),
        "billing_address": address_doc(order.billing_address),
        "subtotal_minor": money_minor(totals.subtotal),
        "shipping_minor": money_minor(totals.shipping),
        "tax_minor": money_minor(totals.tax),
        "discount_minor": money_minor(totals.discount),
        "total_minor": money_minor(totals.total),
        "placed_at": order.placed_at,
        "notes": order.notes,
        "tags": list(order.tags),
    }


def line_values(line: m.OrderLine) -> dict[str, Any]:
    """One order line's column values by column name (position and shipped quantity excepted)."""
    return {
        "external_id": line.external_id,
        "sku": line.sku,
        "title": line.title,
        "quantity": line.quantity,
        "unit_price_minor": money_minor(line.unit_price),
        "weight_g": stored_grams(line.weight),
        "requires_shipping": line.requires_shipping,
    }


def apply_order(row: t.Order, order: m.Order) -> None:
    """Copy a canonical order onto its row (status excepted: that moves through the state machine)."""
    for name, value in order_values(order).items():
        setattr(row, name, value)
    existing = {line.position: line for line in row.lines} if row.lines else {}
    lines: list[t.OrderLine] = []
    for position, line in enumerate(order.lines):
        line_row = existing.get(position) or t.OrderLine(account_id=row.account_id, position=position)
        for name, value in line_values(line).items():
            setattr(line_row, name, value)
        lines.append(line_row)
    row.lines = lines


def row_totals(row: t.Order) -> m.Totals:
    return m.Totals(
        subtotal=minor_money(row.subtotal_minor, row.currency),
        shipping=minor_money(row.shipping_minor, row.currency),
        tax=minor_money(row.tax_minor, row.currency),
        discount=minor_money(row.discount_minor, row.currency),
        total=minor_money(row.total_minor, row.currency),
    )


def row_customer(row: t.Order) -> m.Customer:
    return m.Customer(name=row.customer_name, email=row.customer_email, phone=row.customer_phone)


def row_order(row: t.Order) -> m.Order:
    return m.Order(
        id=row.id,
        status=m.OrderStatus(row.status),
        currency=row.currency,
        customer=row_customer(row),
        shipping_address=doc_address(row.shipping_address),
        billing_address=doc_address(row.billing_address),
        lines=[
            m.OrderLine(
                external_id=line.external_id,
                sku=line.sku,
                title=line.title,
                quantity=line.quantity,
                unit_price=minor_money(line.unit_price_minor, row.currency),
                weight=None if line.weight_g is None else m.Weight.grams(line.weight_g),
                requires_shipping=line.requires_shipping,
            )
            for line in row.lines
        ],
        totals=row_totals(row),
        connection_id=row.connection_id,
        external_id=row.external_id,
        external_number=row.external_number,
        placed_at=row.placed_at,
        notes=row.notes,
        tags=list(row.tags or []),
    )


def row_parcel(row: t.Parcel) -> m.Parcel:
    have_box = row.length_mm is not None and row.width_mm is not None and row.height_mm is not None
    return m.Parcel(
        weight=m.Weight.grams(row.weight_g),
        dimensions=m.Dimensions(
            length=m.Length.mm(row.length_mm),
            width=m.Length.mm(row.width_mm),
            height=m.Length.mm(row.height_mm),
        )
        if have_box
        else None,
        reference=row.reference,
    )


def row_shipment(row: t.Shipment) -> m.Shipment:
    """A stored shipment with its parcels (loaded) and the rate chosen for it."""
    return m.Shipment(
        id=row.id,
        order_id=row.order_id,
        connection_id=row.connection_id,
        status=m.ShipmentStatus(row.status),
        parcels=[row_parcel(parcel) for parcel in row.parcels],
        carrier=row.carrier,
        service_code=row.service_code,
        tracking_number=row.tracking_number,
        tracking_url=row.tracking_url,
        rate=None if row.rate is None else m.Rate.model_validate(row.rate),
    )

"""eBay Sell Fulfillment orders -> canonical Orders, and canonical fulfillments -> createShippingFulfillment.

Pure functions: no I/O, no clock. Field facts come from developer.ebay.com/api-docs/sell/fulfillment (types
Order, LineItem, Amount, PricingSummary, ShippingStep, ExtendedContact, ShippingFulfillmentDetails and the
status enums) and PROTOCOLS.md section 3; each non-obvious rule names its source beside it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crossdock.connectors.base import Mapped
from crossdock.connectors.ebay.carriers import shipping_carrier_code
from crossdock.connectors.remote_json import PushError, Reader, guarded, join, valid_email
from crossdock.model import Address, Customer, Fulfillment, Money, OrderLine, OrderStatus, Totals

S = OrderStatus

# OrderPaymentStatusEnum (sel:OrderPaymentStatusEnum): "Once this PAID value is returned ... it is safe for the
# seller to ship"; PARTIALLY_REFUNDED orders were paid and may still ship.
PAYMENT_STATUS: dict[str, OrderStatus] = {
    "PAID": S.PAID,
    "PARTIALLY_REFUNDED": S.PAID,
    "PENDING": S.PENDING,
    "FAILED": S.PENDING,
    "FULLY_REFUNDED": S.REFUNDED,
}
# OrderFulfillmentStatus (sel:OrderFulfillmentStatus): NOT_STARTED, IN_PROGRESS, FULFILLED.
FULFILLMENT_STATUS: dict[str, OrderStatus | None] = {
    "NOT_STARTED": None,
    "IN_PROGRESS": S.PARTIALLY_SHIPPED,
    "FULFILLED": S.SHIPPED,
}
# CancelStateEnum (sel:CancelStateEnum): CANCELED, IN_PROGRESS (a cancellation was requested), NONE_REQUESTED.
CANCEL_STATES = frozenset({"CANCELED", "IN_PROGRESS", "NONE_REQUESTED"})
# Tag set on an order whose buyer asked to cancel it, so a flow can hold the shipment.
CANCEL_REQUESTED_TAG = "ebay:cancel_requested"


def order_status(
    payment_status: str, fulfillment_status: str | None, cancel_state: str | None
) -> OrderStatus:
    """The canonical status of an eBay order from its three status fields (all already known values)."""
    if cancel_state == "CANCELED":
        return S.CANCELLED
    paid = PAYMENT_STATUS[payment_status]
    if paid == S.REFUNDED:
        return paid
    return FULFILLMENT_STATUS.get(fulfillment_status or "NOT_STARTED") or paid


@guarded
def map_order(payload: Any) -> Mapped:
    """One Order object of getOrders / getOrder -> Mapped."""
    r = Reader()
    order = r.obj(payload, "order", required=True, what="eBay sent no order")
    if order is None:
        return Mapped(problems=r.problems)

    external_id = r.ident(order.get("orderId"), "orderId", required=True)
    version = r.version(order.get("lastModifiedDate"), "lastModifiedDate")
    created = r.timestamp(order.get("creationDate"), "creationDate")
    status, cancel_requested = _status(r, order)
    pricing = r.obj(order.get("pricingSummary"), "pricingSummary") or {}
    currency = _currency(r, order, pricing)
    lines = _lines(r, order, currency)
    shipping_address, ship_to = _ship_to(r, order)
    totals = _totals(r, pricing, currency)
    customer = _customer(r, order, ship_to)
    note = r.text(order.get("buyerCheckoutNotes"), "buyerCheckoutNotes")

    return r.order(
        external_id,
        version,
        status=status,
        currency=currency,
        customer=customer,
        shipping_address=shipping_address,
        lines=lines,
        totals=totals,
        external_id=external_id,
        external_number=external_id,
        placed_at=created,
        notes=note,
        tags=[CANCEL_REQUESTED_TAG] if cancel_requested else [],
    )


def _status(r: Reader, order: dict[str, Any]) -> tuple[OrderStatus | None, bool]:
    payment = r.text(
        order.get("orderPaymentStatus"),
        "orderPaymentStatus",
        required=True,
        what="it says whether the buyer paid",
    )
    fulfillment = r.text(order.get("orderFulfillmentStatus"), "orderFulfillmentStatus")
    cancel = r.obj(order.get("cancelStatus"), "cancelStatus") or {}
    cancel_state = r.text(cancel.get("cancelState"), "cancelStatus.cancelState")
    ok = True
    if payment is not None and payment not in PAYMENT_STATUS:
        r.problem(
            "orderPaymentStatus", f"{payment!r} is not an eBay payment status ({', '.join(PAYMENT_STATUS)})"
        )
        ok = False
    if fulfillment is not None and fulfillment not in FULFILLMENT_STATUS:
        r.problem(
            "orderFulfillmentStatus",
            f"{fulfillment!r} is not an eBay fulfillment status ({', '.join(FULFILLMENT_STATUS)})",
        )
        ok = False
    if cancel_state is not None and cancel_state not in CANCEL_STATES:
        r.problem("cancelStatus.cancelState", f"{cancel_state!r} is not an eBay cancel state")
        ok = False
    if payment is None or not ok:
        return None, False
    return order_status(payment, fulfillment, cancel_state), cancel_state == "IN_PROGRESS"


def _amount(r: Reader, raw: Any, path: str, currency: str | None, *, required: bool = False) -> Money | None:
    """An eBay Amount {value, currency}; `value` is in `currency`, the seller's (sel:Amount)."""
    amount = r.obj(raw, path, required=required, what="the amount is required")
    if amount is None:
        return None
    code = r.currency(amount.get("currency"), join(path, "currency"), required=True)
    if code is not None and currency is not None and code != currency:
        r.problem(join(path, "currency"), f"is {code} but the order is in {currency}")
        return None
    return r.money(amount.get("value"), code, join(path, "value"), required=True)


def _currency(r: Reader, order: dict[str, Any], pricing: dict[str, Any]) -> str | None:
    """The order's currency: pricingSummary.total, else the first line's cost."""
    total = pricing.get("total")
    if isinstance(total, dict) and total.get("currency") is not None:
        return r.currency(total.get("currency"), "pricingSummary.total.currency")
    items = order.get("lineItems")
    if isinstance(items, list) and items and isinstance(items[0], dict):
        cost = items[0].get("lineItemCost")
        if isinstance(cost, dict) and cost.get("currency") is not None:
            return r.currency(cost.get("currency"), "lineItems[0].lineItemCost.currency")
    r.problem("pricingSummary.total.currency", "is missing, and no line item names a currency either")
    return None


def _lines(r: Reader, order: dict[str, Any], currency: str | None) -> list[OrderLine]:
    items = r.array(
        order.get("lineItems"), "lineItems", required=True, what="an order needs at least one line item"
    )
    if items is not None and not items:
        r.problem("lineItems", "is empty; an order needs at least one line item")
    lines: list[OrderLine] = []
    for i, raw in enumerate(items or []):
        path = join("lineItems", i)
        item = r.obj(raw, path, required=True, what="a line item cannot be null")
        if item is None:
            continue
        external_id = r.ident(item.get("lineItemId"), join(path, "lineItemId"), required=True)
        sku = r.text(item.get("sku"), join(path, "sku"))
        title = r.text(item.get("title"), join(path, "title")) or sku
        if title is None:
            r.problem(join(path, "title"), "is missing; a line needs a title or a SKU to be picked")
        quantity = r.quantity(item.get("quantity"), join(path, "quantity"))
        cost = _amount(r, item.get("lineItemCost"), join(path, "lineItemCost"), currency, required=True)
        if external_id is None or title is None or quantity is None or cost is None:
            continue
        lines.append(
            OrderLine(
                sku=sku,
                title=title,
                quantity=quantity,
                # lineItemCost is "the single unit price multiplied by the quantity" (sel:LineItem).
                unit_price=Money.rounded(cost.amount / quantity, cost.currency),
                external_id=external_id,
            )
        )
    return lines


def _ship_to(r: Reader, order: dict[str, Any]) -> tuple[Address | None, dict[str, Any]]:
    """fulfillmentStartInstructions[0].shippingStep.shipTo (sel:ShippingStep, sel:ExtendedContact).

    Absent for orders without a shipping step (digital or pickup instructions): then there is no address.
    """
    instructions = r.array(order.get("fulfillmentStartInstructions"), "fulfillmentStartInstructions")
    if not instructions:
        return None, {}
    path = "fulfillmentStartInstructions[0]"
    first = r.obj(instructions[0], path, required=True, what="it holds the ship-to address")
    step = r.obj((first or {}).get("shippingStep"), join(path, "shippingStep"))
    path = join(path, "shippingStep.shipTo")
    ship_to = r.obj((step or {}).get("shipTo"), path)
    if ship_to is None:
        return None, {}
    contact = r.obj(
        ship_to.get("contactAddress"),
        join(path, "contactAddress"),
        required=True,
        what="a parcel needs a postal address",
    )
    phone = r.obj(ship_to.get("primaryPhone"), join(path, "primaryPhone")) or {}
    if contact is None:
        return None, ship_to
    # Name, company, phone and e-mail sit beside contactAddress; the name stays whole (never split by guesswork).
    address = r.address(
        path,
        {
            "last_name": ("fullName", ship_to.get("fullName")),
            "company": ("companyName", ship_to.get("companyName")),
            "line1": ("contactAddress.addressLine1", contact.get("addressLine1")),
            "line2": ("contactAddress.addressLine2", contact.get("addressLine2")),
            "city": ("contactAddress.city", contact.get("city")),
            "postal_code": ("contactAddress.postalCode", contact.get("postalCode")),
            "subdivision": ("contactAddress.stateOrProvince", contact.get("stateOrProvince")),
            "country": ("contactAddress.countryCode", contact.get("countryCode")),
            "phone": ("primaryPhone.phoneNumber", phone.get("phoneNumber")),
            "email": ("email", ship_to.get("email")),
        },
    )
    return address, ship_to


def _totals(r: Reader, pricing: dict[str, Any], currency: str | None) -> Totals:
    def read(key: str) -> Money | None:
        return _amount(r, pricing.get(key), join("pricingSummary", key), currency)

    discount = read("priceDiscount")
    # priceDiscount and deliveryDiscount are sent as negative amounts (sel:PricingSummary); canonical
    # discounts are positive.
    if discount is not None and discount.amount < 0:
        discount = -discount
    return Totals(
        subtotal=read("priceSubtotal"),
        shipping=read("deliveryCost"),
        tax=read("tax"),
        discount=discount,
        total=read("total"),
    )


def _customer(r: Reader, order: dict[str, Any], ship_to: dict[str, Any]) -> Customer:
    buyer = r.obj(order.get("buyer"), "buyer") or {}
    name = ship_to.get("fullName") if isinstance(ship_to.get("fullName"), str) else None
    if not name:
        name = r.text(buyer.get("username"), "buyer.username")
    email = ship_to.get("email") if isinstance(ship_to.get("email"), str) else None
    phone = ship_to.get("primaryPhone")
    number = phone.get("phoneNumber") if isinstance(phone, dict) else None
    return Customer(
        name=name or None,
        email=valid_email(email),
        phone=number if isinstance(number, str) and number.strip() else None,
    )


# -- canonical -> eBay ---------------------------------------------------------------------------------------


def ebay_time(moment: datetime) -> str:
    """eBay's timestamp format: UTC with milliseconds, e.g. 2015-08-04T19:09:02.768Z (ShippingFulfillmentDetails)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def shipping_fulfillment_request(
    fulfillment: Fulfillment, shipped_at: datetime | None = None
) -> dict[str, Any]:
    """The body of POST /sell/fulfillment/v1/order/{orderId}/shipping_fulfillment (ShippingFulfillmentDetails).

    Lines name eBay lineItemIds (`line_external_id`). Tracking number and carrier go together or not at all: eBay
    refuses one without the other. `shipped_at` defaults, at eBay, to the time of the call. Raises PushError.
    """
    quantities: dict[str, int] = {}
    for i, line in enumerate(fulfillment.lines):
        if not line.line_external_id:
            raise PushError(f"lines[{i}].line_external_id", "is missing; eBay needs the order's lineItemId")
        quantities[line.line_external_id] = quantities.get(line.line_external_id, 0) + line.quantity
    body: dict[str, Any] = {
        "lineItems": [
            {"lineItemId": item_id, "quantity": quantity} for item_id, quantity in quantities.items()
        ]
    }
    if shipped_at is not None:
        if shipped_at.tzinfo is None:
            raise PushError("shipped_at", "has no time zone; give an aware datetime")
        body["shippedDate"] = ebay_time(shipped_at)
    if fulfillment.tracking_number:
        if not fulfillment.carrier:
            raise PushError(
                "carrier", "is missing; eBay takes a tracking number only together with its carrier"
            )
        body["shippingCarrierCode"] = shipping_carrier_code(fulfillment.carrier)
        body["trackingNumber"] = fulfillment.tracking_number
    return body

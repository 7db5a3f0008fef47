"""Shopify orders -> canonical Orders, and canonical fulfillments -> Shopify's fulfillment request body.

Pure functions: no I/O, no clock. Field facts come from the REST Admin Order resource
(shopify.dev/docs/api/admin-rest/latest/resources/order), Shopify/shopify_python_api test/fixtures/order.json
and PROTOCOLS.md section 1; each non-obvious rule names its source beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crossdock.connectors.base import Mapped
from crossdock.connectors.remote_json import PushError, Reader, guarded, join, valid_email
from crossdock.connectors.shopify.carriers import tracking_company
from crossdock.model import (
    Address,
    Customer,
    Fulfillment,
    Money,
    OrderLine,
    OrderStatus,
    Totals,
    Weight,
)

S = OrderStatus

# financial_status values (shopify.dev admin-rest Order; GraphQL OrderDisplayFinancialStatus adds "expired").
# "authorized": the payment is secured and captured on fulfilment by shops on manual capture, so it can ship.
FINANCIAL_STATUS: dict[str, OrderStatus] = {
    "pending": S.PENDING,
    "authorized": S.PAID,
    "partially_paid": S.PENDING,
    "paid": S.PAID,
    "partially_refunded": S.PAID,
    "refunded": S.REFUNDED,
    "voided": S.CANCELLED,
    "expired": S.PENDING,
}
# fulfillment_status values: null (nothing shipped), "partial", "fulfilled", and "restocked" ("every line item
# in the order has been restocked and the order canceled", GraphQL OrderCreateFulfillmentStatus).
FULFILLMENT_STATUS: dict[str, OrderStatus] = {
    "fulfilled": S.SHIPPED,
    "partial": S.PARTIALLY_SHIPPED,
    "restocked": S.CANCELLED,
}
# Fulfillment orders that still accept fulfillments (FulfillmentOrder.status; closed/cancelled/on_hold do not).
OPEN_FULFILLMENT_ORDER = frozenset({"open", "in_progress"})


def order_status(
    financial_status: str | None, fulfillment_status: str | None, cancelled: bool
) -> OrderStatus | None:
    """The canonical status of a Shopify order; None when financial_status is not a Shopify value."""
    if cancelled:
        return S.CANCELLED
    financial = FINANCIAL_STATUS.get(financial_status or "")
    if financial is None:
        return None
    if financial in (S.REFUNDED, S.CANCELLED):
        return financial
    return FULFILLMENT_STATUS.get(fulfillment_status or "", financial)


@guarded
def map_order(payload: Any) -> Mapped:
    """A Shopify REST order (webhook body, list element or `{"order": ...}` from a single GET) -> Mapped."""
    r = Reader()
    if isinstance(payload, dict) and len(payload) == 1 and isinstance(payload.get("order"), dict):
        payload = payload["order"]  # GET orders/{id}.json wraps the order; webhooks and lists do not
    order = r.obj(payload, "order", required=True, what="Shopify sent no order")
    if order is None:
        return Mapped(problems=r.problems)

    external_id = r.ident(order.get("id"), "id", required=True)
    version = r.version(order.get("updated_at"), "updated_at")
    created = r.timestamp(order.get("created_at"), "created_at")
    currency = r.currency(order.get("currency"), "currency", required=True)
    status = _status(r, order)
    lines = _lines(r, order, currency)
    shipping_address = _address(r, order.get("shipping_address"), "shipping_address")
    totals = _totals(r, order, currency)
    customer = _customer(r, order)
    number = r.text(order.get("name"), "name")
    note = r.text(order.get("note"), "note")
    tags = _tags(r, order.get("tags"))
    # A billing address is not needed to ship: one that does not map is left out instead of stopping the order.
    # Most orders bill where they ship; the same payload maps to the same (frozen) Address, so map it once.
    billing_raw = order.get("billing_address")
    if billing_raw is not None and billing_raw == order.get("shipping_address"):
        billing = shipping_address
    else:
        billing = _address(Reader(), billing_raw, "billing_address")

    if not r.problems and not lines:
        r.problem("line_items", "every line item was removed by order edits, so nothing is left to fulfil")
    return r.order(
        external_id,
        version,
        status=status,
        currency=currency,
        customer=customer,
        shipping_address=shipping_address,
        billing_address=billing,
        lines=lines,
        totals=totals,
        external_id=external_id,
        external_number=number,
        placed_at=created,
        notes=note,
        tags=tags,
    )


def _status(r: Reader, order: dict[str, Any]) -> OrderStatus | None:
    financial = r.text(
        order.get("financial_status"), "financial_status", required=True, what="it says whether it was paid"
    )
    fulfillment = r.text(order.get("fulfillment_status"), "fulfillment_status")
    cancelled = r.text(order.get("cancelled_at"), "cancelled_at") is not None
    # "unfulfilled"/"unshipped" are filter words some clients echo back as a status; they mean "nothing shipped".
    if fulfillment is not None and fulfillment not in (*FULFILLMENT_STATUS, "unfulfilled", "unshipped"):
        r.problem("fulfillment_status", f"{fulfillment!r} is not a Shopify fulfillment status")
        return None
    if financial is None:
        return None
    status = order_status(financial, fulfillment, cancelled)
    if status is None:
        known = ", ".join(FINANCIAL_STATUS)
        r.problem("financial_status", f"{financial!r} is not a Shopify financial status (known: {known})")
    return status


def _lines(r: Reader, order: dict[str, Any], currency: str | None) -> list[OrderLine]:
    items = r.array(
        order.get("line_items"), "line_items", required=True, what="an order needs at least one line item"
    )
    lines: list[OrderLine] = []
    for i, raw in enumerate(items or []):
        path = join("line_items", i)
        item = r.obj(raw, path, required=True, what="a line item cannot be null")
        if item is None:
            continue
        quantity = _quantity(r, item, path)
        if quantity == 0:
            continue  # removed by an order edit: it stays in line_items with current_quantity 0
        external_id = r.ident(item.get("id"), join(path, "id"), required=True)
        sku = r.text(item.get("sku"), join(path, "sku"))
        # `name` is "Product - Variant"; `title` is the product alone.
        title = r.text(item.get("name"), join(path, "name")) or r.text(item.get("title"), join(path, "title"))
        if title is None:
            title = sku
        if title is None:
            r.problem(join(path, "title"), "is missing; a line needs a title or a SKU to be picked")
        price = r.money(item.get("price"), currency, join(path, "price"), required=True)
        grams = r.integer(item.get("grams"), join(path, "grams"))
        if grams is not None and grams < 0:
            r.problem(join(path, "grams"), f"a weight cannot be negative (got {grams})")
            grams = None
        requires_shipping = r.boolean(
            item.get("requires_shipping"), join(path, "requires_shipping"), default=True
        )
        if quantity is None or title is None or price is None or external_id is None:
            continue
        lines.append(
            OrderLine(
                sku=sku,
                title=title,
                quantity=quantity,
                unit_price=price,
                # `grams` is the weight of one unit (shopify.dev admin-rest Order, line_items.grams).
                weight=Weight.grams(grams) if grams is not None else None,
                requires_shipping=requires_shipping,
                external_id=external_id,
            )
        )
    return lines


def _quantity(r: Reader, item: dict[str, Any], path: str) -> int | None:
    """current_quantity after order edits when Shopify sends it, else quantity; 0 means removed by an edit."""
    current = item.get("current_quantity")
    if current is not None:
        value = r.integer(current, join(path, "current_quantity"))
        if value is None:
            return None
        if value < 0:
            r.problem(join(path, "current_quantity"), f"must not be negative (got {value})")
            return None
        return value
    return r.quantity(item.get("quantity"), join(path, "quantity"))


def _address(r: Reader, raw: Any, path: str) -> Address | None:
    address = r.obj(raw, path)
    if address is None:
        return None
    first, last = address.get("first_name"), address.get("last_name")
    last_key = "last_name"
    if not _present(first) and not _present(last) and _present(address.get("name")):
        last, last_key = address.get("name"), "name"
    region_key = "province_code" if _present(address.get("province_code")) else "province"
    return r.address(
        path,
        {
            "first_name": ("first_name", first),
            "last_name": (last_key, last),
            "company": ("company", address.get("company")),
            "line1": ("address1", address.get("address1")),
            "line2": ("address2", address.get("address2")),
            "city": ("city", address.get("city")),
            "postal_code": ("zip", address.get("zip")),
            "subdivision": (region_key, address.get(region_key)),
            "country": ("country_code", address.get("country_code")),
            "phone": ("phone", address.get("phone")),
        },
    )


def _present(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _totals(r: Reader, order: dict[str, Any], currency: str | None) -> Totals:
    def first(*keys: str) -> Money | None:
        # current_* reflect order edits, refunds and removals; the plain fields are the amounts at checkout.
        for key in keys:
            if order.get(key) is not None:
                return r.money(order.get(key), currency, key)
        return None

    shipping: Money | None = None
    shipping_set = order.get("total_shipping_price_set")
    if shipping_set is not None:
        money_set = r.obj(shipping_set, "total_shipping_price_set")
        shop_money = r.obj((money_set or {}).get("shop_money"), "total_shipping_price_set.shop_money")
        if shop_money is not None:
            shipping = r.money(
                shop_money.get("amount"), currency, "total_shipping_price_set.shop_money.amount"
            )
    return Totals(
        subtotal=first("current_subtotal_price", "subtotal_price"),
        shipping=shipping,
        tax=first("current_total_tax", "total_tax"),
        discount=first("current_total_discounts", "total_discounts"),
        total=first("current_total_price", "total_price"),
    )


def _customer(r: Reader, order: dict[str, Any]) -> Customer:
    customer = r.obj(order.get("customer"), "customer") or {}
    names = [
        r.text(customer.get("first_name"), "customer.first_name"),
        r.text(customer.get("last_name"), "customer.last_name"),
    ]
    name = " ".join(part for part in names if part) or None
    for key in ("shipping_address", "billing_address"):
        address = order.get(key)
        if name is None and isinstance(address, dict):
            parts = [str(address[k]) for k in ("first_name", "last_name") if _present(address.get(k))]
            name = " ".join(parts) or (str(address["name"]) if _present(address.get("name")) else None)
    # The first of the order's e-mail addresses that parses (a typo in one must not hide a good one).
    emails = [
        r.text(order.get("email"), "email"),
        r.text(order.get("contact_email"), "contact_email"),
        r.text(customer.get("email"), "customer.email"),
    ]
    email = next((valid for valid in map(valid_email, emails) if valid), None)
    phone = r.text(order.get("phone"), "phone") or r.text(customer.get("phone"), "customer.phone")
    return Customer(name=name, email=email, phone=phone)


def _tags(r: Reader, value: Any) -> list[str]:
    # Shopify sends tags as one comma-separated string ("tags": "imported, vip").
    text = r.text(value, "tags")
    return [tag.strip() for tag in text.split(",") if tag.strip()] if text else []


# -- canonical -> Shopify ------------------------------------------------------------------------------------


def fulfillment_request(
    fulfillment: Fulfillment, fulfillment_orders: Sequence[Any], *, notify_customer: bool = False
) -> dict[str, Any]:
    """The body of POST /admin/api/{v}/fulfillments.json for a canonical fulfillment.

    `fulfillment_orders` is the `fulfillment_orders` list of GET orders/{id}/fulfillment_orders.json; the
    fulfillment's lines name Shopify line item ids (`line_external_id`) and are spread over the open fulfillment
    order lines that hold them (shopify.dev/docs/api/admin-rest/latest/resources/fulfillment, "Create a
    fulfillment"). Raises PushError when a line cannot be placed.
    """
    open_lines = _open_fulfillment_order_lines(fulfillment_orders)
    wanted: dict[str, int] = {}
    where: dict[str, str] = {}
    for i, line in enumerate(fulfillment.lines):
        if not line.line_external_id:
            raise PushError(
                f"lines[{i}].line_external_id", "is missing; Shopify needs the id of the order's line item"
            )
        wanted[line.line_external_id] = wanted.get(line.line_external_id, 0) + line.quantity
        where.setdefault(line.line_external_id, f"lines[{i}]")

    groups: dict[Any, list[dict[str, Any]]] = {}
    for line_item_id, quantity in wanted.items():
        remaining = quantity
        for fo_id, fo_line_id, fulfillable in open_lines.get(line_item_id, []):
            if remaining == 0:
                break
            take = min(remaining, fulfillable)
            if take > 0:
                groups.setdefault(fo_id, []).append({"id": fo_line_id, "quantity": take})
                remaining -= take
        if remaining:
            available = quantity - remaining
            raise PushError(
                where[line_item_id],
                f"line item {line_item_id}: {quantity} to fulfil but only {available} still open in its "
                "fulfillment orders (already fulfilled, cancelled or on hold)",
            )

    body: dict[str, Any] = {
        "line_items_by_fulfillment_order": [
            {"fulfillment_order_id": fo_id, "fulfillment_order_line_items": items}
            for fo_id, items in groups.items()
        ],
        "notify_customer": notify_customer,
    }
    tracking = {
        "number": fulfillment.tracking_number,
        "company": tracking_company(fulfillment.carrier),
        "url": fulfillment.tracking_url,
    }
    tracking = {k: v for k, v in tracking.items() if v}
    if tracking:
        body["tracking_info"] = tracking
    return {"fulfillment": body}


def _open_fulfillment_order_lines(
    fulfillment_orders: Sequence[Any],
) -> dict[str, list[tuple[Any, Any, int]]]:
    """line_item_id -> [(fulfillment order id, fulfillment order line id, fulfillable quantity)], open orders only."""
    found: dict[str, list[tuple[Any, Any, int]]] = {}
    for i, fo in enumerate(fulfillment_orders):
        path = f"fulfillment_orders[{i}]"
        if not isinstance(fo, Mapping):
            raise PushError(path, "is not a fulfillment order object")
        if fo.get("status") not in OPEN_FULFILLMENT_ORDER:
            continue
        fo_id = fo.get("id")
        items = fo.get("line_items")
        if not _is_id(fo_id) or not isinstance(items, list):
            raise PushError(path, "needs an id and a line_items list")
        for j, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise PushError(f"{path}.line_items[{j}]", "is not a fulfillment order line item")
            fo_line_id, line_item_id = item.get("id"), item.get("line_item_id")
            fulfillable = item.get("fulfillable_quantity")
            if not (_is_id(fo_line_id) and _is_id(line_item_id)) or not _is_count(fulfillable):
                raise PushError(
                    f"{path}.line_items[{j}]", "needs id, line_item_id and a whole fulfillable_quantity"
                )
            assert isinstance(fulfillable, int)  # checked by _is_count
            found.setdefault(str(line_item_id), []).append((fo_id, fo_line_id, fulfillable))
    return found


def _is_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and bool(value)
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

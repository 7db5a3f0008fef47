"""Amazon SP-API Orders v0 orders and their items -> canonical Orders, and fulfillments -> confirmShipment.

Pure functions: no I/O, no clock. Field facts come from amzn/selling-partner-api-models
models/orders-api-model/ordersV0.json (Order, OrderItem, Money, Address, ConfirmShipmentRequest, PackageDetail)
and PROTOCOLS.md section 4; each non-obvious rule names its source beside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from crossdock.connectors.amazon.carriers import OTHER, carrier_code
from crossdock.connectors.base import Mapped
from crossdock.connectors.remote_json import PushError, Reader, guarded, join, valid_email
from crossdock.model import Address, Customer, Fulfillment, Money, OrderLine, OrderStatus, Totals

S = OrderStatus

# OrderStatus values and their meaning (ordersV0.json, getOrders parameter OrderStatuses).
ORDER_STATUS: dict[str, OrderStatus] = {
    "PendingAvailability": S.PENDING,  # pre-order, payment not authorised yet
    "Pending": S.PENDING,  # placed, payment not authorised: no prices, no address yet
    "Unshipped": S.PAID,  # "payment has been authorized and the order is ready for shipment"
    "PartiallyShipped": S.PARTIALLY_SHIPPED,
    "Shipped": S.SHIPPED,
    "InvoiceUnconfirmed": S.SHIPPED,  # all shipped; only the invoice confirmation is outstanding
    "Canceled": S.CANCELLED,
    "Unfulfillable": S.CANCELLED,  # Multi-Channel Fulfillment orders Amazon cannot fulfil
}
# Marketplace -> its currency, for orders that carry no amount yet (Pending). Ids from
# developer-docs.amazon.com/sp-api/docs/marketplace-ids; each marketplace sells in its country's currency.
MARKETPLACE_CURRENCY: dict[str, str] = {
    "ATVPDKIKX0DER": "USD",
    "A2EUQ1WTGCTBG2": "CAD",
    "A1AM78C64UM0Y8": "MXN",
    "A2Q3Y263D00KWC": "BRL",
    "A28R8C7NBKEWEA": "EUR",
    "A1RKKUPIHCS9HS": "EUR",
    "A1F83G8C2ARO7P": "GBP",
    "A13V1IB3VIYZZH": "EUR",
    "AMEN7PMS3EDWL": "EUR",
    "A1805IZSGTT6HS": "EUR",
    "A1PA6795UKMFR9": "EUR",
    "APJ6JRA9NG5V4": "EUR",
    "A2NODRKZP88ZB9": "SEK",
    "AE08WJ6YKNBMC": "ZAR",
    "A1C3SOZRARQ6R3": "PLN",
    "ARBP9OOSHTCHU": "EGP",
    "A33AVAJ2PDY3EV": "TRY",
    "A17E79C6D8DWNP": "SAR",
    "A2VIGQ35RCS4UG": "AED",
    "A21TJRUUN4KGV": "INR",
    "A19VAU5U5O7RUS": "SGD",
    "A39IBJ37TRP1C6": "AUD",
    "A1VC38T7YXB528": "JPY",
}
# FulfillmentChannel: AFN = Fulfilled by Amazon (Amazon ships), MFN = fulfilled by the seller.
AMAZON_FULFILLED = "AFN"
AFN_TAG = "amazon:afn"


def order_status(amazon_status: str) -> OrderStatus | None:
    """The canonical status of an Amazon OrderStatus value; None when Amazon has no such status."""
    return ORDER_STATUS.get(amazon_status)


def merge_item_pages(pages: Iterable[Any]) -> list[Any]:
    """The OrderItems of every getOrderItems page, in page order, each OrderItemId once.

    A page is the response (`{"payload": {...}}`) or its payload. A page fetched twice (a retried NextToken)
    adds nothing new. Raises ValueError for a page that is not a getOrderItems payload or belongs to another
    order; the pages come from the connector's own fetch, so that is a fetch bug, not bad order data.
    """
    items: list[Any] = []
    seen: set[str] = set()
    order_id: str | None = None
    for n, page in enumerate(pages):
        payload = page.get("payload", page) if isinstance(page, dict) else None
        if not isinstance(payload, dict) or not isinstance(payload.get("OrderItems"), list):
            raise ValueError(f"page {n} is not a getOrderItems payload with an OrderItems list")
        page_order = payload.get("AmazonOrderId")
        if isinstance(page_order, str):
            if order_id is not None and page_order != order_id:
                raise ValueError(f"page {n} holds items of order {page_order}, not {order_id}")
            order_id = page_order
        for item in payload["OrderItems"]:
            item_id = item.get("OrderItemId") if isinstance(item, dict) else None
            if isinstance(item_id, str):
                if item_id in seen:
                    continue
                seen.add(item_id)
            items.append(item)
    return items


@guarded
def map_order(order_payload: Any, items_payload: Any) -> Mapped:
    """An Order (getOrders / getOrder) and all its OrderItems (every page merged) -> Mapped."""
    r = Reader()
    order = r.obj(order_payload, "Order", required=True, what="Amazon sent no order")
    items = r.array(
        items_payload, "OrderItems", required=True, what="an order needs its items (getOrderItems)"
    )
    if order is None:
        return Mapped(problems=r.problems)

    external_id = r.ident(order.get("AmazonOrderId"), "AmazonOrderId", required=True)
    version = r.version(order.get("LastUpdateDate"), "LastUpdateDate")
    purchased = r.timestamp(order.get("PurchaseDate"), "PurchaseDate")
    amazon_status = r.text(
        order.get("OrderStatus"), "OrderStatus", required=True, what="it says where the order stands"
    )
    status = order_status(amazon_status) if amazon_status else None
    if amazon_status is not None and status is None:
        r.problem(
            "OrderStatus", f"{amazon_status!r} is not an Amazon order status ({', '.join(ORDER_STATUS)})"
        )
    channel = r.text(order.get("FulfillmentChannel"), "FulfillmentChannel")
    amazon_ships = channel == AMAZON_FULFILLED
    currency = _currency(r, order, items or [])
    lines = _lines(r, items or [], currency, cancelled=amazon_status == "Canceled", amazon_ships=amazon_ships)
    shipping_address = _address(r, order.get("ShippingAddress"))
    totals = _totals(r, order, items or [], currency)
    customer = _customer(r, order)

    if not r.problems and not lines:
        r.problem(
            "OrderItems",
            "no item has a quantity left (a cancelled order lists its items with QuantityOrdered 0), "
            "so there is no line to import",
        )
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
        placed_at=purchased,
        tags=[AFN_TAG] if amazon_ships else [],
    )


def _money(r: Reader, raw: Any, path: str, currency: str | None) -> Money | None:
    """An Amazon Money {CurrencyCode, Amount}; Amount is text (ordersV0.json Money)."""
    money = r.obj(raw, path)
    if money is None:
        return None
    code = r.currency(money.get("CurrencyCode"), join(path, "CurrencyCode"), required=True)
    if code is not None and currency is not None and code != currency:
        r.problem(join(path, "CurrencyCode"), f"is {code} but the order is in {currency}")
        return None
    return r.money(money.get("Amount"), code, join(path, "Amount"), required=True)


def _currency(r: Reader, order: dict[str, Any], items: list[Any]) -> str | None:
    """OrderTotal's currency, else the first priced item's, else the marketplace's (Pending orders have none)."""
    total = order.get("OrderTotal")
    if isinstance(total, dict) and total.get("CurrencyCode") is not None:
        return r.currency(total.get("CurrencyCode"), "OrderTotal.CurrencyCode")
    for i, item in enumerate(items):
        price = item.get("ItemPrice") if isinstance(item, dict) else None
        if isinstance(price, dict) and price.get("CurrencyCode") is not None:
            return r.currency(price.get("CurrencyCode"), f"OrderItems[{i}].ItemPrice.CurrencyCode")
    marketplace = order.get("MarketplaceId")
    if isinstance(marketplace, str) and marketplace in MARKETPLACE_CURRENCY:
        return MARKETPLACE_CURRENCY[marketplace]
    r.problem(
        "OrderTotal.CurrencyCode",
        f"is missing, no item has a price and the marketplace {marketplace!r} is not one crossdock knows, "
        "so the order's currency is unknown",
    )
    return None


def _lines(
    r: Reader, items: list[Any], currency: str | None, *, cancelled: bool, amazon_ships: bool
) -> list[OrderLine]:
    lines: list[OrderLine] = []
    seen: set[str] = set()
    for i, raw in enumerate(items):
        path = join("OrderItems", i)
        item = r.obj(raw, path, required=True, what="an order item cannot be null")
        if item is None:
            continue
        external_id = r.ident(item.get("OrderItemId"), join(path, "OrderItemId"), required=True)
        if external_id is not None and external_id in seen:
            r.problem(join(path, "OrderItemId"), f"{external_id} appears twice in the order's items")
            continue
        if external_id is not None:
            seen.add(external_id)
        raw_quantity = item.get("QuantityOrdered")
        if cancelled and raw_quantity == 0 and not isinstance(raw_quantity, bool):
            continue  # a cancelled item keeps its row with QuantityOrdered 0
        quantity = r.quantity(raw_quantity, join(path, "QuantityOrdered"))
        sku = r.text(item.get("SellerSKU"), join(path, "SellerSKU"))
        title = (
            r.text(item.get("Title"), join(path, "Title"))
            or sku
            or r.text(item.get("ASIN"), join(path, "ASIN"))
        )
        if title is None:
            r.problem(join(path, "Title"), "is missing, and so are SellerSKU and ASIN; a line needs a name")
        # ItemPrice is absent while the order is Pending (ordersV0.json getOrderItems): the line has no price yet.
        line_price = _money(r, item.get("ItemPrice"), join(path, "ItemPrice"), currency)
        if external_id is None or quantity is None or title is None:
            continue
        lines.append(
            OrderLine(
                sku=sku,
                title=title,
                quantity=quantity,
                # "ItemPrice is equal to the selling price of the item multiplied by the quantity ordered"
                # (ordersV0.json OrderItem.ItemPrice): divide, rounding to the currency's minor unit.
                unit_price=(
                    Money.rounded(line_price.amount / quantity, line_price.currency) if line_price else None
                ),
                # Fulfilled by Amazon: Amazon ships these units, the seller must not.
                requires_shipping=not amazon_ships,
                external_id=external_id,
            )
        )
    return lines


def _address(r: Reader, raw: Any) -> Address | None:
    """ShippingAddress, present only once the order is Unshipped or later (ordersV0.json Order.ShippingAddress)."""
    address = r.obj(raw, "ShippingAddress")
    if address is None:
        return None
    # Some marketplaces leave AddressLine1 empty and put the street in AddressLine2: move the lines up.
    present = [key for key in _LINE_KEYS if _text(address.get(key))] or ["AddressLine1"]
    fields: dict[str, tuple[str, Any]] = {
        "last_name": ("Name", address.get("Name")),
        "company": ("CompanyName", address.get("CompanyName")),
    }
    for name, key in zip(("line1", "line2", "line3"), present, strict=False):
        fields[name] = (key, address.get(key))
    for key in _LINE_KEYS:
        if key not in present:
            r.text(address.get(key), join("ShippingAddress", key))  # still report a malformed line
    fields.update(
        {
            "city": ("City", address.get("City")),
            "postal_code": ("PostalCode", address.get("PostalCode")),
            "subdivision": ("StateOrRegion", address.get("StateOrRegion")),
            "country": ("CountryCode", address.get("CountryCode")),
            "phone": ("Phone", address.get("Phone")),
        }
    )
    before = len(r.problems)
    built = r.address("ShippingAddress", fields)
    return built if len(r.problems) == before else None


_LINE_KEYS = ("AddressLine1", "AddressLine2", "AddressLine3")


def _totals(r: Reader, order: dict[str, Any], items: list[Any], currency: str | None) -> Totals:
    def total_of(*keys: str, every: bool = False) -> Money | None:
        """The sum of the named Money fields over all items; with every=True only if every item has the first."""
        sum_: Money | None = None
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            if every and item.get(keys[0]) is None:
                return None
            for key in keys:
                money = _money(r, item.get(key), join(join("OrderItems", i), key), currency)
                if money is not None:
                    sum_ = money if sum_ is None else sum_ + money
        return sum_

    tax = total_of("ItemTax", "ShippingTax")
    discount = total_of("PromotionDiscount", "ShippingDiscount")
    return Totals(
        subtotal=total_of("ItemPrice", every=True),
        shipping=total_of("ShippingPrice"),
        tax=tax,
        discount=discount,
        total=_money(r, order.get("OrderTotal"), "OrderTotal", currency),
    )


def _customer(r: Reader, order: dict[str, Any]) -> Customer:
    buyer = r.obj(order.get("BuyerInfo"), "BuyerInfo") or {}
    raw_address = order.get("ShippingAddress")
    address: dict[str, Any] = raw_address if isinstance(raw_address, dict) else {}
    name = r.text(buyer.get("BuyerName"), "BuyerInfo.BuyerName") or _text(address.get("Name"))
    # BuyerEmail moved into BuyerInfo; older payloads carry it on the order itself.
    email = r.text(buyer.get("BuyerEmail"), "BuyerInfo.BuyerEmail") or _text(order.get("BuyerEmail"))
    return Customer(name=name, email=valid_email(email), phone=_text(address.get("Phone")))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


# -- canonical -> Amazon -------------------------------------------------------------------------------------


def amazon_time(moment: datetime) -> str:
    """ISO 8601 in UTC without fractions, as SP-API writes its own timestamps (2017-01-20T19:49:35Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def confirm_shipment_request(
    fulfillment: Fulfillment,
    *,
    marketplace_id: str,
    package_reference_id: str,
    shipped_at: datetime,
    shipping_method: str | None = None,
) -> dict[str, Any]:
    """The body of POST /orders/v0/orders/{orderId}/shipmentConfirmation (ConfirmShipmentRequest).

    Lines name Amazon OrderItemIds (`line_external_id`). PackageDetail requires packageReferenceId (a positive
    number, unique within the order), carrierCode, trackingNumber, shipDate and orderItems (ordersV0.json).
    Raises PushError.
    """
    if not marketplace_id:
        raise PushError("marketplace_id", "is missing; confirmShipment needs the order's MarketplaceId")
    if not package_reference_id.isdigit() or int(package_reference_id) <= 0:
        # "Only positive numeric values are supported" (ordersV0.json PackageReferenceId).
        raise PushError("package_reference_id", f"{package_reference_id!r} must be a positive number")
    if shipped_at.tzinfo is None:
        raise PushError("shipped_at", "has no time zone; give an aware datetime")
    if not fulfillment.tracking_number:
        raise PushError(
            "tracking_number", "is missing; Amazon requires a tracking number to confirm a shipment"
        )
    if not fulfillment.carrier:
        raise PushError("carrier", "is missing; Amazon requires the carrier to confirm a shipment")
    quantities: dict[str, int] = {}
    for i, line in enumerate(fulfillment.lines):
        if not line.line_external_id:
            raise PushError(f"lines[{i}].line_external_id", "is missing; Amazon needs the OrderItemId")
        quantities[line.line_external_id] = quantities.get(line.line_external_id, 0) + line.quantity
    code = carrier_code(fulfillment.carrier)
    package: dict[str, Any] = {"packageReferenceId": package_reference_id, "carrierCode": code}
    if code == OTHER:
        package["carrierName"] = fulfillment.carrier
    if shipping_method:
        package["shippingMethod"] = shipping_method
    package.update(
        {
            "trackingNumber": fulfillment.tracking_number,
            "shipDate": amazon_time(shipped_at),
            "orderItems": [{"orderItemId": item_id, "quantity": qty} for item_id, qty in quantities.items()],
        }
    )
    return {"marketplaceId": marketplace_id, "packageDetail": package}

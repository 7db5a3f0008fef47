"""Amazon SP-API Orders v0 order + items JSON -> canonical Order, and the confirmShipment body back.

Payloads are shaped like ordersV0.json (amzn/selling-partner-api-models models/orders-api-model: Order,
OrderItem, Money, Address and the getOrders / getOrderItems examples). Constants at the end: the input as
Amazon sends it and the expected canonical result.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import httpx
import pytest

from crossdock.connectors.amazon import (
    carrier_code,
    confirm_shipment_request,
    map_order,
    merge_item_pages,
    order_status,
)
from crossdock.connectors.amazon.mapping import AFN_TAG
from crossdock.connectors.remote_json import INTERNAL, PushError
from crossdock.model import (
    Address,
    Customer,
    Fulfillment,
    FulfillmentLine,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    Totals,
    path_to,
)
from crossdock.sandbox.amazon import AmazonState, create_app
from crossdock.sandbox.common import SandboxConfig
from tests.connectors.support import changed

S = OrderStatus


def problems_of(order: Any, items: Any) -> dict[str, str]:
    mapped = map_order(order, items)
    assert mapped.value is None
    return {p.field: p.reason for p in mapped.problems}


# -- orders --------------------------------------------------------------------------------------------------


def test_documented_order_maps_to_the_canonical_order() -> None:
    mapped = map_order(ORDER, ITEMS)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER
    assert mapped.external_id == "902-3159896-1390916"
    assert mapped.external_version == "2024-04-02T11:05:41.000000+00:00"


def test_item_price_is_the_line_total_divided_into_a_unit_price() -> None:
    # "ItemPrice is equal to the selling price of the item multiplied by the quantity ordered" (ordersV0.json).
    mapped = map_order(ORDER, ITEMS)
    assert mapped.value is not None
    line = mapped.value.lines[0]
    assert line.quantity == 2 and line.unit_price == Money.of("14.99", "USD")
    assert line.total == Money.of("29.98", "USD")


@pytest.mark.parametrize(
    ("amount", "currency", "quantity", "unit"),
    [
        ("10.00", "USD", 3, "3.33"),
        ("7201", "JPY", 2, "3600"),  # 3600.5 yen: banker's rounding to the even yen
        ("7.500", "KWD", 4, "1.875"),  # three decimals stay exact
    ],
)
def test_unit_price_rounds_to_the_currency(amount: str, currency: str, quantity: int, unit: str) -> None:
    order = changed(ORDER, "OrderTotal", {"CurrencyCode": currency, "Amount": amount})
    item = {
        **ITEMS[1],
        "QuantityOrdered": quantity,
        "ItemPrice": {"CurrencyCode": currency, "Amount": amount},
    }
    for key in ("ShippingPrice", "ItemTax", "ShippingTax", "PromotionDiscount"):
        item.pop(key, None)
    mapped = map_order(order, [item])
    assert mapped.problems == []
    assert mapped.value is not None and mapped.value.lines[0].unit_price == Money.of(unit, currency)


def test_pending_order_without_prices_still_maps() -> None:
    mapped = map_order(ORDER_PENDING, ITEMS_PENDING)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER_PENDING
    assert mapped.value is not None and mapped.value.lines_total is None


def test_pending_order_in_an_unknown_marketplace_has_no_currency() -> None:
    order = changed(ORDER_PENDING, "MarketplaceId", "A0UNKNOWN00000")
    assert "currency is unknown" in problems_of(order, ITEMS_PENDING)["OrderTotal.CurrencyCode"]


def test_zero_decimal_currency_japanese_address() -> None:
    mapped = map_order(ORDER_JP, ITEMS_JP)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER_JP


def test_arabic_address_without_postal_code() -> None:
    mapped = map_order(ORDER_AE, ITEMS_AE)
    assert mapped.problems == []
    assert mapped.value is not None and mapped.value.shipping_address is not None
    address = mapped.value.shipping_address
    assert address.last_name == "فاطمة الصباح" and address.line1 == "شارع الشيخ زايد 1"
    assert address.city == "دبي" and address.postal_code is None and address.country == "AE"
    assert mapped.value.lines[0].unit_price == Money.of("55.00", "AED")


def test_cyrillic_address_is_kept_exactly() -> None:
    order = changed(ORDER, "ShippingAddress", ADDRESS_BG)
    mapped = map_order(order, ITEMS)
    assert mapped.value is not None and mapped.value.shipping_address is not None
    assert mapped.value.shipping_address.last_name == "Мария Иванова"
    assert mapped.value.shipping_address.line1 == "бул. Витоша 15"
    assert mapped.value.shipping_address.city == "София"


def test_street_in_address_line_two_moves_up() -> None:
    order = changed(ORDER, "ShippingAddress.AddressLine1", "")
    order = changed(order, "ShippingAddress.AddressLine2", "1 Cross St.")
    mapped = map_order(order, ITEMS)
    assert mapped.value is not None and mapped.value.shipping_address is not None
    assert (
        mapped.value.shipping_address.line1 == "1 Cross St." and mapped.value.shipping_address.line2 is None
    )


def test_cancelled_order() -> None:
    mapped = map_order(ORDER_CANCELED, ITEMS_CANCELED)
    assert mapped.problems == []
    assert mapped.value is not None and mapped.value.status == S.CANCELLED
    # The item cancelled with QuantityOrdered 0 is not a line; the other one is.
    assert [line.external_id for line in mapped.value.lines] == ["68828574383266"]


def test_cancelled_order_whose_items_all_show_zero_is_a_problem() -> None:
    items = [changed(item, "QuantityOrdered", 0) for item in ITEMS_CANCELED]
    assert "no item has a quantity left" in problems_of(ORDER_CANCELED, items)["OrderItems"]


def test_fulfilled_by_amazon_lines_need_no_shipping_from_us() -> None:
    mapped = map_order(changed(ORDER, "FulfillmentChannel", "AFN"), ITEMS)
    assert mapped.value is not None
    assert not mapped.value.needs_shipping and mapped.value.tags == [AFN_TAG]


def test_multi_page_items_are_merged_in_order_and_once() -> None:
    items = merge_item_pages(ITEM_PAGES)
    assert [item["OrderItemId"] for item in items] == ["10000000000001", "10000000000002", "10000000000003"]
    mapped = map_order(ORDER_THREE_ITEMS, items)
    assert mapped.problems == []
    assert mapped.value is not None
    assert [line.sku for line in mapped.value.lines] == ["MUG-CERAMIC", "SOCKS-3PK", "NOTEBOOK-A5"]
    assert mapped.value.lines_total == Money.of("48.45", "USD")


def test_pages_of_another_order_are_refused() -> None:
    other = changed(ITEM_PAGES[1], "payload.AmazonOrderId", "111-0000000-0000000")
    with pytest.raises(ValueError, match="holds items of order 111-0000000-0000000"):
        merge_item_pages([ITEM_PAGES[0], other])


def test_a_page_without_items_is_refused() -> None:
    with pytest.raises(ValueError, match="OrderItems"):
        merge_item_pages([{"payload": {"AmazonOrderId": "902-3159896-1390916"}}])


def test_the_same_item_twice_in_the_merged_list_is_a_problem() -> None:
    assert "appears twice" in problems_of(ORDER, [ITEMS[0], ITEMS[0]])["OrderItems[1].OrderItemId"]


@pytest.mark.parametrize(
    ("target", "path", "value", "field", "words"),
    [
        ("order", "ShippingAddress.CountryCode", None, "ShippingAddress.CountryCode", "missing"),
        ("order", "ShippingAddress.CountryCode", "USA", "ShippingAddress.CountryCode", "ISO 3166-1"),
        ("order", "ShippingAddress.City", None, "ShippingAddress.City", "city"),
        ("order", "ShippingAddress.AddressLine3", 7, "ShippingAddress.AddressLine3", "text"),
        ("order", "OrderStatus", "Lost", "OrderStatus", "not an Amazon order status"),
        ("order", "OrderStatus", None, "OrderStatus", "missing"),
        ("order", "LastUpdateDate", "2 April 2024", "LastUpdateDate", "ISO 8601"),
        ("order", "LastUpdateDate", "2024-04-02T11:05:41", "LastUpdateDate", "time zone"),
        ("order", "AmazonOrderId", None, "AmazonOrderId", "missing"),
        ("order", "OrderTotal.CurrencyCode", "US$", "OrderTotal.CurrencyCode", "ISO 4217"),
        ("order", "OrderTotal.Amount", 29.98, "OrderTotal.Amount", "text"),
        ("items", "0.QuantityOrdered", 0, "OrderItems[0].QuantityOrdered", "at least 1"),
        ("items", "0.QuantityOrdered", -1, "OrderItems[0].QuantityOrdered", "at least 1"),
        ("items", "0.QuantityOrdered", None, "OrderItems[0].QuantityOrdered", "missing"),
        ("items", "0.ItemPrice.Amount", "fourteen", "OrderItems[0].ItemPrice.Amount", "not a decimal"),
        ("items", "0.ItemPrice.Amount", None, "OrderItems[0].ItemPrice.Amount", "missing"),
        (
            "items",
            "0.ItemPrice.CurrencyCode",
            "EUR",
            "OrderItems[0].ItemPrice.CurrencyCode",
            "order is in USD",
        ),
        ("items", "0.OrderItemId", None, "OrderItems[0].OrderItemId", "missing"),
        ("items", "0", "a mug", "OrderItems[0]", "object"),
    ],
)
def test_unmappable_fields_are_problems_naming_the_remote_field(
    target: str, path: str, value: Any, field: str, words: str
) -> None:
    order = changed(ORDER, path, value) if target == "order" else ORDER
    items = changed(ITEMS, path, value) if target == "items" else ITEMS
    problems = problems_of(order, items)
    assert field in problems, problems
    assert words in problems[field]


@pytest.mark.parametrize(
    ("order", "items"), [(None, []), ([], []), ("902-3159896-1390916", None), ({"AmazonOrderId": "1"}, {})]
)
def test_payloads_that_are_not_an_order_are_problems(order: Any, items: Any) -> None:
    mapped = map_order(order, items)
    assert mapped.value is None and mapped.problems
    assert all(p.field != INTERNAL for p in mapped.problems)


# -- status ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amazon", "expected"),
    [
        ("PendingAvailability", S.PENDING),
        ("Pending", S.PENDING),
        ("Unshipped", S.PAID),
        ("PartiallyShipped", S.PARTIALLY_SHIPPED),
        ("Shipped", S.SHIPPED),
        ("InvoiceUnconfirmed", S.SHIPPED),
        ("Canceled", S.CANCELLED),
        ("Unfulfillable", S.CANCELLED),
        ("Cancelled", None),  # British spelling is not Amazon's
    ],
)
def test_status_mapping(amazon: str, expected: OrderStatus | None) -> None:
    assert order_status(amazon) == expected
    if expected is not None:
        path_to(S.PENDING, expected)


# -- confirmShipment --------------------------------------------------------------------------------------------


def fulfillment(
    *lines: tuple[str | None, int], carrier: str | None = "ups", tracking: str | None = "1Z999AA10123456784"
) -> Fulfillment:
    return Fulfillment(
        order_id=uuid4(),
        lines=[FulfillmentLine(line_external_id=i, quantity=q) for i, q in lines],
        carrier=carrier,
        tracking_number=tracking,
    )


SHIPPED_AT = datetime(2024, 4, 3, 9, 30, 5, 250000, tzinfo=timezone(timedelta(hours=2)))


def test_confirm_shipment_request_body() -> None:
    body = confirm_shipment_request(
        fulfillment(("68828574383266", 2), ("68828574383267", 1)),
        marketplace_id="ATVPDKIKX0DER",
        package_reference_id="1",
        shipped_at=SHIPPED_AT,
        shipping_method="Ground",
    )
    assert body == EXPECTED_CONFIRM_SHIPMENT


def test_unlisted_carrier_is_other_with_its_name() -> None:
    body = confirm_shipment_request(
        fulfillment(("68828574383266", 1), carrier="Speedy Couriers Ltd"),
        marketplace_id="ATVPDKIKX0DER",
        package_reference_id="2",
        shipped_at=SHIPPED_AT,
    )
    assert body["packageDetail"]["carrierCode"] == "Other"
    assert body["packageDetail"]["carrierName"] == "Speedy Couriers Ltd"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tracking": None}, "tracking_number"),
        ({"carrier": None}, "carrier"),
    ],
)
def test_confirmation_without_tracking_or_carrier_is_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(PushError) as caught:
        confirm_shipment_request(
            fulfillment(("68828574383266", 1), **kwargs),
            marketplace_id="ATVPDKIKX0DER",
            package_reference_id="1",
            shipped_at=SHIPPED_AT,
        )
    assert caught.value.field == field


@pytest.mark.parametrize("reference", ["0", "-1", "box-1", ""])
def test_package_reference_must_be_a_positive_number(reference: str) -> None:
    with pytest.raises(PushError, match="positive number"):
        confirm_shipment_request(
            fulfillment(("1", 1)),
            marketplace_id="ATVPDKIKX0DER",
            package_reference_id=reference,
            shipped_at=SHIPPED_AT,
        )


def test_naive_ship_date_and_missing_ids_are_refused() -> None:
    with pytest.raises(PushError, match="time zone"):
        confirm_shipment_request(
            fulfillment(("1", 1)),
            marketplace_id="ATVPDKIKX0DER",
            package_reference_id="1",
            shipped_at=datetime(2024, 4, 3, 9, 30),
        )
    with pytest.raises(PushError, match="OrderItemId"):
        confirm_shipment_request(
            fulfillment((None, 1)),
            marketplace_id="ATVPDKIKX0DER",
            package_reference_id="1",
            shipped_at=SHIPPED_AT,
        )
    with pytest.raises(PushError, match="MarketplaceId"):
        confirm_shipment_request(
            fulfillment(("1", 1)), marketplace_id="", package_reference_id="1", shipped_at=SHIPPED_AT
        )


@pytest.mark.parametrize(
    ("carrier", "code"),
    [
        ("ups", "UPS"),
        ("usps", "USPS"),
        ("fedex", "FedEx"),
        ("dhl_express", "DHL"),
        ("royal_mail", "Royal Mail"),
        ("Royal Mail", "Royal Mail"),
        ("canada_post", "Canada Post"),
        ("deutschepost", "Deutsche Post"),
        ("yamato", "YamatoTransport"),
        ("YamatoTransport", "YamatoTransport"),
        ("Speedy Couriers Ltd", "Other"),
    ],
)
def test_carrier_codes(carrier: str, code: str) -> None:
    assert carrier_code(carrier) == code


# -- the sandbox and the mapper agree ---------------------------------------------------------------------------

MARKETPLACES = "ATVPDKIKX0DER,A1VC38T7YXB528,A1PA6795UKMFR9,A2VIGQ35RCS4UG,A1C3SOZRARQ6R3"


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_every_sandbox_order_maps_without_problems(seed: int) -> None:
    state = AmazonState(SandboxConfig(seed=seed, orders=150, extra={"marketplace_ids": MARKETPLACES}))
    statuses: set[OrderStatus] = set()
    for amazon_order in state.all_orders():
        payload = amazon_order.to_json()
        items = [
            item.to_json(amazon_order.currency, priced=amazon_order.priced) for item in amazon_order.items
        ]
        mapped = map_order(payload, items)
        assert mapped.problems == [], (amazon_order.amazon_order_id, mapped.problems)
        assert mapped.value is not None
        statuses.add(mapped.value.status)
        if amazon_order.priced:
            total = sum(
                (Money.of(i["ItemPrice"]["Amount"], amazon_order.currency) for i in items),
                Money.zero(amazon_order.currency),
            )
            assert mapped.value.totals.subtotal == total
    assert {S.PAID, S.SHIPPED} <= statuses


async def test_sandbox_order_from_pending_to_shipped_over_paged_items() -> None:
    app = create_app(
        SandboxConfig(token="Atza|sandbox", fast_limits=True, extra={"order_items_page_size": "30"})
    )
    headers = {"x-amz-access-token": "Atza|sandbox"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="https://sellingpartnerapi-na.amazon.com"
    ) as c:

        async def fetch(order_id: str) -> tuple[dict[str, Any], list[Any], int]:
            order = (await c.get(f"/orders/v0/orders/{order_id}", headers=headers)).json()["payload"]
            pages: list[Any] = []
            token: str | None = None
            while True:
                params = {"NextToken": token} if token else {}
                page = (
                    await c.get(f"/orders/v0/orders/{order_id}/orderItems", headers=headers, params=params)
                ).json()
                pages.append(page)
                token = page["payload"].get("NextToken")
                if not token:
                    return order, merge_item_pages(pages), len(pages)

        created = (
            await c.post("/_sandbox/orders", json={"status": "Pending", "items": 70, "country": "JP"})
        ).json()
        order_id = created["orders"][0]["AmazonOrderId"]
        order, items, pages = await fetch(order_id)
        pending = map_order(order, items)
        assert pages == 3 and len(items) == 70
        assert pending.problems == [] and pending.value is not None
        assert pending.value.status == S.PENDING and pending.value.shipping_address is None
        assert all(line.unit_price is None for line in pending.value.lines)

        await c.patch(f"/_sandbox/orders/{order_id}", json={"OrderStatus": "Unshipped"})
        order, items, _ = await fetch(order_id)
        paid = map_order(order, items)
        assert paid.value is not None and paid.value.status == S.PAID
        assert paid.value.shipping_address is not None and paid.value.shipping_address.country == "JP"
        assert paid.value.lines_total is not None
        assert paid.external_version is not None and pending.external_version is not None
        # LastUpdateDate has whole seconds: two changes within one second share a version (never goes back).
        assert paid.external_version >= pending.external_version

        lines = [(line.external_id, line.quantity) for line in paid.value.lines]
        body = confirm_shipment_request(
            fulfillment(*lines, carrier="yamato", tracking="123456789012"),
            marketplace_id=order["MarketplaceId"],
            package_reference_id="1",
            shipped_at=datetime.now(UTC) - timedelta(minutes=5),
        )
        confirmed = await c.post(
            f"/orders/v0/orders/{order_id}/shipmentConfirmation", headers=headers, json=body
        )
        assert confirmed.status_code == 204, confirmed.text
        order, items, _ = await fetch(order_id)
    shipped = map_order(order, items)
    assert shipped.value is not None and shipped.value.status == S.SHIPPED


# -- fixtures: Amazon JSON in, canonical out -------------------------------------------------------------------

ORDER: dict[str, Any] = {
    "AmazonOrderId": "902-3159896-1390916",
    "PurchaseDate": "2024-04-02T10:49:35Z",
    "LastUpdateDate": "2024-04-02T11:05:41Z",
    "OrderStatus": "Unshipped",
    "FulfillmentChannel": "MFN",
    "SalesChannel": "Amazon.com",
    "ShipServiceLevel": "Std US D2D Dom",
    "OrderTotal": {"CurrencyCode": "USD", "Amount": "54.38"},
    "NumberOfItemsShipped": 0,
    "NumberOfItemsUnshipped": 3,
    "PaymentMethod": "Other",
    "PaymentMethodDetails": ["Standard"],
    "IsReplacementOrder": False,
    "MarketplaceId": "ATVPDKIKX0DER",
    "ShipmentServiceLevelCategory": "Standard",
    "OrderType": "StandardOrder",
    "EarliestShipDate": "2024-04-02T12:49:35Z",
    "LatestShipDate": "2024-04-04T10:49:35Z",
    "IsBusinessOrder": False,
    "IsPrime": False,
    "IsAccessPointOrder": False,
    "IsGlobalExpressEnabled": False,
    "IsPremiumOrder": False,
    "IsSoldByAB": False,
    "IsIBA": False,
    "ShippingAddress": {
        "Name": "Michigan address",
        "AddressLine1": "1 Cross St.",
        "City": "Canton",
        "StateOrRegion": "MI",
        "PostalCode": "48817",
        "CountryCode": "US",
        "Phone": "+12485550123",
        "AddressType": "Residential",
    },
    "BuyerInfo": {"BuyerEmail": "5vlh04mgfmjh9h5@marketplace.amazon.com"},
    "AutomatedShippingSettings": {"HasAutomatedShippingSettings": False},
}
ITEMS: list[dict[str, Any]] = [
    {
        "ASIN": "BT0093TELA",
        "SellerSKU": "SOCKS-3PK",
        "OrderItemId": "68828574383266",
        "Title": "Merino Socks (3-pack)",
        "QuantityOrdered": 2,
        "QuantityShipped": 0,
        "ProductInfo": {"NumberOfItems": "1"},
        "ItemPrice": {"CurrencyCode": "USD", "Amount": "29.98"},
        "ShippingPrice": {"CurrencyCode": "USD", "Amount": "3.99"},
        "ItemTax": {"CurrencyCode": "USD", "Amount": "2.10"},
        "ShippingTax": {"CurrencyCode": "USD", "Amount": "0.28"},
        "ShippingDiscount": {"CurrencyCode": "USD", "Amount": "0.00"},
        "PromotionDiscount": {"CurrencyCode": "USD", "Amount": "0.00"},
        "PromotionIds": [],
        "IsGift": "false",
        "ConditionId": "New",
        "ConditionSubtypeId": "New",
        "IsTransparency": False,
    },
    {
        "ASIN": "BCTU1104UEFB",
        "SellerSKU": "NOTEBOOK-A5",
        "OrderItemId": "68828574383267",
        "Title": "Dot-Grid Notebook A5",
        "QuantityOrdered": 1,
        "QuantityShipped": 0,
        "ItemPrice": {"CurrencyCode": "USD", "Amount": "12.95"},
        "ShippingPrice": {"CurrencyCode": "USD", "Amount": "0.00"},
        "ItemTax": {"CurrencyCode": "USD", "Amount": "0.91"},
        "ShippingTax": {"CurrencyCode": "USD", "Amount": "0.00"},
        "PromotionDiscount": {"CurrencyCode": "USD", "Amount": "1.00"},
        "IsGift": "false",
        "ConditionId": "New",
    },
]
EXPECTED_ORDER = Order(
    status=S.PAID,
    currency="USD",
    customer=Customer(
        name="Michigan address", email="5vlh04mgfmjh9h5@marketplace.amazon.com", phone="+12485550123"
    ),
    shipping_address=Address(
        last_name="Michigan address",
        line1="1 Cross St.",
        city="Canton",
        postal_code="48817",
        subdivision="MI",
        country="US",
        phone="+12485550123",
    ),
    lines=[
        OrderLine(
            sku="SOCKS-3PK",
            title="Merino Socks (3-pack)",
            quantity=2,
            unit_price=Money.of("14.99", "USD"),
            external_id="68828574383266",
        ),
        OrderLine(
            sku="NOTEBOOK-A5",
            title="Dot-Grid Notebook A5",
            quantity=1,
            unit_price=Money.of("12.95", "USD"),
            external_id="68828574383267",
        ),
    ],
    totals=Totals(
        subtotal=Money.of("42.93", "USD"),
        shipping=Money.of("3.99", "USD"),
        tax=Money.of("3.29", "USD"),
        discount=Money.of("1.00", "USD"),
        total=Money.of("54.38", "USD"),
    ),
    external_id="902-3159896-1390916",
    external_number="902-3159896-1390916",
    placed_at=datetime(2024, 4, 2, 10, 49, 35, tzinfo=UTC),
)

# Pending: payment not authorised, so no OrderTotal, no ShippingAddress and items without any pricing
# (ordersV0.json: "pricing omitted while Pending"; the getOrders example's Pending order reports 0/0 items).
ORDER_PENDING: dict[str, Any] = {
    "AmazonOrderId": "902-1845936-5435065",
    "PurchaseDate": "2024-04-02T10:49:35Z",
    "LastUpdateDate": "2024-04-02T10:49:35Z",
    "OrderStatus": "Pending",
    "FulfillmentChannel": "MFN",
    "NumberOfItemsShipped": 0,
    "NumberOfItemsUnshipped": 0,
    "PaymentMethod": "Other",
    "MarketplaceId": "A1PA6795UKMFR9",
    "ShipmentServiceLevelCategory": "Standard",
    "OrderType": "StandardOrder",
    "IsPrime": False,
    "BuyerInfo": {"BuyerEmail": "q4m2x8z1lq@marketplace.amazon.de"},
}
ITEMS_PENDING: list[dict[str, Any]] = [
    {
        "ASIN": "B00551Q3CS",
        "SellerSKU": "CANDLE-CEDAR",
        "OrderItemId": "05015851154158",
        "Title": "Cedar & Amber Candle",
        "QuantityOrdered": 3,
        "QuantityShipped": 0,
        "ProductInfo": {"NumberOfItems": "1"},
        "ConditionId": "New",
        "IsTransparency": False,
    }
]
EXPECTED_ORDER_PENDING = Order(
    status=S.PENDING,
    currency="EUR",
    customer=Customer(email="q4m2x8z1lq@marketplace.amazon.de"),
    lines=[
        OrderLine(
            sku="CANDLE-CEDAR",
            title="Cedar & Amber Candle",
            quantity=3,
            unit_price=None,
            external_id="05015851154158",
        )
    ],
    external_id="902-1845936-5435065",
    external_number="902-1845936-5435065",
    placed_at=datetime(2024, 4, 2, 10, 49, 35, tzinfo=UTC),
)

ORDER_JP: dict[str, Any] = {
    **ORDER,
    "AmazonOrderId": "503-1234567-7654321",
    "MarketplaceId": "A1VC38T7YXB528",
    "SalesChannel": "Amazon.co.jp",
    "OrderTotal": {"CurrencyCode": "JPY", "Amount": "7200"},
    "ShippingAddress": {
        "Name": "山田 花子",
        "AddressLine1": "千代田1-1",
        "AddressLine2": "グランドメゾン 301",
        "City": "千代田区",
        "StateOrRegion": "東京都",
        "PostalCode": "100-0001",
        "CountryCode": "JP",
    },
    "BuyerInfo": {"BuyerEmail": "k2m9x0@marketplace.amazon.co.jp", "BuyerName": "山田 花子"},
}
ITEMS_JP: list[dict[str, Any]] = [
    {
        "ASIN": "B0JPTSHIRT",
        "SellerSKU": "TSHIRT-BLK-M",
        "OrderItemId": "50000000000001",
        "Title": "オーガニックコットン Tシャツ 黒 M",
        "QuantityOrdered": 2,
        "ItemPrice": {"CurrencyCode": "JPY", "Amount": "7200"},
        "ShippingPrice": {"CurrencyCode": "JPY", "Amount": "0"},
        "ItemTax": {"CurrencyCode": "JPY", "Amount": "0"},
    }
]
EXPECTED_ORDER_JP = Order(
    status=S.PAID,
    currency="JPY",
    customer=Customer(name="山田 花子", email="k2m9x0@marketplace.amazon.co.jp"),
    shipping_address=Address(
        last_name="山田 花子",
        line1="千代田1-1",
        line2="グランドメゾン 301",
        city="千代田区",
        postal_code="100-0001",
        subdivision="東京都",
        country="JP",
    ),
    lines=[
        OrderLine(
            sku="TSHIRT-BLK-M",
            title="オーガニックコットン Tシャツ 黒 M",
            quantity=2,
            unit_price=Money.of(3600, "JPY"),
            external_id="50000000000001",
        )
    ],
    totals=Totals(
        subtotal=Money.of(7200, "JPY"),
        shipping=Money.of(0, "JPY"),
        tax=Money.of(0, "JPY"),
        total=Money.of(7200, "JPY"),
    ),
    external_id="503-1234567-7654321",
    external_number="503-1234567-7654321",
    placed_at=datetime(2024, 4, 2, 10, 49, 35, tzinfo=UTC),
)

ORDER_AE: dict[str, Any] = {
    **ORDER,
    "AmazonOrderId": "407-7654321-1234567",
    "MarketplaceId": "A2VIGQ35RCS4UG",
    "OrderTotal": {"CurrencyCode": "AED", "Amount": "110.00"},
    "ShippingAddress": {
        "Name": "فاطمة الصباح",
        "AddressLine1": "شارع الشيخ زايد 1",
        "City": "دبي",
        "CountryCode": "AE",
        "Phone": "+971501234567",
    },
}
ITEMS_AE: list[dict[str, Any]] = [
    {
        "ASIN": "B0AEBOTTLE",
        "SellerSKU": "BOTTLE-STEEL",
        "OrderItemId": "40000000000001",
        "Title": "زجاجة فولاذية معزولة 750 مل",
        "QuantityOrdered": 2,
        "ItemPrice": {"CurrencyCode": "AED", "Amount": "110.00"},
    }
]

ADDRESS_BG: dict[str, Any] = {
    "Name": "Мария Иванова",
    "AddressLine1": "бул. Витоша 15",
    "AddressLine2": "ап. 4",
    "City": "София",
    "PostalCode": "1000",
    "CountryCode": "BG",
}

ORDER_CANCELED: dict[str, Any] = {
    **ORDER,
    "OrderStatus": "Canceled",
    "LastUpdateDate": "2024-04-02T13:00:00Z",
    "NumberOfItemsUnshipped": 0,
}
ITEMS_CANCELED: list[dict[str, Any]] = [
    ITEMS[0],
    {**ITEMS[1], "QuantityOrdered": 0, "ItemPrice": {"CurrencyCode": "USD", "Amount": "0.00"}},
]

ORDER_THREE_ITEMS: dict[str, Any] = {**ORDER, "OrderTotal": {"CurrencyCode": "USD", "Amount": "48.45"}}
# Three getOrderItems pages; the second was fetched twice (a retried NextToken), so item 2 arrives twice.
ITEM_PAGES: list[dict[str, Any]] = [
    {
        "payload": {
            "AmazonOrderId": "902-3159896-1390916",
            "NextToken": "MRgZW55IGNhcm5hbCBwbGVhc3VyZS4=",
            "OrderItems": [
                {
                    "ASIN": "B0MUG00001",
                    "SellerSKU": "MUG-CERAMIC",
                    "OrderItemId": "10000000000001",
                    "Title": "Ceramic Mug 350 ml",
                    "QuantityOrdered": 1,
                    "ItemPrice": {"CurrencyCode": "USD", "Amount": "14.50"},
                }
            ],
        }
    },
    {
        "payload": {
            "AmazonOrderId": "902-3159896-1390916",
            "NextToken": "NRgZW55IGNhcm5hbCBwbGVhc3VyZS4=",
            "OrderItems": [
                {
                    "ASIN": "B0SOCKS001",
                    "SellerSKU": "SOCKS-3PK",
                    "OrderItemId": "10000000000002",
                    "Title": "Merino Socks (3-pack)",
                    "QuantityOrdered": 1,
                    "ItemPrice": {"CurrencyCode": "USD", "Amount": "21.00"},
                }
            ],
        }
    },
    {
        "AmazonOrderId": "902-3159896-1390916",
        "NextToken": "NRgZW55IGNhcm5hbCBwbGVhc3VyZS4=",
        "OrderItems": [
            {
                "ASIN": "B0SOCKS001",
                "SellerSKU": "SOCKS-3PK",
                "OrderItemId": "10000000000002",
                "Title": "Merino Socks (3-pack)",
                "QuantityOrdered": 1,
                "ItemPrice": {"CurrencyCode": "USD", "Amount": "21.00"},
            }
        ],
    },
    {
        "payload": {
            "AmazonOrderId": "902-3159896-1390916",
            "OrderItems": [
                {
                    "ASIN": "B0NOTE0001",
                    "SellerSKU": "NOTEBOOK-A5",
                    "OrderItemId": "10000000000003",
                    "Title": "Dot-Grid Notebook A5",
                    "QuantityOrdered": 1,
                    "ItemPrice": {"CurrencyCode": "USD", "Amount": "12.95"},
                }
            ],
        }
    },
]

# POST /orders/v0/orders/{orderId}/shipmentConfirmation (ordersV0.json ConfirmShipmentRequest).
EXPECTED_CONFIRM_SHIPMENT: dict[str, Any] = {
    "marketplaceId": "ATVPDKIKX0DER",
    "packageDetail": {
        "packageReferenceId": "1",
        "carrierCode": "UPS",
        "shippingMethod": "Ground",
        "trackingNumber": "1Z999AA10123456784",
        "shipDate": "2024-04-03T07:30:05Z",
        "orderItems": [
            {"orderItemId": "68828574383266", "quantity": 2},
            {"orderItemId": "68828574383267", "quantity": 1},
        ],
    },
}

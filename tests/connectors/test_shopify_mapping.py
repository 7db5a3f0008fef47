"""Shopify order JSON -> canonical Order, and the fulfillment request body back.

Payloads are shaped like the REST Admin Order and FulfillmentOrder resources
(shopify.dev/docs/api/admin-rest/latest/resources/order, .../fulfillmentorder). Constants at the end: the input
as Shopify sends it and the expected canonical result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import httpx
import pytest

from crossdock.connectors.remote_json import INTERNAL, PushError
from crossdock.connectors.shopify import fulfillment_request, map_order, order_status, tracking_company
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
    Weight,
    path_to,
)
from crossdock.sandbox.common import Faults, SandboxConfig, WebhookSender
from crossdock.sandbox.shopify import create_app
from crossdock.sandbox.shopify.state import ShopState
from tests.connectors.support import changed

S = OrderStatus


def problems_of(payload: Any) -> dict[str, str]:
    mapped = map_order(payload)
    assert mapped.value is None
    return {p.field: p.reason for p in mapped.problems}


# -- orders --------------------------------------------------------------------------------------------------


def test_documented_order_maps_to_the_canonical_order() -> None:
    mapped = map_order(ORDER)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER
    assert mapped.external_id == "820982911946154508"
    # updated_at in UTC, fixed width: versions compare as text too.
    assert mapped.external_version == "2024-03-14T13:27:10.000000+00:00"


def test_single_get_wrapper_is_unwrapped() -> None:
    assert map_order({"order": ORDER}).value == EXPECTED_ORDER


def test_zero_decimal_currency_japanese_address() -> None:
    mapped = map_order(ORDER_JPY)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER_JPY
    assert mapped.value is not None and mapped.value.lines[0].unit_price == Money.of(3600, "JPY")


def test_fraction_of_a_yen_is_refused() -> None:
    problems = problems_of(changed(ORDER_JPY, "line_items.0.price", "3600.5"))
    assert "JPY" in problems["line_items[0].price"] and "decimals" in problems["line_items[0].price"]


def test_three_decimal_currency_arabic_address() -> None:
    mapped = map_order(ORDER_KWD)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER_KWD
    assert mapped.value is not None and mapped.value.totals.shipping == Money.of("0.750", "KWD")


def test_cyrillic_address_is_kept_exactly() -> None:
    mapped = map_order(ORDER_UAH)
    assert mapped.value is not None and mapped.value.shipping_address is not None
    address = mapped.value.shipping_address
    assert (address.first_name, address.last_name) == ("Олена", "Шевченко")
    assert address.line1 == "вул. Хрещатик, 22" and address.line2 == "кв. 12" and address.city == "Київ"
    assert address.name == "Олена Шевченко"


def test_unicode_is_not_normalised() -> None:
    # "Zoë" with a combining diaeresis (NFD) stays NFD; the precomposed form stays precomposed.
    decomposed, composed = "Zoe\u0308", "Zo\u00eb"
    payload = changed(ORDER_UAH, "shipping_address.first_name", decomposed)
    payload = changed(payload, "shipping_address.address2", composed)
    mapped = map_order(payload)
    assert mapped.value is not None and mapped.value.shipping_address is not None
    assert mapped.value.shipping_address.first_name == decomposed
    assert mapped.value.shipping_address.line2 == composed


def test_cancelled_order_is_cancelled_even_when_refunded() -> None:
    mapped = map_order(ORDER_CANCELLED)
    assert mapped.value is not None and mapped.value.status == S.CANCELLED


def test_edited_order_uses_current_quantities_and_totals() -> None:
    mapped = map_order(ORDER_EDITED)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER_EDITED


def test_order_whose_lines_were_all_edited_away_is_a_problem() -> None:
    payload = changed(ORDER_EDITED, "line_items.0.current_quantity", 0)
    payload = changed(payload, "line_items.2.current_quantity", 0)
    assert "removed by order edits" in problems_of(payload)["line_items"]


def test_missing_optional_fields_are_fine() -> None:
    mapped = map_order(ORDER_MINIMAL)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER_MINIMAL


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("shipping_address.country_code", None, "shipping_address.country_code", "missing"),
        ("shipping_address.country_code", "XX", "shipping_address.country_code", "ISO 3166-1"),
        ("shipping_address.country_code", "Germany", "shipping_address.country_code", "ISO 3166-1"),
        ("shipping_address.address1", "  ", "shipping_address.address1", "street"),
        ("shipping_address.city", None, "shipping_address.city", "city"),
        ("shipping_address.zip", 10118, "shipping_address.zip", "text"),
        ("shipping_address", "New York", "shipping_address", "object"),
        ("line_items.0.current_quantity", -1, "line_items[0].current_quantity", "negative"),
        ("line_items.0.price", "twenty-four", "line_items[0].price", "not a decimal"),
        ("line_items.0.price", 24.5, "line_items[0].price", "text"),
        ("line_items.0.price", None, "line_items[0].price", "missing"),
        ("line_items.0.grams", -180, "line_items[0].grams", "negative"),
        ("line_items.0.id", None, "line_items[0].id", "missing"),
        ("line_items.0", None, "line_items[0]", "null"),
        ("line_items", {"0": {}}, "line_items", "list"),
        ("line_items", None, "line_items", "missing"),
        ("currency", "EURO", "currency", "ISO 4217"),
        ("currency", None, "currency", "missing"),
        ("updated_at", "yesterday", "updated_at", "ISO 8601"),
        ("updated_at", "2024-03-14T09:27:10", "updated_at", "time zone"),
        ("financial_status", "sort_of_paid", "financial_status", "not a Shopify financial status"),
        ("fulfillment_status", "teleported", "fulfillment_status", "not a Shopify fulfillment status"),
        ("current_total_price", "1,234.00", "current_total_price", "not a decimal"),
        ("id", None, "id", "missing"),
    ],
)
def test_unmappable_fields_are_problems_naming_the_remote_field(
    path: str, value: Any, field: str, words: str
) -> None:
    problems = problems_of(changed(ORDER, path, value))
    assert field in problems, problems
    assert words in problems[field]


def test_quantity_below_one_is_a_problem_when_no_edit_explains_it() -> None:
    payload = changed(ORDER, "line_items.0.current_quantity", None)
    payload = changed(payload, "line_items.0.quantity", 0)
    assert "at least 1" in problems_of(payload)["line_items[0].quantity"]


def test_every_problem_is_reported_at_once() -> None:
    payload = changed(ORDER, "currency", "XYZ")
    payload = changed(payload, "shipping_address.country_code", "ZZ")
    payload = changed(payload, "line_items.1.quantity", "many")
    payload = changed(payload, "line_items.1.current_quantity", None)
    assert {"currency", "shipping_address.country_code", "line_items[1].quantity"} <= set(
        problems_of(payload)
    )


def test_problems_still_carry_the_external_id_and_version() -> None:
    mapped = map_order(changed(ORDER, "shipping_address.country_code", "XX"))
    assert mapped.external_id == "820982911946154508"
    assert mapped.external_version == "2024-03-14T13:27:10.000000+00:00"


def test_a_billing_address_that_does_not_map_is_left_out() -> None:
    mapped = map_order(changed(ORDER, "billing_address.country_code", None))
    assert mapped.problems == [] and mapped.value is not None
    assert mapped.value.billing_address is None


def test_an_invalid_email_is_dropped_not_fatal() -> None:
    mapped = map_order(changed(ORDER, "email", "not an address"))
    assert mapped.value is not None and mapped.value.customer.email == "ada@example.com"  # contact_email


@pytest.mark.parametrize("payload", [None, [], "order", 42, {"order": []}])
def test_a_payload_that_is_not_an_order_is_a_problem(payload: Any) -> None:
    mapped = map_order(payload)
    assert mapped.value is None and mapped.problems
    assert all(p.field != INTERNAL for p in mapped.problems)


# -- status ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("financial", "fulfillment", "cancelled", "expected"),
    [
        ("pending", None, False, S.PENDING),
        ("authorized", None, False, S.PAID),
        ("partially_paid", None, False, S.PENDING),
        ("paid", None, False, S.PAID),
        ("paid", "partial", False, S.PARTIALLY_SHIPPED),
        ("paid", "fulfilled", False, S.SHIPPED),
        ("partially_refunded", "fulfilled", False, S.SHIPPED),
        ("refunded", "fulfilled", False, S.REFUNDED),
        ("voided", None, False, S.CANCELLED),
        ("paid", "restocked", False, S.CANCELLED),
        ("refunded", None, True, S.CANCELLED),
        ("pending", None, True, S.CANCELLED),
        ("expired", None, False, S.PENDING),
        ("not_a_status", None, False, None),
    ],
)
def test_status_mapping(
    financial: str, fulfillment: str | None, cancelled: bool, expected: OrderStatus | None
) -> None:
    assert order_status(financial, fulfillment, cancelled) == expected
    if expected is not None:
        path_to(S.PENDING, expected)  # every mapped status is reachable from a new order


# -- fulfillment request ---------------------------------------------------------------------------------------


def fulfillment(*lines: tuple[str | None, int], carrier: str | None = "royal_mail") -> Fulfillment:
    return Fulfillment(
        order_id=uuid4(),
        lines=[FulfillmentLine(line_external_id=i, quantity=q) for i, q in lines],
        carrier=carrier,
        tracking_number="RM123456785GB",
        tracking_url="https://www.royalmail.com/track-your-item#/tracking-results/RM123456785GB",
    )


def test_fulfillment_request_body() -> None:
    body = fulfillment_request(fulfillment(("466157049", 2)), FULFILLMENT_ORDERS)
    assert body == EXPECTED_FULFILLMENT_REQUEST


def test_fulfillment_spreads_a_line_over_open_fulfillment_orders() -> None:
    body = fulfillment_request(fulfillment(("518995019", 3), carrier=None), FULFILLMENT_ORDERS)
    groups = body["fulfillment"]["line_items_by_fulfillment_order"]
    assert groups == [
        {
            "fulfillment_order_id": 1046000789,
            "fulfillment_order_line_items": [{"id": 1025578641, "quantity": 1}],
        },
        {
            "fulfillment_order_id": 1046000791,
            "fulfillment_order_line_items": [{"id": 1025578650, "quantity": 2}],
        },
    ]
    assert body["fulfillment"]["tracking_info"] == {
        "number": "RM123456785GB",
        "url": "https://www.royalmail.com/track-your-item#/tracking-results/RM123456785GB",
    }


def test_fulfilling_more_than_is_open_is_refused() -> None:
    with pytest.raises(PushError, match="only 2 still open") as caught:
        fulfillment_request(fulfillment(("466157049", 3)), FULFILLMENT_ORDERS)
    assert caught.value.field == "lines[0]"


def test_line_only_in_a_closed_fulfillment_order_is_refused() -> None:
    with pytest.raises(PushError, match="only 0 still open"):
        fulfillment_request(fulfillment(("700000001", 1)), FULFILLMENT_ORDERS)


def test_line_without_external_id_is_refused() -> None:
    with pytest.raises(PushError) as caught:
        fulfillment_request(fulfillment((None, 1)), FULFILLMENT_ORDERS)
    assert caught.value.field == "lines[0].line_external_id"


def test_malformed_fulfillment_orders_are_refused() -> None:
    with pytest.raises(PushError, match="fulfillable_quantity"):
        fulfillment_request(
            fulfillment(("1", 1)), [{"id": 1, "status": "open", "line_items": [{"id": 2, "line_item_id": 1}]}]
        )


@pytest.mark.parametrize(
    ("carrier", "company"),
    [
        ("ups", "UPS"),
        ("USPS", "USPS"),
        ("dhl_express", "DHL Express"),
        ("Royal Mail", "Royal Mail"),
        ("royalmail", "Royal Mail"),
        ("canadapost", "Canada Post"),
        ("hermes_uk", "Evri"),
        ("Speedy Couriers Ltd", "Speedy Couriers Ltd"),
        ("", None),
        (None, None),
    ],
)
def test_tracking_company_names(carrier: str | None, company: str | None) -> None:
    assert tracking_company(carrier) == company


async def test_fulfillment_request_is_accepted_by_the_sandbox_and_the_order_maps_shipped() -> None:
    app = create_app(SandboxConfig(token="shpat_test", fast_limits=True))
    headers = {"X-Shopify-Access-Token": "shpat_test"}
    api = "/admin/api/2025-01"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://crossdock-demo.myshopify.com") as c:
        created = (await c.post("/_sandbox/orders", json=SANDBOX_ORDER_SPEC)).json()
        order = map_order(created["order"])
        assert order.value is not None and order.value.status == S.PAID
        lines = [(line.external_id, line.quantity) for line in order.value.lines if line.requires_shipping]
        fos = (
            await c.get(f"{api}/orders/{order.external_id}/fulfillment_orders.json", headers=headers)
        ).json()
        body = fulfillment_request(fulfillment(*lines), fos["fulfillment_orders"])
        response = await c.post(f"{api}/fulfillments.json", headers=headers, json=body)
        assert response.status_code == 201, response.text
        assert response.json()["fulfillment"]["tracking_company"] == "Royal Mail"
        after = (await c.get(f"{api}/orders/{order.external_id}.json", headers=headers)).json()
    shipped = map_order(after)
    assert shipped.value is not None
    assert shipped.value.status == (
        S.SHIPPED if len(lines) == len(order.value.lines) else S.PARTIALLY_SHIPPED
    )
    assert shipped.external_version is not None and order.external_version is not None
    assert shipped.external_version >= order.external_version


# -- the sandbox and the mapper agree ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_every_sandbox_order_maps_without_problems(seed: int) -> None:
    config = SandboxConfig(seed=seed, orders=150, extra={"timezone": "Asia/Tokyo"})
    faults = Faults(config.faults)
    shop = ShopState(config, faults, WebhookSender(faults))
    statuses: set[OrderStatus] = set()
    for order in shop.orders():
        payload = shop.render(order)
        mapped = map_order(payload)
        assert mapped.problems == [], (order.id, mapped.problems)
        assert mapped.value is not None
        statuses.add(mapped.value.status)
        # Line prices times quantities add up to Shopify's own line total.
        assert mapped.value.lines_total == Money.of(payload["total_line_items_price"], payload["currency"])
        assert mapped.value.totals.total == Money.of(payload["total_price"], payload["currency"])
        assert mapped.external_version is not None and mapped.external_version.endswith("+00:00")
    assert {S.PAID, S.SHIPPED} <= statuses


# -- fixtures: Shopify JSON in, canonical out -----------------------------------------------------------------

# What the test asks the sandbox for: two shippable catalog items to a Japanese address.
SANDBOX_ORDER_SPEC: dict[str, Any] = {
    "line_items": [{"sku": "MUG-CERAMIC", "quantity": 2}, {"sku": "SOCKS-3PK", "quantity": 1}],
    "shipping_address": {
        "first_name": "花子",
        "last_name": "山田",
        "address1": "千代田1-1",
        "city": "千代田区",
        "province_code": "JP-13",
        "zip": "100-0001",
        "country_code": "JP",
    },
}

ORDER: dict[str, Any] = {
    "id": 820982911946154508,
    "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
    "name": "#1001",
    "order_number": 1001,
    "email": "Ada@Example.com",
    "contact_email": "ada@example.com",
    "phone": "+12125550147",
    "created_at": "2024-03-14T09:26:53-04:00",
    "updated_at": "2024-03-14T09:27:10-04:00",
    "processed_at": "2024-03-14T09:26:53-04:00",
    "cancelled_at": None,
    "cancel_reason": None,
    "closed_at": None,
    "currency": "USD",
    "presentment_currency": "USD",
    "financial_status": "paid",
    "fulfillment_status": None,
    "taxes_included": False,
    "subtotal_price": "98.00",
    "current_subtotal_price": "98.00",
    "total_line_items_price": "98.00",
    "total_discounts": "0.00",
    "current_total_discounts": "0.00",
    "total_tax": "7.46",
    "current_total_tax": "7.46",
    "total_price": "110.41",
    "current_total_price": "110.41",
    "total_shipping_price_set": {
        "shop_money": {"amount": "4.95", "currency_code": "USD"},
        "presentment_money": {"amount": "4.95", "currency_code": "USD"},
    },
    "total_weight": 360,
    "note": "Leave at the front desk",
    "tags": "vip, wholesale",
    "customer": {
        "id": 207119551,
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "phone": "+12125550147",
    },
    "line_items": [
        {
            "id": 466157049,
            "admin_graphql_api_id": "gid://shopify/LineItem/466157049",
            "variant_id": 39072856,
            "product_id": 632910392,
            "sku": "TSHIRT-BLK-M",
            "title": "Organic Cotton T-Shirt",
            "variant_title": "Black / M",
            "name": "Organic Cotton T-Shirt - Black / M",
            "quantity": 2,
            "current_quantity": 2,
            "fulfillable_quantity": 2,
            "fulfillment_status": None,
            "grams": 180,
            "price": "24.00",
            "price_set": {"shop_money": {"amount": "24.00", "currency_code": "USD"}},
            "requires_shipping": True,
            "taxable": True,
            "gift_card": False,
        },
        {
            "id": 518995019,
            "sku": "GIFTCARD-50",
            "title": "Gift Card",
            "variant_title": None,
            "name": "Gift Card",
            "quantity": 1,
            "current_quantity": 1,
            "fulfillable_quantity": 1,
            "fulfillment_status": None,
            "grams": 0,
            "price": "50.00",
            "requires_shipping": False,
            "gift_card": True,
        },
    ],
    "shipping_address": {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "name": "Ada Lovelace",
        "company": None,
        "address1": "350 Fifth Avenue",
        "address2": "Suite 200",
        "city": "New York",
        "province": "New York",
        "province_code": "NY",
        "zip": "10118",
        "country": "United States",
        "country_code": "US",
        "phone": "+1 212-555-0147",
        "latitude": 40.7484,
        "longitude": -73.9857,
    },
    "billing_address": {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "address1": "350 Fifth Avenue",
        "address2": "Suite 200",
        "city": "New York",
        "province": "New York",
        "province_code": "NY",
        "zip": "10118",
        "country": "United States",
        "country_code": "US",
        "phone": None,
    },
    "shipping_lines": [{"id": 369256396, "title": "Standard Shipping", "price": "4.95"}],
    "fulfillments": [],
    "refunds": [],
}

NEW_YORK = Address(
    first_name="Ada",
    last_name="Lovelace",
    line1="350 Fifth Avenue",
    line2="Suite 200",
    city="New York",
    postal_code="10118",
    subdivision="NY",
    country="US",
    phone="+12125550147",
)
EXPECTED_ORDER = Order(
    status=S.PAID,
    currency="USD",
    customer=Customer(name="Ada Lovelace", email="Ada@example.com", phone="+12125550147"),
    shipping_address=NEW_YORK,
    billing_address=NEW_YORK.model_copy(update={"phone": None}),
    lines=[
        OrderLine(
            sku="TSHIRT-BLK-M",
            title="Organic Cotton T-Shirt - Black / M",
            quantity=2,
            unit_price=Money.of("24.00", "USD"),
            weight=Weight.grams(180),
            external_id="466157049",
        ),
        OrderLine(
            sku="GIFTCARD-50",
            title="Gift Card",
            quantity=1,
            unit_price=Money.of("50.00", "USD"),
            weight=Weight.grams(0),
            requires_shipping=False,
            external_id="518995019",
        ),
    ],
    totals=Totals(
        subtotal=Money.of("98.00", "USD"),
        shipping=Money.of("4.95", "USD"),
        tax=Money.of("7.46", "USD"),
        discount=Money.of("0.00", "USD"),
        total=Money.of("110.41", "USD"),
    ),
    external_id="820982911946154508",
    external_number="#1001",
    placed_at=datetime(2024, 3, 14, 13, 26, 53, tzinfo=UTC),
    notes="Leave at the front desk",
    tags=["vip", "wholesale"],
)

ORDER_JPY: dict[str, Any] = {
    "id": 5602000001009,
    "name": "#2001",
    "email": "hanako@example.jp",
    "created_at": "2024-06-01T10:00:00+09:00",
    "updated_at": "2024-06-01T10:05:00+09:00",
    "currency": "JPY",
    "financial_status": "paid",
    "fulfillment_status": None,
    "taxes_included": True,
    "subtotal_price": "7200",
    "total_tax": "655",
    "total_discounts": "0",
    "total_price": "7200",
    "total_shipping_price_set": {"shop_money": {"amount": "0", "currency_code": "JPY"}},
    "customer": {"first_name": "花子", "last_name": "山田", "email": "hanako@example.jp"},
    "line_items": [
        {
            "id": 14200000000016,
            "sku": "TSHIRT-BLK-M",
            "title": "Organic Cotton T-Shirt",
            "name": "Organic Cotton T-Shirt - Black / M",
            "quantity": 2,
            "grams": 180,
            "price": "3600",
            "requires_shipping": True,
        }
    ],
    "shipping_address": {
        "first_name": "花子",
        "last_name": "山田",
        "address1": "千代田1-1",
        "address2": "サンシャインビル 5F",
        "city": "千代田区",
        "province": "東京都",
        "province_code": "JP-13",
        "zip": "100-0001",
        "country": "Japan",
        "country_code": "JP",
        "phone": "+81312345678",
    },
}
EXPECTED_ORDER_JPY = Order(
    status=S.PAID,
    currency="JPY",
    customer=Customer(name="花子 山田", email="hanako@example.jp"),
    shipping_address=Address(
        first_name="花子",
        last_name="山田",
        line1="千代田1-1",
        line2="サンシャインビル 5F",
        city="千代田区",
        postal_code="100-0001",
        subdivision="JP-13",
        country="JP",
        phone="+81312345678",
    ),
    lines=[
        OrderLine(
            sku="TSHIRT-BLK-M",
            title="Organic Cotton T-Shirt - Black / M",
            quantity=2,
            unit_price=Money.of(3600, "JPY"),
            weight=Weight.grams(180),
            external_id="14200000000016",
        )
    ],
    totals=Totals(
        subtotal=Money.of(7200, "JPY"),
        shipping=Money.of(0, "JPY"),
        tax=Money.of(655, "JPY"),
        discount=Money.of(0, "JPY"),
        total=Money.of(7200, "JPY"),
    ),
    external_id="5602000001009",
    external_number="#2001",
    placed_at=datetime(2024, 6, 1, 1, 0, tzinfo=UTC),
)

ORDER_KWD: dict[str, Any] = {
    "id": 5603000001009,
    "name": "#3001",
    "email": "fatima@example.com",
    "created_at": "2024-07-02T18:30:00+03:00",
    "updated_at": "2024-07-02T18:30:00+03:00",
    "currency": "KWD",
    "financial_status": "paid",
    "fulfillment_status": "partial",
    "subtotal_price": "25.000",
    "total_tax": "0.000",
    "total_discounts": "0.000",
    "total_price": "25.750",
    "total_shipping_price_set": {"shop_money": {"amount": "0.750", "currency_code": "KWD"}},
    "line_items": [
        {
            "id": 14300000000001,
            "sku": "BOTTLE-STEEL",
            "title": "Insulated Steel Bottle 750 ml",
            "quantity": 2,
            "current_quantity": 2,
            "grams": 390,
            "price": "12.500",
            "requires_shipping": True,
        }
    ],
    "shipping_address": {
        "first_name": "فاطمة",
        "last_name": "الصباح",
        "address1": "شارع الخليج العربي 12",
        "address2": "الطابق 3",
        "city": "مدينة الكويت",
        "province": None,
        "province_code": None,
        "zip": "13001",
        "country": "Kuwait",
        "country_code": "KW",
        "phone": None,
    },
}
EXPECTED_ORDER_KWD = Order(
    status=S.PARTIALLY_SHIPPED,
    currency="KWD",
    customer=Customer(name="فاطمة الصباح", email="fatima@example.com"),
    shipping_address=Address(
        first_name="فاطمة",
        last_name="الصباح",
        line1="شارع الخليج العربي 12",
        line2="الطابق 3",
        city="مدينة الكويت",
        postal_code="13001",
        country="KW",
    ),
    lines=[
        OrderLine(
            sku="BOTTLE-STEEL",
            title="Insulated Steel Bottle 750 ml",
            quantity=2,
            unit_price=Money(amount=Decimal("12.500"), currency="KWD"),
            weight=Weight.grams(390),
            external_id="14300000000001",
        )
    ],
    totals=Totals(
        subtotal=Money.of("25.000", "KWD"),
        shipping=Money.of("0.750", "KWD"),
        tax=Money.of("0", "KWD"),
        discount=Money.of("0", "KWD"),
        total=Money.of("25.750", "KWD"),
    ),
    external_id="5603000001009",
    external_number="#3001",
    placed_at=datetime(2024, 7, 2, 15, 30, tzinfo=UTC),
)

ORDER_UAH: dict[str, Any] = {
    **ORDER_JPY,
    "id": 5604000001009,
    "currency": "UAH",
    "subtotal_price": "1980.00",
    "total_tax": "330.00",
    "total_discounts": "0.00",
    "total_price": "1980.00",
    "total_shipping_price_set": {"shop_money": {"amount": "0.00", "currency_code": "UAH"}},
    "line_items": [{**ORDER_JPY["line_items"][0], "price": "990.00"}],
    "shipping_address": {
        "first_name": "Олена",
        "last_name": "Шевченко",
        "address1": "вул. Хрещатик, 22",
        "address2": "кв. 12",
        "city": "Київ",
        "province": "Київ",
        "province_code": None,
        "zip": "01001",
        "country": "Ukraine",
        "country_code": "UA",
        "phone": "+380441234567",
    },
}

ORDER_CANCELLED: dict[str, Any] = {
    **ORDER,
    "financial_status": "refunded",
    "cancelled_at": "2024-03-15T08:00:00-04:00",
    "cancel_reason": "customer",
    "closed_at": "2024-03-15T08:00:00-04:00",
    "updated_at": "2024-03-15T08:00:01-04:00",
}

# An order edited after checkout: the T-shirts went from 3 to 1, the mug was removed (it stays in line_items
# with current_quantity 0) and socks were added; current_* totals reflect the edit, the plain ones do not.
ORDER_EDITED: dict[str, Any] = {
    **ORDER,
    "updated_at": "2024-03-16T10:00:00-04:00",
    "subtotal_price": "86.50",
    "total_price": "92.77",
    "total_tax": "6.27",
    "current_subtotal_price": "45.00",
    "current_total_price": "53.21",
    "current_total_tax": "3.26",
    "line_items": [
        {**ORDER["line_items"][0], "quantity": 3, "current_quantity": 1, "fulfillable_quantity": 1},
        {
            "id": 466157050,
            "sku": "MUG-CERAMIC",
            "title": "Ceramic Mug 350 ml",
            "name": "Ceramic Mug 350 ml",
            "quantity": 1,
            "current_quantity": 0,
            "fulfillable_quantity": 0,
            "grams": 420,
            "price": "14.50",
            "requires_shipping": True,
        },
        {
            "id": 466157051,
            "sku": "SOCKS-3PK",
            "title": "Merino Socks (3-pack)",
            "name": "Merino Socks (3-pack)",
            "quantity": 1,
            "current_quantity": 1,
            "fulfillable_quantity": 1,
            "grams": 150,
            "price": "21.00",
            "requires_shipping": True,
        },
    ],
}
EXPECTED_ORDER_EDITED = EXPECTED_ORDER.model_copy(
    update={
        "lines": [
            EXPECTED_ORDER.lines[0].model_copy(update={"quantity": 1}),
            OrderLine(
                sku="SOCKS-3PK",
                title="Merino Socks (3-pack)",
                quantity=1,
                unit_price=Money.of("21.00", "USD"),
                weight=Weight.grams(150),
                external_id="466157051",
            ),
        ],
        "totals": EXPECTED_ORDER.totals.model_copy(
            update={
                "subtotal": Money.of("45.00", "USD"),
                "tax": Money.of("3.26", "USD"),
                "total": Money.of("53.21", "USD"),
            }
        ),
    }
)

# A digital order from a guest checkout: no shipping address, no customer, no SKU, no weight, no phone.
ORDER_MINIMAL: dict[str, Any] = {
    "id": 5605000001009,
    "updated_at": "2024-08-01T12:00:00Z",
    "currency": "EUR",
    "financial_status": "pending",
    "fulfillment_status": None,
    "tags": "",
    "note": None,
    "shipping_address": None,
    "line_items": [
        {
            "id": 14500000000001,
            "sku": None,
            "title": "Field Guide (e-book)",
            "quantity": 1,
            "price": "9.99",
            "requires_shipping": False,
        }
    ],
}
EXPECTED_ORDER_MINIMAL = Order(
    status=S.PENDING,
    currency="EUR",
    lines=[
        OrderLine(
            title="Field Guide (e-book)",
            quantity=1,
            unit_price=Money.of("9.99", "EUR"),
            requires_shipping=False,
            external_id="14500000000001",
        )
    ],
    external_id="5605000001009",
)

# GET /orders/{id}/fulfillment_orders.json: one open order at the main location, one closed, one open elsewhere.
FULFILLMENT_ORDERS: list[dict[str, Any]] = [
    {
        "id": 1046000789,
        "order_id": 820982911946154508,
        "assigned_location_id": 24826418,
        "status": "open",
        "supported_actions": ["create_fulfillment", "move"],
        "line_items": [
            {
                "id": 1025578640,
                "fulfillment_order_id": 1046000789,
                "line_item_id": 466157049,
                "inventory_item_id": 39072856,
                "quantity": 2,
                "fulfillable_quantity": 2,
            },
            {
                "id": 1025578641,
                "fulfillment_order_id": 1046000789,
                "line_item_id": 518995019,
                "inventory_item_id": 39072857,
                "quantity": 1,
                "fulfillable_quantity": 1,
            },
        ],
    },
    {
        "id": 1046000790,
        "order_id": 820982911946154508,
        "assigned_location_id": 24826418,
        "status": "closed",
        "supported_actions": [],
        "line_items": [
            {
                "id": 1025578649,
                "fulfillment_order_id": 1046000790,
                "line_item_id": 700000001,
                "quantity": 1,
                "fulfillable_quantity": 0,
            }
        ],
    },
    {
        "id": 1046000791,
        "order_id": 820982911946154508,
        "assigned_location_id": 24826419,
        "status": "in_progress",
        "supported_actions": ["create_fulfillment"],
        "line_items": [
            {
                "id": 1025578650,
                "fulfillment_order_id": 1046000791,
                "line_item_id": 518995019,
                "quantity": 2,
                "fulfillable_quantity": 2,
            }
        ],
    },
]
# POST /admin/api/{v}/fulfillments.json (shopify.dev admin-rest Fulfillment, "Create a fulfillment").
EXPECTED_FULFILLMENT_REQUEST: dict[str, Any] = {
    "fulfillment": {
        "line_items_by_fulfillment_order": [
            {
                "fulfillment_order_id": 1046000789,
                "fulfillment_order_line_items": [{"id": 1025578640, "quantity": 2}],
            }
        ],
        "notify_customer": False,
        "tracking_info": {
            "number": "RM123456785GB",
            "company": "Royal Mail",
            "url": "https://www.royalmail.com/track-your-item#/tracking-results/RM123456785GB",
        },
    }
}

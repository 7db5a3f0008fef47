"""Shippo order mapping: a canonical Order becomes the POST /orders body Shippo documents (SDK OrderCreateRequest
and LineItemBase; the constants at the end hold the order and the exact body expected). Amounts are decimal
strings with their currency, weights strings with their unit, the status Shippo's; data Shippo cannot take is a
PushError naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from crossdock.connectors.remote_json import PushError
from crossdock.connectors.shippo.mapping import ORDER_STATUS, order_request
from crossdock.model import Address, Customer, Money, Order, OrderLine, OrderStatus, Totals, Weight


def test_a_paid_order_becomes_the_documented_body() -> None:
    body = order_request(ORDER, ORIGIN)
    assert body == EXPECTED
    assert set(body) <= ORDER_CREATE_FIELDS
    for item in body["line_items"]:
        assert set(item) <= LINE_ITEM_FIELDS
        assert all(isinstance(v, str) for k, v in item.items() if k != "quantity")


def test_every_status_has_one_of_shippos() -> None:
    shippo = {"UNKNOWN", "AWAITPAY", "PAID", "REFUNDED", "CANCELLED", "PARTIALLY_FULFILLED", "SHIPPED"}
    assert set(ORDER_STATUS) == set(OrderStatus)
    assert set(ORDER_STATUS.values()) <= shippo
    assert (
        order_request(ORDER.model_copy(update={"status": OrderStatus.READY_TO_SHIP}))["order_status"]
        == "PAID"
    )
    assert (
        order_request(ORDER.model_copy(update={"status": OrderStatus.PENDING}))["order_status"] == "AWAITPAY"
    )


def test_placed_at_is_sent_in_utc_to_the_second() -> None:
    berlin = timezone(timedelta(hours=2))
    order = ORDER.model_copy(update={"placed_at": datetime(2016, 9, 23, 3, 28, 12, 654321, tzinfo=berlin)})
    assert order_request(order)["placed_at"] == "2016-09-23T01:28:12Z"


def test_lines_without_price_or_weight_send_what_they_have() -> None:
    order = ORDER.model_copy(
        update={
            "lines": [OrderLine(title="Sticker", quantity=3)],
            "totals": Totals(),
            "notes": "  ",
            "external_number": None,
            "external_id": "5551234",
        }
    )
    body = order_request(order)
    assert body["line_items"] == [{"title": "Sticker", "quantity": 3}]
    assert body["order_number"] == "5551234"
    for absent in ("weight", "weight_unit", "subtotal_price", "total_price", "total_tax", "shipping_cost",
                   "shipping_cost_currency", "notes", "from_address"):  # fmt: skip
        assert absent not in body
    assert body["currency"] == "USD"


def test_mixed_weight_units_add_up_in_grams() -> None:
    lines = [
        OrderLine(title="Mug", quantity=2, weight=Weight(value="1", unit="lb")),
        OrderLine(title="Tea", quantity=1, weight=Weight(value="250", unit="g")),
    ]
    body = order_request(ORDER.model_copy(update={"lines": lines, "totals": Totals()}))
    assert [(i["weight"], i["weight_unit"]) for i in body["line_items"]] == [("2", "lb"), ("250", "g")]
    # 2 lb = 907.18474 g; weights go up to Shippo's four decimals.
    assert (body["weight"], body["weight_unit"]) == ("1157.1848", "g")


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"shipping_address": None}, "shipping_address", "no shipping address"),
        ({"placed_at": None}, "placed_at", "time the order was placed"),
        ({"external_number": None, "external_id": None, "id": None}, "external_number", "no number"),
        ({"totals": Totals(total=Money.of("-1.00", "USD"))}, "totals.total", "no negative amounts"),
    ],
)
def test_data_shippo_cannot_take_names_the_field(changes: dict[str, Any], field: str, words: str) -> None:
    order = ORDER.model_copy(update=changes)
    with pytest.raises(PushError) as refused:
        order_request(order)
    assert refused.value.field == field
    assert words in refused.value.reason


# -- fixtures ---------------------------------------------------------------------------------------------------------

# Every field of OrderCreateRequest and LineItemBase (goshippo/shippo-python-sdk docs/models/components/
# ordercreaterequest.md, lineitembase.md).
ORDER_CREATE_FIELDS = {
    "placed_at", "to_address", "currency", "notes", "order_number", "order_status", "shipping_cost",
    "shipping_cost_currency", "shipping_method", "subtotal_price", "total_price", "total_tax", "weight",
    "weight_unit", "from_address", "line_items",
}  # fmt: skip
LINE_ITEM_FIELDS = {
    "currency", "manufacture_country", "max_delivery_time", "max_ship_time", "quantity", "sku", "title",
    "total_price", "variant_title", "weight", "weight_unit",
}  # fmt: skip

ORIGIN = {"name": "Shwan Ippotle", "company": "Shippo", "street1": "215 Clayton St.", "city": "San Francisco",
          "state": "CA", "zip": "94117", "country": "US"}  # fmt: skip

# The SDK's example order ("#1068", placed 2016-09-23T01:28:12Z, 0.4 lb, 12.83 USD shipping, 24.93 USD total) as
# a canonical order: two lines of one magazine title weighed in lb.
ORDER = Order(
    id="6a0f1c2e-0000-4000-8000-000000001068",
    status=OrderStatus.PAID,
    currency="USD",
    customer=Customer(name="Mr Hippo", email="mrhippo@shippo.com", phone="+1 555 341 9393"),
    shipping_address=Address(
        first_name="Mr",
        last_name="Hippo",
        line1="965 Mission St #572",
        city="San Francisco",
        subdivision="US-CA",
        postal_code="94103",
        country="US",
    ),
    lines=[
        OrderLine(
            sku="HM-123",
            title="Hippo Magazines",
            quantity=2,
            unit_price=Money.of("6.05", "USD"),
            weight=Weight(value="0.2", unit="lb"),
        ),
    ],
    totals=Totals(
        subtotal=Money.of("12.10", "USD"),
        shipping=Money.of("12.83", "USD"),
        tax=Money.of("0.00", "USD"),
        total=Money.of("24.93", "USD"),
    ),
    external_id="5551068",
    external_number="#1068",
    placed_at=datetime(2016, 9, 23, 1, 28, 12, tzinfo=UTC),
    notes="This customer is a VIP",
)

EXPECTED: dict[str, Any] = {
    "order_number": "#1068",
    "order_status": "PAID",
    "placed_at": "2016-09-23T01:28:12Z",
    "to_address": {
        "name": "Mr Hippo",
        "street1": "965 Mission St #572",
        "city": "San Francisco",
        "state": "CA",
        "zip": "94103",
        "country": "US",
        "phone": "+1 555 341 9393",
        "email": "mrhippo@shippo.com",
    },
    "from_address": ORIGIN,
    "currency": "USD",
    "line_items": [
        {
            "title": "Hippo Magazines",
            "sku": "HM-123",
            "quantity": 2,
            "total_price": "12.10",
            "currency": "USD",
            "weight": "0.4",
            "weight_unit": "lb",
        }
    ],
    "weight": "0.4",
    "weight_unit": "lb",
    "subtotal_price": "12.10",
    "total_price": "24.93",
    "total_tax": "0.00",
    "shipping_cost": "12.83",
    "shipping_cost_currency": "USD",
    "notes": "This customer is a VIP",
}

"""eBay Sell Fulfillment order JSON -> canonical Order, and the createShippingFulfillment body back.

Payloads are shaped like the Order resource of getOrders (developer.ebay.com/api-docs/sell/fulfillment/
resources/order/methods/getOrders, types Order, LineItem, Amount, PricingSummary, ShippingStep). Constants at
the end: the input as eBay sends it and the expected canonical result.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import httpx
import pytest

from crossdock.connectors.ebay import (
    map_order,
    order_status,
    shipping_carrier_code,
    shipping_fulfillment_request,
)
from crossdock.connectors.ebay.mapping import CANCEL_REQUESTED_TAG
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
from crossdock.sandbox.common import SandboxConfig
from crossdock.sandbox.ebay import EbayState, create_app
from tests.connectors.support import changed

S = OrderStatus
API_BASE = "https://api.ebay.com/sell/fulfillment/v1"
SHIP_TO = "fulfillmentStartInstructions.0.shippingStep.shipTo"  # where changed() edits
AT = "fulfillmentStartInstructions[0].shippingStep.shipTo"  # how a problem names it


def problems_of(payload: Any) -> dict[str, str]:
    mapped = map_order(payload)
    assert mapped.value is None
    return {p.field: p.reason for p in mapped.problems}


# -- orders --------------------------------------------------------------------------------------------------


def test_documented_order_maps_to_the_canonical_order() -> None:
    mapped = map_order(ORDER)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER
    assert mapped.external_id == "12-34567-89012"
    assert mapped.external_version == "2024-05-15T08:26:12.000000+00:00"


def test_line_item_cost_is_divided_into_a_unit_price() -> None:
    # lineItemCost is the unit price times the quantity (sel:LineItem).
    mapped = map_order(ORDER)
    assert mapped.value is not None
    assert [line.unit_price for line in mapped.value.lines] == [
        Money.of("59.90", "USD"),
        Money.of("14.50", "USD"),
    ]


@pytest.mark.parametrize(
    ("cost", "currency", "quantity", "unit"),
    [
        ("10.00", "USD", 3, "3.33"),  # 3.333... rounds to the cent
        ("3601", "JPY", 2, "1800"),  # 1800.5 yen: banker's rounding to the even yen
        ("25.001", "KWD", 2, "12.500"),  # three decimals kept, 12.5005 to the even fils
        ("0.05", "EUR", 2, "0.02"),
    ],
)
def test_unit_price_rounds_to_the_currency(cost: str, currency: str, quantity: int, unit: str) -> None:
    payload = changed(ORDER, "lineItems", [{**ORDER["lineItems"][0], "quantity": quantity}])
    payload = changed(payload, "lineItems.0.lineItemCost", {"value": cost, "currency": currency})
    payload = changed(payload, "pricingSummary", {"total": {"value": cost, "currency": currency}})
    mapped = map_order(payload)
    assert mapped.problems == []
    assert mapped.value is not None and mapped.value.lines[0].unit_price == Money.of(unit, currency)


def test_cyrillic_ship_to_on_a_german_order() -> None:
    mapped = map_order(ORDER_EUR_CYRILLIC)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER_EUR_CYRILLIC


def test_japanese_and_arabic_ship_to_kept_exactly() -> None:
    jp = map_order(changed(ORDER, SHIP_TO, SHIP_TO_JAPAN)).value
    ae = map_order(changed(ORDER, SHIP_TO, SHIP_TO_DUBAI)).value
    assert jp is not None and jp.shipping_address is not None
    assert jp.shipping_address.name == "山田花子" and jp.shipping_address.line1 == "千代田1-1"
    assert jp.shipping_address.city == "千代田区" and jp.shipping_address.country == "JP"
    assert ae is not None and ae.shipping_address is not None
    assert ae.shipping_address.name == "فاطمة الصباح" and ae.shipping_address.line1 == "شارع الشيخ زايد 1"
    assert ae.shipping_address.postal_code is None  # the UAE has no postal codes


def test_cancelled_order() -> None:
    mapped = map_order(ORDER_CANCELLED)
    assert mapped.value is not None and mapped.value.status == S.CANCELLED


def test_requested_cancellation_keeps_the_status_and_tags_the_order() -> None:
    mapped = map_order(changed(ORDER, "cancelStatus.cancelState", "IN_PROGRESS"))
    assert mapped.value is not None
    assert mapped.value.status == S.PAID and mapped.value.tags == [CANCEL_REQUESTED_TAG]


def test_missing_optional_fields_are_fine() -> None:
    mapped = map_order(ORDER_MINIMAL)
    assert mapped.problems == []
    assert mapped.value == EXPECTED_ORDER_MINIMAL


def test_order_without_a_shipping_step_has_no_address() -> None:
    mapped = map_order(changed(ORDER, "fulfillmentStartInstructions", []))
    assert mapped.problems == [] and mapped.value is not None and mapped.value.shipping_address is None


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (f"{SHIP_TO}.contactAddress.countryCode", None, f"{AT}.contactAddress.countryCode", "missing"),
        (f"{SHIP_TO}.contactAddress.countryCode", "XX", f"{AT}.contactAddress.countryCode", "ISO"),
        (f"{SHIP_TO}.contactAddress.city", "", f"{AT}.contactAddress.city", "city"),
        (f"{SHIP_TO}.contactAddress", None, f"{AT}.contactAddress", "postal address"),
        ("lineItems.0.quantity", 0, "lineItems[0].quantity", "at least 1"),
        ("lineItems.0.quantity", -2, "lineItems[0].quantity", "at least 1"),
        ("lineItems.0.quantity", "1", "lineItems[0].quantity", "whole number"),
        ("lineItems.0.lineItemCost.value", 59.9, "lineItems[0].lineItemCost.value", "text"),
        ("lineItems.0.lineItemCost.value", "59,90", "lineItems[0].lineItemCost.value", "not a decimal"),
        ("lineItems.0.lineItemCost.currency", "EUR", "lineItems[0].lineItemCost.currency", "order is in USD"),
        ("lineItems.0.lineItemCost", None, "lineItems[0].lineItemCost", "missing"),
        ("lineItems.0.lineItemId", None, "lineItems[0].lineItemId", "missing"),
        ("lineItems", [], "lineItems", "empty"),
        ("lineItems", "all of them", "lineItems", "list"),
        ("lastModifiedDate", None, "lastModifiedDate", "missing"),
        ("orderPaymentStatus", "MAYBE", "orderPaymentStatus", "not an eBay payment status"),
        ("orderFulfillmentStatus", "LOST", "orderFulfillmentStatus", "not an eBay fulfillment status"),
        ("cancelStatus.cancelState", "UNSURE", "cancelStatus.cancelState", "not an eBay cancel state"),
        ("pricingSummary.total.currency", "DOLLARS", "pricingSummary.total.currency", "ISO 4217"),
        ("orderId", None, "orderId", "missing"),
    ],
)
def test_unmappable_fields_are_problems_naming_the_remote_field(
    path: str, value: Any, field: str, words: str
) -> None:
    problems = problems_of(changed(ORDER, path, value))
    assert field in problems, problems
    assert words in problems[field]


@pytest.mark.parametrize("payload", [None, [], "12-34567-89012", 1.5, {"orders": [{"orderId": "1"}]}])
def test_a_payload_that_is_not_an_order_is_a_problem(payload: Any) -> None:
    mapped = map_order(payload)
    assert mapped.value is None and mapped.problems
    assert all(p.field != INTERNAL for p in mapped.problems)


# -- status ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payment", "fulfillment", "cancel", "expected"),
    [
        ("PAID", "NOT_STARTED", "NONE_REQUESTED", S.PAID),
        ("PAID", "IN_PROGRESS", "NONE_REQUESTED", S.PARTIALLY_SHIPPED),
        ("PAID", "FULFILLED", "NONE_REQUESTED", S.SHIPPED),
        ("PAID", None, None, S.PAID),
        ("PARTIALLY_REFUNDED", "FULFILLED", "NONE_REQUESTED", S.SHIPPED),
        ("PENDING", "NOT_STARTED", "NONE_REQUESTED", S.PENDING),
        ("FAILED", "NOT_STARTED", "NONE_REQUESTED", S.PENDING),
        ("FULLY_REFUNDED", "FULFILLED", "NONE_REQUESTED", S.REFUNDED),
        ("FULLY_REFUNDED", "NOT_STARTED", "CANCELED", S.CANCELLED),
        ("PAID", "NOT_STARTED", "IN_PROGRESS", S.PAID),
    ],
)
def test_status_mapping(
    payment: str, fulfillment: str | None, cancel: str | None, expected: OrderStatus
) -> None:
    assert order_status(payment, fulfillment, cancel) == expected
    path_to(S.PENDING, expected)


# -- createShippingFulfillment --------------------------------------------------------------------------------


def fulfillment(
    *lines: tuple[str | None, int], carrier: str | None = "usps", tracking: str | None = None
) -> Fulfillment:
    return Fulfillment(
        order_id=uuid4(),
        lines=[FulfillmentLine(line_external_id=i, quantity=q) for i, q in lines],
        carrier=carrier,
        tracking_number=tracking,
    )


def test_shipping_fulfillment_request_body() -> None:
    shipped = datetime(2024, 5, 16, 15, 9, 2, 768000, tzinfo=timezone(timedelta(hours=-4)))
    body = shipping_fulfillment_request(
        fulfillment(("10022882297312", 1), ("10022882297313", 2), tracking="9400111899223197428490"), shipped
    )
    assert body == EXPECTED_SHIPPING_FULFILLMENT


def test_same_line_twice_is_one_entry() -> None:
    body = shipping_fulfillment_request(fulfillment(("10022882297313", 1), ("10022882297313", 1)))
    assert body == {"lineItems": [{"lineItemId": "10022882297313", "quantity": 2}]}


def test_tracking_number_without_carrier_is_refused() -> None:
    with pytest.raises(PushError) as caught:
        shipping_fulfillment_request(fulfillment(("1", 1), carrier=None, tracking="1Z999AA10123456784"))
    assert caught.value.field == "carrier"


def test_line_without_external_id_is_refused() -> None:
    with pytest.raises(PushError, match="lineItemId"):
        shipping_fulfillment_request(fulfillment((None, 1)))


def test_naive_shipped_date_is_refused() -> None:
    with pytest.raises(PushError, match="time zone"):
        shipping_fulfillment_request(fulfillment(("1", 1)), datetime(2024, 5, 16, 12, 0))


@pytest.mark.parametrize(
    ("carrier", "code"),
    [
        ("ups", "UPS"),
        ("USPS", "USPS"),
        ("FedEx", "FedEx"),
        ("dhl_express", "DHLEXPRESS"),
        ("Deutsche Post", "DeutschePost"),
        ("royal_mail", "RoyalMail"),
        ("RoyalMail", "RoyalMail"),
        ("postnl", "PostNL"),
        ("La Poste", "LAPOSTE"),
        ("Speedy Couriers Ltd", "Other"),
    ],
)
def test_shipping_carrier_codes(carrier: str, code: str) -> None:
    assert shipping_carrier_code(carrier) == code


async def test_shipping_fulfillment_is_accepted_by_the_sandbox_and_the_order_maps_shipped() -> None:
    app = create_app(SandboxConfig(token="ebay-user-token", fast_limits=True))
    headers = {"Authorization": "Bearer ebay-user-token"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://api.ebay.com") as c:
        created = (await c.post("/_sandbox/orders", json={"country": "UA", "line_items": 3})).json()[
            "orders"
        ][0]
        order = map_order(created)
        assert order.value is not None and order.value.status == S.PAID
        lines = [(line.external_id, line.quantity) for line in order.value.lines]
        body = shipping_fulfillment_request(
            fulfillment(*lines, carrier="usps", tracking="9400111899223197428490"), datetime.now(UTC)
        )
        response = await c.post(
            f"/sell/fulfillment/v1/order/{order.external_id}/shipping_fulfillment", headers=headers, json=body
        )
        assert response.status_code == 201, response.text
        after = (await c.get(f"/sell/fulfillment/v1/order/{order.external_id}", headers=headers)).json()
    shipped = map_order(after)
    assert shipped.value is not None and shipped.value.status == S.SHIPPED
    assert shipped.external_version is not None and order.external_version is not None
    assert shipped.external_version > order.external_version


# -- the sandbox and the mapper agree ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "marketplace"), [(1, "EBAY_US"), (2, "EBAY_DE"), (3, "EBAY_GB"), (4, "EBAY_PL")]
)
def test_every_sandbox_order_maps_without_problems(seed: int, marketplace: str) -> None:
    state = EbayState(SandboxConfig(seed=seed, orders=150, extra={"marketplace_id": marketplace}))
    statuses: set[OrderStatus] = set()
    for ebay_order in state.all_orders():
        payload = ebay_order.to_json(API_BASE)
        mapped = map_order(payload)
        assert mapped.problems == [], (ebay_order.order_id, mapped.problems)
        assert mapped.value is not None
        statuses.add(mapped.value.status)
        subtotal = payload["pricingSummary"]["priceSubtotal"]
        assert mapped.value.lines_total == Money.of(subtotal["value"], subtotal["currency"])
    assert {S.PAID, S.SHIPPED} <= statuses


async def test_a_sandbox_getorders_page_maps_without_problems() -> None:
    app = create_app(SandboxConfig(seed=7, orders=60, token="ebay-user-token", fast_limits=True))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://api.ebay.com") as c:
        page = await c.get(
            "/sell/fulfillment/v1/order",
            params={"limit": "200"},
            headers={"Authorization": "Bearer ebay-user-token"},
        )
    orders = page.json()["orders"]
    assert orders
    assert all(map_order(order).problems == [] for order in orders)


# -- fixtures: eBay JSON in, canonical out --------------------------------------------------------------------

ORDER: dict[str, Any] = {
    "orderId": "12-34567-89012",
    "legacyOrderId": "110188709461-1234567890123",
    "creationDate": "2024-05-15T08:25:43.511Z",
    "lastModifiedDate": "2024-05-15T08:26:12.000Z",
    "orderFulfillmentStatus": "NOT_STARTED",
    "orderPaymentStatus": "PAID",
    "sellerId": "example_seller",
    "buyer": {
        "username": "ada_l",
        "taxAddress": {
            "city": "New York",
            "stateOrProvince": "NY",
            "postalCode": "10118",
            "countryCode": "US",
        },
    },
    "pricingSummary": {
        "priceSubtotal": {"value": "88.90", "currency": "USD"},
        "deliveryCost": {"value": "6.50", "currency": "USD"},
        "priceDiscount": {"value": "-5.00", "currency": "USD"},
        "total": {"value": "90.40", "currency": "USD"},
    },
    "cancelStatus": {"cancelState": "NONE_REQUESTED", "cancelRequests": []},
    "paymentSummary": {
        "totalDueSeller": {"value": "90.40", "currency": "USD"},
        "refunds": [],
        "payments": [
            {
                "paymentMethod": "EBAY",
                "paymentReferenceId": "1234567890123P",
                "paymentDate": "2024-05-15T08:25:50.000Z",
                "amount": {"value": "90.40", "currency": "USD"},
                "paymentStatus": "PAID",
            }
        ],
    },
    "fulfillmentStartInstructions": [
        {
            "fulfillmentInstructionsType": "SHIP_TO",
            "minEstimatedDeliveryDate": "2024-05-18T07:00:00.000Z",
            "maxEstimatedDeliveryDate": "2024-05-22T07:00:00.000Z",
            "ebaySupportedFulfillment": False,
            "shippingStep": {
                "shipTo": {
                    "fullName": "Ada Lovelace",
                    "contactAddress": {
                        "addressLine1": "350 Fifth Avenue",
                        "addressLine2": "Suite 200",
                        "city": "New York",
                        "stateOrProvince": "NY",
                        "postalCode": "10118",
                        "countryCode": "US",
                    },
                    "primaryPhone": {"phoneNumber": "2125550147"},
                    "email": "3b2f6a1c9e@members.ebay.com",
                },
                "shippingCarrierCode": "USPS",
                "shippingServiceCode": "USPSPriority",
            },
        }
    ],
    "fulfillmentHrefs": [],
    "lineItems": [
        {
            "lineItemId": "10022882297312",
            "legacyItemId": "110188709461",
            "sku": "HOODIE-GRY-S",
            "title": "Heavyweight Hoodie - Grey / S",
            "lineItemCost": {"value": "59.90", "currency": "USD"},
            "quantity": 1,
            "soldFormat": "FIXED_PRICE",
            "listingMarketplaceId": "EBAY_US",
            "purchaseMarketplaceId": "EBAY_US",
            "lineItemFulfillmentStatus": "NOT_STARTED",
            "total": {"value": "66.40", "currency": "USD"},
            "deliveryCost": {"shippingCost": {"value": "6.50", "currency": "USD"}},
            "appliedPromotions": [],
            "taxes": [],
            "properties": {"buyerProtection": True},
        },
        {
            "lineItemId": "10022882297313",
            "legacyItemId": "110188709462",
            "sku": "MUG-CERAMIC",
            "title": "Ceramic Mug 350 ml",
            "lineItemCost": {"value": "29.00", "currency": "USD"},
            "quantity": 2,
            "soldFormat": "FIXED_PRICE",
            "lineItemFulfillmentStatus": "NOT_STARTED",
            "total": {"value": "29.00", "currency": "USD"},
            "deliveryCost": {"shippingCost": {"value": "0.00", "currency": "USD"}},
            "appliedPromotions": [],
            "taxes": [],
        },
    ],
    "salesRecordReference": "1001",
    "totalFeeBasisAmount": {"value": "90.40", "currency": "USD"},
    "totalMarketplaceFee": {"value": "11.98", "currency": "USD"},
}
EXPECTED_ORDER = Order(
    status=S.PAID,
    currency="USD",
    customer=Customer(name="Ada Lovelace", email="3b2f6a1c9e@members.ebay.com", phone="2125550147"),
    shipping_address=Address(
        last_name="Ada Lovelace",
        line1="350 Fifth Avenue",
        line2="Suite 200",
        city="New York",
        postal_code="10118",
        subdivision="NY",
        country="US",
        phone="+12125550147",
        email="3b2f6a1c9e@members.ebay.com",
    ),
    lines=[
        OrderLine(
            sku="HOODIE-GRY-S",
            title="Heavyweight Hoodie - Grey / S",
            quantity=1,
            unit_price=Money.of("59.90", "USD"),
            external_id="10022882297312",
        ),
        OrderLine(
            sku="MUG-CERAMIC",
            title="Ceramic Mug 350 ml",
            quantity=2,
            unit_price=Money.of("14.50", "USD"),
            external_id="10022882297313",
        ),
    ],
    totals=Totals(
        subtotal=Money.of("88.90", "USD"),
        shipping=Money.of("6.50", "USD"),
        discount=Money.of("5.00", "USD"),
        total=Money.of("90.40", "USD"),
    ),
    external_id="12-34567-89012",
    external_number="12-34567-89012",
    placed_at=datetime(2024, 5, 15, 8, 25, 43, 511000, tzinfo=UTC),
)

# An EBAY_DE order shipped to Moscow: euros, Cyrillic address, a buyer note.
ORDER_EUR_CYRILLIC: dict[str, Any] = {
    **ORDER,
    "orderId": "07-12345-67890",
    "orderFulfillmentStatus": "FULFILLED",
    "pricingSummary": {
        "priceSubtotal": {"value": "109.80", "currency": "EUR"},
        "deliveryCost": {"value": "14.00", "currency": "EUR"},
        "tax": {"value": "0.00", "currency": "EUR"},
        "total": {"value": "123.80", "currency": "EUR"},
    },
    "buyerCheckoutNotes": "Позвоните за час до доставки",
    "fulfillmentStartInstructions": [
        {
            "fulfillmentInstructionsType": "SHIP_TO",
            "shippingStep": {
                "shipTo": {
                    "fullName": "Иван Петров",
                    "companyName": "ООО «Северный ветер»",  # noqa: RUF001 (Cyrillic on purpose)
                    "contactAddress": {
                        "addressLine1": "ул. Тверская, д. 7",
                        "addressLine2": "кв. 12",
                        "city": "Москва",
                        "stateOrProvince": "Москва",
                        "postalCode": "125009",
                        "countryCode": "RU",
                    },
                    "primaryPhone": {"phoneNumber": "+74951234567"},
                },
                "shippingCarrierCode": "DHL",
                "shippingServiceCode": "DE_DHLPaket",
            },
        }
    ],
    "lineItems": [
        {
            "lineItemId": "20033993308423",
            "sku": "SNEAKER-42",
            "title": "Canvas Sneaker - EU 42",
            "lineItemCost": {"value": "109.80", "currency": "EUR"},
            "quantity": 2,
            "lineItemFulfillmentStatus": "FULFILLED",
        }
    ],
}
EXPECTED_ORDER_EUR_CYRILLIC = Order(
    status=S.SHIPPED,
    currency="EUR",
    customer=Customer(name="Иван Петров", phone="+74951234567"),
    shipping_address=Address(
        last_name="Иван Петров",
        company="ООО «Северный ветер»",  # noqa: RUF001 (Cyrillic on purpose)
        line1="ул. Тверская, д. 7",
        line2="кв. 12",
        city="Москва",
        postal_code="125009",
        subdivision="Москва",
        country="RU",
        phone="+74951234567",
    ),
    lines=[
        OrderLine(
            sku="SNEAKER-42",
            title="Canvas Sneaker - EU 42",
            quantity=2,
            unit_price=Money.of("54.90", "EUR"),
            external_id="20033993308423",
        )
    ],
    totals=Totals(
        subtotal=Money.of("109.80", "EUR"),
        shipping=Money.of("14.00", "EUR"),
        tax=Money.of("0.00", "EUR"),
        total=Money.of("123.80", "EUR"),
    ),
    external_id="07-12345-67890",
    external_number="07-12345-67890",
    placed_at=datetime(2024, 5, 15, 8, 25, 43, 511000, tzinfo=UTC),
    notes="Позвоните за час до доставки",
)

SHIP_TO_JAPAN: dict[str, Any] = {
    "fullName": "山田花子",
    "contactAddress": {
        "addressLine1": "千代田1-1",
        "city": "千代田区",
        "stateOrProvince": "東京都",
        "postalCode": "100-0001",
        "countryCode": "JP",
    },
}
SHIP_TO_DUBAI: dict[str, Any] = {
    "fullName": "فاطمة الصباح",
    "contactAddress": {"addressLine1": "شارع الشيخ زايد 1", "city": "دبي", "countryCode": "AE"},
    "primaryPhone": {"phoneNumber": "+971501234567"},
}

ORDER_CANCELLED: dict[str, Any] = {
    **ORDER,
    "orderPaymentStatus": "FULLY_REFUNDED",
    "cancelStatus": {
        "cancelState": "CANCELED",
        "cancelRequests": [
            {
                "cancelCompletedDate": "2024-05-16T10:00:00.000Z",
                "cancelInitiator": "Buyer",
                "cancelReason": "ORDER_PLACED_BY_MISTAKE",
                "cancelRequestedDate": "2024-05-15T20:00:00.000Z",
                "cancelRequestId": "5000012345",
                "cancelRequestState": "COMPLETED",
            }
        ],
    },
}

# The least an order can carry: no buyer, no pricing summary beyond the total, no phone, e-mail, postal code,
# region or second address line, no SKU.
ORDER_MINIMAL: dict[str, Any] = {
    "orderId": "01-00000-00001",
    "lastModifiedDate": "2024-05-15T08:26:12.000Z",
    "orderPaymentStatus": "PENDING",
    "pricingSummary": {"total": {"value": "12.95", "currency": "GBP"}},
    "fulfillmentStartInstructions": [
        {
            "shippingStep": {
                "shipTo": {
                    "fullName": "Sam O'Neil",
                    "contactAddress": {"addressLine1": "1 Long Lane", "city": "Dublin", "countryCode": "IE"},
                }
            }
        }
    ],
    "lineItems": [
        {
            "lineItemId": "30044004419534",
            "title": "Dot-Grid Notebook A5",
            "lineItemCost": {"value": "12.95", "currency": "GBP"},
            "quantity": 1,
        }
    ],
}
EXPECTED_ORDER_MINIMAL = Order(
    status=S.PENDING,
    currency="GBP",
    customer=Customer(name="Sam O'Neil"),
    shipping_address=Address(last_name="Sam O'Neil", line1="1 Long Lane", city="Dublin", country="IE"),
    lines=[
        OrderLine(
            title="Dot-Grid Notebook A5",
            quantity=1,
            unit_price=Money.of("12.95", "GBP"),
            external_id="30044004419534",
        )
    ],
    totals=Totals(total=Money.of("12.95", "GBP")),
    external_id="01-00000-00001",
    external_number="01-00000-00001",
)

# POST /order/{orderId}/shipping_fulfillment (sel:ShippingFulfillmentDetails); shippedDate in UTC, milliseconds.
EXPECTED_SHIPPING_FULFILLMENT: dict[str, Any] = {
    "lineItems": [
        {"lineItemId": "10022882297312", "quantity": 1},
        {"lineItemId": "10022882297313", "quantity": 2},
    ],
    "shippedDate": "2024-05-16T19:09:02.768Z",
    "shippingCarrierCode": "USPS",
    "trackingNumber": "9400111899223197428490",
}

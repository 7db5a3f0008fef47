"""MyParcel.com mapping on payloads shaped as documented: the POST /shipments document crossdock sends, shipment
documents with their included status and files (MyParcelCOM/docs resources/shipments, retrieve-shipment-statuses,
resources/files; api-specification schemas/shipments/Shipment.json), status histories, JSON:API errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from crossdock.connectors.myparcelcom.mapping import (
    CHANNEL,
    REGISTER_AT,
    TRACKING,
    address_attributes,
    errors_text,
    map_statuses,
    pointed_fields,
    read_shipment,
    read_shipments,
    reference_for,
    sender_setting,
    shipment_request,
)
from crossdock.connectors.remote_json import PushError
from crossdock.model import (
    Address,
    Customer,
    Dimensions,
    Length,
    Money,
    Order,
    OrderLine,
    Parcel,
    Shipment,
    Totals,
    TrackingStatus,
    Weight,
)
from tests.connectors.support import changed

ORDER_ID = "6f1c2b8e-8c57-4a48-9d7e-2f1f0f3c9a10"
SHOP_ID = "35eddf50-1d84-47a3-8479-6bfda729cd99"
SENDER = {"street_1": "Baker Street", "street_number": 221, "postal_code": "NW1 6XE", "city": "London",
          "country_code": "GB", "company": "Acme"}  # fmt: skip
RETURNS = {**SENDER, "street_1": "Returns Lane"}


def an_order(**changes: Any) -> Order:
    fields: dict[str, Any] = {
        "id": ORDER_ID,
        "currency": "EUR",
        "external_number": "#1001",
        "customer": Customer(name="Sherlock Holmes", email="s.holmes@example.com"),
        "shipping_address": Address(
            line1="Fifth Avenue 890",
            line2="Manhattan",
            line3="Floor 3",
            city="New York",
            postal_code="10020",
            subdivision="NY",
            country="US",
            company="Holmes Investigations",
        ),
        "lines": [
            OrderLine(
                sku="OP-X",
                title="OnePlus X",
                quantity=2,
                unit_price=Money.of("9.95", "EUR"),
                weight=Weight(value="135", unit="g"),
            ),
            OrderLine(title="Case", quantity=1, unit_price=Money.of("5", "EUR")),
            OrderLine(title="Warranty", quantity=1, unit_price=Money.of("3", "EUR"), requires_shipping=False),
        ],
        "totals": Totals(total=Money.of("27.90", "EUR")),
    }
    fields.update(changes)
    return Order(**fields)


def a_shipment(weight: str = "5", unit: str = "kg", dimensions: bool = True) -> Shipment:
    dims = Dimensions(length=Length(value="50", unit="cm"), width=Length(value="30", unit="cm"),
                      height=Length(value="15", unit="cm")) if dimensions else None  # fmt: skip
    return Shipment(
        order_id=ORDER_ID, parcels=[Parcel(weight=Weight(value=weight, unit=unit), dimensions=dims)]
    )


def request(order: Order | None = None, shipment: Shipment | None = None, **kwargs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "sender": SENDER,
        "return_address": RETURNS,
        "shop_id": SHOP_ID,
        "service_code": "ups-standard",
        "idempotency_key": "crossdock-label-1",
        **kwargs,
    }
    return shipment_request(shipment or a_shipment(), order or an_order(), **values)


# -- requests --------------------------------------------------------------------------------------------------


def test_the_shipment_document_for_an_order() -> None:
    assert request() == EXPECTED_REQUEST


def test_a_parcel_without_dimensions_sends_its_weight_alone_in_whole_grams_rounded_up() -> None:
    body = request(shipment=a_shipment("2.2", "lb", dimensions=False))
    assert body["data"]["attributes"]["physical_properties"] == {"weight": 998}  # 997.9032 g


def test_without_a_service_no_service_code_is_sent() -> None:
    assert request(service_code=None)["meta"] == {"label": {"mime_type": "application/pdf"}}


def test_what_cannot_be_sent_names_the_canonical_field() -> None:
    with pytest.raises(PushError) as no_address:
        request(order=an_order(shipping_address=None))
    assert no_address.value.field == "order.shipping_address"
    two = Shipment(order_id=ORDER_ID, parcels=[Parcel(weight=Weight.grams(100))] * 2)
    with pytest.raises(PushError, match="one parcel per shipment and this one has 2"):
        request(shipment=two)
    nameless = an_order(
        customer=Customer(), shipping_address=Address(line1="Main 1", city="Paris", country="FR")
    )
    with pytest.raises(PushError) as no_name:
        request(order=nameless)
    assert no_name.value.field == "order.shipping_address.last_name"


def test_recipient_names_come_from_the_address_else_the_customer() -> None:
    address = Address(first_name="Irene", last_name="Adler", line1="Main 1", city="Paris", country="FR")
    named = address_attributes(address, name="Someone Else")
    assert (named["first_name"], named["last_name"]) == ("Irene", "Adler")
    plain = Address(line1="Main 1", city="Paris", country="FR")
    assert address_attributes(plain, name="Jean Paul Sartre")["first_name"] == "Jean Paul"
    assert address_attributes(plain, name="Jean Paul Sartre")["last_name"] == "Sartre"
    # Both names are required; a one-word name fills both.
    one = address_attributes(plain, name="Madonna")
    assert (one["first_name"], one["last_name"]) == ("Madonna", "Madonna")
    # A subdivision that is no ISO code is sent as written.
    assert (
        address_attributes(plain.model_copy(update={"subdivision": "Île-de-France"}))["state_code"]
        == "Île-de-France"
    )


def test_the_reference_is_the_key_or_its_hash_when_too_long() -> None:
    assert reference_for("crossdock-label-1") == "crossdock-label-1"
    long = reference_for("x" * 256)
    assert long.startswith("sha256:") and len(long) == 71
    assert long == reference_for("x" * 256) != reference_for("x" * 257)
    assert reference_for("y" * 255) == "y" * 255


def test_the_sender_setting_takes_an_object_or_its_json_and_says_what_is_missing() -> None:
    assert sender_setting(None) is None and sender_setting("  ") is None
    assert sender_setting('{"street_1": "A", "city": "B", "country_code": "GB", "company": ""}') == {
        "street_1": "A", "city": "B", "country_code": "GB",
    }  # fmt: skip
    with pytest.raises(ValueError, match="lacks street_1, country_code"):
        sender_setting({"city": "London"})
    with pytest.raises(ValueError, match="must be an object"):
        sender_setting("[1]")


# -- answers ---------------------------------------------------------------------------------------------------


def test_a_registered_shipment_document_is_read_with_its_status_label_and_price() -> None:
    read = read_shipment(REGISTERED)
    assert read.problems == []
    assert read.id == "7b808eee-bf1c-40cd-98f2-3c335a06417e"
    assert read.status == "shipment-registered"
    assert (read.tracking_code, read.tracking_url) == (
        "3SABCD0123456789",
        "https://tracker.carrier.com/3SABCD0123456789",
    )
    assert read.customer_reference == "crossdock-label-1"
    assert read.price == Money.of("9.95", "EUR")
    assert read.service_id == "175a235f-aff5-4e44-87b5-3657b75c1deb"
    # PDF is preferred to PNG; files that are not labels are skipped.
    assert read.label is not None and (read.label.file_id, read.label.mime_type) == (
        "0f621db6-d239-4ae9-b85d-8e97469b10ce", "application/pdf",
    )  # fmt: skip


def test_a_png_only_label_and_a_document_without_includes() -> None:
    png = changed(
        REGISTERED, "included.2.attributes.formats", [{"extension": "png", "mime_type": "image/png"}]
    )
    read = read_shipment(png)
    assert read.label is not None and read.label.mime_type == "image/png"
    bare = read_shipment({"data": REGISTERED["data"]})
    assert bare.id and bare.status is None and bare.label is None and bare.problems == []


def test_a_failed_registration_carries_the_errors_in_its_words() -> None:
    failed = changed(REGISTERED, "included.1.attributes.code", "shipment-registration-failed")
    failed = changed(failed, "included.0.attributes.errors", [
        {"status": "422", "code": "13002", "title": "Carrier API Error", "detail": "Postal code is invalid.",
         "source": {"pointer": "/data/attributes/recipient_address/postal_code"}},
    ])  # fmt: skip
    read = read_shipment(failed)
    assert read.status == "shipment-registration-failed"
    assert read.status_errors == (
        "Carrier API Error: Postal code is invalid. (/data/attributes/recipient_address/postal_code)"
    )


def test_unreadable_documents_are_problems_not_exceptions() -> None:
    unreadable: list[Any] = [None, "x", {"data": 3}, {"data": {"attributes": []}}]
    for document in unreadable:
        read = read_shipment(document)
        assert read.problems and read.id is None
    priced = read_shipment(changed(REGISTERED, "data.attributes.price", {"amount": "a lot"}))
    assert [p.field for p in priced.problems] == ["data.attributes.price"]
    assert read_shipments({"data": "nope"}) == []
    assert [s.id for s in read_shipments({"data": [REGISTERED["data"], 7]})] == [REGISTERED["data"]["id"]]


def test_status_history_becomes_events_oldest_first() -> None:
    read = map_statuses(HISTORY)
    assert read.problems == []
    assert [(e.raw_status, e.status, e.occurred_at, e.description) for e in read.events] == [
        ("shipment-concept", TrackingStatus.PRE_TRANSIT, at(1504801719),
         "The shipment was created, but has not been registered with the carrier (yet)."),
        ("shipment-registered", TrackingStatus.PRE_TRANSIT, at(1504801800), "Label created"),
        ("shipment-at-sorting", TrackingStatus.IN_TRANSIT, at(1504888200), "Sorted at hub Utrecht"),
        ("shipment-delivered", TrackingStatus.DELIVERED, at(1504974600), "Delivered at the door"),
    ]  # fmt: skip


def test_every_documented_status_code_has_a_tracking_status() -> None:
    documented = {
        "shipment-processing", "shipment-concept", "shipment-registered", "shipment-received-by-carrier",
        "shipment-at-sorting", "shipment-with-courier", "shipment-delivered", "shipment-failed",
        "shipment-created-without-tracking", "shipment-registration-failed", "shipment-returned-to-sender",
        "shipment-voided",
    }  # fmt: skip
    assert set(TRACKING) == documented
    assert TrackingStatus.UNKNOWN not in TRACKING.values()


def test_an_unknown_code_is_unknown_with_the_code_kept_and_unreadable_statuses_are_named() -> None:
    document: Any = changed(HISTORY, "included.0.attributes.code", "shipment-lost-in-space")
    document["data"].append(
        {
            "type": "shipment-statuses",
            "id": "s-x",
            "attributes": {"created_at": 1504974700},
            "relationships": {"status": {"data": {"type": "statuses", "id": "not-included"}}},
        }
    )
    document["data"].append({"type": "shipment-statuses", "id": "s-y", "attributes": {},
                             "relationships": {"status": {"data": {"type": "statuses", "id": "st-sorting"}}}})  # fmt: skip
    read = map_statuses(document)
    unknown = [e for e in read.events if e.raw_status == "shipment-lost-in-space"]
    assert [e.status for e in unknown] == [TrackingStatus.UNKNOWN]
    assert [p.field for p in read.problems] == [
        "data[4].relationships.status",
        "data[5].attributes.created_at",
    ]
    assert map_statuses(None).problems and map_statuses({"data": None}).problems


def test_json_api_errors_and_the_fields_their_pointers_name() -> None:
    errors = [
        {"status": "422", "code": "10003", "title": "Invalid JSON Schema", "detail": "The property city is required.",
         "source": {"pointer": "/data/attributes/recipient_address/city"}},
        {"title": "Unprocessable entity", "detail": "The shop could not be found.",
         "source": {"pointer": "/data/relationships/shop/data/id"}},
        "junk",
    ]  # fmt: skip
    text = errors_text(errors)
    assert text == (
        "Invalid JSON Schema: The property city is required. (/data/attributes/recipient_address/city); "
        "Unprocessable entity: The shop could not be found. (/data/relationships/shop/data/id)"
    )
    assert pointed_fields(text) == ["the order's shipping address", "the connection's shop_id setting"]
    assert pointed_fields("nothing pointed at") == []


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


EXPECTED_REQUEST = {
    "data": {
        "type": "shipments",
        "attributes": {
            "recipient_address": {
                "street_1": "Fifth Avenue 890",
                "street_2": "Manhattan, Floor 3",
                "postal_code": "10020",
                "city": "New York",
                "state_code": "NY",
                "country_code": "US",
                "first_name": "Sherlock",
                "last_name": "Holmes",
                "company": "Holmes Investigations",
                "email": "s.holmes@example.com",
            },
            "sender_address": SENDER,
            "return_address": RETURNS,
            "physical_properties": {"weight": 5000, "length": 500, "width": 300, "height": 150},
            "description": "2 x OnePlus X, 1 x Case",
            "customer_reference": "crossdock-label-1",
            "channel": CHANNEL,
            "items": [
                {
                    "description": "OnePlus X",
                    "quantity": 2,
                    "sku": "OP-X",
                    "item_value": {"amount": 995, "currency": "EUR"},
                    "item_weight": 135,
                    "item_weight_unit": "g",
                },
                {"description": "Case", "quantity": 1, "item_value": {"amount": 500, "currency": "EUR"}},
            ],
            "register_at": REGISTER_AT,
            "total_value": {"amount": 2790, "currency": "EUR"},
            "tags": ["#1001"],
        },
        "relationships": {"shop": {"data": {"type": "shops", "id": SHOP_ID}}},
    },
    "meta": {"label": {"mime_type": "application/pdf"}, "service_code": "ups-standard"},
}

# GET /shipments/{id}?include=shipment_status.status,files, shaped as the docs' shipment resource (resources/
# shipments: attributes, relationships shop/service/contract/shipment_status/files, links) with the included
# shipment-statuses (carrier_statuses, errors, created_at; relationship status), statuses (code, level, name,
# description) and files (document_type, formats) resources.
REGISTERED: dict[str, Any] = {
    "data": {
        "type": "shipments",
        "id": "7b808eee-bf1c-40cd-98f2-3c335a06417e",
        "attributes": {
            "recipient_address": {
                "street_1": "Fifth Avenue",
                "street_number": 890,
                "postal_code": "10020",
                "city": "New York",
                "country_code": "US",
                "first_name": "Tony",
                "last_name": "Stark",
            },
            "description": "Order #8008135",
            "customer_reference": "crossdock-label-1",
            "channel": "crossdock-api",
            "price": {"amount": 995, "currency": "EUR"},
            "barcode": "3SABCD0123456789",
            "tracking_code": "3SABCD0123456789",
            "tracking_url": "https://tracker.carrier.com/3SABCD0123456789",
            "physical_properties": {
                "height": 150,
                "width": 300,
                "length": 500,
                "volume": 22.5,
                "weight": 5000,
            },
            "register_at": 1504801719,
            "created_at": 1504801719,
            "updated_at": 1504801719,
        },
        "relationships": {
            "service": {"data": {"type": "services", "id": "175a235f-aff5-4e44-87b5-3657b75c1deb"}},
            "contract": {"data": {"type": "contracts", "id": "2cb32706-5762-4b96-9212-327e6afaeeff"}},
            "shop": {"data": {"type": "shops", "id": SHOP_ID}},
            "shipment_status": {
                "data": {"type": "shipment-statuses", "id": "9e6d8dba-7c45-4351-a9fc-b55a0cbafbad"}
            },
            "files": {
                "data": [
                    {"type": "files", "id": "a1b2c3d4-0000-4000-8000-000000000001"},
                    {"type": "files", "id": "0f621db6-d239-4ae9-b85d-8e97469b10ce"},
                ]
            },
        },
        "links": {"self": "https://sandbox-api.myparcel.com/shipments/7b808eee-bf1c-40cd-98f2-3c335a06417e"},
    },
    "included": [
        {
            "type": "shipment-statuses",
            "id": "9e6d8dba-7c45-4351-a9fc-b55a0cbafbad",
            "attributes": {"carrier_statuses": [], "errors": [], "created_at": 1504801800},
            "relationships": {"status": {"data": {"type": "statuses", "id": "st-registered"}}},
        },
        {
            "type": "statuses",
            "id": "st-registered",
            "attributes": {
                "code": "shipment-registered",
                "resource_type": "shipments",
                "level": "in-progress",
                "name": "Registered",
                "description": "The shipment was registered with the carrier.",
            },
        },
        {
            "type": "files",
            "id": "0f621db6-d239-4ae9-b85d-8e97469b10ce",
            "attributes": {
                "document_type": "label",
                "formats": [
                    {"extension": "png", "mime_type": "image/png"},
                    {"extension": "pdf", "mime_type": "application/pdf"},
                ],
            },
        },
        {
            "type": "files",
            "id": "a1b2c3d4-0000-4000-8000-000000000001",
            "attributes": {
                "document_type": "invoice",
                "formats": [{"extension": "pdf", "mime_type": "application/pdf"}],
            },
        },
    ],
}

# GET /shipments/{id}/statuses?include=status, newest first, with the carrier's own status in the current
# specification's `carrier_statuses` and in the older documented flat attributes (carrier_status_description,
# carrier_timestamp).
HISTORY: dict[str, Any] = {
    "data": [
        {"type": "shipment-statuses", "id": "s-4",
         "attributes": {"carrier_statuses": [{"code": "DLV", "description": "Delivered at the door",
                                              "assigned_at": 1504974600}],
                        "errors": [], "created_at": 1504974660},
         "relationships": {"status": {"data": {"type": "statuses", "id": "st-delivered"}}}},
        {"type": "shipment-statuses", "id": "s-3",
         "attributes": {"carrier_status_code": "SRT", "carrier_status_description": "Sorted at hub Utrecht",
                        "carrier_timestamp": 1504888200, "created_at": 1504888260},
         "relationships": {"status": {"data": {"type": "statuses", "id": "st-sorting"}}}},
        {"type": "shipment-statuses", "id": "s-2",
         "attributes": {"carrier_statuses": [{"code": "REG", "description": "Label created",
                                              "assigned_at": 1504801800}], "created_at": 1504801800},
         "relationships": {"status": {"data": {"type": "statuses", "id": "st-registered"}}}},
        {"type": "shipment-statuses", "id": "s-1",
         "attributes": {"carrier_statuses": [], "errors": [], "created_at": 1504801719},
         "relationships": {"status": {"data": {"type": "statuses", "id": "st-concept"}}}},
    ],
    "included": [
        {"type": "statuses", "id": "st-delivered",
         "attributes": {"code": "shipment-delivered", "level": "success", "name": "Delivered",
                        "description": "The shipment was delivered successfully."}},
        {"type": "statuses", "id": "st-sorting",
         "attributes": {"code": "shipment-at-sorting", "level": "in-progress", "name": "At sorting",
                        "description": "The shipment is in the sorting process of the carrier."}},
        {"type": "statuses", "id": "st-registered",
         "attributes": {"code": "shipment-registered", "level": "in-progress", "name": "Registered",
                        "description": "The shipment was registered with the carrier."}},
        {"type": "statuses", "id": "st-concept",
         "attributes": {"code": "shipment-concept", "level": "pending", "name": "Concept",
                        "description": "The shipment was created, but has not been registered with the carrier (yet)."}},
    ],
    "meta": {"total_pages": 1, "total_records": 4},
}  # fmt: skip

"""Shippo mapping: rates, tracks and the webhooks Shippo sends, read from payloads shaped as Shippo's docs show
them (the fixtures at the end); bad input is reported as problems, never raised."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossdock.connectors.remote_json import INTERNAL
from crossdock.connectors.shippo.mapping import (
    TRACKING_STATUS,
    address_request,
    label_format,
    map_rates,
    map_track,
    map_webhook,
    messages_text,
    metadata_for,
)
from crossdock.model import Address, LabelFormat, Money, Rate, TrackingEvent, TrackingStatus
from tests.connectors.support import changed


def problems(body: Any) -> dict[str, str]:
    mapped = map_webhook(body)
    assert mapped.value is None
    return {p.field: p.reason for p in mapped.problems}


# -- webhooks -------------------------------------------------------------------------------------------------------


def test_transaction_created_with_a_label() -> None:
    mapped = map_webhook(json.dumps(TRANSACTION_CREATED).encode())
    assert mapped.ok and mapped.value is not None
    update = mapped.value
    assert update.event == "transaction_created"
    assert update.transaction_id == "915d94940ea54c3a80cbfa328722f5a1"
    assert update.status == "SUCCESS"
    assert update.tracking_number == "9499907123456123456781"
    assert update.tracking_status is TrackingStatus.PRE_TRANSIT
    assert update.label_url and update.label_url.startswith("https://shippo-delivery.s3.amazonaws.com/")
    assert update.metadata == "crossdock:label:order-7:parcel-1"
    assert update.tracking_events == []
    assert update.test is True


def test_transaction_updated_to_error_carries_shippos_messages() -> None:
    body = copy.deepcopy(TRANSACTION_CREATED)
    body["event"] = "transaction_updated"
    body["data"].update(status="ERROR", object_state="INVALID", tracking_number="", tracking_status=None,
                        label_url="")  # fmt: skip
    mapped = map_webhook(body)
    assert mapped.ok and mapped.value is not None
    assert mapped.value.status == "ERROR"
    assert mapped.value.tracking_number is None and mapped.value.label_url is None
    assert (
        mapped.value.messages
        == "UPS: carrier_timeout: UPS API did not respond. Please try again in a few minutes."
    )


def test_track_updated_maps_the_history_oldest_first() -> None:
    mapped = map_webhook(json.dumps(TRACK_UPDATED))
    assert mapped.ok and mapped.value is not None
    update = mapped.value
    assert (update.event, update.carrier, update.tracking_number) == ("track_updated", "royal_mail_sf",
                                                                       "TQ966044837GB")  # fmt: skip
    assert update.transaction_id == "5748cf036bce476c9ed3c92a9270edd7"
    assert update.status is None
    assert update.tracking_status is TrackingStatus.DELIVERED
    assert update.tracking_events == [
        TrackingEvent(
            status=TrackingStatus.PRE_TRANSIT,
            occurred_at=datetime(2025, 7, 18, 23, 39, 4, tzinfo=UTC),
            description="Sender despatching item",
            raw_status="PRE_TRANSIT",
        ),
        TrackingEvent(
            status=TrackingStatus.IN_TRANSIT,
            occurred_at=datetime(2025, 7, 21, 8, 2, 11, tzinfo=UTC),
            description="Item received at Mail Centre",
            location="Swindon, SN1, GB",
            raw_status="TRANSIT",
        ),
        TrackingEvent(
            status=TrackingStatus.DELIVERED,
            occurred_at=datetime(2025, 7, 24, 10, 32, 52, tzinfo=UTC),
            description="Delivered to Safeplace by",
            raw_status="DELIVERED",
        ),
    ]


def test_every_shippo_tracking_status_has_a_canonical_one() -> None:
    assert TRACKING_STATUS == {
        "PRE_TRANSIT": TrackingStatus.PRE_TRANSIT,
        "TRANSIT": TrackingStatus.IN_TRANSIT,
        "DELIVERED": TrackingStatus.DELIVERED,
        "RETURNED": TrackingStatus.RETURNED,
        "FAILURE": TrackingStatus.EXCEPTION,
        "UNKNOWN": TrackingStatus.UNKNOWN,
    }
    for raw, status in TRACKING_STATUS.items():
        body = changed(TRACK_UPDATED, "data.tracking_history.2.status", raw)
        body = changed(body, "data.tracking_status.status", raw)
        mapped = map_webhook(body)
        assert mapped.ok and mapped.value is not None
        assert mapped.value.tracking_status is status
        assert mapped.value.tracking_events[-1].status is status


def test_a_track_event_without_status_date_uses_when_shippo_recorded_it() -> None:
    body = changed(TRACK_UPDATED, "data.tracking_history.0.status_date", None)
    mapped = map_webhook(body)
    assert mapped.ok and mapped.value is not None
    assert mapped.value.tracking_events[0].occurred_at == datetime(
        2025, 7, 18, 23, 14, 19, 940000, tzinfo=UTC
    )


def test_bad_webhooks_are_problems_naming_the_field() -> None:
    assert problems(b"{not json").keys() == {"(body)"}
    assert problems(b"[1, 2]") == {"(body)": "should be an object but is a list"}
    assert "is missing" in problems({"data": {}})["event"]
    assert "not an event crossdock handles" in problems({"event": "batch_created", "data": {}})["event"]
    assert "is missing" in problems({"event": "track_updated"})["data"]
    bad_status = problems(changed(TRANSACTION_CREATED, "data.status", "LOST"))
    assert "'LOST' is not a Shippo transaction status" in bad_status["data.status"]
    no_id = problems(changed(TRANSACTION_CREATED, "data.object_id", None))
    assert "is missing" in no_id["data.object_id"]
    bad_tracking = problems(changed(TRANSACTION_CREATED, "data.tracking_status", "LOST"))
    assert "not a Shippo tracking status" in bad_tracking["data.tracking_status"]
    bad_date = problems(changed(TRACK_UPDATED, "data.tracking_history.1.status_date", "yesterday"))
    assert "not an ISO 8601 date-time" in bad_date["data.tracking_history[1].status_date"]
    naive = problems(changed(TRACK_UPDATED, "data.tracking_history.1.status_date", "2025-07-21T08:02:11"))
    assert "no time zone offset" in naive["data.tracking_history[1].status_date"]
    odd = problems(changed(TRACK_UPDATED, "data.tracking_history.1.status", "LOST_IN_SPACE"))
    assert "not a Shippo tracking status" in odd["data.tracking_history[1].status"]
    no_number = problems(changed(TRACK_UPDATED, "data.tracking_number", ""))
    assert "is missing" in no_number["data.tracking_number"]


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)
    | st.sampled_from(
        ["", "SUCCESS", "QUEUED", "TRANSIT", "USD", "12.345", "2025-07-24T10:32:52Z", "track_updated"]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=16), children, max_size=5)
    ),
    max_leaves=12,
)
PATHS = [
    "event", "test", "data", "data.object_id", "data.status", "data.tracking_status", "data.messages",
    "data.rate", "data.metadata",
]  # fmt: skip
TRACK_PATHS = [
    "data.tracking_number", "data.carrier", "data.tracking_status", "data.tracking_history",
    "data.tracking_history.0", "data.tracking_history.1.location", "data.tracking_history.2.status_date",
    "data.tracking_status.substatus",
]  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_no_json_makes_the_webhook_mapper_raise(value: Any) -> None:
    for body in (
        value,
        {"event": "track_updated", "data": value},
        {"event": "transaction_updated", "data": value},
    ):
        mapped = map_webhook(body)
        assert all(p.field != INTERNAL for p in mapped.problems), mapped.problems
        assert mapped.ok or mapped.problems
    for reader in (map_rates, map_track):
        read = reader(value)
        assert all(p.field != INTERNAL for p in read.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS + TRACK_PATHS), json_values)
def test_documented_payloads_with_one_value_replaced_map_or_report(path: str, value: Any) -> None:
    base = TRACK_UPDATED if path in TRACK_PATHS else TRANSACTION_CREATED
    mapped = map_webhook(changed(base, path, value))
    assert all(p.field != INTERNAL for p in mapped.problems), mapped.problems
    assert mapped.ok or mapped.problems


# -- rates and tracks -----------------------------------------------------------------------------------------------


def test_rates_map_provider_service_token_price_days_and_object_id() -> None:
    read = map_rates(SHIPMENT)
    assert read.problems == []
    assert read.rates == [
        Rate(
            carrier="USPS",
            service_code="usps_priority",
            service_name="Priority Mail",
            price=Money.of("7.88", "USD"),
            estimated_days=2,
            remote_id="545ab0a1a6ea4c9f9adb2512a57d6d8b",
        ),
        Rate(
            carrier="UPS",
            service_code="ups_ground",
            service_name="Ground",
            price=Money.of(Decimal("11"), "USD"),
            estimated_days=None,
            remote_id="3ab3b9a25f2d4dd2ba80c1b1d6d3fa5e",
        ),
    ]


def test_a_rate_that_cannot_be_read_is_left_out_and_named() -> None:
    body = changed(SHIPMENT, "rates.1.amount", "eleven")
    body = changed(body, "rates.0.currency", "XXX")
    read = map_rates(body)
    assert read.rates == []
    fields = {p.field for p in read.problems}
    assert fields == {"rates[0].currency", "rates[1].amount"}
    float_amount = map_rates(changed(SHIPMENT, "rates.0.amount", 7.88))
    assert [r.remote_id for r in float_amount.rates] == ["3ab3b9a25f2d4dd2ba80c1b1d6d3fa5e"]
    assert "amounts must be text" in float_amount.problems[0].reason


def test_track_for_a_number_the_carrier_does_not_know_has_no_events() -> None:
    unknown = {
        "carrier": "usps",
        "tracking_number": "9400000000000",
        "tracking_status": {"object_id": "a" * 32, "object_created": "2025-07-24T12:57:38.73Z", "status": "UNKNOWN",
                            "status_details": "", "status_date": "2025-07-24T12:57:38Z", "location": None},
        "tracking_history": [],
    }  # fmt: skip
    assert map_track(unknown).events == []
    assert map_track(unknown).problems == []
    current_only = changed(unknown, "tracking_status.status", "TRANSIT")
    [event] = map_track(current_only).events
    assert event.status is TrackingStatus.IN_TRANSIT and event.description is None


# -- requests -------------------------------------------------------------------------------------------------------


def test_address_request_uses_shippo_field_names_and_the_subdivision_code() -> None:
    address = Address(first_name="Shawn", last_name="Ippotle", line1="215 Clayton St.", line2="Apt 2",
                      city="San Francisco", subdivision="US-CA", postal_code="94117", country="us")  # fmt: skip
    assert address_request(address, email="shawn@example.com", phone="+14155550100") == {
        "name": "Shawn Ippotle", "street1": "215 Clayton St.", "street2": "Apt 2", "city": "San Francisco",
        "state": "CA", "zip": "94117", "country": "US", "phone": "+14155550100", "email": "shawn@example.com",
    }  # fmt: skip
    company = Address(company="Acme GmbH", line1="Unter den Linden 1", city="Berlin", subdivision="Berlin",
                      country="DE")  # fmt: skip
    assert address_request(company, name="Erika Mustermann") == {
        "name": "Erika Mustermann", "company": "Acme GmbH", "street1": "Unter den Linden 1", "city": "Berlin",
        "state": "Berlin", "country": "DE",
    }  # fmt: skip


def test_metadata_keeps_the_key_within_shippos_100_characters() -> None:
    assert metadata_for("label:o-1:p-1") == "crossdock:label:o-1:p-1"
    long = metadata_for("k" * 200)
    assert len(long) <= 100 and long.startswith("crossdock:sha256:")
    assert long != metadata_for("k" * 199)


def test_label_formats_and_messages() -> None:
    assert [label_format(t) for t in ("PDF", "PDF_4x6", "PNG_2.3x7.5", "ZPLII")] == [
        LabelFormat.PDF, LabelFormat.PDF, LabelFormat.PNG, LabelFormat.ZPL,
    ]  # fmt: skip
    assert (
        messages_text([{"source": "USPS", "text": "Bad zip"}, "plain", {"x": 1}, 3]) == "USPS: Bad zip; plain"
    )
    assert messages_text(None) == ""


# -- fixtures: payloads as docs.goshippo.com shows them -------------------------------------------------------------

# The transaction of docs.goshippo.com/api-reference/transactions/create-a-shipping-label (response example),
# in the webhook envelope {"event", "test", "data"} (SDK WebhookPayloadTransaction), with our metadata.
TRANSACTION_CREATED: dict[str, Any] = {
    "event": "transaction_created",
    "test": True,
    "data": {
        "commercial_invoice_url": None,
        "created_by": {"first_name": "Shwan", "last_name": "Ippotle", "username": "shippotle@shippo.com"},
        "eta": "2023-11-10T12:00:00Z",
        "label_file_type": "PDF_4x6",
        "label_url": "https://shippo-delivery.s3.amazonaws.com/70ae8117ee1749e393f249d5b77c45e0.pdf?Signature=vDw1ltcyGveVR1OQoUDdzC43BY8%3D&Expires=1437093830&AWSAccessKeyId=AKIAJTHP3LLFMYAWALIA",
        "messages": [
            {
                "source": "UPS",
                "code": "carrier_timeout",
                "text": "UPS API did not respond. Please try again in a few minutes.",
            }
        ],
        "metadata": "crossdock:label:order-7:parcel-1",
        "object_created": "2023-11-07T05:31:56Z",
        "object_id": "915d94940ea54c3a80cbfa328722f5a1",
        "object_owner": "shippotle@shippo.com",
        "object_state": "VALID",
        "object_updated": "2023-11-07T05:31:56Z",
        "parcel": "e94c7fdfdc7b495dbb390a28d929d90a",
        "qr_code_url": None,
        "rate": {
            "amount": "5.5",
            "amount_local": "5.5",
            "currency": "USD",
            "currency_local": "USD",
            "object_id": "adcfdddf8ec64b84ad22772bce3ea37a",
            "provider": "USPS",
            "carrier_account": "078870331023437cb917f5187429b093",
            "servicelevel_name": "Priority Mail",
            "servicelevel_token": "usps_priority",
        },
        "status": "SUCCESS",
        "test": True,
        "tracking_number": "9499907123456123456781",
        "tracking_status": "PRE_TRANSIT",
        "tracking_url_provider": "https://tools.usps.com/go/TrackConfirmAction_input?origTrackNum=9499907123456123456781",
    },
}

# The Track of docs.goshippo.com/docs/carriers/integration_guides/royalmail-tracked/track (response example,
# with one TRANSIT event added in between) in the track_updated envelope (SDK WebhookPayloadTrack).
TRACK_UPDATED: dict[str, Any] = {
    "event": "track_updated",
    "test": False,
    "data": {
        "tracking_number": "TQ966044837GB",
        "carrier": "royal_mail_sf",
        "servicelevel": {"name": None, "token": None},
        "transaction": "5748cf036bce476c9ed3c92a9270edd7",
        "address_from": {"city": "", "state": "", "zip": "", "country": "GB"},
        "address_to": {"city": "", "state": "", "zip": "", "country": "GB"},
        "eta": None,
        "original_eta": None,
        "metadata": None,
        "test": False,
        "tracking_status": {
            "status_date": "2025-07-24T10:32:52Z",
            "status_details": "Delivered to Safeplace by",
            "location": None,
            "substatus": {
                "code": "delivered",
                "text": "Package has been delivered.",
                "action_required": False,
            },
            "object_created": "2025-07-24T12:57:38.73Z",
            "object_updated": "2025-07-24T12:57:38.73Z",
            "object_id": "f379269f8c584d278d8abd9a9e2bd2ff",
            "status": "DELIVERED",
        },
        "tracking_history": [
            {
                "status_date": "2025-07-18T23:39:04Z",
                "status_details": "Sender despatching item",
                "location": None,
                "substatus": {
                    "code": "information_received",
                    "text": "Information about the package received.",
                    "action_required": False,
                },
                "object_created": "2025-07-18T23:14:19.94Z",
                "object_updated": "2025-07-19T03:42:02.857Z",
                "object_id": "db068dfd371e4d2a9a1b33b0b0b9a6b1",
                "status": "PRE_TRANSIT",
            },
            {
                "status_date": "2025-07-21T08:02:11Z",
                "status_details": "Item received at Mail Centre",
                "location": {"city": "Swindon", "state": "", "zip": "SN1", "country": "GB"},
                "substatus": None,
                "object_created": "2025-07-21T08:30:00.12Z",
                "object_updated": "2025-07-21T08:30:00.12Z",
                "object_id": "0b1e7c4c5f8a4d3e9c2b1a0f9e8d7c6b",
                "status": "TRANSIT",
            },
            {
                "status_date": "2025-07-24T10:32:52Z",
                "status_details": "Delivered to Safeplace by",
                "location": None,
                "substatus": {
                    "code": "delivered",
                    "text": "Package has been delivered.",
                    "action_required": False,
                },
                "object_created": "2025-07-24T12:57:38.73Z",
                "object_updated": "2025-07-24T12:57:38.73Z",
                "object_id": "f379269f8c584d278d8abd9a9e2bd2ff",
                "status": "DELIVERED",
            },
        ],
    },
}

# A Shipment answered with `async: false` (PROTOCOLS.md 5: rates[] inline; Rate fields object_id, amount,
# currency, provider, servicelevel{name, token}, estimated_days).
SHIPMENT: dict[str, Any] = {
    "object_id": "5e40ead7cffe4cc1ad45108696162e42",
    "status": "SUCCESS",
    "messages": [],
    "rates": [
        {
            "object_id": "545ab0a1a6ea4c9f9adb2512a57d6d8b",
            "amount": "7.88",
            "currency": "USD",
            "amount_local": "7.88",
            "currency_local": "USD",
            "provider": "USPS",
            "servicelevel": {"name": "Priority Mail", "token": "usps_priority", "terms": ""},
            "estimated_days": 2,
            "duration_terms": "Delivery in 1 to 3 business days.",
            "attributes": ["FASTEST"],
            "shipment": "5e40ead7cffe4cc1ad45108696162e42",
        },
        {
            "object_id": "3ab3b9a25f2d4dd2ba80c1b1d6d3fa5e",
            "amount": "11",
            "currency": "USD",
            "provider": "UPS",
            "servicelevel": {"name": "Ground", "token": "ups_ground"},
            "estimated_days": None,
            "attributes": ["CHEAPEST"],
        },
    ],
}

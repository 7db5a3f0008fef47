"""The carriers connector (karrio) against fake UPS, FedEx and USPS APIs.

karrio's carrier proxies send their HTTP through `karrio.core.utils.helpers._urlopen_with_span`, which the
connector routes into the connection's RemoteClient; the RemoteClient's transport is replaced here by a fake
carrier answering as the carrier documents: UPS (UPS-API/api-documentation: OAuthClientCredentials.yaml,
Rating.yaml, Shipping.yaml, Tracking.yaml), FedEx (developer.fedex.com/api/en-us/catalog: authorization,
rate, ship, track), USPS (developers.usps.com: oauth2 v3, shipments v3, payments v3, labels v3, tracking v3).
Nothing leaves the process; every test asserts what crossdock gets and what the carrier was sent.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter
from sqlalchemy import select

from crossdock.connectors.base import ShippingLabels, ShippingRates, TrackingSource
from crossdock.connectors.carriers.client import CarriersConnector
from crossdock.engine.connections import load_context
from crossdock.engine.errors import ConfigurationError, PermanentError, RetryableError
from crossdock.hub import Hub
from crossdock.model import (
    Address,
    LabelFormat,
    Money,
    Order,
    OrderLine,
    Parcel,
    Rate,
    Shipment,
    TrackingStatus,
    Weight,
)
from crossdock.store import repo
from crossdock.store import tables as t
from tests.support import Tenant

# karrio imports PyPDF2, which announces its own deprecation on import.
pytestmark = pytest.mark.filterwarnings("ignore:PyPDF2 is deprecated:DeprecationWarning")

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def reply(status: int, body: Any = None, **headers: str) -> httpx.Response:
    if isinstance(body, bytes | str):
        return httpx.Response(status, content=body, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class FakeCarrier:
    """Answers (method, path) from a table, the last answer repeating, and keeps every request."""

    host: str
    routes: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    seen: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, *answers: Answer) -> FakeCarrier:
        self.routes[(method.upper(), path)] = list(answers)
        return self

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == self.host, f"karrio called {request.url} instead of {self.host}"
        self.seen.append(request)
        answers = self.routes.get((request.method, request.url.path))
        if not answers:
            return reply(404, {"message": f"no route {request.method} {request.url.path}"})
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(request) if callable(answer) else answer

    def requests(self, path: str) -> list[httpx.Request]:
        return [r for r in self.seen if r.url.path == path]

    def json(self, path: str, n: int = -1) -> Any:
        return json.loads(self.requests(path)[n].content)


SHIPPER = {
    "company": "Acme Outfitters",
    "first_name": "Dana",
    "last_name": "Shipper",
    "line1": "500 W 2nd St",
    "city": "Austin",
    "postal_code": "78701",
    "subdivision": "TX",
    "country": "US",
    "phone": "+15125550100",
    "email": "ship@acme.example",
}


async def connect(
    hub: Hub, account: Tenant, carrier: str, settings: dict[str, Any] | None = None, **secrets: str
) -> uuid.UUID:
    values: dict[str, Any] = {"carrier": carrier, "shipper_address": SHIPPER, **(settings or {})}
    async with hub.db.transaction() as session:
        row = await repo.Tenant(session, uuid.UUID(account.id)).create_connection(
            connector="carriers",
            name=f"Acme on {carrier}",
            vault=hub.vault,
            settings=values,
            secrets={"client_id": "acme-client-id", "client_secret": "acme-client-secret", **secrets},
        )
    return row.id


@asynccontextmanager
async def opened(
    hub: Hub, account: Tenant, connection_id: uuid.UUID, fake: FakeCarrier
) -> AsyncIterator[CarriersConnector]:
    _row, ctx = await load_context(hub, uuid.UUID(account.id), connection_id)
    connector = CarriersConnector(ctx, transport=httpx.MockTransport(fake.handle))
    try:
        yield connector
    finally:
        await connector.aclose()


async def amazon_order(hub: Hub, account: Tenant) -> Order:
    """An Amazon order (as the amazon connector maps it) going to a home in Atlanta, stored in the hub."""
    order = Order(
        status="paid",
        currency="USD",
        external_id="113-2232941-7771462",
        external_number="113-2232941-7771462",
        shipping_address=Address(
            first_name="Jordan",
            last_name="Buyer",
            line1="1600 Peachtree St NE",
            city="Atlanta",
            postal_code="30309",
            subdivision="GA",
            country="US",
            phone="+14045550123",
        ),
        lines=[
            OrderLine(
                sku="TENT-2P", title="Two-person tent", quantity=1, unit_price=Money.of("189.00", "USD")
            )
        ],
    )
    async with hub.db.transaction() as session:
        row = await repo.Tenant(session, uuid.UUID(account.id)).create_order(order, source="amazon")
    return order.model_copy(update={"id": row.id})


def parcel_shipment(order: Order, *, tracking_number: str | None = None) -> Shipment:
    assert order.id is not None
    return Shipment(
        order_id=order.id,
        parcels=[Parcel(weight=Weight(value="4.5", unit="lb"))],
        tracking_number=tracking_number,
    )


async def remote_calls(hub: Hub, connection_id: uuid.UUID) -> list[t.RemoteCall]:
    async with hub.db.session() as session:
        rows = await session.scalars(
            select(t.RemoteCall).where(t.RemoteCall.connection_id == connection_id).order_by(t.RemoteCall.at)
        )
        return list(rows.all())


def tiny_gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (40, 60), color=255).save(buffer, format="GIF")
    return buffer.getvalue()


# UPS ---------------------------------------------------------------------------------------------------------
UPS = "wwwcie.ups.com"  # the Customer Integration Environment, which test_mode selects
UPS_TOKEN = "/security/v1/oauth/token"
UPS_RATE = "/api/rating/v2409/Shop"
UPS_SHIP = "/api/shipments/v2409/ship"
# OAuthClientCredentials.yaml, 200 response of POST /security/v1/oauth/token.
UPS_TOKEN_OK = {
    "token_type": "Bearer",
    "issued_at": "1732000000000",
    "client_id": "acme-client-id",
    "access_token": "ups-access-token-7d1f",
    "expires_in": "14399",
    "refresh_count": "0",
    "status": "approved",
}
# Rating.yaml, RateResponse of a Shop request: one RatedShipment per service.
UPS_RATES = {
    "RateResponse": {
        "Response": {
            "ResponseStatus": {"Code": "1", "Description": "Success"},
            "Alert": [
                {"Code": "110971", "Description": "Your invoice may vary from the displayed reference rates"}
            ],
            "TransactionReference": {"CustomerContext": "113-2232941-7771462"},
        },
        "RatedShipment": [
            {
                "Service": {"Code": "03", "Description": ""},
                "BillingWeight": {
                    "UnitOfMeasurement": {"Code": "LBS", "Description": "Pounds"},
                    "Weight": "5.0",
                },
                "TransportationCharges": {"CurrencyCode": "USD", "MonetaryValue": "14.61"},
                "BaseServiceCharge": {"CurrencyCode": "USD", "MonetaryValue": "12.35"},
                "ItemizedCharges": [{"Code": "375", "CurrencyCode": "USD", "MonetaryValue": "2.26"}],
                "ServiceOptionsCharges": {"CurrencyCode": "USD", "MonetaryValue": "0.00"},
                "TotalCharges": {"CurrencyCode": "USD", "MonetaryValue": "14.61"},
                "TimeInTransit": {"ServiceSummary": {"EstimatedArrival": {"BusinessDaysInTransit": "3"}}},
            },
            {
                "Service": {"Code": "02", "Description": ""},
                "BillingWeight": {
                    "UnitOfMeasurement": {"Code": "LBS", "Description": "Pounds"},
                    "Weight": "5.0",
                },
                "TransportationCharges": {"CurrencyCode": "USD", "MonetaryValue": "31.07"},
                "BaseServiceCharge": {"CurrencyCode": "USD", "MonetaryValue": "26.27"},
                "ItemizedCharges": [{"Code": "375", "CurrencyCode": "USD", "MonetaryValue": "4.80"}],
                "ServiceOptionsCharges": {"CurrencyCode": "USD", "MonetaryValue": "0.00"},
                "TotalCharges": {"CurrencyCode": "USD", "MonetaryValue": "31.07"},
                "TimeInTransit": {"ServiceSummary": {"EstimatedArrival": {"BusinessDaysInTransit": "2"}}},
            },
        ],
    }
}


def ups_shipment_response(image: bytes, image_format: str) -> dict[str, Any]:
    """Shipping.yaml, ShipmentResponse: the package's label is a base64 GraphicImage."""
    return {
        "ShipmentResponse": {
            "Response": {"ResponseStatus": {"Code": "1", "Description": "Success"}},
            "ShipmentResults": {
                "ShipmentCharges": {
                    "TransportationCharges": {"CurrencyCode": "USD", "MonetaryValue": "14.61"},
                    "ServiceOptionsCharges": {"CurrencyCode": "USD", "MonetaryValue": "0.00"},
                    "TotalCharges": {"CurrencyCode": "USD", "MonetaryValue": "14.61"},
                },
                "BillingWeight": {
                    "UnitOfMeasurement": {"Code": "LBS", "Description": "Pounds"},
                    "Weight": "5.0",
                },
                "ShipmentIdentificationNumber": "1Z9A81V30300000010",
                "PackageResults": [
                    {
                        "TrackingNumber": "1Z9A81V30300000010",
                        "ServiceOptionsCharges": {"CurrencyCode": "USD", "MonetaryValue": "0.00"},
                        "ShippingLabel": {
                            "ImageFormat": {"Code": image_format, "Description": image_format},
                            "GraphicImage": base64.b64encode(image).decode("ascii"),
                        },
                    }
                ],
            },
        }
    }


# UPS error shape (Rating.yaml / Shipping.yaml, "ErrorResponse").
def ups_error(code: str, message: str) -> dict[str, Any]:
    return {"response": {"errors": [{"code": code, "message": message}]}}


def ups_fake() -> FakeCarrier:
    return FakeCarrier(UPS).on("POST", UPS_TOKEN, reply(200, UPS_TOKEN_OK))


@pytest.fixture
async def ups(hub: Hub, acme: Tenant) -> uuid.UUID:
    return await connect(hub, acme, "ups", {"account_number": "9A81V3", "test_mode": "true"})


async def test_the_connector_implements_the_shipping_protocols(
    hub: Hub, acme: Tenant, ups: uuid.UUID
) -> None:
    async with opened(hub, acme, ups, ups_fake()) as connector:
        assert isinstance(connector, ShippingRates)
        assert isinstance(connector, ShippingLabels)
        assert isinstance(connector, TrackingSource)


async def test_ups_check_proves_the_credentials_with_a_token(hub: Hub, acme: Tenant, ups: uuid.UUID) -> None:
    fake = ups_fake()
    async with opened(hub, acme, ups, fake) as connector:
        assert (
            await connector.check() == "ups account 9A81V3 (test mode) through karrio: credentials accepted"
        )
    (token,) = fake.requests(UPS_TOKEN)
    assert (
        token.headers["authorization"]
        == "Basic " + base64.b64encode(b"acme-client-id:acme-client-secret").decode()
    )
    assert token.content == b"grant_type=client_credentials"


async def test_ups_rates_map_to_exact_money_and_go_through_the_client(
    hub: Hub, acme: Tenant, ups: uuid.UUID
) -> None:
    fake = ups_fake().on("POST", UPS_RATE, reply(200, UPS_RATES))
    order = await amazon_order(hub, acme)
    async with opened(hub, acme, ups, fake) as connector:
        rates = await connector.rates(parcel_shipment(order), order)

    assert [(r.carrier, r.service_code, r.price, r.estimated_days) for r in rates] == [
        ("ups", "ups_ground", Money(amount=Decimal("14.61"), currency="USD"), 3),
        ("ups", "ups_2nd_day_air", Money(amount=Decimal("31.07"), currency="USD"), 2),
    ]
    assert all(r.connection_id == ups for r in rates)
    sent = fake.json(UPS_RATE)["RateRequest"]["Shipment"]
    assert sent["Shipper"]["ShipperNumber"] == "9A81V3"
    assert sent["ShipTo"]["Address"]["PostalCode"] == "30309"
    assert sent["ShipTo"]["Address"]["StateProvinceCode"] == "GA"
    assert sent["Package"][0]["PackageWeight"]["Weight"] == "4.5"
    assert fake.requests(UPS_RATE)[0].headers["authorization"] == "Bearer ups-access-token-7d1f"
    calls = await remote_calls(hub, ups)
    assert [(c.method, c.url, c.status, c.operation) for c in calls] == [
        ("POST", f"https://{UPS}{UPS_TOKEN}", 200, "api"),
        ("POST", f"https://{UPS}{UPS_RATE}?additionalinfo=timeintransit", 200, "api"),
    ]
    assert all(c.order_id == order.id for c in calls)


async def test_ups_label_in_zpl_comes_back_byte_for_byte(hub: Hub, acme: Tenant) -> None:
    zpl = b"^XA^FO50,50^A0N,40,40^FD1Z9A81V30300000010^FS^XZ"
    fake = ups_fake().on("POST", UPS_SHIP, reply(200, ups_shipment_response(zpl, "ZPL")))
    connection = await connect(
        hub, acme, "ups", {"account_number": "9A81V3", "test_mode": "true", "label_format": "zpl"}
    )
    order = await amazon_order(hub, acme)
    rate = Rate(carrier="ups", service_code="ups_ground", price=Money.of("14.61", "USD"))
    async with opened(hub, acme, connection, fake) as connector:
        label = await connector.buy_label(parcel_shipment(order), order, rate, "order-1/parcel-1")

    assert label.file == zpl
    assert label.file_format is LabelFormat.ZPL
    assert (label.remote_id, label.tracking_number, label.carrier, label.service_code) == (
        "1Z9A81V30300000010",
        "1Z9A81V30300000010",
        "ups",
        "ups_ground",
    )
    assert label.tracking_url is not None and "1Z9A81V30300000010" in label.tracking_url
    assert label.price == Money.of("14.61", "USD")
    sent = fake.json(UPS_SHIP)["ShipmentRequest"]
    assert sent["Shipment"]["Service"]["Code"] == "03"
    assert (
        sent["Shipment"]["PaymentInformation"]["ShipmentCharge"][0]["BillShipper"]["AccountNumber"]
        == "9A81V3"
    )
    assert sent["LabelSpecification"]["LabelImageFormat"]["Code"] == "ZPL"


async def test_ups_gif_label_becomes_a_pdf(hub: Hub, acme: Tenant, ups: uuid.UUID) -> None:
    fake = ups_fake().on("POST", UPS_SHIP, reply(200, ups_shipment_response(tiny_gif(), "GIF")))
    order = await amazon_order(hub, acme)
    shipment = parcel_shipment(order).model_copy(update={"service_code": "ups_ground"})
    async with opened(hub, acme, ups, fake) as connector:
        label = await connector.buy_label(shipment, order, None, "order-1/parcel-1")
    assert label.file_format is LabelFormat.PDF
    assert label.file.startswith(b"%PDF")
    # karrio asks for PNG; UPS's Shipping.yaml lists GIF, ZPL, EPL and SPL, so GIF is what UPS is asked for.
    assert fake.json(UPS_SHIP)["ShipmentRequest"]["LabelSpecification"]["LabelImageFormat"]["Code"] == "GIF"


# Tracking.yaml, GET /api/track/v1/details/{inquiryNumber}: activity newest first, date YYYYMMDD, time HHMMSS.
UPS_TRACK = {
    "trackResponse": {
        "shipment": [
            {
                "inquiryNumber": "1Z9A81V30300000010",
                "package": [
                    {
                        "trackingNumber": "1Z9A81V30300000010",
                        "deliveryDate": [{"type": "DEL", "date": "20241119"}],
                        "activity": [
                            {
                                "location": {
                                    "address": {
                                        "city": "ATLANTA",
                                        "stateProvince": "GA",
                                        "countryCode": "US",
                                        "country": "US",
                                    }
                                },
                                "status": {
                                    "type": "D",
                                    "description": "DELIVERED",
                                    "code": "KB",
                                    "statusCode": "011",
                                },
                                "date": "20241119",
                                "time": "143000",
                            },
                            {
                                "location": {
                                    "address": {
                                        "city": "ATLANTA",
                                        "stateProvince": "GA",
                                        "countryCode": "US",
                                        "country": "US",
                                    }
                                },
                                "status": {
                                    "type": "I",
                                    "description": "Out For Delivery Today",
                                    "code": "OT",
                                    "statusCode": "021",
                                },
                                "date": "20241119",
                                "time": "081200",
                            },
                            {
                                "location": {
                                    "address": {
                                        "city": "AUSTIN",
                                        "stateProvince": "TX",
                                        "countryCode": "US",
                                        "country": "US",
                                    }
                                },
                                "status": {
                                    "type": "P",
                                    "description": "Pickup Scan",
                                    "code": "PU",
                                    "statusCode": "038",
                                },
                                "date": "20241117",
                                "time": "174500",
                            },
                        ],
                    }
                ],
            }
        ]
    }
}


async def test_ups_tracking_events_come_oldest_first(hub: Hub, acme: Tenant, ups: uuid.UUID) -> None:
    fake = ups_fake().on("GET", "/api/track/v1/details/1Z9A81V30300000010", reply(200, UPS_TRACK))
    order = await amazon_order(hub, acme)
    async with opened(hub, acme, ups, fake) as connector:
        events = await connector.track(parcel_shipment(order, tracking_number="1Z9A81V30300000010"))
    assert [(e.status, e.description, e.raw_status) for e in events] == [
        (TrackingStatus.IN_TRANSIT, "Pickup Scan", "PU"),
        # karrio normalises by UPS's status type first: "I" (in transit) wins over the code OT.
        (TrackingStatus.IN_TRANSIT, "Out For Delivery Today", "OT"),
        (TrackingStatus.DELIVERED, "DELIVERED", "KB"),
    ]
    assert events[0].occurred_at == datetime(2024, 11, 17, 17, 45, tzinfo=UTC)
    assert events[-1].location is not None and "ATLANTA" in events[-1].location


async def test_ups_refusal_is_permanent_in_the_carriers_words(hub: Hub, acme: Tenant, ups: uuid.UUID) -> None:
    fake = ups_fake().on(
        "POST", UPS_SHIP, reply(400, ups_error("120100", "Missing or invalid shipper number"))
    )
    order = await amazon_order(hub, acme)
    shipment = parcel_shipment(order).model_copy(update={"service_code": "ups_ground"})
    async with opened(hub, acme, ups, fake) as connector:
        with pytest.raises(PermanentError) as refused:
            await connector.buy_label(shipment, order, None, "order-1/parcel-1")
    assert "120100: Missing or invalid shipper number" in refused.value.message
    assert not isinstance(refused.value, ConfigurationError)


async def test_ups_wrong_credentials_are_a_configuration_error(
    hub: Hub, acme: Tenant, ups: uuid.UUID
) -> None:
    fake = FakeCarrier(UPS).on(
        "POST", UPS_TOKEN, reply(401, ups_error("250003", "Invalid Access License number"))
    )
    order = await amazon_order(hub, acme)
    async with opened(hub, acme, ups, fake) as connector:
        with pytest.raises(ConfigurationError) as refused:
            await connector.rates(parcel_shipment(order), order)
    assert "Invalid Access License number" in refused.value.message
    assert fake.requests(UPS_RATE) == []
    async with hub.db.session() as session:
        row = await session.get(t.Connection, ups)
        assert row is not None and row.status == "needs_reauth"


async def test_ups_outage_while_rating_is_retryable(hub: Hub, acme: Tenant, ups: uuid.UUID) -> None:
    fake = ups_fake().on("POST", UPS_RATE, reply(503, "<html>Service Unavailable</html>"))
    order = await amazon_order(hub, acme)
    async with opened(hub, acme, ups, fake) as connector:
        with pytest.raises(RetryableError):
            await connector.rates(parcel_shipment(order), order)


async def test_ups_outage_after_a_label_was_sent_is_not_retried_blindly(
    hub: Hub, acme: Tenant, ups: uuid.UUID
) -> None:
    fake = ups_fake().on("POST", UPS_SHIP, reply(502, "<html>Bad Gateway</html>"))
    order = await amazon_order(hub, acme)
    shipment = parcel_shipment(order).model_copy(update={"service_code": "ups_ground"})
    async with opened(hub, acme, ups, fake) as connector:
        with pytest.raises(PermanentError) as unknown:
            await connector.buy_label(shipment, order, None, "order-1/parcel-1")
        assert await connector.find_label("order-1/parcel-1") is None
    assert "outcome is unknown" in unknown.value.message
    assert len(fake.requests(UPS_SHIP)) == 1


# FedEx -------------------------------------------------------------------------------------------------------
FEDEX = "apis-sandbox.fedex.com"
FEDEX_TOKEN = "/oauth/token"
# developer.fedex.com authorization API: POST /oauth/token answers the bearer token, valid 60 minutes.
FEDEX_TOKEN_OK = {
    "access_token": "fedex-access-token-41c2",
    "token_type": "bearer",
    "expires_in": 3599,
    "scope": "CXS",
}
# Rate API, POST /rate/v1/rates/quotes: output.rateReplyDetails[].ratedShipmentDetails[] per rate type.
FEDEX_RATES = {
    "transactionId": "624deea6-b709-470c-8c39-4b5511281492",
    "output": {
        "rateReplyDetails": [
            {
                "serviceType": "FEDEX_GROUND",
                "serviceName": "FedEx Ground",
                "packagingType": "YOUR_PACKAGING",
                "ratedShipmentDetails": [
                    {
                        "rateType": "ACCOUNT",
                        "ratedWeightMethod": "ACTUAL",
                        "totalDiscounts": 0.0,
                        "totalBaseCharge": 18.42,
                        "totalNetCharge": 21.37,
                        "totalNetFedExCharge": 21.37,
                        "shipmentRateDetail": {"currency": "USD", "totalSurcharges": 2.95},
                        "currency": "USD",
                    }
                ],
                "operationalDetail": {"transitTime": "THREE_DAYS"},
            }
        ]
    },
}


def four_by_six_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=288, height=432)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


PDF = four_by_six_pdf()
# Ship API, POST /ship/v1/shipments with labelResponseOptions LABEL: the label is base64 in encodedLabel.
FEDEX_SHIPPED = {
    "transactionId": "50eae03e-0fec-4ec7-b068-7d8b4c1ab1a5",
    "output": {
        "transactionShipments": [
            {
                "masterTrackingNumber": "794953535000",
                "serviceType": "FEDEX_GROUND",
                "shipDatestamp": "2024-11-18",
                "serviceName": "FedEx Ground",
                "pieceResponses": [
                    {
                        "masterTrackingNumber": "794953535000",
                        "trackingNumber": "794953535000",
                        "packageDocuments": [
                            {
                                "contentType": "LABEL",
                                "copiesToPrint": 1,
                                "encodedLabel": base64.b64encode(PDF).decode("ascii"),
                                "docType": "PDF",
                            }
                        ],
                    }
                ],
            }
        ]
    },
}
# Track API, POST /track/v1/trackingnumbers: scanEvents newest first, dates with the local offset.
FEDEX_TRACKED = {
    "transactionId": "580b6d4b-bc5b-4b9b-a0c4-2a6a7a1b9e1f",
    "output": {
        "completeTrackResults": [
            {
                "trackingNumber": "794953535000",
                "trackResults": [
                    {
                        "trackingNumberInfo": {"trackingNumber": "794953535000", "carrierCode": "FDXG"},
                        "latestStatusDetail": {"code": "DL", "derivedCode": "DL", "description": "Delivered"},
                        "scanEvents": [
                            {
                                "date": "2024-11-20T10:12:00-05:00",
                                "eventType": "DL",
                                "eventDescription": "Delivered",
                                "scanLocation": {
                                    "city": "ATLANTA",
                                    "stateOrProvinceCode": "GA",
                                    "countryCode": "US",
                                },
                                "derivedStatusCode": "DL",
                            },
                            {
                                "date": "2024-11-18T16:40:00-06:00",
                                "eventType": "PU",
                                "eventDescription": "Picked up",
                                "scanLocation": {
                                    "city": "AUSTIN",
                                    "stateOrProvinceCode": "TX",
                                    "countryCode": "US",
                                },
                                "derivedStatusCode": "PU",
                            },
                        ],
                    }
                ],
            }
        ]
    },
}


@pytest.fixture
async def fedex(hub: Hub, acme: Tenant) -> uuid.UUID:
    return await connect(hub, acme, "fedex", {"account_number": "740561073", "test_mode": "true"})


def fedex_fake() -> FakeCarrier:
    return FakeCarrier(FEDEX).on("POST", FEDEX_TOKEN, reply(200, FEDEX_TOKEN_OK))


async def test_fedex_rates_labels_and_tracking(hub: Hub, acme: Tenant, fedex: uuid.UUID) -> None:
    fake = (
        fedex_fake()
        .on("POST", "/rate/v1/rates/quotes", reply(200, FEDEX_RATES))
        .on("POST", "/ship/v1/shipments", reply(200, FEDEX_SHIPPED))
        .on("POST", "/track/v1/trackingnumbers", reply(200, FEDEX_TRACKED))
    )
    order = await amazon_order(hub, acme)
    async with opened(hub, acme, fedex, fake) as connector:
        (rate,) = await connector.rates(parcel_shipment(order), order)
        label = await connector.buy_label(parcel_shipment(order), order, rate, "order-1/parcel-1")
        events = await connector.track(parcel_shipment(order, tracking_number=label.tracking_number))

    assert (rate.carrier, rate.service_code, rate.price) == (
        "fedex",
        "fedex_ground",
        Money.of("21.37", "USD"),
    )
    assert (label.file_format, label.tracking_number) == (LabelFormat.PDF, "794953535000")
    # karrio re-bundles FedEx's PDF (one document per shipment): the same single 4x6 inch page comes back.
    (page,) = PdfReader(io.BytesIO(label.file)).pages
    assert (page.mediabox.width, page.mediabox.height) == (288, 432)
    assert [(e.status, e.occurred_at, e.raw_status) for e in events] == [
        # karrio keeps the scan's local wall time and drops FedEx's offset; crossdock reads it as UTC (a
        # documented limit: docs/carriers.md).
        (TrackingStatus.IN_TRANSIT, datetime(2024, 11, 18, 16, 40, tzinfo=UTC), "PU"),
        (TrackingStatus.DELIVERED, datetime(2024, 11, 20, 10, 12, tzinfo=UTC), "DL"),
    ]
    # The client id and secret are FedEx's API key and secret key, sent as the token form.
    token_form = fake.requests(FEDEX_TOKEN)[0].content.decode()
    assert "client_id=acme-client-id" in token_form and "client_secret=acme-client-secret" in token_form
    shipped = fake.json("/ship/v1/shipments")
    assert shipped["accountNumber"] == {"value": "740561073"}
    assert shipped["requestedShipment"]["serviceType"] == "FEDEX_GROUND"
    assert shipped["requestedShipment"]["recipients"][0]["address"]["postalCode"] == "30309"


async def test_fedex_refusal_keeps_fedex_words(hub: Hub, acme: Tenant, fedex: uuid.UUID) -> None:
    refusal = {
        "transactionId": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
        "errors": [
            {
                "code": "ACCOUNT.NUMBER.MISMATCH",
                "message": "When payment Type is SENDER, ShippingChargesPayment Payor AccountNumber should match the shipper account number.",
            }
        ],
    }
    fake = fedex_fake().on("POST", "/rate/v1/rates/quotes", reply(400, refusal))
    order = await amazon_order(hub, acme)
    async with opened(hub, acme, fedex, fake) as connector:
        with pytest.raises(PermanentError) as refused:
            await connector.rates(parcel_shipment(order), order)
    assert "ACCOUNT.NUMBER.MISMATCH" in refused.value.message
    assert "should match the shipper account number" in refused.value.message


# USPS --------------------------------------------------------------------------------------------------------
USPS = "apis-tem.usps.com"
# developers.usps.com OAuth 2.0 v3: POST /oauth2/v3/token answers a bearer token for the asked scopes.
USPS_TOKEN_OK = {
    "access_token": "usps-access-token-9b0e",
    "token_type": "Bearer",
    "issued_at": 1732000000000,
    "expires_in": 28799,
    "status": "approved",
    "scope": "prices labels tracking payments shipments",
    "issuer": "api.usps.com",
    "client_id": "acme-client-id",
    "application_name": "Acme",
    "api_products": "[Shipping-Silver]",
    "public_key": "LS0tLS1CRUdJTi...",
}
# Shipments 3.0, POST /shipments/v3/options/search: pricingOptions -> shippingOptions -> rateOptions -> rates.
USPS_OPTIONS = {
    "originZIPCode": "78701",
    "destinationZIPCode": "30309",
    "pricingOptions": [
        {
            "priceType": "COMMERCIAL",
            "shippingOptions": [
                {
                    "mailClass": "USPS_GROUND_ADVANTAGE",
                    "rateOptions": [
                        {
                            "commitment": {"name": "3 Days", "scheduleDeliveryDate": "2024-11-21"},
                            "totalPrice": 9.85,
                            "totalBasePrice": 9.85,
                            "rates": [
                                {
                                    "SKU": "DUXP0XXXXC04050",
                                    "description": "USPS Ground Advantage Machinable Single-piece",
                                    "priceType": "COMMERCIAL",
                                    "price": 9.85,
                                    "weight": 4.5,
                                    "mailClass": "USPS_GROUND_ADVANTAGE",
                                    "productName": "USPS Ground Advantage",
                                    "processingCategory": "MACHINABLE",
                                    "zone": "05",
                                }
                            ],
                            "extraServices": [],
                        }
                    ],
                }
            ],
        }
    ],
}
# Payments 3.0, POST /payments/v3/payment-authorization: the token labels need in X-Payment-Authorization-Token.
USPS_PAYMENT = {"paymentAuthorizationToken": "usps-payment-token-55aa"}
USPS_TRACKING_NUMBER = "9205500000000000000000"


def usps_label_multipart(label: bytes) -> tuple[bytes, str]:
    """Labels 3.0, POST /labels/v3/label: multipart/form-data with the labelMetadata JSON and the
    labelImage (base64)."""
    boundary = "--usps-boundary-7f3a"
    metadata = {
        "labelAddress": {
            "streetAddress": "1600 PEACHTREE ST NE",
            "city": "ATLANTA",
            "state": "GA",
            "ZIPCode": "30309",
        },
        "routingInformation": "42030309",
        "trackingNumber": USPS_TRACKING_NUMBER,
        "postage": 9.85,
        "extraServices": [],
        "zone": "05",
        "commitment": {"name": "3 Days", "scheduleDeliveryDate": "2024-11-21"},
        "weightUOM": "lb",
        "weight": 4.5,
        "fees": [],
        "SKU": "DUXP0XXXXC04050",
    }
    body = (
        f"{boundary}\r\n"
        'Content-Disposition: form-data; name="labelMetadata"\r\n'
        "Content-Type: application/json\r\n\r\n"
        f"{json.dumps(metadata)}\r\n"
        f"{boundary}\r\n"
        'Content-Disposition: form-data; name="labelImage"; filename="labelImage.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
        f"{base64.b64encode(label).decode('ascii')}\r\n"
        f"{boundary}--\r\n"
    )
    return body.encode(), f"multipart/form-data; boundary={boundary[2:]}"


# Tracking 3.0, GET /tracking/v3/tracking/{trackingNumber}?expand=DETAIL: trackingEvents newest first, UTC.
USPS_TRACKED = {
    "trackingNumber": USPS_TRACKING_NUMBER,
    "statusCategory": "Delivered",
    "status": "Delivered, In/At Mailbox",
    "mailClass": "USPS Ground Advantage",
    "trackingEvents": [
        {
            "eventType": "Delivered, In/At Mailbox",
            "eventTimestamp": "2024-11-21T13:05:00Z",
            "eventCountry": "US",
            "eventCity": "ATLANTA",
            "eventState": "GA",
            "eventZIP": "30309",
            "eventCode": "01",
        },
        {
            "eventType": "Out for Delivery",
            "eventTimestamp": "2024-11-21T07:10:00Z",
            "eventCity": "ATLANTA",
            "eventState": "GA",
            "eventZIP": "30309",
            "eventCode": "OF",
        },
        {
            "eventType": "USPS picked up item",
            "eventTimestamp": "2024-11-18T16:22:00Z",
            "eventCity": "AUSTIN",
            "eventState": "TX",
            "eventZIP": "78701",
            "eventCode": "03",
        },
    ],
}


async def test_usps_rates_label_and_tracking_each_api_in_its_own_bucket(hub: Hub, acme: Tenant) -> None:
    multipart, content_type = usps_label_multipart(PDF)
    fake = (
        FakeCarrier(USPS)
        .on("POST", "/oauth2/v3/token", reply(200, USPS_TOKEN_OK))
        .on("POST", "/shipments/v3/options/search", reply(200, USPS_OPTIONS))
        .on("POST", "/payments/v3/payment-authorization", reply(200, USPS_PAYMENT))
        .on(
            "POST",
            "/labels/v3/label",
            httpx.Response(200, content=multipart, headers={"content-type": content_type}),
        )
        .on("GET", f"/tracking/v3/tracking/{USPS_TRACKING_NUMBER}", reply(200, USPS_TRACKED))
    )
    connection = await connect(
        hub,
        acme,
        "usps",
        {
            "account_number": "1000123456",
            "test_mode": "true",
            "carrier_config": {"CRID": "56982563", "MID": "902500000"},
        },
    )
    order = await amazon_order(hub, acme)
    async with opened(hub, acme, connection, fake) as connector:
        (rate,) = await connector.rates(parcel_shipment(order), order)
        label = await connector.buy_label(parcel_shipment(order), order, rate, "order-1/parcel-1")
        events = await connector.track(parcel_shipment(order, tracking_number=label.tracking_number))

    assert (rate.carrier, rate.service_code, rate.price, rate.estimated_days) == (
        "usps",
        "usps_ground_advantage",
        Money.of("9.85", "USD"),
        3,
    )
    assert (label.tracking_number, label.file_format, label.price) == (
        USPS_TRACKING_NUMBER,
        LabelFormat.PDF,
        Money.of("9.85", "USD"),
    )
    assert PdfReader(io.BytesIO(label.file)).pages[0].mediabox.width == 288
    assert (
        fake.requests("/labels/v3/label")[0].headers["x-payment-authorization-token"]
        == "usps-payment-token-55aa"
    )
    payer = fake.json("/payments/v3/payment-authorization")["roles"][1]
    assert (payer["roleName"], payer["CRID"], payer["accountNumber"]) == ("PAYER", "56982563", "1000123456")
    assert [(e.status, e.occurred_at) for e in events] == [
        (TrackingStatus.IN_TRANSIT, datetime(2024, 11, 18, 16, 22, tzinfo=UTC)),
        (TrackingStatus.OUT_FOR_DELIVERY, datetime(2024, 11, 21, 7, 10, tzinfo=UTC)),
        (TrackingStatus.DELIVERED, datetime(2024, 11, 21, 13, 5, tzinfo=UTC)),
    ]
    # USPS counts its quota per API (60 calls an hour each): every call took a slot of its own API's bucket.
    buckets = {(c.url.split("/")[3], c.operation) for c in await remote_calls(hub, connection)}
    assert buckets == {
        ("oauth2", "oauth2"),
        ("shipments", "shipments"),
        ("payments", "payments"),
        ("labels", "labels"),
        ("tracking", "tracking"),
    }


# Another karrio carrier, by configuration only ---------------------------------------------------------------
# Canada Post's Rating API, POST /rs/ship/price (canadapost.ca/cpc/en/business/shipping/ecommerce-developers:
# "Get rates"), answers price-quotes in XML.
CANADAPOST_QUOTES = """<?xml version="1.0" encoding="UTF-8"?>
<price-quotes xmlns="http://www.canadapost.ca/ws/ship/rate-v4">
  <price-quote>
    <service-code>DOM.EP</service-code>
    <service-name>Expedited Parcel</service-name>
    <price-details>
      <base>9.59</base>
      <taxes><gst>0.00</gst><pst>0.00</pst><hst percent="13.0">1.57</hst></taxes>
      <due>12.18</due>
      <adjustments>
        <adjustment><adjustment-code>FUELSC</adjustment-code><adjustment-name>Fuel surcharge</adjustment-name><adjustment-cost>1.02</adjustment-cost></adjustment>
      </adjustments>
    </price-details>
    <service-standard>
      <am-delivery>false</am-delivery>
      <guaranteed-delivery>true</guaranteed-delivery>
      <expected-transit-time>2</expected-transit-time>
      <expected-delivery-date>2024-11-20</expected-delivery-date>
    </service-standard>
  </price-quote>
</price-quotes>
"""


async def test_another_karrio_carrier_works_by_configuration_alone(hub: Hub, acme: Tenant) -> None:
    """Canada Post: karrio-canadapost installed, `carrier` set, its customer number in carrier_config; the
    connection's client id and secret become Canada Post's API username and password."""
    fake = FakeCarrier("ct.soa-gw.canadapost.ca").on(
        "POST",
        "/rs/ship/price",
        reply(200, CANADAPOST_QUOTES, **{"content-type": "application/vnd.cpc.ship.rate-v4+xml"}),
    )
    toronto = {
        "company": "Acme Outfitters Canada",
        "line1": "40 Bay St",
        "city": "Toronto",
        "postal_code": "M5J 2X2",
        "subdivision": "ON",
        "country": "CA",
        "phone": "+14165550100",
    }
    connection = await connect(
        hub,
        acme,
        "canadapost",
        {
            "test_mode": "true",
            "shipper_address": toronto,
            "carrier_config": json.dumps({"customer_number": "2004381"}),
        },
    )
    order = await amazon_order(hub, acme)
    order = order.model_copy(
        update={
            "shipping_address": Address(
                first_name="Sam",
                last_name="Tremblay",
                line1="125 Church St",
                city="Moncton",
                postal_code="E1C 4Z8",
                subdivision="NB",
                country="CA",
            )
        }
    )
    async with opened(hub, acme, connection, fake) as connector:
        (rate,) = await connector.rates(parcel_shipment(order), order)
    assert (rate.carrier, rate.service_code, rate.price, rate.estimated_days) == (
        "canadapost",
        "canadapost_expedited_parcel",
        Money.of("12.18", "CAD"),
        2,
    )
    (sent,) = fake.requests("/rs/ship/price")
    assert (
        sent.headers["authorization"]
        == "Basic " + base64.b64encode(b"acme-client-id:acme-client-secret").decode()
    )
    assert b"<customer-number>2004381</customer-number>" in sent.content
    assert b"<postal-code>E1C4Z8</postal-code>" in sent.content


async def test_a_carrier_karrio_does_not_have_says_which_package_to_install(hub: Hub, acme: Tenant) -> None:
    connection = await connect(hub, acme, "dhl_poland")
    order = await amazon_order(hub, acme)
    async with opened(hub, acme, connection, FakeCarrier("nowhere.example")) as connector:
        with pytest.raises(ConfigurationError) as missing:
            await connector.rates(parcel_shipment(order), order)
    assert "install the package karrio-dhl-poland" in missing.value.message
    assert "installed: canadapost, fedex, ups, usps" in missing.value.message


async def test_a_field_karrio_does_not_know_is_named(hub: Hub, acme: Tenant) -> None:
    connection = await connect(hub, acme, "ups", {"carrier_config": {"customer_numbr": "1"}})
    order = await amazon_order(hub, acme)
    async with opened(hub, acme, connection, FakeCarrier(UPS)) as connector:
        with pytest.raises(ConfigurationError) as unknown:
            await connector.rates(parcel_shipment(order), order)
    assert "no field customer_numbr" in unknown.value.message


async def test_karrio_http_outside_a_connection_is_refused() -> None:
    import karrio.lib as lib

    from crossdock.connectors.carriers import transport

    transport.install()
    with pytest.raises(transport.Stopped, match="outside a crossdock carrier connection"):
        lib.request(url="https://onlinetools.ups.com/security/v1/oauth/token", method="POST", data="x")


async def test_ups_void_says_whether_ups_voided(hub: Hub, acme: Tenant, ups: uuid.UUID) -> None:
    # Shipping.yaml, DELETE /api/shipments/{version}/void/cancel/{shipmentidentificationnumber}.
    voided = {
        "VoidShipmentResponse": {
            "Response": {"ResponseStatus": {"Code": "1", "Description": "Success"}},
            "SummaryResult": {"Status": {"Code": "1", "Description": "Voided"}},
        }
    }
    too_late = ups_error("190117", "Void period has expired")
    path = "/api/shipments/v2409/void/cancel/1Z9A81V30300000010"
    fake = ups_fake().on("DELETE", path, reply(200, voided), reply(400, too_late))
    async with opened(hub, acme, ups, fake) as connector:
        first = await connector.void_label("1Z9A81V30300000010")
        second = await connector.void_label("1Z9A81V30300000010")
    assert first.voided is True
    assert (second.voided, "Void period has expired" in second.message) == (False, True)


async def test_the_registry_opens_a_carriers_connection(hub: Hub, acme: Tenant, ups: uuid.UUID) -> None:
    from crossdock.engine.connections import open_connector

    async with open_connector(hub, uuid.UUID(acme.id), ups) as (row, connector):
        assert row.connector == "carriers"
        assert isinstance(connector, CarriersConnector)
        assert connector.carrier == "ups"

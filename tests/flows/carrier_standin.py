"""A stand-in for UPS's REST APIs on 127.0.0.1: OAuth client credentials, Rating (Shop) and Shipping.

The carriers connector sends karrio's requests to a connection's base URL instead of the carrier's host, so an
end-to-end run points a UPS connection here. The stand-in answers only what UPS documents, in the shapes
tests/connectors/test_carriers.py already uses (UPS-API/api-documentation: OAuthClientCredentials.yaml,
Rating.yaml, Shipping.yaml; PROTOCOLS.md section 8):

- `POST /security/v1/oauth/token`: HTTP Basic client id and secret, form `grant_type=client_credentials`;
  answers the token document, or 401 with UPS's error shape for other credentials.
- `POST /api/rating/{version}/Shop`: a bearer token it issued; one RatedShipment per service it offers.
- `GET /api/track/v1/details/{inquiryNumber}`: a bearer token it issued; answers the tracking document the test
  gave for that number (`tracking`, shaped as Tracking.yaml's trackResponse), or 404 in UPS's error shape (its
  code and words are the stand-in's own: no test depends on them).
- `POST /api/shipments/{version}/ship`: a bearer token it issued; issues a tracking number and answers a
  ShipmentResponse whose package label is a base64 GraphicImage in the LabelImageFormat asked for. UPS's label
  images are GIF, ZPL, EPL or SPL (Shipping.yaml, LabelSpecification.LabelImageFormat.Code: "for image formats
  use GIF"), never PDF; any other code is refused with UPS's error shape. karrio asks for PNG when a PDF is
  wanted; crossdock asks GIF instead (connectors/carriers/gateway.py) and karrio makes the PDF from it.

Every shipment request is kept, and `answer_next_shipment_with` makes the next one be processed (the label is
bought, its tracking number issued) and then answered with that status instead, as a gateway in front of UPS
would after losing the answer. Losing the connection itself is the LosesAnswers front's work (serve_ups).
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from crossdock.sandbox.common import run_in_thread
from crossdock.sandbox.labels import LabelData, render_png, render_zpl
from tests.engine.fulfil_support import LosesAnswers

# UPS service codes (Rating.yaml, Service.Code) with the stand-in's prices and days in transit.
SERVICES: dict[str, tuple[str, int]] = {"03": ("14.61", 3), "02": ("31.07", 2)}
SERVICE_NAMES = {"03": "UPS Ground", "02": "UPS 2nd Day Air"}
# Shipping.yaml, LabelSpecification.LabelImageFormat.Code: the label image formats UPS names.
LABEL_FORMATS = ("GIF", "ZPL", "EPL", "SPL")


def ups_error(code: str, message: str) -> dict[str, Any]:
    """UPS's error document (Rating.yaml / Shipping.yaml / OAuthClientCredentials.yaml, ErrorResponse)."""
    return {"response": {"errors": [{"code": code, "message": message}]}}


def is_shipment_request(method: str, path: str) -> bool:
    return method == "POST" and path.startswith("/api/shipments/") and path.endswith("/ship")


@dataclass
class UpsStandIn:
    client_id: str
    client_secret: str
    shipper_number: str
    # ShipmentRequest documents received, each processed (a label bought) whatever the answer was.
    shipment_requests: list[dict[str, Any]] = field(default_factory=list)
    rate_requests: list[dict[str, Any]] = field(default_factory=list)
    token_requests: int = 0
    # Tracking documents by tracking number, and the numbers asked for, in order.
    tracking: dict[str, dict[str, Any]] = field(default_factory=dict)
    track_requests: list[str] = field(default_factory=list)
    # Tracking number of each label bought, in order.
    issued: list[str] = field(default_factory=list)
    answer_next_shipment_with: int | None = None
    _tokens: set[str] = field(default_factory=set)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/security/v1/oauth/token", self.token, methods=["POST"]),
                Route("/api/rating/{version}/{option}", self.rate, methods=["POST"]),
                Route("/api/shipments/{version}/ship", self.ship, methods=["POST"]),
                Route("/api/track/v1/details/{number}", self.track, methods=["GET"]),
            ]
        )

    async def track(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse(ups_error("250002", "Invalid Authentication Information."), status_code=401)
        number = request.path_params["number"]
        self.track_requests.append(number)
        if number not in self.tracking:
            return JSONResponse(ups_error("404", f"No tracking information for {number}"), status_code=404)
        return JSONResponse(self.tracking[number])

    # OAuth ----------------------------------------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse(ups_error("10401", "ClientId is Invalid"), status_code=401)
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse(ups_error("10400", "Invalid/Missing grant_type"), status_code=400)
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "client_id": self.client_id,
                "access_token": token,
                "expires_in": "14399",
                "refresh_count": "0",
                "status": "approved",
            }
        )

    def _authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token in self._tokens

    async def _document(self, request: Request, root: str) -> dict[str, Any] | Response:
        if not self._authorised(request):
            return JSONResponse(ups_error("250002", "Invalid Authentication Information."), status_code=401)
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse(ups_error("250001", "Invalid JSON"), status_code=400)
        document = body.get(root) if isinstance(body, dict) else None
        if not isinstance(document, dict) or not isinstance(document.get("Shipment"), dict):
            return JSONResponse(ups_error("120100", f"Missing or invalid {root}"), status_code=400)
        shipper = document["Shipment"].get("Shipper") or {}
        if shipper.get("ShipperNumber") != self.shipper_number:
            return JSONResponse(ups_error("120100", "Missing or invalid shipper number"), status_code=400)
        return document

    # Rating ---------------------------------------------------------------------------------------------------
    async def rate(self, request: Request) -> Response:
        document = await self._document(request, "RateRequest")
        if isinstance(document, Response):
            return document
        self.rate_requests.append(document)
        context = ((document.get("Request") or {}).get("TransactionReference") or {}).get("CustomerContext")
        rated = [
            {
                "Service": {"Code": code, "Description": ""},
                "BillingWeight": {
                    "UnitOfMeasurement": {"Code": "LBS", "Description": "Pounds"},
                    "Weight": "5.0",
                },
                "TransportationCharges": {"CurrencyCode": "USD", "MonetaryValue": price},
                "BaseServiceCharge": {"CurrencyCode": "USD", "MonetaryValue": price},
                "ItemizedCharges": [],
                "ServiceOptionsCharges": {"CurrencyCode": "USD", "MonetaryValue": "0.00"},
                "TotalCharges": {"CurrencyCode": "USD", "MonetaryValue": price},
                "TimeInTransit": {
                    "ServiceSummary": {"EstimatedArrival": {"BusinessDaysInTransit": str(days)}}
                },
            }
            for code, (price, days) in SERVICES.items()
        ]
        return JSONResponse(
            {
                "RateResponse": {
                    "Response": {
                        "ResponseStatus": {"Code": "1", "Description": "Success"},
                        "TransactionReference": {"CustomerContext": context},
                    },
                    "RatedShipment": rated,
                }
            }
        )

    # Shipping -------------------------------------------------------------------------------------------------
    async def ship(self, request: Request) -> Response:
        document = await self._document(request, "ShipmentRequest")
        if isinstance(document, Response):
            return document
        shipment = document["Shipment"]
        code = str((shipment.get("Service") or {}).get("Code") or "")
        if code not in SERVICES:
            return JSONResponse(ups_error("120410", "The selected service is not available"), status_code=400)
        image_format = str(
            ((document.get("LabelSpecification") or {}).get("LabelImageFormat") or {}).get("Code") or ""
        ).upper()
        if image_format not in LABEL_FORMATS:
            return JSONResponse(ups_error("120547", "Invalid label image format"), status_code=400)
        self.shipment_requests.append(document)
        # Shaped like UPS's numbers: 1Z, the shipper number, the service, a serial.
        tracking = f"1Z{self.shipper_number}{code}{len(self.issued) + 1:08d}"
        self.issued.append(tracking)
        label = _label_image(shipment, SERVICE_NAMES[code], tracking, image_format)
        if self.answer_next_shipment_with is not None:
            status, self.answer_next_shipment_with = self.answer_next_shipment_with, None
            return PlainTextResponse("Bad Gateway", status_code=status)
        price, _days = SERVICES[code]
        charges = {"CurrencyCode": "USD", "MonetaryValue": price}
        return JSONResponse(
            {
                "ShipmentResponse": {
                    "Response": {"ResponseStatus": {"Code": "1", "Description": "Success"}},
                    "ShipmentResults": {
                        "ShipmentCharges": {
                            "TransportationCharges": charges,
                            "ServiceOptionsCharges": {"CurrencyCode": "USD", "MonetaryValue": "0.00"},
                            "TotalCharges": charges,
                        },
                        "BillingWeight": {
                            "UnitOfMeasurement": {"Code": "LBS", "Description": "Pounds"},
                            "Weight": "5.0",
                        },
                        "ShipmentIdentificationNumber": tracking,
                        "PackageResults": [
                            {
                                "TrackingNumber": tracking,
                                "ServiceOptionsCharges": {"CurrencyCode": "USD", "MonetaryValue": "0.00"},
                                "ShippingLabel": {
                                    "ImageFormat": {"Code": image_format, "Description": image_format},
                                    "GraphicImage": base64.b64encode(label).decode("ascii"),
                                },
                            }
                        ],
                    },
                }
            }
        )


def _party(party: dict[str, Any]) -> list[str]:
    address = party.get("Address") or {}
    lines = address.get("AddressLine") or []
    if isinstance(lines, str):
        lines = [lines]
    place = " ".join(
        str(address.get(k) or "") for k in ("City", "StateProvinceCode", "PostalCode", "CountryCode")
    ).strip()
    return [str(party.get("Name") or ""), *(str(line) for line in lines), place]


def _label_image(shipment: dict[str, Any], service: str, tracking: str, image_format: str) -> bytes:
    data = LabelData(
        carrier="UPS",
        service=service,
        tracking_number=tracking,
        sender=_party(shipment.get("Shipper") or {}),
        recipient=_party(shipment.get("ShipTo") or {}),
        created_at=datetime.now(UTC),
    )
    if image_format == "GIF":
        out = io.BytesIO()
        Image.open(io.BytesIO(render_png(data))).save(out, format="GIF")
        return out.getvalue()
    # ZPL (and the EPL/SPL printers' languages, which no test asks for) as ZPL II.
    return render_zpl(data)


@dataclass
class ServedUps:
    url: str
    ups: UpsStandIn
    # In front of the stand-in: `front.lose_next = True` drops the connection after the next shipment request
    # was processed, before its answer arrives.
    front: LosesAnswers


@contextmanager
def serve_ups(ups: UpsStandIn) -> Iterator[ServedUps]:
    front = LosesAnswers(ups.app(), is_shipment_request)
    with run_in_thread(front) as url:
        yield ServedUps(url, ups, front)

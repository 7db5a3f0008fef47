"""Shipping: parcels, rates, shipments, labels, tracking events and fulfillments."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crossdock.model.money import Money
from crossdock.model.units import Dimensions, Weight


class TrackingStatus(StrEnum):
    PRE_TRANSIT = "pre_transit"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    RETURNED = "returned"
    UNKNOWN = "unknown"


class LabelFormat(StrEnum):
    PDF = "pdf"
    PNG = "png"
    ZPL = "zpl"

    @property
    def media_type(self) -> str:
        return {"pdf": "application/pdf", "png": "image/png", "zpl": "application/zpl"}[self.value]


class ShipmentStatus(StrEnum):
    DRAFT = "draft"
    RATED = "rated"
    LABEL_PENDING = "label_pending"
    LABEL_PURCHASED = "label_purchased"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    RETURNED = "returned"
    VOIDED = "voided"
    FAILED = "failed"


class Parcel(BaseModel):
    model_config = ConfigDict(frozen=True)

    weight: Weight
    dimensions: Dimensions | None = None
    reference: str | None = None


class Rate(BaseModel):
    """A service a shipment can go out with. `price` None means "price unknown until bought": a connection that
    quotes no rates (MyParcel.com prices a shipment when it registers it) still ships with a named service.
    A rate a connection quotes always has its price."""

    model_config = ConfigDict(frozen=True)

    carrier: str
    service_code: str
    service_name: str | None = None
    price: Money | None
    estimated_days: int | None = None
    remote_id: str | None = None
    connection_id: UUID | None = None


class Label(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: LabelFormat
    blob_key: str
    size: int = Field(ge=0)
    tracking_number: str | None = None


class TrackingEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: TrackingStatus
    occurred_at: AwareDatetime
    description: str | None = None
    location: str | None = None
    raw_status: str | None = None


class Shipment(BaseModel):
    id: UUID | None = None
    # None only for a shipment that is never stored: the one a checkout quote asks rates for has no order yet.
    order_id: UUID | None
    connection_id: UUID | None = None
    status: ShipmentStatus = ShipmentStatus.DRAFT
    parcels: list[Parcel] = Field(min_length=1)
    carrier: str | None = None
    service_code: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    rate: Rate | None = None
    label: Label | None = None
    events: list[TrackingEvent] = Field(default_factory=list)


class FulfillmentLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    line_external_id: str | None = None
    sku: str | None = None
    quantity: int = Field(gt=0)


class Fulfillment(BaseModel):
    id: UUID | None = None
    order_id: UUID
    shipment_id: UUID | None = None
    lines: list[FulfillmentLine] = Field(min_length=1)
    carrier: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    external_id: str | None = None
    pushed_at: AwareDatetime | None = None

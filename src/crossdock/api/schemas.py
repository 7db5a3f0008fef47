"""Request and response bodies of the REST API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from crossdock import model as m
from crossdock.store import tables as t
from crossdock.store.convert import doc_address, minor_money, row_customer, row_totals


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime


# Connections --------------------------------------------------------------------------------------------
class ConnectionCreate(Strict):
    connector: str = Field(
        description="Connector name, e.g. shopify, ebay, amazon, shippo, myparcelcom, carriers."
    )
    name: str = Field(min_length=1, max_length=200)
    base_url: str | None = Field(
        default=None, max_length=2000, description="Override the API address (sandboxes)."
    )
    settings: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(
        default_factory=dict, description="Write-only: stored encrypted, never returned."
    )


class ConnectionUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    base_url: str | None = Field(default=None, max_length=2000)
    settings: dict[str, Any] | None = None
    secrets: dict[str, str | None] | None = Field(
        default=None, description="Write-only. A value replaces that secret; null removes it."
    )
    status: Literal["active", "paused"] | None = None


class ConnectionOut(BaseModel):
    id: uuid.UUID
    connector: str
    name: str
    status: str
    status_reason: str | None
    base_url: str | None
    settings: dict[str, Any]
    secret_names: list[str] = Field(description="Which secrets are set. Their values are never returned.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: t.Connection, secret_names: list[str]) -> ConnectionOut:
        return cls(
            id=row.id,
            connector=row.connector,
            name=row.name,
            status=row.status,
            status_reason=row.status_reason,
            base_url=row.base_url,
            settings=row.settings,
            secret_names=secret_names,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class ConnectionList(BaseModel):
    items: list[ConnectionOut]


# Orders -------------------------------------------------------------------------------------------------
class OrderCreate(Strict):
    """A manual order. Money amounts are decimal strings ("19.99"), never JSON floats."""

    status: Literal["pending", "paid"] = "pending"
    currency: str
    customer: m.Customer = Field(default_factory=m.Customer)
    shipping_address: m.Address | None = None
    billing_address: m.Address | None = None
    lines: list[m.OrderLine] = Field(min_length=1, max_length=1000)
    totals: m.Totals = Field(default_factory=m.Totals)
    connection_id: uuid.UUID | None = None
    external_id: str | None = Field(default=None, max_length=255)
    external_number: str | None = Field(default=None, max_length=255)
    placed_at: AwareDatetime | None = None
    notes: str | None = Field(default=None, max_length=10000)
    tags: list[str] = Field(default_factory=list, max_length=100)

    def to_model(self) -> m.Order:
        return m.Order.model_validate(
            self.model_dump(exclude={"status"}) | {"status": m.OrderStatus(self.status)}
        )


class CancelRequest(Strict):
    reason: str | None = Field(default=None, max_length=1000)


class OrderLineOut(BaseModel):
    id: uuid.UUID
    external_id: str | None
    sku: str | None
    title: str
    quantity: int
    shipped_quantity: int
    unit_price: m.Money | None
    weight: m.Weight | None
    requires_shipping: bool


class OrderOut(BaseModel):
    id: uuid.UUID
    status: m.OrderStatus
    currency: str
    customer: m.Customer
    shipping_address: m.Address | None
    billing_address: m.Address | None
    lines: list[OrderLineOut]
    totals: m.Totals
    connection_id: uuid.UUID | None
    external_id: str | None
    external_number: str | None
    placed_at: datetime | None
    notes: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: t.Order) -> OrderOut:
        cur = row.currency
        return cls(
            id=row.id,
            status=m.OrderStatus(row.status),
            currency=cur,
            customer=row_customer(row),
            shipping_address=doc_address(row.shipping_address),
            billing_address=doc_address(row.billing_address),
            lines=[
                OrderLineOut(
                    id=line.id,
                    external_id=line.external_id,
                    sku=line.sku,
                    title=line.title,
                    quantity=line.quantity,
                    shipped_quantity=line.shipped_quantity,
                    unit_price=minor_money(line.unit_price_minor, cur),
                    weight=None if line.weight_g is None else m.Weight.grams(line.weight_g),
                    requires_shipping=line.requires_shipping,
                )
                for line in row.lines
            ],
            totals=row_totals(row),
            connection_id=row.connection_id,
            external_id=row.external_id,
            external_number=row.external_number,
            placed_at=row.placed_at,
            notes=row.notes,
            tags=list(row.tags or []),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class TimelineEventOut(BaseModel):
    id: uuid.UUID
    at: datetime
    kind: str
    severity: str
    summary: str
    detail: dict[str, Any]


class Timeline(BaseModel):
    order_id: uuid.UUID
    items: list[TimelineEventOut]


# Catalog ------------------------------------------------------------------------------------------------
class ProductCreate(Strict):
    title: str = Field(min_length=1, max_length=1000)
    description: str | None = None
    vendor: str | None = Field(default=None, max_length=500)
    category_id: uuid.UUID | None = None
    tags: list[str] = Field(default_factory=list, max_length=100)
    variants: list[m.Variant] = Field(min_length=1, max_length=500)


class VariantOut(BaseModel):
    id: uuid.UUID
    sku: str
    title: str | None
    price: m.Money | None
    weight: m.Weight | None
    barcode: str | None
    tags: list[str]


class ProductOut(BaseModel):
    id: uuid.UUID
    title: str
    description: str | None
    vendor: str | None
    category_id: uuid.UUID | None
    tags: list[str]
    variants: list[VariantOut]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: t.Product) -> ProductOut:
        return cls(
            id=row.id,
            title=row.title,
            description=row.description,
            vendor=row.vendor,
            category_id=row.category_id,
            tags=list(row.tags or []),
            variants=[
                VariantOut(
                    id=v.id,
                    sku=v.sku,
                    title=v.title,
                    price=minor_money(v.price_minor, v.currency),
                    weight=None if v.weight_g is None else m.Weight.grams(v.weight_g),
                    barcode=v.barcode,
                    tags=list(v.tags or []),
                )
                for v in row.variants
            ],
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class ProductPage(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None


class StockLevelIn(Strict):
    sku: str = Field(min_length=1, max_length=255)
    location: str = Field(default="default", min_length=1, max_length=255)
    available: int = Field(ge=-1_000_000_000, le=1_000_000_000)

    @field_validator("sku")
    @classmethod
    def _sku(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("sku must not start or end with whitespace")
        return value


class StockLevelOut(BaseModel):
    sku: str
    location: str
    available: int
    updated_at: datetime


class StockLevelList(BaseModel):
    items: list[StockLevelOut]


# Fulfillments ---------------------------------------------------------------------------------------------
class FulfillmentLineIn(Strict):
    line_external_id: str | None = Field(
        default=None, max_length=255, description="The channel's id of the order line."
    )
    sku: str | None = Field(default=None, max_length=255, description="Or the line's SKU.")
    quantity: int = Field(gt=0)


class FulfillmentCreate(Strict):
    lines: list[FulfillmentLineIn] | None = Field(
        default=None, description="What was shipped; left out: every line not shipped yet, in full."
    )
    carrier: str | None = Field(default=None, max_length=100)
    tracking_number: str | None = Field(default=None, max_length=100)
    tracking_url: str | None = Field(default=None, max_length=2000)


class TrackingUpdate(Strict):
    tracking_number: str = Field(min_length=1, max_length=100)
    carrier: str | None = Field(default=None, max_length=100)
    tracking_url: str | None = Field(default=None, max_length=2000)


class FulfillmentOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    shipment_id: uuid.UUID | None
    status: str = Field(description="local, pending, pushing, pushed or failed.")
    lines: list[dict[str, Any]]
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None
    external_id: str | None = Field(description="The channel's id for it, once pushed.")
    pushed_at: datetime | None
    error: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> FulfillmentOut:
        return cls.model_validate(row, from_attributes=True)


class FulfillmentList(BaseModel):
    items: list[FulfillmentOut]

"""The application's tables. Every tenant row carries account_id; repositories always filter on it."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from crossdock.store.types import ExactDecimal, JSONDoc, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: ExactDecimal(), dict[str, Any]: JSONDoc}


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def _account() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


def _updated() -> Mapped[datetime]:
    return mapped_column(default=utcnow, onupdate=utcnow)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Connection(Base):
    __tablename__ = "connections"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    connector: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    base_url: Mapped[str | None] = mapped_column(String(2000))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    secrets: Mapped[list[ConnectionSecret]] = relationship(
        back_populates="connection", cascade="all, delete-orphan", passive_deletes=True
    )


class ConnectionSecret(Base):
    """One encrypted credential of a connection. Plaintext never reaches this table."""

    __tablename__ = "connection_secrets"
    __table_args__ = (UniqueConstraint("connection_id", "name"),)

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = _updated()

    connection: Mapped[Connection] = relationship(back_populates="secrets")


class Binding(Base):
    """(connection, kind, external id) <-> canonical id, with the last external version seen."""

    __tablename__ = "bindings"
    __table_args__ = (
        UniqueConstraint("connection_id", "kind", "external_id"),
        Index("ix_bindings_canonical", "kind", "canonical_id"),
    )

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    canonical_id: Mapped[uuid.UUID]
    external_version: Mapped[str | None] = mapped_column(String(64))
    synced_at: Mapped[datetime] = _updated()
    # Set when crossdock itself changed the remote object, so the echo is not imported back as a change.
    pushed_version: Mapped[str | None] = mapped_column(String(64))


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_account_updated", "account_id", "updated_at", "id"),
        Index("ix_orders_account_status", "account_id", "status"),
        Index("ix_orders_account_number", "account_id", "external_number"),
        Index("ix_orders_account_email", "account_id", "customer_email"),
        Index(
            "uq_orders_source",
            "account_id",
            "connection_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
            sqlite_where=text("external_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    connection_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("connections.id", ondelete="SET NULL"))
    external_id: Mapped[str | None] = mapped_column(String(255))
    external_number: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    customer_name: Mapped[str | None] = mapped_column(String(500))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_phone: Mapped[str | None] = mapped_column(String(64))
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    billing_address: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    subtotal_minor: Mapped[int | None] = mapped_column(BigInteger)
    shipping_minor: Mapped[int | None] = mapped_column(BigInteger)
    tax_minor: Mapped[int | None] = mapped_column(BigInteger)
    discount_minor: Mapped[int | None] = mapped_column(BigInteger)
    total_minor: Mapped[int | None] = mapped_column(BigInteger)
    placed_at: Mapped[datetime | None]
    notes: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order",
        cascade="all, delete-orphan",
        order_by="OrderLine.position",
        passive_deletes=True,
    )


class OrderLine(Base):
    __tablename__ = "order_lines"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    external_id: Mapped[str | None] = mapped_column(String(255))
    sku: Mapped[str | None] = mapped_column(String(255), index=True)
    title: Mapped[str] = mapped_column(String(1000))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int | None] = mapped_column(BigInteger)
    weight_g: Mapped[Decimal | None]
    requires_shipping: Mapped[bool] = mapped_column(Boolean, default=True)
    shipped_quantity: Mapped[int] = mapped_column(Integer, default=0)

    order: Mapped[Order] = relationship(back_populates="lines")


class Category(Base):
    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("account_id", "parent_id", "name"),)

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = _created()


class Product(Base):
    __tablename__ = "products"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    title: Mapped[str] = mapped_column(String(1000))
    description: Mapped[str | None] = mapped_column(Text)
    vendor: Mapped[str | None] = mapped_column(String(500))
    category_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("categories.id", ondelete="SET NULL"))
    tags: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    variants: Mapped[list[Variant]] = relationship(
        back_populates="product", cascade="all, delete-orphan", order_by="Variant.sku", passive_deletes=True
    )


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("account_id", "sku"),)

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(1000))
    price_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    weight_g: Mapped[Decimal | None]
    barcode: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSONDoc, default=list)

    product: Mapped[Product] = relationship(back_populates="variants")


class StockLevel(Base):
    __tablename__ = "stock_levels"
    __table_args__ = (UniqueConstraint("account_id", "sku", "location"),)

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    sku: Mapped[str] = mapped_column(String(255))
    location: Mapped[str] = mapped_column(String(255), default="default")
    available: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = _updated()


class ShippingPolicyRow(Base):
    """An account's shipping policy (flows/policy.py ShippingPolicy) as one JSON document, with a version
    that every write must name (optimistic concurrency: two editors never overwrite each other unseen)."""

    __tablename__ = "shipping_policies"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    document: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = _updated()


class StockPush(Base):
    """What a connection's remote was last given for one SKU and location: a stock push sends only the levels
    whose quantity differs from it, and a level the remote could not place waits here with the reason until
    its quantity changes again."""

    __tablename__ = "stock_pushes"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    sku: Mapped[str] = mapped_column(String(255), primary_key=True)
    location: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[uuid.UUID] = _account()
    available: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    pushed_at: Mapped[datetime] = _updated()


class Shipment(Base):
    __tablename__ = "shipments"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("connections.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(32), default="draft")
    carrier: Mapped[str | None] = mapped_column(String(100))
    service_code: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(100), index=True)
    tracking_url: Mapped[str | None] = mapped_column(String(2000))
    # The remote's id of the label: a shipping platform's webhook names its shipment by it (tracking.find_shipment).
    external_id: Mapped[str | None] = mapped_column(String(255), index=True)
    rate_minor: Mapped[int | None] = mapped_column(BigInteger)
    rate_currency: Mapped[str | None] = mapped_column(String(3))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    # Sent with every purchase attempt of this shipment's label, so that a retry never buys a second one.
    idempotency_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    # Set, in its own transaction, before a purchase is sent: a shipment found with it and no label was sent
    # with an outcome never learned, and the remote is asked (find_label) before anything is bought again.
    purchase_started_at: Mapped[datetime | None]
    # The rate chosen (model.Rate as JSON, with the remote's rate id a purchase needs) and why it was chosen.
    rate: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    decision: Mapped[str | None] = mapped_column(Text)
    # What goes in it: [{"line_external_id", "sku", "quantity"}], the fulfillment's lines once it is bought.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list)
    # Why the purchase failed or the void was refused, in the remote's words.
    error: Mapped[str | None] = mapped_column(Text)

    parcels: Mapped[list[Parcel]] = relationship(
        back_populates="shipment",
        cascade="all, delete-orphan",
        order_by="Parcel.position",
        passive_deletes=True,
    )


class Parcel(Base):
    __tablename__ = "parcels"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    shipment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    weight_g: Mapped[Decimal]
    length_mm: Mapped[Decimal | None]
    width_mm: Mapped[Decimal | None]
    height_mm: Mapped[Decimal | None]
    reference: Mapped[str | None] = mapped_column(String(255))

    shipment: Mapped[Shipment] = relationship(back_populates="parcels")


class Label(Base):
    __tablename__ = "labels"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    shipment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(8))
    blob_key: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = _created()


class TrackingEvent(Base):
    __tablename__ = "tracking_events"
    __table_args__ = (UniqueConstraint("shipment_id", "occurred_at", "status"),)

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    shipment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    description: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(500))
    raw_status: Mapped[str | None] = mapped_column(String(200))


class Fulfillment(Base):
    """A shipment told to the order's channel: pending until pushed, then the channel's id for it."""

    __tablename__ = "fulfillments"
    __table_args__ = (
        # One fulfillment per shipment: a shipment's tracking reaches its channel once, whoever asks twice.
        Index(
            "uq_fulfillments_shipment",
            "shipment_id",
            unique=True,
            postgresql_where=text("shipment_id IS NOT NULL"),
            sqlite_where=text("shipment_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    shipment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("shipments.id", ondelete="SET NULL"))
    connection_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("connections.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(32), default="pending")
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list)
    carrier: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    tracking_url: Mapped[str | None] = mapped_column(String(2000))
    external_id: Mapped[str | None] = mapped_column(String(255))
    pushed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    # The tracking the channel has (number, carrier, URL): when one of them moves on, the push job updates the
    # channel.
    pushed_tracking_number: Mapped[str | None] = mapped_column(String(100))
    pushed_carrier: Mapped[str | None] = mapped_column(String(100))
    pushed_tracking_url: Mapped[str | None] = mapped_column(String(2000))
    # Why the last push failed, in the remote's words (status "failed").
    error: Mapped[str | None] = mapped_column(Text)


class TimelineEvent(Base):
    """One thing that happened to an order: what came in, what went out, what failed and why."""

    __tablename__ = "timeline_events"
    __table_args__ = (Index("ix_timeline_order_at", "order_id", "at"),)

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    at: Mapped[datetime] = _created()
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16), default="info")
    summary: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    # Never loaded; declared so that a flush writes a new order before the events that name it (events are
    # added without flushing, and the unit of work orders its inserts by relationships, not by foreign keys).
    order: Mapped[Order] = relationship(lazy="raise", passive_deletes=True)


# Engine: remote calls, rate limits, outbound webhooks (issue 3, "remote" part) ---------------------------------
class RemoteCall(Base):
    """One HTTP call to a remote API: what was asked (URL without secrets), what came back, how long it took."""

    __tablename__ = "remote_calls"
    __table_args__ = (
        Index("ix_remote_calls_account_at", "account_id", "at"),
        Index("ix_remote_calls_connection_at", "connection_id", "at"),
        Index("ix_remote_calls_order", "order_id"),
        Index("ix_remote_calls_at", "at"),
    )

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    connection_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("connections.id", ondelete="SET NULL"))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    connector: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(10))
    url: Mapped[str] = mapped_column(String(2000))
    status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # None when the call succeeded; else permanent, configuration, retryable, rate_limited, timeout, connection.
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = _created()


class RateLimit(Base):
    """GCRA state of one rate-limit bucket of a connection, shared by every worker (see engine/ratelimit.py)."""

    __tablename__ = "rate_limits"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = _account()
    interval_s: Mapped[float] = mapped_column(Float)
    burst: Mapped[int] = mapped_column(Integer)
    # Theoretical arrival time, unix seconds: the bucket is empty again at tat.
    tat: Mapped[float] = mapped_column(Float)
    # The remote's headers set interval_s/burst: the connector's declared plan no longer overrides them.
    adjusted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = _updated()


class WebhookEndpoint(Base):
    """A subscriber of outbound events. Signing secrets are sealed by the vault; the old one lives on for a
    day after a rotation so receivers can switch over."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret_key_id: Mapped[str] = mapped_column(String(32))
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_key_id: Mapped[str | None] = mapped_column(String(32))
    previous_secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None]
    # First failed attempt since the last success: the endpoint is disabled when this is old enough.
    failing_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class WebhookDelivery(Base):
    """One event for one endpoint. The body is stored as sent, so every attempt sends the same bytes."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    event_type: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    # pending, succeeded, failed (every attempt of the schedule failed, or 410), cancelled (endpoint disabled).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    completed_at: Mapped[datetime | None]

    attempt_rows: Mapped[list[WebhookAttempt]] = relationship(
        back_populates="delivery",
        cascade="all, delete-orphan",
        order_by="WebhookAttempt.number",
        passive_deletes=True,
    )


class WebhookAttempt(Base):
    """One try of a delivery: the request headers (no secrets), the answer and how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "number"),)

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")
    at: Mapped[datetime] = _created()
    request_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)

    delivery: Mapped[WebhookDelivery] = relationship(back_populates="attempt_rows")


# Engine: inbox, jobs, sync runs and cursors (issue 3, "jobs" part) ---------------------------------------------
# Job statuses. "failed" means failed-will-retry: it is still waiting, like "queued".
JOB_WAITING = ("queued", "failed")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "dead", "cancelled")


class Job(Base):
    """A unit of work, enqueued in the transaction of the change that caused it. The partial unique indexes
    are the queue's promises; workers rely on them rather than on checks (see engine/jobs.py)."""

    __tablename__ = "jobs"
    __table_args__ = (
        # At most one waiting job per queueing key: enqueueing the same work again is a no-op.
        Index(
            "uq_jobs_queueing_key_waiting",
            "queueing_key",
            unique=True,
            postgresql_where=text("queueing_key IS NOT NULL AND status IN ('queued', 'failed')"),
            sqlite_where=text("queueing_key IS NOT NULL AND status IN ('queued', 'failed')"),
        ),
        # At most one running job per lock key: jobs of one order never overlap.
        Index(
            "uq_jobs_lock_key_running",
            "lock_key",
            unique=True,
            postgresql_where=text("lock_key IS NOT NULL AND status = 'running'"),
            sqlite_where=text("lock_key IS NOT NULL AND status = 'running'"),
        ),
        # One run per periodic task and tick, however many workers' schedulers try to enqueue it.
        Index(
            "uq_jobs_periodic_tick",
            "periodic_task",
            "periodic_tick",
            unique=True,
            postgresql_where=text("periodic_task IS NOT NULL"),
            sqlite_where=text("periodic_task IS NOT NULL"),
        ),
        Index("ix_jobs_claim", "status", "run_at"),
        Index("ix_jobs_account_created", "account_id", "created_at", "id"),
        Index("ix_jobs_order", "order_id"),
        Index("ix_jobs_worker", "worker_id"),
    )

    id: Mapped[uuid.UUID] = _id()
    # None for maintenance jobs that serve every account (the inbox purge, the sync scheduler).
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    queueing_key: Mapped[str | None] = mapped_column(String(255))
    lock_key: Mapped[str | None] = mapped_column(String(255))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_at: Mapped[datetime] = _created()
    worker_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None]
    # Set by a cancel request while the job runs; its worker stops it at the next heartbeat.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Work that must not happen for a cancelled order (buying its label, say): when the order is cancelled or
    # refunded while this job still waits, the job is cancelled in the same transaction (Tenant.transition_order).
    cancel_with_order: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_error: Mapped[str | None] = mapped_column(Text)
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    periodic_task: Mapped[str | None] = mapped_column(String(100))
    periodic_tick: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class InboxMessage(Base):
    """A raw inbound payload (webhook body with its headers, or a pulled page), stored before it is
    acknowledged or processed and kept for CROSSDOCK_INBOX_RETENTION_DAYS so orders can be derived again."""

    __tablename__ = "inbox"
    __table_args__ = (
        # The first payload with a dedup key is the original; repeats are stored as duplicates of it.
        Index(
            "uq_inbox_dedup",
            "connection_id",
            "kind",
            "dedup_key",
            unique=True,
            postgresql_where=text("duplicate_of IS NULL"),
            sqlite_where=text("duplicate_of IS NULL"),
        ),
        Index("ix_inbox_connection_received", "connection_id", "received_at"),
        Index("ix_inbox_received", "received_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(100))
    dedup_key: Mapped[str] = mapped_column(String(255))
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Compressed with lz4 on a PostgreSQL server that has it (migration 0012); SQLAlchemy has no word for that.
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # received, processed, quarantined (it did not map; `error` says why), discarded (a quarantined payload an
    # operator put aside), failed (its processing job is dead), duplicate.
    status: Mapped[str] = mapped_column(String(16), default="received")
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("inbox.id", ondelete="CASCADE"))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = _created()
    processed_at: Mapped[datetime | None]

    # Never loaded; makes a flush write a new order before the inbox row that names it (see TimelineEvent.order).
    order: Mapped[Order | None] = relationship(lazy="raise", passive_deletes=True)


class SyncRun(Base):
    """One scheduled or manual sync of one stream of a connection, with what it read and what it changed."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_account_started", "account_id", "started_at", "id"),
        Index("ix_sync_runs_connection_stream", "connection_id", "stream", "started_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")
    # running, succeeded, failed.
    status: Mapped[str] = mapped_column(String(16), default="running")
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    pages: Mapped[int] = mapped_column(Integer, default=0)
    read: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    # The cursor the run started from and the one it reached, for "what did this run cover".
    cursor_from: Mapped[datetime | None]
    cursor_to: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None]


class SyncCursor(Base):
    """Low watermark of one stream of a connection on the remote's updated time: everything updated before it
    has been imported. Written in the same transaction as the records it covers."""

    __tablename__ = "cursors"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = _account()
    watermark: Mapped[datetime | None]
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = _updated()
    # An unfinished pull: its window ("since", "until") and where its next page starts ("page"), written with
    # each page's records so that a pull cut short resumes where it stopped. None when no pull is unfinished.
    resume: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)


class OAuthState(Base):
    """One OAuth authorization in flight: the state nonce sent to the remote (stored hashed), who asked, and the
    browser it must come back to. Used once: a callback that presents it again is refused."""

    __tablename__ = "oauth_states"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    connector: Mapped[str] = mapped_column(String(64))
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Hash of the browser-binding cookie set by /oauth/{connector}/start.
    browser_hash: Mapped[str] = mapped_column(String(64))
    # What the flow needs back at the callback: shop domain, connection name, redirect, existing connection id.
    details: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class User(Base):
    """A person who signs in to the control panel. One account each; the password is stored as an argon2 hash
    (security/passwords.py), the e-mail address lower-cased."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = _created()
    last_login_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]


class PanelSession(Base):
    """One signed-in browser: the cookie's secret (stored hashed), who signed in (a user, or an API token), the
    CSRF token its forms carry, and when it ends. Signing out or revoking the token ends it."""

    __tablename__ = "panel_sessions"

    id: Mapped[uuid.UUID] = _id()
    account_id: Mapped[uuid.UUID] = _account()
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    last_seen_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LoginFailure(Base):
    """A refused sign-in, kept for the rate limit: by e-mail address and by client address, for a window."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)

    id: Mapped[uuid.UUID] = _id()
    key: Mapped[str] = mapped_column(String(400))
    at: Mapped[datetime] = _created()

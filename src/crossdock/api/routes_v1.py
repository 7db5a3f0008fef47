"""REST API v1: every route is scoped to the caller's account; another account's object is a 404."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import ValidationError

from crossdock import model as m
from crossdock.api.deps import CallerDep, HubDep
from crossdock.api.problems import Problem, documented, field_path, invalid, message
from crossdock.api.schemas import (
    AccountOut,
    CancelRequest,
    ConnectionCreate,
    ConnectionList,
    ConnectionOut,
    ConnectionUpdate,
    FulfillmentCreate,
    FulfillmentList,
    FulfillmentOut,
    OrderCreate,
    OrderOut,
    OrderPage,
    ProductCreate,
    ProductOut,
    ProductPage,
    StockLevelIn,
    StockLevelList,
    StockLevelOut,
    Timeline,
    TimelineEventOut,
    TrackingUpdate,
)
from crossdock.connectors.base import ConnectorSpec
from crossdock.connectors.registry import SPECS
from crossdock.engine import inventory
from crossdock.engine.fulfillments import fulfillments_of, record_fulfillment
from crossdock.engine.fulfillments import update_tracking as update_fulfillment_tracking
from crossdock.hub import Hub
from crossdock.security.urls import UnsafeURL, check_outbound_url
from crossdock.store.repo import NotFound
from crossdock.store.types import utcnow

router = APIRouter(prefix="/api/v1")
Limit = Annotated[int, Query(ge=1, le=250, description="Page size (1-250).")]


def _from_validation(exc: ValidationError, prefix: str = "") -> Problem:
    """A model-level validation failure (after the request body parsed) as a problem naming each field."""
    errors = [
        {
            "field": (prefix + field_path(e["loc"])) if e["loc"] else prefix.rstrip(".") or "body",
            "message": message(e),
        }
        for e in exc.errors()
    ]
    first = errors[0]
    return Problem(
        422, "Invalid request", f"{first['field']}: {first['message']}", kind="validation", errors=errors
    )


@router.get("/accounts/me", response_model=AccountOut, tags=["accounts"])
async def account_me(caller: CallerDep) -> AccountOut:
    return AccountOut(id=caller.account.id, name=caller.account.name, created_at=caller.account.created_at)


# Connections ----------------------------------------------------------------------------------------------
def _spec(name: str) -> ConnectorSpec:
    spec = SPECS.get(name)
    if spec is None:
        raise invalid("connector", f"unknown connector '{name}'; choose one of: {', '.join(sorted(SPECS))}")
    return spec


def _check_base_url(hub: Hub, url: str | None) -> None:
    if url is None:
        return
    try:
        check_outbound_url(url, allow_private=hub.settings.allow_private_urls)
    except UnsafeURL as exc:
        raise invalid("base_url", str(exc)) from None


def _check_fields(
    spec: ConnectorSpec, settings: dict[str, object], secrets: dict[str, object], *, partial: bool
) -> None:
    for name in spec.unknown_settings(settings):
        known = ", ".join(f.name for f in spec.settings) or "none"
        raise invalid(
            f"settings.{name}", f"{spec.name} connections have no setting '{name}' (known: {known})"
        )
    for name in spec.unknown_secrets(secrets):
        known = ", ".join(f.name for f in spec.secrets) or "none"
        raise invalid(f"secrets.{name}", f"{spec.name} connections have no secret '{name}' (known: {known})")
    if partial:
        return
    for name in spec.missing_settings(settings):
        raise invalid(f"settings.{name}", f"required for a {spec.title} connection")
    for name in spec.missing_secrets(secrets):
        raise invalid(f"secrets.{name}", f"required for a {spec.title} connection")


@router.post(
    "/connections", response_model=ConnectionOut, status_code=status.HTTP_201_CREATED, tags=["connections"]
)
async def create_connection(body: ConnectionCreate, caller: CallerDep, hub: HubDep) -> ConnectionOut:
    spec = _spec(body.connector)
    _check_fields(spec, body.settings, dict(body.secrets), partial=False)
    _check_base_url(hub, body.base_url)
    row = await caller.tenant.create_connection(
        connector=body.connector,
        name=body.name,
        vault=hub.vault,
        settings=body.settings,
        base_url=body.base_url,
        secrets=body.secrets,
    )
    return ConnectionOut.of(row, sorted(body.secrets))


@router.get("/connections", response_model=ConnectionList, tags=["connections"])
async def list_connections(caller: CallerDep) -> ConnectionList:
    rows = await caller.tenant.list_connections()
    return ConnectionList(items=[ConnectionOut.of(r, await caller.tenant.secret_names(r.id)) for r in rows])


@router.get("/connections/{connection_id}", response_model=ConnectionOut, tags=["connections"])
async def get_connection(connection_id: uuid.UUID, caller: CallerDep) -> ConnectionOut:
    row = await caller.tenant.get_connection(connection_id)
    return ConnectionOut.of(row, await caller.tenant.secret_names(row.id))


@router.patch(
    "/connections/{connection_id}",
    response_model=ConnectionOut,
    tags=["connections"],
    responses=documented(409),
)
async def update_connection(
    connection_id: uuid.UUID, body: ConnectionUpdate, caller: CallerDep, hub: HubDep
) -> ConnectionOut:
    row = await caller.tenant.get_connection(connection_id)
    spec = _spec(row.connector)
    _check_fields(spec, body.settings or {}, dict(body.secrets or {}), partial=True)
    if body.settings is not None:
        for name in spec.missing_settings(body.settings):
            raise invalid(f"settings.{name}", f"required for a {spec.title} connection")
    if "base_url" in body.model_fields_set:
        _check_base_url(hub, body.base_url)
        row.base_url = body.base_url
    if body.name is not None:
        row.name = body.name
    if body.settings is not None:
        row.settings = body.settings
    if body.status is not None:
        if row.status in {"needs_reauth", "disabled"} and body.status == "active":
            raise Problem(
                409,
                "Conflict",
                f"this connection is {row.status}: {row.status_reason or 'its credentials no longer work'}; "
                "update its secrets (or re-authorise) to activate it",
                kind="conflict",
            )
        row.status = body.status
        row.status_reason = None
    for name, value in (body.secrets or {}).items():
        if value is None:
            await caller.tenant.delete_secret(row, name)
        else:
            await caller.tenant.set_secret(row, name, value, hub.vault)
        if row.status == "needs_reauth":
            row.status, row.status_reason = "active", None
    row.updated_at = utcnow()
    return ConnectionOut.of(row, await caller.tenant.secret_names(row.id))


@router.delete("/connections/{connection_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["connections"])
async def delete_connection(connection_id: uuid.UUID, caller: CallerDep) -> Response:
    await caller.tenant.delete_connection(connection_id)
    return Response(status_code=204)


# Orders ---------------------------------------------------------------------------------------------------
@router.get("/orders", response_model=OrderPage, tags=["orders"])
async def list_orders(
    caller: CallerDep,
    status: m.OrderStatus | None = None,
    connection_id: uuid.UUID | None = None,
    updated_since: Annotated[
        m.order.datetime | None, Query(description="ISO 8601 with a zone, e.g. 2025-01-31T00:00:00Z")
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Order number, customer email or name.")
    ] = None,
    limit: Limit = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> OrderPage:
    if updated_since is not None and updated_since.tzinfo is None:
        raise invalid("updated_since", "give a time zone, e.g. 2025-01-31T00:00:00Z")
    page = await caller.tenant.list_orders(
        status=status,
        connection_id=connection_id,
        updated_since=updated_since,
        q=q,
        limit=limit,
        cursor=cursor,
    )
    return OrderPage(items=[OrderOut.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.post("/orders", response_model=OrderOut, status_code=status.HTTP_201_CREATED, tags=["orders"])
async def create_order(body: OrderCreate, caller: CallerDep) -> OrderOut:
    try:
        order = body.to_model()
    except ValidationError as exc:
        raise _from_validation(exc) from None
    row = await caller.tenant.create_order(order, source="manual")
    return OrderOut.of(await caller.tenant.get_order(row.id))


@router.get("/orders/{order_id}", response_model=OrderOut, tags=["orders"])
async def get_order(order_id: uuid.UUID, caller: CallerDep) -> OrderOut:
    return OrderOut.of(await caller.tenant.get_order(order_id))


@router.post("/orders/{order_id}/cancel", response_model=OrderOut, tags=["orders"], responses=documented(409))
async def cancel_order(order_id: uuid.UUID, caller: CallerDep, body: CancelRequest | None = None) -> OrderOut:
    row = await caller.tenant.get_order(order_id)
    await caller.tenant.transition_order(
        row, m.OrderStatus.CANCELLED, reason=(body.reason if body else None) or "cancelled through the API"
    )
    return OrderOut.of(row)


@router.post(
    "/orders/{order_id}/fulfillments",
    response_model=FulfillmentOut,
    status_code=status.HTTP_201_CREATED,
    tags=["orders"],
    responses=documented(409),
)
async def create_fulfillment(
    order_id: uuid.UUID, body: FulfillmentCreate, caller: CallerDep
) -> FulfillmentOut:
    """Record that (some of) the order shipped. The order moves to shipped or partially_shipped, and the
    channel it came from is told, with the tracking, exactly once."""
    recorded = await record_fulfillment(
        caller.tenant.session,
        caller.tenant,
        order_id,
        lines=[m.FulfillmentLine(**line.model_dump()) for line in body.lines] if body.lines else None,
        carrier=body.carrier,
        tracking_number=body.tracking_number,
        tracking_url=body.tracking_url,
    )
    return FulfillmentOut.of(recorded.fulfillment)


@router.get("/orders/{order_id}/fulfillments", response_model=FulfillmentList, tags=["orders"])
async def list_fulfillments(order_id: uuid.UUID, caller: CallerDep) -> FulfillmentList:
    await caller.tenant.get_order(order_id)
    rows = await fulfillments_of(caller.tenant.session, caller.tenant, order_id)
    return FulfillmentList(items=[FulfillmentOut.of(row) for row in rows])


@router.patch(
    "/orders/{order_id}/fulfillments/{fulfillment_id}", response_model=FulfillmentOut, tags=["orders"]
)
async def change_tracking(
    order_id: uuid.UUID, fulfillment_id: uuid.UUID, body: TrackingUpdate, caller: CallerDep
) -> FulfillmentOut:
    """Change a fulfillment's tracking; the channel is updated where it allows it."""
    await caller.tenant.get_order(order_id)
    row = await update_fulfillment_tracking(
        caller.tenant.session,
        caller.tenant,
        fulfillment_id,
        tracking_number=body.tracking_number,
        carrier=body.carrier,
        tracking_url=body.tracking_url,
    )
    if row.order_id != order_id:
        raise NotFound("fulfillment", fulfillment_id)
    return FulfillmentOut.of(row)


@router.get("/orders/{order_id}/timeline", response_model=Timeline, tags=["orders"])
async def order_timeline(order_id: uuid.UUID, caller: CallerDep) -> Timeline:
    events = await caller.tenant.timeline(order_id)
    return Timeline(
        order_id=order_id,
        items=[
            TimelineEventOut(
                id=e.id, at=e.at, kind=e.kind, severity=e.severity, summary=e.summary, detail=e.detail
            )
            for e in events
        ],
    )


# Catalog --------------------------------------------------------------------------------------------------
@router.post(
    "/products",
    response_model=ProductOut,
    status_code=status.HTTP_201_CREATED,
    tags=["catalog"],
    responses=documented(409),
)
async def create_product(body: ProductCreate, caller: CallerDep) -> ProductOut:
    try:
        product = m.Product.model_validate(body.model_dump())
    except ValidationError as exc:
        raise _from_validation(exc) from None
    try:
        row = await caller.tenant.create_product(product)
    except NotFound as exc:
        # A body naming what is not there is bad input (422, naming the field), not a missing resource (404).
        raise invalid("category_id", str(exc)) from None
    return ProductOut.of(await caller.tenant.get_product(row.id))


@router.get("/products", response_model=ProductPage, tags=["catalog"])
async def list_products(
    caller: CallerDep,
    sku: Annotated[str | None, Query(max_length=255)] = None,
    limit: Limit = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> ProductPage:
    page = await caller.tenant.list_products(limit=limit, cursor=cursor, sku=sku)
    return ProductPage(items=[ProductOut.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/products/{product_id}", response_model=ProductOut, tags=["catalog"])
async def get_product(product_id: uuid.UUID, caller: CallerDep) -> ProductOut:
    return ProductOut.of(await caller.tenant.get_product(product_id))


@router.get("/stock-levels", response_model=StockLevelList, tags=["catalog"])
async def list_stock_levels(
    caller: CallerDep,
    sku: Annotated[str | None, Query(max_length=255)] = None,
    location: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> StockLevelList:
    rows = await caller.tenant.list_stock(sku=sku, location=location, limit=limit)
    return StockLevelList(
        items=[
            StockLevelOut(sku=r.sku, location=r.location, available=r.available, updated_at=r.updated_at)
            for r in rows
        ]
    )


@router.put("/stock-levels", response_model=StockLevelOut, tags=["catalog"])
async def set_stock_level(body: StockLevelIn, caller: CallerDep) -> StockLevelOut:
    """Set a SKU's available quantity at a location. Every active connection that takes stock levels (Shopify)
    gets it pushed in the background."""
    row = await inventory.set_stock(
        caller.tenant, m.StockLevel(sku=body.sku, location=body.location, available=body.available)
    )
    return StockLevelOut(
        sku=row.sku, location=row.location, available=row.available, updated_at=row.updated_at
    )

"""REST API for outbound webhook endpoints: /api/v1/webhook-endpoints. Scoped to the caller's account."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import selectinload

from crossdock.api.deps import CallerDep, HubDep
from crossdock.api.problems import documented, invalid
from crossdock.engine import webhooks_out as wh
from crossdock.hub import Hub
from crossdock.security.urls import UnsafeURL
from crossdock.store import tables as t
from crossdock.store.repo import Conflict, NotFound
from crossdock.store.types import utcnow

router = APIRouter(prefix="/api/v1/webhook-endpoints", tags=["webhooks"])

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _event_types(value: list[str] | Literal["*"] | None) -> list[str] | None:
    if value is None:
        return None
    if value == "*":
        return [wh.ALL_EVENTS]
    if not value:
        raise ValueError('give at least one event type, or "*" for all')
    for name in value:
        if name != wh.ALL_EVENTS and not _EVENT_TYPE.match(name):
            raise ValueError(f"'{name}' is not an event type (e.g. {', '.join(wh.EVENT_TYPES[:3])})")
    return sorted(set(value))


class EndpointCreate(_Strict):
    url: str = Field(max_length=2000, description="Where events are POSTed (https:// recommended).")
    event_types: list[str] | Literal["*"] = Field(
        default="*",
        validate_default=True,
        description=f'Event types to receive, or "*" for all. Known: {", ".join(wh.EVENT_TYPES)}.',
    )
    enabled: bool = True
    description: str | None = Field(default=None, max_length=500)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | Literal["*"]) -> list[str]:
        result = _event_types(value)
        assert result is not None
        return result


class EndpointUpdate(_Strict):
    url: str | None = Field(default=None, max_length=2000)
    event_types: list[str] | Literal["*"] | None = None
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | Literal["*"] | None) -> list[str] | None:
        return _event_types(value)


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then deliveries also carry a signature made with the previous secret."
    )
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: t.WebhookEndpoint) -> EndpointOut:
        expires = row.previous_secret_expires_at
        return cls(
            id=row.id,
            url=row.url,
            description=row.description,
            event_types=row.event_types,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            previous_secret_expires_at=expires if expires is not None and expires > utcnow() else None,
            failing_since=row.failing_since,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The signing secret (whsec_...). Shown only now: store it.")


class EndpointList(BaseModel):
    items: list[EndpointOut]


class SecretRotated(BaseModel):
    secret: str = Field(description="The new signing secret. Shown only now: store it.")
    previous_secret_expires_at: datetime


class AttemptOut(BaseModel):
    number: int
    trigger: str
    at: datetime
    outcome: str
    response_status: int | None
    response_excerpt: str | None
    duration_ms: int
    error: str | None
    request_headers: dict[str, Any]


class DeliveryOut(BaseModel):
    id: uuid.UUID
    webhook_id: str
    event_type: str
    order_id: uuid.UUID | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    completed_at: datetime | None
    payload: str = Field(description="The body as sent (the same bytes on every attempt).")
    attempt_log: list[AttemptOut]

    @classmethod
    def of(cls, row: t.WebhookDelivery) -> DeliveryOut:
        return cls(
            id=row.id,
            webhook_id=f"msg_{row.id.hex}",
            event_type=row.event_type,
            order_id=row.order_id,
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            last_status=row.last_status,
            last_error=row.last_error,
            created_at=row.created_at,
            completed_at=row.completed_at,
            payload=row.body,
            attempt_log=[
                AttemptOut(
                    number=a.number,
                    trigger=a.trigger,
                    at=a.at,
                    outcome=a.outcome,
                    response_status=a.response_status,
                    response_excerpt=a.response_excerpt,
                    duration_ms=a.duration_ms,
                    error=a.error,
                    request_headers=a.request_headers,
                )
                for a in row.attempt_rows
            ],
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


async def _check_url(hub: Hub, url: str) -> None:
    try:
        await wh.check_endpoint_url(hub, url)
    except UnsafeURL as exc:
        raise invalid("url", str(exc)) from None


async def _endpoint(caller: CallerDep, endpoint_id: uuid.UUID) -> t.WebhookEndpoint:
    row = (
        await caller.tenant.session.scalars(
            caller.tenant.scoped(t.WebhookEndpoint).where(t.WebhookEndpoint.id == endpoint_id)
        )
    ).first()
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return row


@router.post("", response_model=EndpointCreated, status_code=status.HTTP_201_CREATED)
async def create_endpoint(body: EndpointCreate, caller: CallerDep, hub: HubDep) -> EndpointCreated:
    await _check_url(hub, body.url)
    assert isinstance(body.event_types, list)
    row, secret = wh.new_endpoint(
        hub.vault,
        caller.account.id,
        url=body.url,
        event_types=body.event_types,
        enabled=body.enabled,
        description=body.description,
    )
    caller.tenant.session.add(row)
    await caller.tenant.session.flush()
    return EndpointCreated(**EndpointOut.of(row).model_dump(), secret=secret)


@router.get("", response_model=EndpointList)
async def list_endpoints(caller: CallerDep) -> EndpointList:
    rows = await caller.tenant.session.scalars(
        caller.tenant.scoped(t.WebhookEndpoint).order_by(t.WebhookEndpoint.created_at, t.WebhookEndpoint.id)
    )
    return EndpointList(items=[EndpointOut.of(r) for r in rows.all()])


@router.get("/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(endpoint_id: uuid.UUID, caller: CallerDep) -> EndpointOut:
    return EndpointOut.of(await _endpoint(caller, endpoint_id))


@router.patch("/{endpoint_id}", response_model=EndpointOut)
async def update_endpoint(
    endpoint_id: uuid.UUID, body: EndpointUpdate, caller: CallerDep, hub: HubDep
) -> EndpointOut:
    row = await _endpoint(caller, endpoint_id)
    if body.url is not None:
        await _check_url(hub, body.url)
        row.url = body.url
    if body.event_types is not None:
        assert isinstance(body.event_types, list)
        row.event_types = body.event_types
    if "description" in body.model_fields_set:
        row.description = body.description
    if body.enabled is not None:
        wh.set_enabled(row, body.enabled)
    row.updated_at = utcnow()
    return EndpointOut.of(row)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(endpoint_id: uuid.UUID, caller: CallerDep) -> Response:
    row = await _endpoint(caller, endpoint_id)
    await caller.tenant.session.delete(row)
    await caller.tenant.session.flush()
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret", response_model=SecretRotated)
async def rotate_secret(endpoint_id: uuid.UUID, caller: CallerDep, hub: HubDep) -> SecretRotated:
    row = await _endpoint(caller, endpoint_id)
    secret = wh.rotate_secret(hub.vault, row)
    assert row.previous_secret_expires_at is not None
    return SecretRotated(secret=secret, previous_secret_expires_at=row.previous_secret_expires_at)


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    endpoint_id: uuid.UUID,
    caller: CallerDep,
    delivery_status: Annotated[
        Literal["pending", "succeeded", "failed", "cancelled"] | None, Query(alias="status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> DeliveryPage:
    """Newest first, each with its attempts."""
    await _endpoint(caller, endpoint_id)
    try:
        rows, next_cursor = await wh.list_deliveries(
            caller.tenant.session,
            caller.account.id,
            endpoint_id,
            status=delivery_status,
            limit=limit,
            cursor=cursor,
        )
    except Conflict:
        raise
    except ValueError as exc:
        raise invalid("cursor", str(exc)) from None
    return DeliveryPage(items=[DeliveryOut.of(r) for r in rows], next_cursor=next_cursor)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=documented(409),
)
async def redeliver(endpoint_id: uuid.UUID, delivery_id: uuid.UUID, caller: CallerDep) -> DeliveryOut:
    """Send the delivery once more, now, with the same webhook-id. Its attempts so far are kept."""
    endpoint = await _endpoint(caller, endpoint_id)
    d = t.WebhookDelivery
    row = (
        await caller.tenant.session.scalars(
            caller.tenant.scoped(d)
            .where(d.id == delivery_id, d.endpoint_id == endpoint.id)
            .options(selectinload(d.attempt_rows))
        )
    ).first()
    if row is None:
        raise NotFound("webhook delivery", delivery_id)
    await wh.redeliver(caller.tenant.session, endpoint, row)
    return DeliveryOut.of(row)

"""Outbound webhook endpoints in the panel: the list, creating one (its signing secret shown once), enabling and
disabling, rotating the secret, deleting after a confirmation, and each endpoint's delivery log with its
attempts and a redeliver button. Everything goes through engine.webhooks_out and the API's own request model,
so the panel checks URLs and event types exactly as `/api/v1/webhook-endpoints` does."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from crossdock.api.routes_webhooks import EndpointCreate
from crossdock.engine import webhooks_out as wh
from crossdock.security.urls import UnsafeURL
from crossdock.store import tables as t
from crossdock.store.repo import Conflict
from crossdock.web.context import Panel
from crossdock.web.deps import FormDep, PanelDep, PanelError
from crossdock.web.render import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 20
FIELD_LABELS = {"url": "URL", "event_types": "Events", "description": "Description"}


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _not_found(what) from None


def _not_found(what: str) -> PanelError:
    return PanelError(
        404,
        f"No such {what}",
        f"This {what} does not exist in your account (it may have been deleted). Go back to Webhooks.",
    )


async def _endpoint(panel: Panel, endpoint_id: str) -> t.WebhookEndpoint:
    ident = _uuid(endpoint_id, "webhook endpoint")
    row = (
        await panel.db.scalars(panel.tenant.scoped(t.WebhookEndpoint).where(t.WebhookEndpoint.id == ident))
    ).first()
    if row is None:
        raise _not_found("webhook endpoint")
    return row


def _back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?notice={quote(notice)}", status_code=303)


async def _list_page(request: Request, panel: Panel, *, status_code: int = 200, **form: Any) -> Response:
    rows = (
        await panel.db.scalars(
            panel.tenant.scoped(t.WebhookEndpoint).order_by(
                t.WebhookEndpoint.created_at, t.WebhookEndpoint.id
            )
        )
    ).all()
    return render(
        request,
        "webhooks/list.html",
        panel=panel,
        active="webhooks",
        status_code=status_code,
        endpoints=rows,
        event_types=wh.EVENT_TYPES,
        all_events=wh.ALL_EVENTS,
        form={"url": "", "event_types": [wh.ALL_EVENTS], "description": "", "error": None} | form,
    )


@router.get("/webhooks")
async def webhooks(request: Request, panel: PanelDep) -> Response:
    return await _list_page(request, panel)


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{FIELD_LABELS.get(field, field)}: {message}" if field else message


@router.post("/webhooks")
async def create_endpoint(request: Request, panel: PanelDep, form: FormDep) -> Response:
    url = str(form.get("url") or "").strip()
    chosen = [str(v) for v in form.getlist("event_types")]
    description = str(form.get("description") or "").strip() or None
    entered = {"url": url, "event_types": chosen, "description": description or ""}
    try:
        body = EndpointCreate.model_validate(
            {
                "url": url,
                "event_types": "*" if wh.ALL_EVENTS in chosen else chosen,
                "description": description,
            }
        )
        await wh.check_endpoint_url(panel.hub, body.url)
    except ValidationError as exc:
        return await _list_page(request, panel, status_code=422, **entered, error=_problem(exc))
    except UnsafeURL as exc:
        return await _list_page(request, panel, status_code=422, **entered, error=f"URL: {exc}")
    assert isinstance(body.event_types, list)
    row, secret = wh.new_endpoint(
        panel.hub.vault,
        panel.account.id,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
    )
    panel.db.add(row)
    await panel.db.flush()
    return _secret_page(request, panel, row, secret, created=True)


def _secret_page(
    request: Request, panel: Panel, row: t.WebhookEndpoint, secret: str, *, created: bool
) -> Response:
    """The endpoint's new signing secret, shown this once."""
    return render(
        request,
        "webhooks/secret.html",
        panel=panel,
        active="webhooks",
        endpoint=row,
        secret=secret,
        created=created,
    )


@router.post("/webhooks/{endpoint_id}/enable")
async def enable_endpoint(endpoint_id: str, panel: PanelDep, form: FormDep) -> Response:
    row = await _endpoint(panel, endpoint_id)
    wh.set_enabled(row, True)
    return _back("/webhooks", f"Enabled {row.url}: new events are delivered to it again.")


@router.post("/webhooks/{endpoint_id}/disable")
async def disable_endpoint(endpoint_id: str, panel: PanelDep, form: FormDep) -> Response:
    row = await _endpoint(panel, endpoint_id)
    wh.set_enabled(row, False)
    return _back("/webhooks", f"Disabled {row.url}: no events are sent to it until you enable it.")


@router.post("/webhooks/{endpoint_id}/rotate-secret")
async def rotate_secret(request: Request, endpoint_id: str, panel: PanelDep, form: FormDep) -> Response:
    row = await _endpoint(panel, endpoint_id)
    return _secret_page(request, panel, row, wh.rotate_secret(panel.hub.vault, row), created=False)


@router.get("/webhooks/{endpoint_id}/delete")
async def confirm_delete(request: Request, endpoint_id: str, panel: PanelDep) -> Response:
    row = await _endpoint(panel, endpoint_id)
    return render(request, "webhooks/delete.html", panel=panel, active="webhooks", endpoint=row)


@router.post("/webhooks/{endpoint_id}/delete")
async def delete_endpoint(endpoint_id: str, panel: PanelDep, form: FormDep) -> Response:
    row = await _endpoint(panel, endpoint_id)
    url = row.url
    await panel.db.delete(row)
    await panel.db.flush()
    return _back("/webhooks", f"Deleted the endpoint {url} and its delivery log.")


@router.get("/webhooks/{endpoint_id}")
async def endpoint_log(request: Request, endpoint_id: str, panel: PanelDep) -> Response:
    row = await _endpoint(panel, endpoint_id)
    cursor = request.query_params.get("cursor") or None
    try:
        deliveries, next_cursor = await wh.list_deliveries(
            panel.db, panel.account.id, row.id, limit=PAGE_SIZE, cursor=cursor
        )
    except ValueError:  # also Conflict: a cursor this hub did not make
        raise PanelError(
            400,
            "This page link is not valid",
            "The link to older deliveries was not made by this hub. Open the endpoint from Webhooks again.",
        ) from None
    return render(
        request,
        "webhooks/endpoint.html",
        panel=panel,
        active="webhooks",
        endpoint=row,
        deliveries=[(d, wh.why_not_redeliver(row, d)) for d in deliveries],
        next_cursor=next_cursor,
        first_page=cursor is None,
    )


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver")
async def redeliver(endpoint_id: str, delivery_id: str, panel: PanelDep, form: FormDep) -> Response:
    endpoint = await _endpoint(panel, endpoint_id)
    ident = _uuid(delivery_id, "webhook delivery")
    d = t.WebhookDelivery
    row = (
        await panel.db.scalars(panel.tenant.scoped(d).where(d.id == ident, d.endpoint_id == endpoint.id))
    ).first()
    if row is None:
        raise _not_found("webhook delivery")
    try:
        await wh.redeliver(panel.db, endpoint, row)
    except Conflict as exc:
        raise PanelError(409, "Not sent again", f"The delivery was not sent again: {exc}.") from None
    return _back(
        f"/webhooks/{endpoint.id}",
        f"The {row.event_type} delivery is sent again now, with the same webhook-id.",
    )

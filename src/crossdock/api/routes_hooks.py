"""Inbound webhooks: POST /hooks/{connection_id}.

The connection id in the URL and the signature over the raw body are the authentication (no bearer token:
Shopify cannot send one). The body is verified before it is parsed, stored in the inbox with its processing job
in one transaction, and answered 200 at once; mapping and importing happen in a worker (DESIGN.md, "One order's
way through").
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.api.deps import HubDep, get_session
from crossdock.api.problems import Problem
from crossdock.engine.inbox import receive
from crossdock.engine.shopify_orders import KIND as SHOPIFY_ORDER
from crossdock.engine.shopify_orders import TOPICS as SHOPIFY_ORDER_TOPICS
from crossdock.security.signatures import verify_shopify_webhook
from crossdock.store import tables as t
from crossdock.store.repo import Tenant

router = APIRouter(tags=["hooks"])


def _unknown(connection_id: uuid.UUID) -> Problem:
    return Problem(
        404,
        "Not Found",
        f"no connection {connection_id} takes webhooks here; copy the hook URL from the connection's page",
        kind="not_found",
    )


@router.post("/hooks/{connection_id}", include_in_schema=False)
async def receive_hook(
    connection_id: uuid.UUID,
    request: Request,
    hub: HubDep,
    session: Annotated[AsyncSession, Depends(get_session)],
) -> JSONResponse:
    connection = await session.scalar(select(t.Connection).where(t.Connection.id == connection_id))
    if connection is None:
        raise _unknown(connection_id)
    if connection.connector != "shopify":
        raise Problem(
            404,
            "Not Found",
            f"connection {connection_id} is a {connection.connector} connection, which takes no webhooks here",
            kind="not_found",
        )
    # BodySizeLimit stops reading past CROSSDOCK_MAX_BODY_BYTES and answers 413 instead.
    body = await request.body()
    secrets = await Tenant(session, connection.account_id).get_secrets(
        connection.id, hub.vault, ["api_secret", "api_secret_previous"]
    )
    if not verify_shopify_webhook(body, request.headers.get("x-shopify-hmac-sha256"), secrets.values()):
        raise Problem(
            401,
            "Unauthorized",
            "X-Shopify-Hmac-Sha256 does not sign this body with the connection's API secret; "
            "check that the connection's api_secret is the app's client secret",
            kind="unauthorized",
        )
    topic = request.headers.get("x-shopify-topic", "")
    dedup = request.headers.get("x-shopify-webhook-id") or request.headers.get("x-shopify-event-id")
    if dedup is None:
        raise Problem(
            400,
            "Bad Request",
            "send X-Shopify-Webhook-Id (or X-Shopify-Event-Id) so a redelivery is recognised",
            kind="invalid",
        )
    if topic not in SHOPIFY_ORDER_TOPICS:
        # Signed but not a topic crossdock imports: acknowledged so Shopify does not retry it, nothing stored.
        return JSONResponse({"stored": False, "reason": f"topic {topic!r} is not imported"})
    result = await receive(
        session,
        account_id=connection.account_id,
        connection_id=connection.id,
        kind=SHOPIFY_ORDER,
        dedup_key=dedup,
        headers=dict(request.headers),
        body=body,
    )
    return JSONResponse({"stored": True, "duplicate": result.duplicate, "inbox_id": str(result.inbox_id)})

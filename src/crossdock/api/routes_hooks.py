"""Inbound webhooks: POST /hooks/{connection_id}.

The connection id in the URL and a secret of the connection are the authentication (no bearer token: the
remotes cannot send one). Shopify signs the raw body with the app's secret; Shippo signs nothing by default and
is given the connection's `webhook_token` in the URL's query (`?token=`) instead. The body is verified before it
is parsed, stored in the inbox with its processing job in one transaction, and answered 200 at once; mapping and
importing happen in a worker (DESIGN.md, "One order's way through").
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from crossdock.api.deps import HubDep
from crossdock.api.problems import Problem
from crossdock.engine.hook_keys import HookKeyCache, HookKeys
from crossdock.engine.inbox import Delivery, InboxWriter
from crossdock.engine.shopify_orders import KIND as SHOPIFY_ORDER
from crossdock.engine.shopify_orders import TOPICS as SHOPIFY_ORDER_TOPICS
from crossdock.flows.tracking import SHIPPO_UPDATE
from crossdock.hub import Hub
from crossdock.security.signatures import verify_shippo_signature, verify_shopify_webhook

router = APIRouter(tags=["hooks"])


def _unknown(connection_id: uuid.UUID) -> Problem:
    return Problem(
        404,
        "Not Found",
        f"no connection {connection_id} takes webhooks here; copy the hook URL from the connection's page",
        kind="not_found",
    )


# Shippo's webhook security (docs.goshippo.com/docs/tracking/webhooksecurity): nothing is signed by default; the
# merchant may add a self-generated token to the URL's query (`?token=123abc`), allowlist Shippo's addresses, or
# ask Shippo to provision HMAC. crossdock requires the token and checks the HMAC too where a secret is set.
SHIPPO_TOKEN = "webhook_token"  # noqa: S105 - the secret's name, not a secret
SHIPPO_HMAC_SECRET = "webhook_hmac_secret"  # noqa: S105 - the secret's name, not a secret
SHIPPO_SIGNATURE = "shippo-auth-signature"  # security/signatures.py verify_shippo_signature

# The secrets each connector's hooks are authenticated with.
HOOK_SECRETS: dict[str, tuple[str, ...]] = {
    "shopify": ("api_secret", "api_secret_previous"),
    "shippo": (SHIPPO_TOKEN, SHIPPO_HMAC_SECRET),
}


@dataclass(frozen=True)
class HookIngest:
    """One app's way in for hooks: its connections' keys kept in memory, and its inbox writer."""

    keys: HookKeyCache
    writer: InboxWriter


def hook_ingest(hub: Hub) -> HookIngest:
    """Made once per app (api.app.create_app keeps it in app.state.hook_ingest)."""
    return HookIngest(
        HookKeyCache(hub, lambda connector: HOOK_SECRETS.get(connector, ())), InboxWriter(hub.db)
    )


async def _authenticated(
    cache: HookKeyCache, keys: HookKeys, refusal: Callable[[HookKeys], Problem | None]
) -> HookKeys:
    """The keys a delivery passes with (`refusal` answers None). Kept keys that fail are read once more (a secret
    changed by another process); the refusal of the freshest keys is raised when those fail too."""
    problem = refusal(keys)
    if problem is None:
        return keys
    fresh = await cache.recheck(keys)
    if fresh is not None:
        problem = refusal(fresh)
        if problem is None:
            return fresh
    raise problem


HOOK_PATH = "/hooks/{connection_id}"


@router.post(HOOK_PATH, include_in_schema=False)
async def receive_hook(connection_id: uuid.UUID, request: Request, hub: HubDep) -> JSONResponse:
    # Only what HookIngress passes on comes here: HookIngress answers every POST whose id is a UUID as written.
    return await answer_hook(connection_id, request, hub)


async def answer_hook(connection_id: uuid.UUID, request: Request, hub: Hub) -> JSONResponse:
    """A delivery's answer; a refusal is raised as a Problem."""
    ingest: HookIngest = request.app.state.hook_ingest
    keys = await ingest.keys.get(connection_id)
    if keys is None:
        raise _unknown(connection_id)
    if keys.connector == "shippo":
        return await _shippo_hook(keys, ingest, request, hub)
    if keys.connector != "shopify":
        raise Problem(
            404,
            "Not Found",
            f"connection {connection_id} is a {keys.connector} connection, which takes no webhooks here",
            kind="not_found",
        )
    # BodySizeLimit stops reading past CROSSDOCK_MAX_BODY_BYTES and answers 413 instead.
    body = await request.body()
    signature = request.headers.get("x-shopify-hmac-sha256")

    def refusal(keys: HookKeys) -> Problem | None:
        if verify_shopify_webhook(body, signature, keys.secrets.values()):
            return None
        return Problem(
            401,
            "Unauthorized",
            "X-Shopify-Hmac-Sha256 does not sign this body with the connection's API secret; "
            "check that the connection's api_secret is the app's client secret",
            kind="unauthorized",
        )

    keys = await _authenticated(ingest.keys, keys, refusal)
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
    result = await ingest.writer.store(
        Delivery(keys.account_id, keys.connection_id, SHOPIFY_ORDER, dedup, request.headers, body)
    )
    return JSONResponse({"stored": True, "duplicate": result.duplicate, "inbox_id": str(result.inbox_id)})


# Shippo ---------------------------------------------------------------------------------------------------------
async def _shippo_hook(keys: HookKeys, ingest: HookIngest, request: Request, hub: Hub) -> JSONResponse:
    body = await request.body()
    given = request.query_params.get("token") or ""
    signature = request.headers.get(SHIPPO_SIGNATURE)

    def refusal(keys: HookKeys) -> Problem | None:
        hook_url = f"{hub.settings.public_url.rstrip('/')}/hooks/{keys.connection_id}"
        expected = keys.secrets.get(SHIPPO_TOKEN)
        if not expected:
            return Problem(
                403,
                "Forbidden",
                f"connection {keys.connection_id} has no webhook_token, so it takes no Shippo webhooks: set one "
                f"with `crossdock connections update {keys.connection_id} --secret webhook_token=<a long random "
                f"value>` and register {hook_url}?token=<that value> in Shippo (Settings > API > Webhooks)",
                kind="forbidden",
            )
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return Problem(
                401,
                "Unauthorized",
                "the token query parameter is missing or is not the connection's webhook_token; register the "
                f"hook URL in Shippo as {hook_url}?token=<the connection's webhook_token>",
                kind="unauthorized",
            )
        hmac_secret = keys.secrets.get(SHIPPO_HMAC_SECRET)
        if hmac_secret and not verify_shippo_signature(body, signature, hmac_secret):
            return Problem(
                401,
                "Unauthorized",
                "Shippo-Auth-Signature does not sign this body with the connection's webhook_hmac_secret; check "
                "that it is the HMAC secret Shippo provisioned for this webhook",
                kind="unauthorized",
            )
        return None

    keys = await _authenticated(ingest.keys, keys, refusal)
    # Shippo sends no delivery id (its envelope is {"event", "test", "data"}, PROTOCOLS.md section 5): the body
    # itself is the key, so a redelivery of the same update is stored as a duplicate.
    result = await ingest.writer.store(
        Delivery(
            keys.account_id,
            keys.connection_id,
            SHIPPO_UPDATE,
            hashlib.sha256(body).hexdigest(),
            request.headers,
            body,
        )
    )
    return JSONResponse({"stored": True, "duplicate": result.duplicate, "inbox_id": str(result.inbox_id)})


# The plain-ASGI way in -------------------------------------------------------------------------------------------
# A UUID as written in hook URLs (and as str(uuid) writes it). Ids written otherwise go through FastAPI's route,
# which parses them as it always has (or answers 422).
_HOOK_URL = re.compile(
    r"/hooks/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
)


class HookIngress:
    """POST /hooks/{connection_id} answered as plain ASGI, ahead of FastAPI's routing and dependency injection.

    FastAPI's way to the same handler (matching the path against every route, solving the dependencies, the
    request and response wrappers) cost more of a webhook's CPU than storing it (bench/webhook_ingest.py). This
    sits where the router would be, inside the app's other middleware (request metrics, the body size limit,
    the server error handler), and answers exactly as the route does: the same handler (`answer_hook`), the
    route's template in the scope for the request metrics, and an exception answered by the handler the app
    registered for it (problem details), or left to the server error middleware as the router leaves it. Every
    other request, and a hook URL whose id is not a UUID as written, goes on to FastAPI."""

    def __init__(self, app: ASGIApp, *, owner: FastAPI) -> None:
        self.app = app
        self.owner = owner
        self._route: APIRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        found = _HOOK_URL.fullmatch(scope["path"]) if not scope.get("root_path") else None
        if found is None:
            await self.app(scope, receive, send)
            return
        connection_id = uuid.UUID(found.group(1))
        scope["route"] = self._hook_route()
        scope["path_params"] = {"connection_id": found.group(1)}
        request = Request(scope, receive, send)
        response: Response
        try:
            response = await answer_hook(connection_id, request, self.owner.state.hub)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            if inspect.iscoroutinefunction(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)

    def _hook_route(self) -> APIRoute:
        if self._route is None:
            # This module's router holds the route the app includes.
            self._route = next(
                route for route in router.routes if isinstance(route, APIRoute) and route.path == HOOK_PATH
            )
        return self._route

    def _handler_for(self, exc: Exception) -> Callable[[Request, Any], Any] | None:
        # As Starlette's ExceptionMiddleware looks them up (the exception's classes in order); the handler for
        # Exception itself is the server error middleware's, which the exception reaches by being raised.
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            handler = self.owner.exception_handlers.get(cls)
            if handler is not None:
                return handler
        return None

"""The Amazon SP-API sandbox as an ASGI app: LWA tokens, seller consent, and the Orders API v0.

Wire facts: amzn/selling-partner-api-models models/orders-api-model/ordersV0.json (operations, parameters,
usage plans, 400/403/404/429 bodies, ConfirmShipmentRequest); developer-docs.amazon.com/sp-api (LWA token
exchange, x-amz-access-token); error texts as the live API returns them, quoted in amzn/selling-partner-api-docs
and -models issues (403 "Unauthorized"/"Access to requested resource is denied.", 429 "QuotaExceeded").
The Orders API sends no webhooks (Amazon uses the Notifications API, not emulated here).
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from crossdock.sandbox.amazon.state import (
    AmazonOrder,
    AmazonState,
    Confirmation,
    amazon_time,
)
from crossdock.sandbox.common import FaultMiddleware, Faults, SandboxConfig

ORDERS_PREFIX = "/orders/v0/orders"
MAX_RESULTS_DEFAULT = 100
MAX_IDS = 50
ORDER_STATUSES = {
    "PendingAvailability",
    "Pending",
    "Unshipped",
    "PartiallyShipped",
    "Shipped",
    "InvoiceUnconfirmed",
    "Canceled",
    "Unfulfillable",
}
FULFILLMENT_CHANNELS = {"AFN", "MFN"}
# CreatedBefore / LastUpdatedBefore must be at least 2 minutes before the current time (ordersV0.json).
BEFORE_MARGIN = timedelta(minutes=2)
_ORDER_ID = re.compile(r"^\d{3}-\d{7}-\d{7}$")
# Grantless scopes LWA accepts for client_credentials (SP-API grantless operations).
GRANTLESS_SCOPES = {
    "sellingpartnerapi::notifications",
    "sellingpartnerapi::migration",
    "sellingpartnerapi::client_credential:rotation",
}
# The live API answers every validation failure with this generic text (details are ours).
INVALID_INPUT = "The input you have submitted is not valid. Please check your input and try again."


# -- error bodies -----------------------------------------------------------------------------------------------
def sp_error(status: int, code: str, message: str, details: str = "") -> JSONResponse:
    """SP-API error list: {"errors":[{"code","message","details"}]} (ordersV0.json, definitions.Error)."""
    return JSONResponse(
        {"errors": [{"code": code, "message": message, "details": details}]}, status_code=status
    )


def invalid_input(details: str) -> JSONResponse:
    return sp_error(400, "InvalidInput", INVALID_INPUT, details)


def access_denied(details: str = "") -> JSONResponse:
    # SP-API answers a missing, invalid or expired access token with 403, not 401.
    return sp_error(403, "Unauthorized", "Access to requested resource is denied.", details)


def quota_exceeded(request_id: str) -> Response:
    response = sp_error(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
    response.headers["x-amzn-RequestId"] = request_id
    return response


def lwa_error(status: int, error: str, description: str) -> JSONResponse:
    # LWA (api.amazon.com/auth/o2/token) errors: {"error_description": ..., "error": ...}.
    return JSONResponse({"error_description": description, "error": error}, status_code=status)


def _state(request: Request) -> AmazonState:
    state: AmazonState = request.app.state.sandbox
    return state


# -- LWA token endpoint and seller consent ---------------------------------------------------------------------
async def lwa_token(request: Request) -> Response:
    """POST /auth/o2/token: refresh_token, authorization_code and client_credentials grants."""
    state = _state(request)
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return lwa_error(400, "invalid_request", "The request has an invalid parameter : content-type")
    form = await request.form()
    grant_type = str(form.get("grant_type") or "")
    if not grant_type:
        return lwa_error(400, "invalid_request", "The request is missing a required parameter : grant_type")
    if grant_type not in ("refresh_token", "authorization_code", "client_credentials"):
        return lwa_error(
            400,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server",
        )
    if (form.get("client_id"), form.get("client_secret")) != (
        state.config.client_id,
        state.config.client_secret,
    ):
        return lwa_error(401, "invalid_client", "Client authentication failed")
    ttl = state.access_token_ttl
    if grant_type == "refresh_token":
        refresh = str(form.get("refresh_token") or "")
        if not refresh:
            return lwa_error(
                400, "invalid_request", "The request is missing a required parameter : refresh_token"
            )
        if refresh not in state.refresh_tokens:
            return lwa_error(
                400, "invalid_grant", "The request has an invalid grant parameter : refresh_token"
            )
        token = state.issue_access_token()
        return JSONResponse(
            {"access_token": token.token, "refresh_token": refresh, "token_type": "bearer", "expires_in": ttl}
        )
    if grant_type == "authorization_code":
        code_text = str(form.get("code") or "")
        if not code_text:
            return lwa_error(400, "invalid_request", "The request is missing a required parameter : code")
        code = state.auth_codes.get(code_text)
        if code is None or code.used or code.expires_at <= state.now():
            return lwa_error(400, "invalid_grant", "The request has an invalid grant parameter : code")
        code.used = True
        token = state.issue_access_token()
        refresh = state.issue_refresh_token()
        return JSONResponse(
            {"access_token": token.token, "refresh_token": refresh, "token_type": "bearer", "expires_in": ttl}
        )
    scope = str(form.get("scope") or "")
    if scope not in GRANTLESS_SCOPES:
        return lwa_error(400, "invalid_scope", "An unknown scope was requested")
    token = state.issue_access_token(kind="grantless")
    return JSONResponse(
        {"access_token": token.token, "scope": scope, "token_type": "bearer", "expires_in": ttl}
    )


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _valid_redirect(state: AmazonState, redirect_uri: str) -> bool:
    expected = state.config.extra.get("redirect_uri")
    if expected is not None:
        return redirect_uri == expected
    parts = urlsplit(redirect_uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


_CONSENT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize {app}</title></head>
<body>
<h1>Seller Central (sandbox)</h1>
<p>The application <strong>{app}</strong> asks for access to your selling account {seller}.</p>
<form method="post" action="/apps/authorize/consent">
<input type="hidden" name="application_id" value="{app}">
<input type="hidden" name="redirect_uri" value="{redirect_uri}">
<input type="hidden" name="state" value="{state}">
<button type="submit" name="decision" value="confirm" id="confirm">Confirm</button>
<button type="submit" name="decision" value="cancel" id="cancel">Cancel</button>
</form>
</body></html>
"""


def _error_page(message: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><body><p>{html.escape(message)}</p></body></html>", status_code=400
    )


async def consent_page(request: Request) -> Response:
    """GET /apps/authorize/consent?application_id&state&redirect_uri (Seller Central website workflow)."""
    state = _state(request)
    q = request.query_params
    app_id = q.get("application_id", "")
    redirect_uri = q.get("redirect_uri", "")
    if app_id != state.application_id:
        return _error_page("This application is not registered.")
    if not _valid_redirect(state, redirect_uri):
        return _error_page("The redirect_uri is not registered for this application.")
    page = _CONSENT_PAGE.format(
        app=html.escape(app_id),
        seller=html.escape(state.selling_partner_id),
        redirect_uri=html.escape(redirect_uri),
        state=html.escape(q.get("state", "")),
    )
    return HTMLResponse(page)


async def consent_decision(request: Request) -> Response:
    """POST /apps/authorize/consent: redirect with state, selling_partner_id and spapi_oauth_code."""
    state = _state(request)
    form = await request.form()
    redirect_uri = str(form.get("redirect_uri") or "")
    if form.get("application_id") != state.application_id or not _valid_redirect(state, redirect_uri):
        return _error_page("The application or redirect_uri is not valid.")
    params = {"state": str(form.get("state") or "")}
    if form.get("decision") != "confirm":
        return RedirectResponse(_with_query(redirect_uri, {**params, "error": "access_denied"}), 302)
    code = state.issue_auth_code()
    params.update({"selling_partner_id": state.selling_partner_id, "spapi_oauth_code": code.code})
    return RedirectResponse(_with_query(redirect_uri, params), 302)


# -- Orders API --------------------------------------------------------------------------------------------------
Handler = Callable[[Request], Awaitable[Response]]


def operation(name: str) -> Callable[[Handler], Handler]:
    """Gateway behaviour shared by every operation: x-amz-access-token check, usage plan, response headers."""

    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            state = _state(request)
            request_id = state.new_request_id()
            token_text = request.headers.get("x-amz-access-token", "").strip()
            token = state.access_tokens.get(token_text) if token_text else None
            denied: Response | None = None
            if token is None or token.kind != "seller":
                denied = access_denied("The access token you provided is revoked, malformed or invalid.")
            elif token.expires_at is not None and token.expires_at <= state.now():
                # Wording of the expired-token detail not confirmed against a captured response.
                denied = access_denied("The access token you provided has expired.")
            if denied is not None:
                denied.headers["x-amzn-RequestId"] = request_id
                return denied
            bucket = state.buckets[name]
            if not bucket.take():
                return quota_exceeded(request_id)
            response = await handler(request)
            response.headers["x-amzn-RateLimit-Limit"] = bucket.header
            response.headers["x-amzn-RequestId"] = request_id
            return response

        return endpoint

    return wrap


def _parse_time(name: str, text: str) -> datetime:
    """ISO 8601 date-time; a bare date (2020-12-02) is refused like the live API does."""
    try:
        if "T" not in text:
            raise ValueError(text)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _Invalid(f"Invalid date-time field(s) [{name}].") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Invalid(Exception):
    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details


def _list_param(request: Request, name: str) -> list[str]:
    """A list parameter, as repeated keys or comma-separated (the SDKs send CSV)."""
    values: list[str] = []
    for raw in request.query_params.getlist(name):
        values.extend(v.strip() for v in raw.split(",") if v.strip())
    return values


def _encode_token(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(text: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _Invalid("Invalid NextToken.") from None
    if not isinstance(data, dict):
        raise _Invalid("Invalid NextToken.")
    return data


def _criteria(request: Request, state: AmazonState, marketplaces: list[str]) -> dict[str, Any]:
    """Validate getOrders filters into the criteria a NextToken carries."""
    q = request.query_params
    created_after, updated_after = q.get("CreatedAfter"), q.get("LastUpdatedAfter")
    created_before, updated_before = q.get("CreatedBefore"), q.get("LastUpdatedBefore")
    if created_after and updated_after:
        raise _Invalid("Only one of CreatedAfter or LastUpdatedAfter may be specified.")
    if not created_after and not updated_after:
        raise _Invalid("Either CreatedAfter or LastUpdatedAfter is required.")
    if created_after and (updated_before or updated_after):
        raise _Invalid("LastUpdatedBefore cannot be combined with CreatedAfter.")
    if updated_after and created_before:
        raise _Invalid("CreatedBefore cannot be combined with LastUpdatedAfter.")
    now = state.now()
    mode = "created" if created_after else "updated"
    after_name, before_name = (
        ("CreatedAfter", "CreatedBefore") if created_after else ("LastUpdatedAfter", "LastUpdatedBefore")
    )
    after = _parse_time(after_name, str(created_after or updated_after))
    before_text = created_before if created_after else updated_before
    if before_text:
        before = _parse_time(before_name, before_text)
        if before < after:
            raise _Invalid(f"{before_name} must be equal to or after {after_name}.")
        if before > now - BEFORE_MARGIN:
            raise _Invalid(f"{before_name} must be at least 2 minutes before the current time.")
    else:
        before = now
    if after > now:
        raise _Invalid(f"{after_name} must not be in the future.")
    statuses = _list_param(request, "OrderStatuses")
    bad = [s for s in statuses if s not in ORDER_STATUSES]
    if bad:
        raise _Invalid(f"Invalid OrderStatuses value(s) {bad}.")
    channels = _list_param(request, "FulfillmentChannels")
    bad = [c for c in channels if c not in FULFILLMENT_CHANNELS]
    if bad:
        raise _Invalid(f"Invalid FulfillmentChannels value(s) {bad}.")
    ids = _list_param(request, "AmazonOrderIds")
    if len(ids) > MAX_IDS:
        raise _Invalid("AmazonOrderIds accepts at most 50 values.")
    max_text = q.get("MaxResultsPerPage")
    try:
        max_results = int(max_text) if max_text else MAX_RESULTS_DEFAULT
    except ValueError:
        raise _Invalid("MaxResultsPerPage must be an integer between 1 and 100.") from None
    if not 1 <= max_results <= 100:
        raise _Invalid("MaxResultsPerPage must be an integer between 1 and 100.")
    return {
        "m": mode,
        "a": after.isoformat(),
        "b": before.isoformat(),
        "s": statuses,
        "f": channels,
        "k": marketplaces,
        "i": ids,
        "n": max_results,
        "c": None,
    }


def _page(state: AmazonState, criteria: dict[str, Any]) -> tuple[list[AmazonOrder], str | None]:
    after = datetime.fromisoformat(criteria["a"])
    before = datetime.fromisoformat(criteria["b"])
    mode = criteria["m"]

    def key(order: AmazonOrder) -> tuple[str, str]:
        moment = order.purchase_date if mode == "created" else order.last_update
        return (moment.isoformat(), order.amazon_order_id)

    if mode == "created":
        candidates = state.orders_purchased_between(after, before)
    else:
        candidates = [o for o in state.all_orders() if after <= o.last_update <= before]
    marketplaces, statuses = set(criteria["k"]), set(criteria["s"])
    channels, ids = set(criteria["f"]), set(criteria["i"])
    cursor = tuple(criteria["c"]) if criteria["c"] else None
    selected = sorted(
        (
            o
            for o in candidates
            if o.marketplace_id in marketplaces
            and (not statuses or o.status in statuses)
            and (not channels or o.fulfillment_channel in channels)
            and (not ids or o.amazon_order_id in ids)
            and (cursor is None or key(o) > cursor)
        ),
        key=key,
    )
    limit = min(int(criteria["n"]), state.orders_page_size)
    page = selected[:limit]
    # Keyset cursor: an order updated while a client pages moves to the end instead of shifting pages.
    next_token = _encode_token({**criteria, "c": list(key(page[-1]))}) if len(selected) > limit else None
    return page, next_token


@operation("getOrders")
async def get_orders(request: Request) -> Response:
    state = _state(request)
    marketplaces = _list_param(request, "MarketplaceIds")
    try:
        if not marketplaces:
            raise _Invalid("Missing required parameter MarketplaceIds.")
        if len(marketplaces) > MAX_IDS:
            raise _Invalid("MarketplaceIds accepts at most 50 values.")
        next_token = request.query_params.get("NextToken")
        # With NextToken, the criteria come from the token; other filters in the request are ignored.
        criteria = _decode_token(next_token) if next_token else _criteria(request, state, marketplaces)
        if not {"m", "a", "b", "s", "f", "k", "i", "n", "c"} <= criteria.keys():
            raise _Invalid("Invalid NextToken.")
        orders, token = _page(state, criteria)
    except _Invalid as exc:
        return invalid_input(exc.details)
    before_key = "CreatedBefore" if criteria["m"] == "created" else "LastUpdatedBefore"
    payload: dict[str, Any] = {"Orders": [o.to_json() for o in orders]}
    if token:
        payload["NextToken"] = token
    payload[before_key] = amazon_time(datetime.fromisoformat(criteria["b"]))
    return JSONResponse({"payload": payload})


def _find_order(state: AmazonState, order_id: str) -> AmazonOrder | Response:
    if not _ORDER_ID.match(order_id):
        return invalid_input(f"Invalid orderId {order_id}: expected the 3-7-7 format.")
    order = state.orders.get(order_id)
    if order is None:
        return sp_error(
            404, "NotFound", "The resource specified does not exist.", f"Order {order_id} not found."
        )
    return order


@operation("getOrder")
async def get_order(request: Request) -> Response:
    found = _find_order(_state(request), request.path_params["order_id"])
    if isinstance(found, Response):
        return found
    return JSONResponse({"payload": found.to_json()})


@operation("getOrderItems")
async def get_order_items(request: Request) -> Response:
    state = _state(request)
    found = _find_order(state, request.path_params["order_id"])
    if isinstance(found, Response):
        return found
    start = 0
    next_token = request.query_params.get("NextToken")
    if next_token:
        try:
            data = _decode_token(next_token)
        except _Invalid as exc:
            return invalid_input(exc.details)
        if data.get("o") != found.amazon_order_id or not isinstance(data.get("p"), int):
            return invalid_input("Invalid NextToken.")
        start = data["p"]
    size = state.items_page_size
    items = found.items[start : start + size]
    payload: dict[str, Any] = {"OrderItems": [i.to_json(found.currency, priced=found.priced) for i in items]}
    if start + size < len(found.items):
        payload["NextToken"] = _encode_token({"o": found.amazon_order_id, "p": start + size})
    payload["AmazonOrderId"] = found.amazon_order_id
    return JSONResponse({"payload": payload})


def _confirmation_from(
    body: Any, order: AmazonOrder
) -> tuple[dict[str, Any], list[tuple[str, int]], datetime, Confirmation | None]:
    """Validate a ConfirmShipmentRequest against the model and the order. The last value is the package this
    request edits: the one confirmed earlier under the same packageReferenceId, if any."""
    if not isinstance(body, dict):
        raise _Invalid("The request body must be a ConfirmShipmentRequest object.")
    marketplace_id = body.get("marketplaceId")
    detail = body.get("packageDetail")
    if not isinstance(marketplace_id, str) or not marketplace_id:
        raise _Invalid("Missing required field marketplaceId.")
    if marketplace_id != order.marketplace_id:
        raise _Invalid(f"marketplaceId {marketplace_id} does not match the order's marketplace.")
    if not isinstance(detail, dict):
        raise _Invalid("Missing required field packageDetail.")
    for required in ("packageReferenceId", "carrierCode", "trackingNumber", "shipDate", "orderItems"):
        if detail.get(required) in (None, "", []):
            raise _Invalid(f"Missing required field packageDetail.{required}.")
    reference = detail["packageReferenceId"]
    # "Only positive numeric values are supported" (PackageReferenceId).
    if not isinstance(reference, str) or not reference.isdigit() or int(reference) <= 0:
        raise _Invalid("packageDetail.packageReferenceId must be a positive number as a string.")
    for name in ("carrierCode", "trackingNumber"):
        if not isinstance(detail[name], str):
            raise _Invalid(f"packageDetail.{name} must be a string.")
    if detail["carrierCode"] == "Others" and not detail.get("carrierName"):
        raise _Invalid("packageDetail.carrierName is required when carrierCode is Others.")
    ship_date_text = detail["shipDate"]
    if not isinstance(ship_date_text, str):
        raise _Invalid("packageDetail.shipDate must be an ISO 8601 date-time.")
    ship_date = _parse_time("shipDate", ship_date_text)
    # "If you need to make an edit to the shipment, submit another confirmShipment operation with the same
    # packageReferenceID. The other shipment details are edited upon successful submission."
    # Source: developer-docs.amazon.com/sp-api/docs/confirm-the-shipment-status
    previous = next((c for c in order.confirmations if c.package_reference_id == reference), None)
    # Units the earlier version of this package shipped are free again for its edit.
    released = dict(previous.items) if previous is not None else {}
    raw_items = detail["orderItems"]
    if not isinstance(raw_items, list):
        raise _Invalid("packageDetail.orderItems must be a list.")
    items: list[tuple[str, int]] = []
    for raw in raw_items:
        if not isinstance(raw, dict):
            raise _Invalid("Each order item needs orderItemId and quantity.")
        item_id, quantity = raw.get("orderItemId"), raw.get("quantity")
        if not isinstance(item_id, str) or isinstance(quantity, bool) or not isinstance(quantity, int):
            raise _Invalid("Each order item needs orderItemId (string) and quantity (integer).")
        item = order.item(item_id)
        if item is None:
            raise _Invalid(f"orderItemId {item_id} is not part of order {order.amazon_order_id}.")
        if any(item_id == done for done, _ in items):
            raise _Invalid(f"orderItemId {item_id} appears twice.")
        available = item.quantity - item.shipped + released.get(item_id, 0)
        if not 1 <= quantity <= available:
            raise _Invalid(f"quantity {quantity} of orderItemId {item_id} must be 1..{available}.")
        items.append((item_id, quantity))
    return detail, items, ship_date, previous


@operation("confirmShipment")
async def confirm_shipment(request: Request) -> Response:
    state = _state(request)
    found = _find_order(state, request.path_params["order_id"])
    if isinstance(found, Response):
        return found
    order = found
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return invalid_input("The request body is not valid JSON.")
    if order.fulfillment_channel != "MFN":
        return invalid_input("Shipments of orders fulfilled by Amazon (AFN) cannot be confirmed.")
    try:
        detail, items, ship_date, previous = _confirmation_from(body, order)
    except _Invalid as exc:
        return invalid_input(exc.details)
    # A new package needs units left to ship; an edit of a confirmed package may come after the order shipped.
    allowed = ("Unshipped", "PartiallyShipped") + (("Shipped",) if previous is not None else ())
    if order.status not in allowed:
        return invalid_input(f"Order {order.amazon_order_id} is {order.status} and cannot be confirmed.")
    now = state.now()
    confirmation = Confirmation(
        amazon_order_id=order.amazon_order_id,
        marketplace_id=order.marketplace_id,
        package_reference_id=detail["packageReferenceId"],
        carrier_code=detail["carrierCode"],
        carrier_name=detail.get("carrierName"),
        shipping_method=detail.get("shippingMethod"),
        tracking_number=detail["trackingNumber"],
        ship_date=ship_date,
        items=items,
        received_at=now,
    )
    if previous is not None:
        for item_id, quantity in previous.items:
            item = order.item(item_id)
            assert item is not None
            item.shipped -= quantity
        confirmation.edits = previous.edits + 1
        order.confirmations[order.confirmations.index(previous)] = confirmation
        state.confirmations[state.confirmations.index(previous)] = confirmation
    else:
        order.confirmations.append(confirmation)
        state.confirmations.append(confirmation)
    for item_id, quantity in items:
        item = order.item(item_id)
        assert item is not None
        item.shipped += quantity
    order.refresh_status()
    state.touch(order)
    return Response(status_code=204)


def internal_failure(request_id: str) -> Response:
    response = sp_error(500, "InternalFailure", "We encountered an internal error. Please try again.")
    response.headers["x-amzn-RequestId"] = request_id
    return response


# -- admin API (/_sandbox/...) ----------------------------------------------------------------------------------
async def _json_body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return JSONResponse({"error": "body is not JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
    return body


async def admin_summary(request: Request) -> Response:
    state = _state(request)
    return JSONResponse(
        {
            "sandbox": "amazon",
            "token": state.token,
            "refresh_token": state.refresh_token,
            "client_id": state.config.client_id,
            "application_id": state.application_id,
            "selling_partner_id": state.selling_partner_id,
            "marketplace_ids": state.marketplace_ids,
            "orders": len(state.orders),
            "usage_plans": {op: {"rate": b.header, "burst": b.burst} for op, b in state.buckets.items()},
            "now": amazon_time(state.now()),
        }
    )


async def admin_create_orders(request: Request) -> Response:
    """POST /_sandbox/orders {"count", "status": "Pending"|"Unshipped", "items", "country", "channel"}."""
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    state = _state(request)
    count, status = body.get("count", 1), body.get("status", "Pending")
    n_items, channel = body.get("items"), body.get("channel", "MFN")
    if not isinstance(count, int) or not 1 <= count <= 10_000:
        return JSONResponse({"error": "count must be an integer 1..10000"}, status_code=400)
    if status not in ("Pending", "Unshipped"):
        return JSONResponse({"error": "status must be Pending or Unshipped"}, status_code=400)
    if n_items is not None and (not isinstance(n_items, int) or not 1 <= n_items <= 500):
        return JSONResponse({"error": "items must be an integer 1..500"}, status_code=400)
    if channel != "MFN":
        return JSONResponse(
            {"error": "only MFN orders can be created (AFN orders ship themselves)"}, status_code=400
        )
    try:
        created = [
            state.create_order(status=status, country=body.get("country"), n_items=n_items)
            for _ in range(count)
        ]
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse({"orders": [o.to_json() for o in created]}, status_code=201)


async def admin_update_order(request: Request) -> Response:
    """PATCH /_sandbox/orders/{id} {"OrderStatus": "Unshipped"}: authorise a Pending order's payment."""
    state = _state(request)
    order = state.orders.get(request.path_params["order_id"])
    if order is None:
        return JSONResponse({"error": "no such order"}, status_code=404)
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    status = body.get("OrderStatus")
    if status is not None:
        if status != "Unshipped" or order.status not in ("Pending", "PendingAvailability"):
            return JSONResponse(
                {"error": "only Pending -> Unshipped is an update; use /cancel to cancel"}, status_code=409
            )
        order.status = "Unshipped"
    state.touch(order)
    return JSONResponse(order.to_json())


async def admin_cancel_order(request: Request) -> Response:
    state = _state(request)
    order = state.orders.get(request.path_params["order_id"])
    if order is None:
        return JSONResponse({"error": "no such order"}, status_code=404)
    if order.status in ("Shipped", "PartiallyShipped", "InvoiceUnconfirmed"):
        return JSONResponse({"error": f"a {order.status} order cannot be cancelled"}, status_code=409)
    order.status = "Canceled"
    state.touch(order)
    return JSONResponse(order.to_json())


async def admin_confirmations(request: Request) -> Response:
    rows = [c.to_json() for c in _state(request).confirmations]
    return JSONResponse({"confirmations": rows, "total": len(rows)})


async def admin_tick(request: Request) -> Response:
    """POST /_sandbox/tick {"new_orders": n}: payments of Pending orders clear; n new Pending orders arrive."""
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    state = _state(request)
    new_orders = body.get("new_orders", 0)
    if not isinstance(new_orders, int) or not 0 <= new_orders <= 10_000:
        return JSONResponse({"error": "new_orders must be an integer 0..10000"}, status_code=400)
    authorised = []
    for order in state.all_orders():
        if order.status == "Pending":
            order.status = "Unshipped"
            state.touch(order)
            authorised.append(order.amazon_order_id)
    created = [state.create_order().amazon_order_id for _ in range(new_orders)]
    return JSONResponse({"unshipped": authorised, "created": created})


async def admin_clock(request: Request) -> Response:
    """POST /_sandbox/clock {"advance_s": 3600}: move the sandbox clock forward (tokens and codes expire)."""
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    advance = body.get("advance_s", 0)
    if isinstance(advance, bool) or not isinstance(advance, int | float) or advance < 0:
        return JSONResponse({"error": "advance_s must be a non-negative number"}, status_code=400)
    return JSONResponse({"now": amazon_time(_state(request).advance_clock(float(advance)))})


async def admin_authorization_code(request: Request) -> Response:
    """POST /_sandbox/authorization_codes: an spapi_oauth_code without the consent page."""
    state = _state(request)
    code = state.issue_auth_code()
    return JSONResponse(
        {"spapi_oauth_code": code.code, "selling_partner_id": state.selling_partner_id}, status_code=201
    )


def create_app(config: SandboxConfig) -> Starlette:
    """The SP-API sandbox: LWA + Orders v0, seeded with `config.orders` orders."""
    state = AmazonState(config)
    faults = Faults(config.faults)
    routes = [
        Route("/auth/o2/token", lwa_token, methods=["POST"]),
        Route("/apps/authorize/consent", consent_page, methods=["GET"]),
        Route("/apps/authorize/consent", consent_decision, methods=["POST"]),
        Route(ORDERS_PREFIX, get_orders, methods=["GET"]),
        Route(f"{ORDERS_PREFIX}/{{order_id}}", get_order, methods=["GET"]),
        Route(f"{ORDERS_PREFIX}/{{order_id}}/orderItems", get_order_items, methods=["GET"]),
        Route(f"{ORDERS_PREFIX}/{{order_id}}/shipmentConfirmation", confirm_shipment, methods=["POST"]),
        Route("/_sandbox/", admin_summary, methods=["GET"]),
        Route("/_sandbox/orders", admin_create_orders, methods=["POST"]),
        Route("/_sandbox/orders/{order_id}", admin_update_order, methods=["PATCH"]),
        Route("/_sandbox/orders/{order_id}/cancel", admin_cancel_order, methods=["POST"]),
        Route("/_sandbox/confirmations", admin_confirmations, methods=["GET"]),
        Route("/_sandbox/tick", admin_tick, methods=["POST"]),
        Route("/_sandbox/clock", admin_clock, methods=["POST"]),
        Route("/_sandbox/authorization_codes", admin_authorization_code, methods=["POST"]),
    ]
    middleware = [
        Middleware(
            FaultMiddleware,
            faults=faults,
            error_5xx=lambda: internal_failure(state.new_request_id()),
            error_429=lambda: quota_exceeded(state.new_request_id()),
            exempt_prefixes=("/_sandbox", "/apps/authorize"),
        )
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.sandbox = state
    app.state.faults = faults
    return app

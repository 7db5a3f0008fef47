"""The eBay sandbox as an ASGI app: OAuth (consent page + token endpoint) and the Sell Fulfillment API v1.

Wire facts come from developer.ebay.com (getOrders, getOrder, createShippingFulfillment,
getShippingFulfillments, getShippingFulfillment; OAuth authorization-code and refresh-token grants) and the
error catalogue in eBay's OpenAPI contract (sell_fulfillment_v1_oas3, x-response-codes).
eBay sends no webhooks for orders to this API (it uses Platform Notifications), so this sandbox sends none.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from crossdock.sandbox.common import FaultMiddleware, Faults, SandboxConfig
from crossdock.sandbox.ebay.state import (
    DEFAULT_WINDOW,
    MAX_ORDER_AGE,
    REFRESH_TOKEN_TTL_S,
    SCOPE_FULFILLMENT,
    SCOPE_FULFILLMENT_READONLY,
    SCOPE_PREFIX,
    SCOPE_PUBLIC,
    EbayOrder,
    EbayState,
    ShippingFulfillment,
    ebay_time,
)

API_PREFIX = "/sell/fulfillment/v1"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_ORDER_IDS = 50
# The two combinations getOrders supports (filter criterion orderfulfillmentstatus).
_STATUS_SETS = ({"NOT_STARTED", "IN_PROGRESS"}, {"FULFILLED", "IN_PROGRESS"})
_ORDER_ID = re.compile(r"^[0-9]{1,20}(-[0-9]{1,20}){1,2}$")
_TRACKING = re.compile(r"^[A-Za-z0-9]{1,50}$")
_CARRIER = re.compile(r"^[A-Za-z0-9_\-]{1,40}$")


# -- error bodies --------------------------------------------------------------------------------------------
def api_error(
    status: int,
    error_id: int,
    message: str,
    *,
    domain: str = "API_FULFILLMENT",
    category: str = "REQUEST",
    long_message: str | None = None,
    parameters: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """eBay REST error body: {"errors":[{errorId, domain, category, message, longMessage?, parameters?}]}."""
    error: dict[str, Any] = {"errorId": error_id, "domain": domain, "category": category, "message": message}
    if long_message:
        error["longMessage"] = long_message
    if parameters:
        error["parameters"] = parameters
    return JSONResponse({"errors": [error]}, status_code=status, headers=headers)


def invalid_token() -> JSONResponse:
    # The body eBay returns for a missing, unknown or expired user token (errorId 1001, domain OAuth).
    return api_error(
        401,
        1001,
        "Invalid access token",
        domain="OAuth",
        long_message="Invalid access token. Check the value of the Authorization HTTP request header.",
    )


def insufficient_scope() -> JSONResponse:
    return api_error(
        403,
        1100,
        "Access denied",
        domain="ACCESS",
        long_message="Insufficient permissions to fulfill the request.",
    )


def system_error() -> Response:
    return api_error(500, 30500, "System error", category="APPLICATION")


def too_many_requests() -> Response:
    # errorId 2001 is eBay's "Too many requests" for REST APIs (developer.ebay.com API call limits);
    # the exact wording of the message was not confirmed against a captured response.
    return api_error(
        429,
        2001,
        "Too many requests. The request limit has been reached for the resource.",
        domain="ACCESS",
        headers={"Retry-After": "60"},
    )


_INVALID_SCOPE = (
    "The requested scope is invalid, unknown, malformed, or exceeds the scope granted to the client"
)


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    # identity/v1/oauth2/token errors are RFC 6749 shaped: {"error", "error_description"}.
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _state(request: Request) -> EbayState:
    state: EbayState = request.app.state.sandbox
    return state


def _api_base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{API_PREFIX}"


def _parse_time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    # eBay timestamps are UTC; a value without an offset is read as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- OAuth ---------------------------------------------------------------------------------------------------
def _client_from_basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _scopes(text: str | None) -> tuple[str, ...] | None:
    """Space-separated scope list; None when any scope is not an eBay OAuth scope."""
    if not text:
        return ()
    scopes = tuple(s for s in text.split(" ") if s)
    if any(not s.startswith(SCOPE_PREFIX) for s in scopes):
        return None
    return scopes


async def token_endpoint(request: Request) -> Response:
    """POST /identity/v1/oauth2/token: authorization_code, refresh_token and client_credentials grants."""
    state = _state(request)
    client = _client_from_basic(request)
    if client is None or client != (state.config.client_id, state.config.client_secret):
        return oauth_error(401, "invalid_client", "client authentication failed")
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return oauth_error(400, "invalid_request", "request is missing a required parameter or malformed.")
    form = await request.form()
    grant_type = str(form.get("grant_type") or "")
    now = state.now()
    if grant_type == "authorization_code":
        code_text = str(form.get("code") or "")
        redirect_uri = str(form.get("redirect_uri") or "")
        if not code_text or not redirect_uri:
            return oauth_error(
                400, "invalid_request", "request is missing a required parameter or malformed."
            )
        code = state.auth_codes.get(code_text)
        if (
            code is None
            or code.used
            or code.expires_at <= now
            or code.client_id != client[0]
            or code.redirect_uri != redirect_uri
        ):
            return oauth_error(
                400,
                "invalid_grant",
                "the provided authorization grant code is invalid or was issued to another client",
            )
        # A code is good for one exchange only.
        code.used = True
        access = state.issue_access_token(code.scopes)
        issued = state.issue_refresh_token(client[0], code.scopes)
        return JSONResponse(
            {
                "access_token": access.token,
                "expires_in": state.access_token_ttl,
                "refresh_token": issued.token,
                "refresh_token_expires_in": REFRESH_TOKEN_TTL_S,
                "token_type": "User Access Token",
            }
        )
    if grant_type == "refresh_token":
        refresh_text = str(form.get("refresh_token") or "")
        if not refresh_text:
            return oauth_error(
                400, "invalid_request", "request is missing a required parameter or malformed."
            )
        refresh = state.refresh_tokens.get(refresh_text)
        if refresh is None or refresh.expires_at <= now or refresh.client_id != client[0]:
            return oauth_error(
                400,
                "invalid_grant",
                "the provided authorization refresh token is invalid or was issued to another client",
            )
        requested = _scopes(str(form.get("scope") or "")) if form.get("scope") else refresh.scopes
        # A refresh may narrow the consented scopes but never widen them.
        if requested is None or not set(requested) <= set(refresh.scopes):
            return oauth_error(
                400,
                "invalid_scope",
                _INVALID_SCOPE,
            )
        access = state.issue_access_token(requested or refresh.scopes)
        return JSONResponse(
            {
                "access_token": access.token,
                "expires_in": state.access_token_ttl,
                "token_type": "User Access Token",
            }
        )
    if grant_type == "client_credentials":
        requested = _scopes(str(form.get("scope") or SCOPE_PUBLIC))
        if requested is None or not requested:
            return oauth_error(
                400,
                "invalid_scope",
                _INVALID_SCOPE,
            )
        access = state.issue_access_token(requested, kind="application")
        return JSONResponse(
            {
                "access_token": access.token,
                "expires_in": state.access_token_ttl,
                "token_type": "Application Access Token",
            }
        )
    if not grant_type:
        return oauth_error(400, "invalid_request", "request is missing a required parameter or malformed.")
    return oauth_error(
        400, "unsupported_grant_type", "grant type in request is not supported by the authorization server"
    )


def _redirect_target(state: EbayState, redirect_uri: str) -> str | None:
    """Where the browser goes after consent: the RuName's accept URL, or the redirect_uri itself if a URL."""
    if redirect_uri == state.ru_name and state.accept_url:
        return state.accept_url
    parts = urlsplit(redirect_uri)
    if parts.scheme in ("http", "https") and parts.netloc:
        return redirect_uri
    return None


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


_CONSENT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Grant application access: {client}</title></head>
<body>
<h1>Grant application access</h1>
<p>The application <strong>{client}</strong> (eBay sandbox) asks to access your eBay seller account:</p>
<ul>{scopes}</ul>
<form method="post" action="/oauth2/authorize">
<input type="hidden" name="client_id" value="{client}">
<input type="hidden" name="redirect_uri" value="{redirect_uri}">
<input type="hidden" name="scope" value="{scope}">
<input type="hidden" name="state" value="{state}">
<button type="submit" name="decision" value="agree" id="submit">Agree</button>
<button type="submit" name="decision" value="deny" id="deny">Not now</button>
</form>
</body></html>
"""


def _error_page(message: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><body><h1>Error</h1><p>{html.escape(message)}</p></body></html>",
        status_code=400,
    )


async def authorize_page(request: Request) -> Response:
    """GET /oauth2/authorize: the seller's consent page."""
    state = _state(request)
    q = request.query_params
    client_id = q.get("client_id", "")
    redirect_uri = q.get("redirect_uri", "")
    # Per RFC 6749 4.1.2.1 an unknown client or redirect is reported on the page, never by redirecting.
    if client_id != state.config.client_id:
        return _error_page("The client_id is not valid.")
    target = _redirect_target(state, redirect_uri)
    if target is None:
        return _error_page("The redirect_uri (RuName) is not valid for this application.")
    state_param = q.get("state")
    extra = {"state": state_param} if state_param is not None else {}
    if q.get("response_type") != "code":
        return RedirectResponse(_with_query(target, {"error": "unsupported_response_type", **extra}), 302)
    scopes = _scopes(q.get("scope"))
    if not scopes:
        return RedirectResponse(_with_query(target, {"error": "invalid_scope", **extra}), 302)
    page = _CONSENT_PAGE.format(
        client=html.escape(client_id),
        redirect_uri=html.escape(redirect_uri),
        scope=html.escape(" ".join(scopes)),
        state=html.escape(state_param or ""),
        scopes="".join(f"<li>{html.escape(s)}</li>" for s in scopes),
    )
    return HTMLResponse(page)


async def authorize_decision(request: Request) -> Response:
    """POST /oauth2/authorize: Agree redirects with code, expires_in and state; deny with access_denied."""
    state = _state(request)
    form = await request.form()
    client_id = str(form.get("client_id") or "")
    redirect_uri = str(form.get("redirect_uri") or "")
    state_param = form.get("state")
    extra = {"state": str(state_param)} if state_param else {}
    target = _redirect_target(state, redirect_uri)
    if client_id != state.config.client_id or target is None:
        return _error_page("The client_id or redirect_uri is not valid.")
    if form.get("decision") != "agree":
        return RedirectResponse(_with_query(target, {"error": "access_denied", **extra}), 302)
    scopes = _scopes(str(form.get("scope") or ""))
    if not scopes:
        return RedirectResponse(_with_query(target, {"error": "invalid_scope", **extra}), 302)
    code = state.issue_auth_code(client_id, redirect_uri, scopes)
    # eBay appends the code's lifetime in seconds to the accept URL.
    params = {
        **extra,
        "code": code.code,
        "expires_in": str(int((code.expires_at - state.now()).total_seconds())),
    }
    return RedirectResponse(_with_query(target, params), 302)


# -- Sell Fulfillment API ------------------------------------------------------------------------------------
def _authorize(request: Request, *, write: bool) -> Response | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return invalid_token()
    found = _state(request).valid_access_token(token.strip())
    if found is None:
        return invalid_token()
    # sell.fulfillment.readonly is enough to read; writing needs sell.fulfillment.
    needed = {SCOPE_FULFILLMENT} if write else {SCOPE_FULFILLMENT, SCOPE_FULFILLMENT_READONLY}
    if found.kind != "user" or not needed & set(found.scopes):
        return insufficient_scope()
    return None


def _split_criteria(text: str) -> list[str]:
    """Split a filter on the commas that separate criteria, not those inside [..] or {..}."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(depth - 1, 0)
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


class FilterError(Exception):
    def __init__(self, response: JSONResponse) -> None:
        super().__init__("bad filter")
        self.response = response


def _date_range(name: str, value: str, now: datetime) -> tuple[datetime, datetime | None]:
    if not (value.startswith("[") and value.endswith("]") and ".." in value):
        raise FilterError(api_error(400, 30810, "Invalid date format"))
    start_text, _, end_text = value[1:-1].partition("..")
    if not start_text.strip():
        raise FilterError(api_error(400, 30820, "Start date is missing"))
    start = _parse_time(start_text)
    end = _parse_time(end_text) if end_text.strip() else None
    if start is None or (end_text.strip() and end is None):
        raise FilterError(api_error(400, 30810, "Invalid date format"))
    if start > now or (end is not None and end > now):
        raise FilterError(api_error(400, 30850, "Start and end dates can't be in the future"))
    if end is not None and start > end:
        raise FilterError(api_error(400, 30840, "Start date should be before end date"))
    if (end or now) - start > MAX_ORDER_AGE:
        raise FilterError(
            api_error(400, 30830, "Time range between start date and end date must be within '2' years.")
        )
    return start, end


def _select_orders(state: EbayState, filter_text: str) -> list[EbayOrder]:
    now = state.now()
    created: tuple[datetime, datetime | None] | None = None
    modified: tuple[datetime, datetime | None] | None = None
    statuses: set[str] | None = None
    for criterion in _split_criteria(filter_text):
        name, sep, value = criterion.partition(":")
        name = name.strip()
        value = value.strip()
        if not sep:
            raise FilterError(api_error(400, 30700, f"Invalid filter name: {name}"))
        if name == "creationdate":
            created = _date_range(name, value, now)
        elif name == "lastmodifieddate":
            modified = _date_range(name, value, now)
        elif name == "orderfulfillmentstatus":
            inner = value[1:-1] if value.startswith("{") and value.endswith("}") else None
            wanted = {v.strip() for v in inner.split("|")} if inner is not None else set()
            if wanted not in _STATUS_SETS:
                raise FilterError(
                    api_error(400, 30800, f"Invalid filter value {value} for filter orderfulfillmentstatus")
                )
            statuses = wanted
        else:
            raise FilterError(api_error(400, 30700, f"Invalid filter name: {name}"))
    oldest = now - MAX_ORDER_AGE
    if created is not None:
        # With both date criteria eBay uses creationdate only.
        start, end = created
        orders = state.orders_created_between(max(start, oldest), end or now)
    elif modified is not None:
        start, end = modified
        orders = [
            o
            for o in state.orders_created_between(oldest, now)
            if o.modified >= start and (end is None or o.modified <= end)
        ]
    else:
        orders = state.orders_created_between(now - DEFAULT_WINDOW, now)
    if statuses is not None:
        orders = [o for o in orders if o.fulfillment_status in statuses]
    # Newest first, as the live API lists them.
    return orders[::-1]


def _int_param(text: str | None, default: int) -> int | None:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        return None


async def get_orders(request: Request) -> Response:
    denied = _authorize(request, write=False)
    if denied is not None:
        return denied
    state = _state(request)
    q = request.query_params
    base = _api_base(request)
    limit = _int_param(q.get("limit"), DEFAULT_LIMIT)
    offset = _int_param(q.get("offset"), 0)
    order_ids_text = q.get("orderIds")
    if order_ids_text:
        ids = [i.strip() for i in order_ids_text.split(",") if i.strip()]
        if len(ids) > MAX_ORDER_IDS:
            return api_error(400, 30900, "Exceeded maximum number of order IDs (the current limit is 50)")
        # orderIds overrides every other parameter, limit and offset included.
        seen: dict[str, EbayOrder] = {}
        for oid in ids:
            order = state.orders.get(oid)
            if order is not None and oid not in seen:
                seen[oid] = order
        orders = list(seen.values())
        href = f"{base}/order?{urlencode({'orderIds': order_ids_text})}"
        return JSONResponse(
            {
                "href": href,
                "total": len(orders),
                "limit": DEFAULT_LIMIT if limit is None else limit,
                "offset": 0,
                "orders": [o.to_json(base) for o in orders],
            }
        )
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        return api_error(
            400,
            31100,
            f"Invalid limit: {q.get('limit')}",
            parameters=[{"name": "limit", "value": str(q.get("limit"))}],
        )
    if offset is None or offset < 0:
        return api_error(
            400,
            31000,
            f"Invalid offset: {q.get('offset')}",
            parameters=[{"name": "offset", "value": str(q.get("offset"))}],
        )
    filter_text = q.get("filter", "")
    try:
        orders = _select_orders(state, filter_text)
    except FilterError as exc:
        return exc.response
    total = len(orders)
    page = orders[offset : offset + limit]

    def link(at: int) -> str:
        params = {"filter": filter_text} if filter_text else {}
        return f"{base}/order?{urlencode({**params, 'limit': limit, 'offset': at})}"

    body: dict[str, Any] = {"href": link(offset), "total": total, "limit": limit, "offset": offset}
    # next/prev are present only when there is such a page.
    if offset + limit < total:
        body["next"] = link(offset + limit)
    if offset > 0:
        body["prev"] = link(max(offset - limit, 0))
    body["orders"] = [o.to_json(base) for o in page]
    return JSONResponse(body)


def _find_order(state: EbayState, order_id: str) -> EbayOrder | Response:
    if not _ORDER_ID.match(order_id):
        return api_error(400, 32100, f"Invalid order ID: {order_id}")
    order = state.orders.get(order_id)
    if order is None:
        return api_error(404, 32100, f"Invalid order ID: {order_id}")
    return order


async def get_order(request: Request) -> Response:
    denied = _authorize(request, write=False)
    if denied is not None:
        return denied
    found = _find_order(_state(request), request.path_params["order_id"])
    if isinstance(found, Response):
        return found
    return JSONResponse(found.to_json(_api_base(request)))


def _invalid_input(detail: str) -> JSONResponse:
    return api_error(400, 32600, "Invalid input data", long_message=detail)


async def create_shipping_fulfillment(request: Request) -> Response:
    denied = _authorize(request, write=True)
    if denied is not None:
        return denied
    state = _state(request)
    found = _find_order(state, request.path_params["order_id"])
    if isinstance(found, Response):
        return found
    order = found
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _invalid_input("The request body is not valid JSON.")
    if not isinstance(body, dict):
        return _invalid_input("The request body must be a ShippingFulfillmentDetails object.")
    if order.cancel_state == "CANCELED":
        return api_error(409, 32600, "Invalid input data", long_message="The order has been cancelled.")
    raw_items = body.get("lineItems")
    if not isinstance(raw_items, list) or not raw_items:
        return _invalid_input("lineItems must list at least one line item.")
    shipped: list[tuple[str, int]] = []
    for raw in raw_items:
        if not isinstance(raw, dict) or not isinstance(raw.get("lineItemId"), str):
            return _invalid_input("Each line item needs a lineItemId.")
        line_item_id = raw["lineItemId"]
        quantity = raw.get("quantity", None)
        line_item = order.line_item(line_item_id)
        if line_item is None:
            return api_error(400, 32200, f"Invalid line item id: {line_item_id}")
        if any(line_item_id == done for done, _ in shipped):
            return api_error(400, 32210, "Duplicate line item in the request")
        remaining = line_item.quantity - line_item.fulfilled
        if quantity is None:
            quantity = remaining
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            return _invalid_input(f"quantity of line item {line_item_id} must be a positive integer.")
        if quantity > remaining:
            return _invalid_input(
                f"quantity {quantity} of line item {line_item_id} exceeds the {remaining} not yet fulfilled."
            )
        shipped.append((line_item_id, quantity))
    tracking = body.get("trackingNumber")
    carrier = body.get("shippingCarrierCode")
    if (tracking is None) != (carrier is None):
        return api_error(400, 32300, "Invalid shipment tracking number or carrier")
    if tracking is not None and (
        not isinstance(tracking, str)
        or not _TRACKING.match(tracking)
        or not isinstance(carrier, str)
        or not _CARRIER.match(carrier)
    ):
        return api_error(400, 32300, "Invalid shipment tracking number or carrier")
    now = state.now()
    shipped_date = now
    if body.get("shippedDate") is not None:
        parsed = _parse_time(str(body["shippedDate"])) if isinstance(body["shippedDate"], str) else None
        # A shipment cannot predate the sale or lie in the future.
        if (
            parsed is None
            or parsed > now + timedelta(minutes=5)
            or parsed < order.created - timedelta(days=1)
        ):
            return api_error(400, 32500, "Invalid shipped date")
        shipped_date = parsed
    if tracking is not None and order.fulfillment(tracking) is not None:
        return api_error(400, 34500, "Please use PUT operation for updating shipping fulfillment")
    # eBay uses the tracking number as the fulfillment id when there is one.
    fulfillment_id = tracking if isinstance(tracking, str) else state.new_fulfillment_id()
    fulfillment = ShippingFulfillment(
        fulfillment_id=fulfillment_id,
        line_items=shipped,
        shipped_date=shipped_date,
        tracking_number=tracking if isinstance(tracking, str) else None,
        carrier_code=carrier if isinstance(carrier, str) else None,
        created_at=now,
    )
    order.fulfillments.append(fulfillment)
    for line_item_id, quantity in shipped:
        line_item = order.line_item(line_item_id)
        assert line_item is not None
        line_item.fulfilled += quantity
    state.touch(order)
    location = f"{_api_base(request)}/order/{order.order_id}/shipping_fulfillment/{fulfillment_id}"
    # The contract documents a JSON object body for 201; the Location header carries the new resource.
    return JSONResponse({}, status_code=201, headers={"Location": location})


async def get_shipping_fulfillments(request: Request) -> Response:
    denied = _authorize(request, write=False)
    if denied is not None:
        return denied
    found = _find_order(_state(request), request.path_params["order_id"])
    if isinstance(found, Response):
        return found
    fulfillments = [f.to_json() for f in found.fulfillments]
    return JSONResponse({"fulfillments": fulfillments, "total": len(fulfillments)})


async def get_shipping_fulfillment(request: Request) -> Response:
    denied = _authorize(request, write=False)
    if denied is not None:
        return denied
    found = _find_order(_state(request), request.path_params["order_id"])
    if isinstance(found, Response):
        return found
    fulfillment_id = request.path_params["fulfillment_id"]
    fulfillment = found.fulfillment(fulfillment_id)
    if fulfillment is None:
        return api_error(404, 32110, f"Invalid shipping fulfillment ID: {fulfillment_id}")
    return JSONResponse(fulfillment.to_json())


# -- admin API (/_sandbox/...) -------------------------------------------------------------------------------
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
            "sandbox": "ebay",
            "api_prefix": API_PREFIX,
            "token": state.token,
            "client_id": state.config.client_id,
            "ru_name": state.ru_name,
            "marketplace_id": state.marketplace_id,
            "orders": len(state.orders),
            "now": ebay_time(state.now()),
        }
    )


async def admin_create_orders(request: Request) -> Response:
    """POST /_sandbox/orders {"count": 1, "country": "DE", "line_items": 2, "payment_status": "PAID"}."""
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    state = _state(request)
    count = body.get("count", 1)
    n_items = body.get("line_items")
    payment = body.get("payment_status", "PAID")
    if not isinstance(count, int) or not 1 <= count <= 10_000:
        return JSONResponse({"error": "count must be an integer 1..10000"}, status_code=400)
    if n_items is not None and (not isinstance(n_items, int) or n_items < 1):
        return JSONResponse({"error": "line_items must be a positive integer"}, status_code=400)
    if payment not in ("PAID", "PENDING"):
        return JSONResponse({"error": "payment_status must be PAID or PENDING"}, status_code=400)
    try:
        created = [
            state.create_order(country=body.get("country"), n_items=n_items, payment_status=payment)
            for _ in range(count)
        ]
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    base = _api_base(request)
    return JSONResponse({"orders": [o.to_json(base) for o in created]}, status_code=201)


async def admin_update_order(request: Request) -> Response:
    """PATCH /_sandbox/orders/{id}: orderPaymentStatus, buyerCheckoutNotes, shipTo (fullName, address)."""
    state = _state(request)
    order = state.orders.get(request.path_params["order_id"])
    if order is None:
        return JSONResponse({"error": "no such order"}, status_code=404)
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    if "orderPaymentStatus" in body:
        if body["orderPaymentStatus"] not in ("PAID", "PENDING", "FAILED"):
            return JSONResponse(
                {"error": "orderPaymentStatus must be PAID, PENDING or FAILED"}, status_code=400
            )
        order.payment_status = body["orderPaymentStatus"]
    if "buyerCheckoutNotes" in body:
        order.checkout_notes = str(body["buyerCheckoutNotes"])
    ship_to = body.get("shipTo")
    if isinstance(ship_to, dict):
        if "fullName" in ship_to:
            order.ship_to_name = str(ship_to["fullName"])
        contact = ship_to.get("contactAddress")
        if isinstance(contact, dict):
            a = order.ship_to
            fields = {
                "addressLine1": "line1",
                "addressLine2": "line2",
                "city": "city",
                "stateOrProvince": "province_code",
                "postalCode": "postal_code",
                "countryCode": "country_code",
            }
            changes = {attr: contact[key] for key, attr in fields.items() if key in contact}
            order.ship_to = replace(a, **changes)
    state.touch(order)
    return JSONResponse(order.to_json(_api_base(request)))


async def admin_cancel_order(request: Request) -> Response:
    state = _state(request)
    order = state.orders.get(request.path_params["order_id"])
    if order is None:
        return JSONResponse({"error": "no such order"}, status_code=404)
    if order.fulfillment_status == "FULFILLED":
        return JSONResponse({"error": "a fulfilled order cannot be cancelled"}, status_code=409)
    order.cancel_state = "CANCELED"
    state.touch(order)
    return JSONResponse(order.to_json(_api_base(request)))


async def admin_fulfillments(request: Request) -> Response:
    state = _state(request)
    rows = [{"orderId": o.order_id, **f.to_json()} for o in state.all_orders() for f in o.fulfillments]
    rows.sort(key=lambda r: r["shippedDate"])
    return JSONResponse({"fulfillments": rows, "total": len(rows)})


async def admin_tick(request: Request) -> Response:
    """POST /_sandbox/tick {"new_orders": n}: pending payments clear, and n new orders arrive."""
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    state = _state(request)
    new_orders = body.get("new_orders", 0)
    if not isinstance(new_orders, int) or not 0 <= new_orders <= 10_000:
        return JSONResponse({"error": "new_orders must be an integer 0..10000"}, status_code=400)
    paid = []
    for order in state.all_orders():
        if order.payment_status == "PENDING" and order.cancel_state != "CANCELED":
            order.payment_status = "PAID"
            state.touch(order)
            paid.append(order.order_id)
    created = [state.create_order().order_id for _ in range(new_orders)]
    return JSONResponse({"paid": paid, "created": created})


async def admin_clock(request: Request) -> Response:
    """POST /_sandbox/clock {"advance_s": 7200}: move the sandbox clock forward (tokens and codes expire)."""
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    advance = body.get("advance_s", 0)
    if isinstance(advance, bool) or not isinstance(advance, int | float) or advance < 0:
        return JSONResponse({"error": "advance_s must be a non-negative number"}, status_code=400)
    return JSONResponse({"now": ebay_time(_state(request).advance_clock(float(advance)))})


async def admin_tokens(request: Request) -> Response:
    """POST /_sandbox/tokens {"scopes": [...]}: a user token pair without the consent page (demo, tests)."""
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    state = _state(request)
    scopes = body.get("scopes", [SCOPE_FULFILLMENT])
    if not isinstance(scopes, list) or not all(
        isinstance(s, str) and s.startswith(SCOPE_PREFIX) for s in scopes
    ):
        return JSONResponse({"error": "scopes must be a list of eBay OAuth scopes"}, status_code=400)
    access = state.issue_access_token(tuple(scopes))
    refresh = state.issue_refresh_token(state.config.client_id, tuple(scopes))
    return JSONResponse(
        {
            "access_token": access.token,
            "expires_in": state.access_token_ttl,
            "refresh_token": refresh.token,
            "refresh_token_expires_in": REFRESH_TOKEN_TTL_S,
            "token_type": "User Access Token",
        }
    )


async def admin_revoke(request: Request) -> Response:
    """POST /_sandbox/tokens/revoke {"refresh_token": "..."}: the seller revokes the application's access (eBay
    account settings), which ends the refresh token and every access token of this client; the refresh grant
    then answers invalid_grant."""
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    state = _state(request)
    token = body.get("refresh_token")
    if not isinstance(token, str) or state.refresh_tokens.pop(token, None) is None:
        return JSONResponse({"error": "no such refresh token"}, status_code=404)
    revoked = [t for t, a in state.access_tokens.items() if a.kind == "user" and a.expires_at is not None]
    for t in revoked:
        del state.access_tokens[t]
    return JSONResponse({"revoked_access_tokens": len(revoked)})


def create_app(config: SandboxConfig) -> Starlette:
    """The eBay sandbox: OAuth + Sell Fulfillment API v1, seeded with `config.orders` orders."""
    state = EbayState(config)
    faults = Faults(config.faults)
    routes = [
        Route("/identity/v1/oauth2/token", token_endpoint, methods=["POST"]),
        Route("/oauth2/authorize", authorize_page, methods=["GET"]),
        Route("/oauth2/authorize", authorize_decision, methods=["POST"]),
        Route(f"{API_PREFIX}/order", get_orders, methods=["GET"]),
        Route(f"{API_PREFIX}/order/{{order_id}}", get_order, methods=["GET"]),
        Route(
            f"{API_PREFIX}/order/{{order_id}}/shipping_fulfillment",
            create_shipping_fulfillment,
            methods=["POST"],
        ),
        Route(
            f"{API_PREFIX}/order/{{order_id}}/shipping_fulfillment",
            get_shipping_fulfillments,
            methods=["GET"],
        ),
        Route(
            f"{API_PREFIX}/order/{{order_id}}/shipping_fulfillment/{{fulfillment_id}}",
            get_shipping_fulfillment,
            methods=["GET"],
        ),
        Route("/_sandbox/", admin_summary, methods=["GET"]),
        Route("/_sandbox/orders", admin_create_orders, methods=["POST"]),
        Route("/_sandbox/orders/{order_id}", admin_update_order, methods=["PATCH"]),
        Route("/_sandbox/orders/{order_id}/cancel", admin_cancel_order, methods=["POST"]),
        Route("/_sandbox/fulfillments", admin_fulfillments, methods=["GET"]),
        Route("/_sandbox/tick", admin_tick, methods=["POST"]),
        Route("/_sandbox/clock", admin_clock, methods=["POST"]),
        Route("/_sandbox/tokens", admin_tokens, methods=["POST"]),
        Route("/_sandbox/tokens/revoke", admin_revoke, methods=["POST"]),
    ]
    middleware = [
        Middleware(
            FaultMiddleware,
            faults=faults,
            error_5xx=system_error,
            error_429=too_many_requests,
            # The consent page is a browser page, not an API call: faults there would only break demos.
            exempt_prefixes=("/_sandbox", "/oauth2/authorize"),
        )
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.sandbox = state
    app.state.faults = faults
    return app

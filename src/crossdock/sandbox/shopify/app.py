"""The Shopify sandbox's HTTP surface: REST Admin API, OAuth install, and the /_sandbox/ admin API."""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from datetime import time as dtime
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from crossdock.sandbox.common import CATALOG, FaultMiddleware, Faults, SandboxConfig, WebhookSender
from crossdock.sandbox.shopify.graphql import InventoryItem, execute
from crossdock.sandbox.shopify.orders import catalog_ids
from crossdock.sandbox.shopify.state import (
    DEFAULT_API_VERSION,
    TOPICS,
    Filters,
    OAuthCode,
    ShopifyError,
    ShopState,
    shopify_hmac_hex,
    validate_filter_values,
)

log = logging.getLogger("crossdock.sandbox.shopify")

# Shopify's 401 body for a missing or wrong X-Shopify-Access-Token (quoted in many public issue reports, e.g.
# Shopify/shopify_python_api#180 and Shopify/shopify-cli#263).
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
# Shopify's 429 body (Shopify/shopify_python_api#256, MONEI/Shopify-api-node#518); Retry-After "2.0".
THROTTLED = (
    "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
)
PAGINATION_DOCS = "https://shopify.dev/api/usage/pagination-rest"
MAX_LIMIT = 250
DEFAULT_LIMIT = 50
_VERSION = re.compile(r"^\d{4}-\d{2}$")
# Query parameters allowed next to page_info (shopify.dev/docs/api/usage/pagination-rest).
_PAGE_INFO_COMPANIONS = {"page_info", "limit", "fields"}
_LIST_PARAMS = {
    "status",
    "financial_status",
    "fulfillment_status",
    "created_at_min",
    "created_at_max",
    "updated_at_min",
    "updated_at_max",
    "since_id",
    "ids",
    "limit",
    "fields",
    "page_info",
    "attribution_app_id",
    "processed_at_min",
    "processed_at_max",
}

Handler = Callable[[Request, ShopState], Awaitable[Response]]


def _errors(status: int, errors: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status, headers=headers)


def effective_version(requested: str) -> str:
    """The release a request is served with: a non-release month falls forward to the next quarterly release."""
    year, month = int(requested[:4]), int(requested[5:])
    for release in (1, 4, 7, 10):
        if month <= release:
            return f"{year:04d}-{release:02d}"
    return f"{year + 1:04d}-01"


def _has_scope(granted: str, needed: tuple[str, ...]) -> bool:
    """Whether any of `needed` is granted; a write_X scope implies read_X, as in Shopify."""
    scopes = {s.strip() for s in granted.split(",") if s.strip()}
    scopes |= {"read_" + s[len("write_") :] for s in scopes if s.startswith("write_")}
    return not needed or any(n in scopes for n in needed)


# Access scopes per resource (shopify.dev/docs/api/usage/access-scopes); fulfillment orders accept the
# merchant-managed scopes or the older *_fulfillments ones.
READ_ORDERS = ("read_orders",)
WRITE_ORDERS = ("write_orders",)
READ_FO = (
    "read_merchant_managed_fulfillment_orders",
    "read_assigned_fulfillment_orders",
    "read_fulfillments",
)
WRITE_FO = (
    "write_merchant_managed_fulfillment_orders",
    "write_assigned_fulfillment_orders",
    "write_fulfillments",
)
READ_INVENTORY = ("read_inventory",)
WRITE_INVENTORY = ("write_inventory",)
READ_LOCATIONS = ("read_locations", "read_inventory")


def api(
    handler: Handler, scopes: tuple[str, ...] = (), *, rest: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    """Version check, token check, leaky bucket and Shopify's response headers around a REST handler (GraphQL,
    `rest=False`, has its own cost bucket instead of the REST call limit)."""

    async def endpoint(request: Request) -> Response:
        state: ShopState = request.app.state.sandbox
        version = request.path_params.get("version", "")
        if not _VERSION.match(version):
            return _errors(404, "Not Found")
        token = request.headers.get("x-shopify-access-token")
        if token is None or token not in state.tokens:
            return _errors(
                401, INVALID_TOKEN, {"WWW-Authenticate": 'Basic Realm="Shopify API Authentication"'}
            )
        allowed, wait = state.bucket.take() if rest else (True, 0.0)
        headers = {
            "X-Shopify-API-Version": effective_version(version),
            "X-Request-Id": secrets.token_hex(16),
        }
        if rest:
            headers["X-Shopify-Shop-Api-Call-Limit"] = state.bucket.header()
        if not allowed:
            headers["Retry-After"] = f"{max(wait, 0.1):.1f}"
            return _errors(429, THROTTLED, headers)
        try:
            if not _has_scope(state.tokens[token], scopes):
                # Shopify's 403 for a token without the scope (e.g. gnikyt/laravel-shopify#190).
                raise ShopifyError(
                    403, f"[API] This action requires merchant approval for {scopes[0]} scope."
                )
            response = await handler(request, state)
        except ShopifyError as exc:
            response = _errors(exc.status, exc.errors)
        except _BadJSON:
            response = _errors(400, "Bad Request")
        response.headers.update(headers)
        return response

    return endpoint


class _BadJSON(Exception):
    pass


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _BadJSON from None
    if not isinstance(data, dict):
        raise _BadJSON
    return data


def _root(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        # Shopify's answer when the wrapping object is missing.
        raise ShopifyError(400, {key: "Required parameter missing or invalid"})
    return value


def _only_fields(obj: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    return obj if not fields else {k: v for k, v in obj.items() if k in fields}


def _fields_param(request: Request) -> list[str] | None:
    raw = request.query_params.get("fields")
    return [f.strip() for f in raw.split(",") if f.strip()] if raw else None


def _parse_time(name: str, raw: str, state: ShopState) -> float:
    """ISO 8601 with offset; a date or a time without offset is in the shop's time zone (as Shopify reads it)."""
    text = raw.strip()
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), dtime(0), tzinfo=state.tz)
        else:
            moment = datetime.fromisoformat(text.replace(" ", "+") if "T" in text else text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=state.tz)
    except ValueError:
        raise ShopifyError(400, {name: [f"{raw} is not a valid date"]}) from None
    return moment.timestamp()


def _parse_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ShopifyError(400, {"limit": ["Invalid value."]}) from None
    # Shopify caps REST pages at 250 (shopify.dev/docs/api/usage/pagination-rest); the exact error wording
    # for a larger limit is not documented, the status and the {"errors": {"limit": ...}} shape are.
    if limit < 1 or limit > MAX_LIMIT:
        raise ShopifyError(400, {"limit": [f"must be between 1 and {MAX_LIMIT}"]})
    return limit


def _filters_from_query(request: Request, state: ShopState) -> Filters:
    q = request.query_params
    f = Filters()
    for name in ("status", "financial_status", "fulfillment_status"):
        if name in q:
            setattr(f, name, q[name])
    for name in ("created_at_min", "created_at_max", "updated_at_min", "updated_at_max"):
        if name in q:
            setattr(f, name, _parse_time(name, q[name], state))
    if "since_id" in q:
        try:
            f.since_id = int(q["since_id"])
        except ValueError:
            raise ShopifyError(400, {"since_id": ["Invalid value."]}) from None
    if "ids" in q:
        try:
            f.ids = tuple(int(i) for i in q["ids"].split(",") if i.strip())
        except ValueError:
            raise ShopifyError(400, {"ids": ["Invalid value."]}) from None
    validate_filter_values(f)
    return f


def _encode_page_info(direction: str, order_id: int, created: str | None, f: Filters) -> str:
    # Opaque to clients, but like Shopify's own cursor it is base64 of JSON naming direction and position.
    data = {"direction": direction, "last_id": order_id, "last_value": created, "filters": f.to_json()}
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_info(value: str) -> tuple[str, int, Filters]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(raw)
        direction = data["direction"]
        if direction not in ("next", "prev"):
            raise ValueError(direction)
        filters = Filters.from_json(data["filters"])
        validate_filter_values(filters)
        return direction, int(data["last_id"]), filters
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError, ShopifyError):
        # Shopify's answer to a page_info it did not issue (Shopify/shopify_python_api#544).
        raise ShopifyError(400, {"page_info": "Invalid value."}) from None


# -- REST: orders ---------------------------------------------------------------------------------------------


async def list_orders(request: Request, state: ShopState) -> Response:
    q = request.query_params
    limit = _parse_limit(request)
    fields = _fields_param(request)
    if "page_info" in q:
        for name in q:
            if name not in _PAGE_INFO_COMPANIONS:
                message = f"{name} cannot be passed when page_info is present. See {PAGINATION_DOCS} for more information."
                raise ShopifyError(400, {name: message})
        direction, anchor, f = _decode_page_info(q["page_info"])
        orders, has_prev, has_next = state.page(f, limit, anchor, direction)
    else:
        f = _filters_from_query(request, state)
        orders, has_prev, has_next = state.page(f, limit)
    rendered = [_only_fields(state.render(o), fields) for o in orders]
    response = JSONResponse({"orders": rendered})
    links = []
    base = str(request.base_url).rstrip("/") + request.url.path
    extra = {"fields": q["fields"]} if "fields" in q else {}
    if orders and has_prev:
        first = orders[0]
        info = _encode_page_info("prev", first.id, state.renderer.ts(first.created_ts), f)
        links.append(f'<{base}?{urlencode({"limit": limit, **extra, "page_info": info})}>; rel="previous"')
    if orders and has_next:
        last = orders[-1]
        info = _encode_page_info("next", last.id, state.renderer.ts(last.created_ts), f)
        links.append(f'<{base}?{urlencode({"limit": limit, **extra, "page_info": info})}>; rel="next"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return response


async def count_orders(request: Request, state: ShopState) -> Response:
    return JSONResponse({"count": state.count(_filters_from_query(request, state))})


def _order_or_404(request: Request, state: ShopState) -> Any:
    order = state.get(int(request.path_params["order_id"]))
    if order is None:
        raise ShopifyError(404, "Not Found")
    return order


async def get_order(request: Request, state: ShopState) -> Response:
    order = _order_or_404(request, state)
    return JSONResponse({"order": _only_fields(state.render(order), _fields_param(request))})


async def cancel_order_api(request: Request, state: ShopState) -> Response:
    order = _order_or_404(request, state)
    data = await _json_body(request)
    reason = str(data.get("reason", "other"))
    if reason not in ("customer", "inventory", "fraud", "declined", "other"):
        raise ShopifyError(422, {"reason": ["is not included in the list"]})
    state.cancel_order(order, reason)
    return JSONResponse({"order": state.render(order)})


async def list_fulfillment_orders(request: Request, state: ShopState) -> Response:
    order = _order_or_404(request, state)
    body, fstate = state.body(order), state.fulfillment(order)
    return JSONResponse(
        {
            "fulfillment_orders": [
                state.renderer.fulfillment_order(fo, order, body, state.location) for fo in fstate.orders
            ]
        }
    )


async def get_fulfillment_order(request: Request, state: ShopState) -> Response:
    found = state.fulfillment_order(int(request.path_params["fo_id"]))
    if found is None:
        raise ShopifyError(404, "Not Found")
    order, k = found
    fo = state.fulfillment(order).orders[k]
    return JSONResponse(
        {"fulfillment_order": state.renderer.fulfillment_order(fo, order, state.body(order), state.location)}
    )


async def list_fulfillments(request: Request, state: ShopState) -> Response:
    order = _order_or_404(request, state)
    body = state.body(order)
    return JSONResponse(
        {
            "fulfillments": [
                state.renderer.fulfillment(f, order, body) for f in state.fulfillment(order).fulfillments
            ]
        }
    )


async def get_fulfillment(request: Request, state: ShopState) -> Response:
    order = _order_or_404(request, state)
    fid = int(request.path_params["fulfillment_id"])
    for f in state.fulfillment(order).fulfillments:
        if f.id == fid:
            return JSONResponse({"fulfillment": state.renderer.fulfillment(f, order, state.body(order))})
    raise ShopifyError(404, "Not Found")


async def create_fulfillment(request: Request, state: ShopState) -> Response:
    payload = _root(await _json_body(request), "fulfillment")
    order, fulfillment = state.create_fulfillment(payload)
    return JSONResponse(
        {"fulfillment": state.renderer.fulfillment(fulfillment, order, state.body(order))}, status_code=201
    )


async def update_tracking(request: Request, state: ShopState) -> Response:
    payload = _root(await _json_body(request), "fulfillment")
    tracking = payload.get("tracking_info")
    if not isinstance(tracking, dict):
        raise ShopifyError(400, {"fulfillment": "Required parameter missing or invalid"})
    order, fulfillment = state.update_tracking(int(request.path_params["fulfillment_id"]), tracking)
    return JSONResponse({"fulfillment": state.renderer.fulfillment(fulfillment, order, state.body(order))})


# -- REST: inventory, locations, shop ---------------------------------------------------------------------


def _int_list(request: Request, name: str) -> list[int] | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise ShopifyError(400, {name: ["Invalid value."]}) from None


async def list_inventory_levels(request: Request, state: ShopState) -> Response:
    items = _int_list(request, "inventory_item_ids")
    locations = _int_list(request, "location_ids")
    if not items and not locations:
        # One of the two filters is required (shopify.dev REST InventoryLevel, "Retrieves a list").
        raise ShopifyError(422, "inventory_item_ids or location_ids must be present")
    limit = _parse_limit(request)
    levels = [
        state.inventory_level(item, loc)
        for (item, loc) in sorted(state.inventory)
        if (items is None or item in items) and (locations is None or loc in locations)
    ]
    return JSONResponse({"inventory_levels": levels[:limit]})


def _inventory_target(data: dict[str, Any], state: ShopState) -> tuple[int, int]:
    missing = [k for k in ("location_id", "inventory_item_id") if k not in data]
    if missing:
        raise ShopifyError(400, {missing[0]: "Required parameter missing or invalid"})
    try:
        item, location = int(data["inventory_item_id"]), int(data["location_id"])
    except (TypeError, ValueError):
        raise ShopifyError(400, {"inventory_item_id": "Required parameter missing or invalid"}) from None
    if not any(loc["id"] == location for loc in state.locations) or (item, location) not in state.inventory:
        raise ShopifyError(404, "Not Found")
    return item, location


async def set_inventory_level(request: Request, state: ShopState) -> Response:
    data = await _json_body(request)
    item, location = _inventory_target(data, state)
    available = data.get("available")
    if not isinstance(available, int) or isinstance(available, bool):
        raise ShopifyError(400, {"available": "Required parameter missing or invalid"})
    return JSONResponse({"inventory_level": state.set_inventory(item, location, available)})


async def adjust_inventory_level(request: Request, state: ShopState) -> Response:
    data = await _json_body(request)
    item, location = _inventory_target(data, state)
    delta = data.get("available_adjustment")
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise ShopifyError(400, {"available_adjustment": "Required parameter missing or invalid"})
    current = state.inventory[(item, location)][0]
    return JSONResponse({"inventory_level": state.set_inventory(item, location, current + delta)})


async def list_locations(request: Request, state: ShopState) -> Response:
    return JSONResponse(
        {
            "locations": [
                {
                    **loc,
                    "country_name": loc["country"],
                    "legacy": False,
                    "admin_graphql_api_id": f"gid://shopify/Location/{loc['id']}",
                }
                for loc in state.locations
            ]
        }
    )


async def graphql(request: Request, state: ShopState) -> Response:
    """POST graphql.json: the inventoryItems query (see graphql.py); errors come back with HTTP 200."""
    data = await _json_body(request)
    granted = state.tokens.get(request.headers.get("x-shopify-access-token", ""), "")
    if not _has_scope(granted, READ_INVENTORY):
        # GraphQL answers a missing scope in `errors` with HTTP 200 (code ACCESS_DENIED).
        message = "Access denied for inventoryItems field. Required access: `read_inventory` access scope."
        return JSONResponse({"errors": [{"message": message, "extensions": {"code": "ACCESS_DENIED"}}]})
    items = []
    for sku, title, *_ in CATALOG:
        _product_id, variant_id, item_id = catalog_ids(sku)
        assert item_id is not None and variant_id is not None
        items.append(InventoryItem(item_id, sku, variant_id, title))
    return JSONResponse(execute(data, items, state.points))


async def get_shop(request: Request, state: ShopState) -> Response:
    return JSONResponse(
        {
            "shop": {
                "id": 60_123_456_789,
                "name": state.shop_name.replace("-", " ").title(),
                "email": f"owner@{state.shop_name}.example",
                "domain": state.shop,
                "myshopify_domain": state.shop,
                "country_code": "CA",
                "currency": "USD",
                "iana_timezone": getattr(state.tz, "key", "UTC"),
                "plan_name": "basic",
                "primary_location_id": state.location["id"],
                "has_storefront": True,
                "weight_unit": "kg",
            }
        }
    )


# -- REST: webhook subscriptions --------------------------------------------------------------------------


def _webhook_address_ok(address: str, state: ShopState) -> bool:
    parts = urlsplit(address)
    if parts.scheme == "https" and parts.hostname:
        return True
    # Real Shopify wants https; loopback http is allowed so local receivers can subscribe.
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return parts.scheme == "http" and (loopback or state.config.extra.get("allow_http_webhooks") == "1")


async def list_webhooks(request: Request, state: ShopState) -> Response:
    topic = request.query_params.get("topic")
    address = request.query_params.get("address")
    subs = [
        state.render_subscription(s)
        for s in state.subscriptions.values()
        if (topic is None or s.topic == topic) and (address is None or s.address == address)
    ]
    return JSONResponse({"webhooks": subs[: _parse_limit(request)]})


async def count_webhooks(request: Request, state: ShopState) -> Response:
    topic = request.query_params.get("topic")
    return JSONResponse({"count": sum(1 for s in state.subscriptions.values() if topic in (None, s.topic))})


async def create_webhook(request: Request, state: ShopState) -> Response:
    data = _root(await _json_body(request), "webhook")
    topic = str(data.get("topic") or "")
    address = str(data.get("address") or "")
    fmt = str(data.get("format") or "json")
    problems: dict[str, list[str]] = {}
    if not topic:
        problems["topic"] = ["can't be blank"]
    elif topic not in TOPICS:
        problems["topic"] = [f"Invalid topic specified: {topic}"]
    if not address:
        problems["address"] = ["can't be blank"]
    elif not _webhook_address_ok(address, state):
        problems["address"] = ["is invalid"]
    elif any(s.topic == topic and s.address == address for s in state.subscriptions.values()):
        problems["address"] = ["for this topic has already been taken"]
    if fmt != "json":
        problems["format"] = ["the sandbox delivers json only"]
    if problems:
        raise ShopifyError(422, problems)
    fields = data.get("fields") if isinstance(data.get("fields"), list) else None
    sub = state.subscribe(topic, address, fmt, effective_version(request.path_params["version"]), fields)
    return JSONResponse({"webhook": state.render_subscription(sub)}, status_code=201)


async def get_webhook(request: Request, state: ShopState) -> Response:
    sub = state.subscriptions.get(int(request.path_params["webhook_id"]))
    if sub is None:
        raise ShopifyError(404, "Not Found")
    return JSONResponse({"webhook": state.render_subscription(sub)})


async def delete_webhook(request: Request, state: ShopState) -> Response:
    if state.subscriptions.pop(int(request.path_params["webhook_id"]), None) is None:
        raise ShopifyError(404, "Not Found")
    return JSONResponse({})


async def not_found(request: Request, state: ShopState) -> Response:
    return _errors(404, "Not Found")


# -- OAuth authorization-code install -----------------------------------------------------------------------

_CONSENT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Install app - {shop}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;color:#202223}}
.card{{border:1px solid #c9cccf;border-radius:.5rem;padding:1.5rem}}button{{font-size:1rem;padding:.5rem 1.2rem}}
#install{{background:#008060;color:#fff;border:0;border-radius:.3rem}}</style></head>
<body><div class="card">
<h1>Install app</h1>
<p>The app <strong>{client_id}</strong> wants to be installed on <strong>{shop}</strong>
(crossdock Shopify sandbox).</p>
<p>It will be able to:</p>
<ul id="scopes">{scopes}</ul>
<form method="post" action="/admin/oauth/authorize">
{hidden}
<button id="install" type="submit" name="decision" value="install">Install app</button>
<button id="cancel" type="submit" name="decision" value="cancel">Cancel</button>
</form></div></body></html>
"""


def _oauth_error(message: str, status: int = 400) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><title>Oauth error</title><h1>Oauth error invalid_request: "
        f"{html.escape(message)}</h1>",
        status_code=status,
    )


def _check_authorize_params(params: dict[str, str], state: ShopState) -> str | None:
    if params.get("client_id") != state.config.client_id:
        return "The api_key is invalid"
    redirect = params.get("redirect_uri", "")
    if urlsplit(redirect).scheme not in ("http", "https") or not urlsplit(redirect).netloc:
        return "The redirect_uri is missing or not a URL"
    return None


async def authorize_page(request: Request) -> Response:
    state: ShopState = request.app.state.sandbox
    params = {k: v for k, v in request.query_params.items()}
    problem = _check_authorize_params(params, state)
    if problem:
        return _oauth_error(problem)
    online = "per-user" in request.query_params.getlist("grant_options[]")
    scopes = [s.strip() for s in params.get("scope", "").split(",") if s.strip()]
    hidden = "\n".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in {
            "client_id": params["client_id"],
            "scope": ",".join(scopes),
            "redirect_uri": params["redirect_uri"],
            "state": params.get("state", ""),
            "online": "1" if online else "",
        }.items()
    )
    page = _CONSENT.format(
        shop=html.escape(state.shop),
        client_id=html.escape(params["client_id"]),
        scopes="".join(f"<li>{html.escape(s)}</li>" for s in scopes) or "<li>(no access scopes)</li>",
        hidden=hidden,
    )
    return HTMLResponse(page)


async def authorize_decision(request: Request) -> Response:
    state: ShopState = request.app.state.sandbox
    form = await request.form()
    params = {k: str(v) for k, v in form.items()}
    problem = _check_authorize_params(params, state)
    if problem:
        return _oauth_error(problem)
    if params.get("decision") != "install":
        return HTMLResponse("<!doctype html><title>Not installed</title><h1>The app was not installed.</h1>")
    code = secrets.token_hex(16)
    # Codes are single-use and short-lived (Shopify: exchange promptly; the sandbox allows 10 minutes).
    state.oauth_codes[code] = OAuthCode(
        code, params.get("scope", ""), params.get("online") == "1", time.time() + 600
    )
    host = base64.b64encode(f"admin.shopify.com/store/{state.shop_name}".encode()).decode().rstrip("=")
    query = {
        "code": code,
        "host": host,
        "shop": state.shop,
        "state": params.get("state", ""),
        "timestamp": str(int(time.time())),
    }
    query["hmac"] = shopify_hmac_hex(query, state.config.client_secret)
    redirect = params["redirect_uri"]
    separator = "&" if urlsplit(redirect).query else "?"
    return RedirectResponse(f"{redirect}{separator}{urlencode(query)}", status_code=302)


async def access_token(request: Request) -> Response:
    state: ShopState = request.app.state.sandbox
    content_type = request.headers.get("content-type", "")
    params: dict[str, str] = {k: v for k, v in request.query_params.items()}
    if "json" in content_type:
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return JSONResponse(
                {"error": "invalid_request", "error_description": "Malformed JSON"}, status_code=400
            )
        params.update({k: str(v) for k, v in data.items()})
    else:
        form = await request.form()
        params.update({k: str(v) for k, v in form.items()})
    if (
        params.get("client_id") != state.config.client_id
        or params.get("client_secret") != state.config.client_secret
    ):
        return JSONResponse(
            {"error": "invalid_client", "error_description": "Client credentials are invalid"},
            status_code=400,
        )
    grant = state.oauth_codes.pop(params.get("code", ""), None)
    if grant is None or grant.expires_ts < time.time():
        return JSONResponse(
            {
                "error": "invalid_request",
                "error_description": "The authorization code was not found or was already used",
            },
            status_code=400,
        )
    token = "shpua_" + secrets.token_hex(16)
    state.tokens[token] = grant.scope
    body: dict[str, Any] = {"access_token": token, "scope": grant.scope}
    if grant.online:
        body.update(
            {
                "expires_in": 86399,
                "associated_user_scope": grant.scope,
                "associated_user": {
                    "id": 902541635,
                    "first_name": "Sandbox",
                    "last_name": "Owner",
                    "email": "owner@example.com",
                    "email_verified": True,
                    "account_owner": True,
                    "locale": "en",
                    "collaborator": False,
                },
            }
        )
    return JSONResponse(body)


# -- /_sandbox/ admin API ------------------------------------------------------------------------------------


def _admin_error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _admin_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def admin(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state: ShopState = request.app.state.sandbox
        try:
            return await handler(request, state)
        except ShopifyError as exc:
            return JSONResponse({"errors": exc.errors}, status_code=exc.status)
        except (ValueError, TypeError) as exc:
            return _admin_error(str(exc))

    return endpoint


def _admin_order(request: Request, state: ShopState) -> Any:
    order = state.get(int(request.path_params["order_id"]))
    if order is None:
        raise ShopifyError(404, "Not Found")
    return order


async def admin_info(request: Request, state: ShopState) -> Response:
    return JSONResponse(
        {
            "sandbox": "shopify",
            "shop": state.shop,
            "access_token": state.token,
            "client_id": state.config.client_id,
            "api_version": DEFAULT_API_VERSION,
            "orders": len(state),
            "now": state.now().isoformat(),
            "faults": state.faults.spec.describe(),
            "webhook_url": state.config.webhook_url,
            "subscriptions": len(state.subscriptions),
        }
    )


async def admin_create_order(request: Request, state: ShopState) -> Response:
    data = await _admin_json(request)
    spec = data.get("order", data)
    order = state.create_order(spec if isinstance(spec, dict) else {})
    return JSONResponse({"order": state.render(order)}, status_code=201)


async def admin_update_order(request: Request, state: ShopState) -> Response:
    order = _admin_order(request, state)
    data = await _admin_json(request)
    state.update_order(order, data.get("order", data))
    return JSONResponse({"order": state.render(order)})


async def admin_cancel_order(request: Request, state: ShopState) -> Response:
    order = _admin_order(request, state)
    data = await _admin_json(request)
    state.cancel_order(order, str(data.get("reason", "customer")))
    return JSONResponse({"order": state.render(order)})


async def admin_webhooks(request: Request, state: ShopState) -> Response:
    topic = request.query_params.get("topic")
    deliveries = []
    for d in state.sender.deliveries:
        if topic and d.headers.get("X-Shopify-Topic") != topic:
            continue
        deliveries.append(
            {
                "url": d.url,
                "topic": d.headers.get("X-Shopify-Topic"),
                "webhook_id": d.headers.get("X-Shopify-Webhook-Id"),
                "event_id": d.headers.get("X-Shopify-Event-Id"),
                "status": d.status,
                "error": d.error,
                "attempt": d.attempt,
                "duplicate": d.duplicate,
                "at": d.at.isoformat(),
                "body": json.loads(d.body),
            }
        )
    return JSONResponse({"deliveries": deliveries, "emitted": state.webhook_log})


async def admin_drain(request: Request, state: ShopState) -> Response:
    await state.sender.drain()
    return JSONResponse({"deliveries": len(state.sender.deliveries)})


async def admin_clock(request: Request, state: ShopState) -> Response:
    if request.method == "POST":
        data = await _admin_json(request)
        state.advance(float(data.get("seconds", 0)))
    return JSONResponse({"now": state.now().isoformat()})


async def admin_tick(request: Request, state: ShopState) -> Response:
    data = await _admin_json(request)
    changes = int(data.get("changes", 5))
    if not 0 < changes <= 1000:
        raise ValueError("changes must be between 1 and 1000")
    return JSONResponse({"changes": state.tick(changes)})


async def admin_install(request: Request, state: ShopState) -> Response:
    """What Shopify does when a merchant installs the app: a signed GET to the app URL (step 1 of the flow)."""
    app_url = request.query_params.get("app_url", "")
    if urlsplit(app_url).scheme not in ("http", "https"):
        raise ValueError("app_url must be the app's http(s) install URL")
    host = base64.b64encode(f"admin.shopify.com/store/{state.shop_name}".encode()).decode().rstrip("=")
    query = {"host": host, "shop": state.shop, "timestamp": str(int(time.time()))}
    query["hmac"] = shopify_hmac_hex(query, state.config.client_secret)
    separator = "&" if urlsplit(app_url).query else "?"
    url = f"{app_url}{separator}{urlencode(query)}"
    if request.query_params.get("redirect") == "1":
        return RedirectResponse(url, status_code=302)
    return JSONResponse({"url": url, "params": query})


async def admin_inventory(request: Request, state: ShopState) -> Response:
    items = []
    for sku, title, *_ in CATALOG:
        product_id, variant_id, item_id = catalog_ids(sku)
        assert item_id is not None
        items.append(
            {
                "sku": sku,
                "title": title,
                "product_id": product_id,
                "variant_id": variant_id,
                "inventory_item_id": item_id,
                "levels": [state.inventory_level(item_id, loc["id"]) for loc in state.locations],
            }
        )
    return JSONResponse({"locations": state.locations, "items": items})


# -- the app ------------------------------------------------------------------------------------------------


def _routes() -> list[Route]:
    v = "/admin/api/{version}"
    return [
        Route(f"{v}/orders.json", api(list_orders, READ_ORDERS), methods=["GET"]),
        Route(f"{v}/orders/count.json", api(count_orders, READ_ORDERS), methods=["GET"]),
        Route(f"{v}/orders/{{order_id:int}}.json", api(get_order, READ_ORDERS), methods=["GET"]),
        Route(
            f"{v}/orders/{{order_id:int}}/cancel.json", api(cancel_order_api, WRITE_ORDERS), methods=["POST"]
        ),
        Route(
            f"{v}/orders/{{order_id:int}}/fulfillment_orders.json",
            api(list_fulfillment_orders, READ_FO),
            methods=["GET"],
        ),
        Route(
            f"{v}/orders/{{order_id:int}}/fulfillments.json",
            api(list_fulfillments, READ_ORDERS),
            methods=["GET"],
        ),
        Route(
            f"{v}/orders/{{order_id:int}}/fulfillments/{{fulfillment_id:int}}.json",
            api(get_fulfillment, READ_ORDERS),
            methods=["GET"],
        ),
        Route(
            f"{v}/fulfillment_orders/{{fo_id:int}}.json", api(get_fulfillment_order, READ_FO), methods=["GET"]
        ),
        Route(f"{v}/fulfillments.json", api(create_fulfillment, WRITE_FO), methods=["POST"]),
        Route(
            f"{v}/fulfillments/{{fulfillment_id:int}}/update_tracking.json",
            api(update_tracking, WRITE_FO),
            methods=["POST"],
        ),
        Route(f"{v}/inventory_levels.json", api(list_inventory_levels, READ_INVENTORY), methods=["GET"]),
        Route(f"{v}/inventory_levels/set.json", api(set_inventory_level, WRITE_INVENTORY), methods=["POST"]),
        Route(
            f"{v}/inventory_levels/adjust.json",
            api(adjust_inventory_level, WRITE_INVENTORY),
            methods=["POST"],
        ),
        Route(f"{v}/locations.json", api(list_locations, READ_LOCATIONS), methods=["GET"]),
        Route(f"{v}/shop.json", api(get_shop), methods=["GET"]),
        Route(f"{v}/graphql.json", api(graphql, rest=False), methods=["POST"]),
        Route(f"{v}/webhooks.json", api(list_webhooks), methods=["GET"]),
        Route(f"{v}/webhooks.json", api(create_webhook), methods=["POST"]),
        Route(f"{v}/webhooks/count.json", api(count_webhooks), methods=["GET"]),
        Route(f"{v}/webhooks/{{webhook_id:int}}.json", api(get_webhook), methods=["GET"]),
        Route(f"{v}/webhooks/{{webhook_id:int}}.json", api(delete_webhook), methods=["DELETE"]),
        Route(f"{v}/{{rest:path}}", api(not_found), methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/admin/oauth/authorize", authorize_page, methods=["GET"]),
        Route("/admin/oauth/authorize", authorize_decision, methods=["POST"]),
        Route("/admin/oauth/access_token", access_token, methods=["POST"]),
        Route("/_sandbox", admin(admin_info), methods=["GET"]),
        Route("/_sandbox/", admin(admin_info), methods=["GET"]),
        Route("/_sandbox/orders", admin(admin_create_order), methods=["POST"]),
        Route("/_sandbox/orders/{order_id:int}", admin(admin_update_order), methods=["PATCH", "POST"]),
        Route("/_sandbox/orders/{order_id:int}/update", admin(admin_update_order), methods=["POST"]),
        Route("/_sandbox/orders/{order_id:int}/cancel", admin(admin_cancel_order), methods=["POST"]),
        Route("/_sandbox/webhooks", admin(admin_webhooks), methods=["GET"]),
        Route("/_sandbox/webhooks/drain", admin(admin_drain), methods=["POST"]),
        Route("/_sandbox/clock", admin(admin_clock), methods=["GET"]),
        Route("/_sandbox/clock/advance", admin(admin_clock), methods=["POST"]),
        Route("/_sandbox/tick", admin(admin_tick), methods=["POST"]),
        Route("/_sandbox/inventory", admin(admin_inventory), methods=["GET"]),
        Route("/_sandbox/install", admin(admin_install), methods=["GET"]),
    ]


def create_app(config: SandboxConfig) -> Starlette:
    """The Shopify sandbox as an ASGI app; its state is `app.state.sandbox` (a ShopState)."""
    faults = Faults(config.faults)
    sender = WebhookSender(faults)
    state = ShopState(config, faults, sender)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sender.start()
        try:
            yield
        finally:
            await sender.stop()

    app = Starlette(routes=_routes(), lifespan=lifespan)
    app.state.sandbox = state

    def error_5xx() -> Response:
        if state.rng.random() < 0.5:
            return _errors(500, "Internal Server Error")
        return _errors(503, "Service Unavailable")

    def error_429() -> Response:
        return _errors(
            429,
            THROTTLED,
            {"Retry-After": "2.0", "X-Shopify-Shop-Api-Call-Limit": f"40/{state.bucket.capacity}"},
        )

    app.add_middleware(FaultMiddleware, faults=faults, error_5xx=error_5xx, error_429=error_429)
    if config.token is None:
        log.info("shopify sandbox %s: access token %s", state.shop, state.token)
    return app

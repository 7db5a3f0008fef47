"""The Shopify connector's runtime: the REST Admin API (plus one GraphQL query) through the engine's RemoteClient.

It pulls orders by `updated_at` window with cursor pages, subscribes the shop's order webhooks, pushes
fulfillments through fulfillment orders and sets stock levels. Wire facts: PROTOCOLS.md section 1 and the
shopify.dev pages named beside each rule. Mapping lives in `mapping.py`; this module only calls and maps.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from crossdock.connectors.base import ConnectionContext, Page, PullWindow, PushedFulfillment, StockPushed
from crossdock.connectors.remote_json import PushError, json_object, version_of
from crossdock.connectors.shopify.carriers import tracking_company
from crossdock.connectors.shopify.mapping import fulfillment_request, map_order
from crossdock.engine.errors import ConfigurationError, PermanentError, RateLimited, RetryableError
from crossdock.engine.http import RemotePermanentError, discard
from crossdock.engine.ratelimit import SHOPIFY_REST
from crossdock.model import Fulfillment, StockLevel

# A stable release; releases are quarterly (YYYY-01/04/07/10) and each is supported for at least 12 months
# (shopify.dev/docs/api/usage/versioning).
DEFAULT_API_VERSION = "2025-01"
# Release.FORMAT in Shopify/shopify_python_api shopify/api_version.py.
API_VERSION_FORMAT = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# A shop's own domain (PROTOCOLS.md section 1, OAuth step 1).
SHOP_DOMAIN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$")
# The order events crossdock subscribes to (shopify.dev webhook topics, REST spelling).
ORDER_TOPICS = ("orders/create", "orders/updated", "orders/cancelled")
# REST pages hold at most 250 records (shopify.dev/docs/api/usage/pagination-rest).
PAGE_LIMIT = 250
# How many SKUs one GraphQL inventoryItems search asks for (the search string stays short).
SKUS_PER_SEARCH = 50
# Fulfillments that no longer ship anything (Fulfillment.status: pending, open, success, cancelled, error,
# failure; shopify.dev/docs/api/admin-rest/2025-01/resources/fulfillment).
DEAD_FULFILLMENT = frozenset({"cancelled", "error", "failure"})
REAUTH_HINT = (
    "Shopify refused the access token (offline tokens do not expire, so it was revoked or the app was "
    "uninstalled): reinstall the app, or paste a new Admin API access token into the connection"
)
SCOPE_HINT = (
    "the access token lacks an access scope this needs (Shopify names it above): reinstall the app so it asks "
    "for the scope, or paste a token that has it into the connection"
)


def _reauth_hint(status: int | None) -> str:
    """What a Shopify merchant does about a refused token: 401 is a token Shopify no longer knows, 403 a token
    without the scope (shopify.dev/docs/api/usage/response-codes)."""
    return SCOPE_HINT if status == 403 else REAUTH_HINT


_INVENTORY_SEARCH = """
query InventoryItemsBySku($query: String!, $after: String) {
  inventoryItems(first: 250, after: $after, query: $query) {
    edges { node { id sku } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


class ShopifyAuth:
    """X-Shopify-Access-Token on every request (shopify_python_api shopify/base.py). Offline tokens do not
    refresh: after a 401 the shop must reinstall the app or the merchant must paste a new token."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def authorize(self, request: httpx.Request) -> None:
        request.headers["X-Shopify-Access-Token"] = self.token

    async def refresh(self) -> bool:
        return False


class ShopifyConnector:
    """One Shopify shop (a connection): orders.pull, webhook subscriptions, fulfillments.push, inventory.push."""

    def __init__(self, ctx: ConnectionContext) -> None:
        self.ctx = ctx
        self.api_version = _api_version(ctx.settings.get("api_version"))
        shop = _shop_domain(ctx.settings.get("shop"), required=ctx.base_url is None)
        token = ctx.secrets.get("access_token")
        if not token:
            raise ConfigurationError(
                "the Shopify connection has no access_token: install the app, or paste the shop's Admin API "
                "access token into the connection"
            )
        self.client = ctx.make_client(
            default_base_url=f"https://{shop}",
            auth=ShopifyAuth(token),
            policy=SHOPIFY_REST,
            reauth_hint=_reauth_hint,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def _path(self, resource: str) -> str:
        return f"/admin/api/{self.api_version}/{resource}"

    async def _call(
        self,
        method: str,
        resource: str,
        *,
        order_id: uuid.UUID | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return await self.client.request(
            method, self._path(resource), operation="rest", order_id=order_id, **kwargs
        )

    async def _json(self, method: str, resource: str, key: str, **kwargs: Any) -> Any:
        response = await self._call(method, resource, **kwargs)
        return _body(response, key, f"{method} {resource}")

    # -- check -------------------------------------------------------------------------------------------

    async def check(self) -> str:
        shop = await self._json("GET", "shop.json", "shop")
        if not isinstance(shop, dict):
            raise RetryableError("Shopify answered shop.json without a shop object; try again")
        domain = shop.get("domain") or shop.get("myshopify_domain")
        return f"Shopify shop {shop.get('name')} ({domain})"

    # -- orders.pull -------------------------------------------------------------------------------------

    async def pull_orders(
        self, window: PullWindow, resume: dict[str, Any] | None
    ) -> AsyncGenerator[Page, None]:
        """Orders updated in [since, until), newest first, 250 a page; `resume` = {"page_info": ...}.

        Shopify's filters are inclusive at both ends: updated_at_min "show orders last updated at or after
        date", updated_at_max "at or before date" (shopify.dev/docs/api/admin-rest/2025-01/resources/order,
        "Retrieves a list of orders"), and REST timestamps are whole seconds. So min is `since` rounded down
        (an overlap with the last window, which bindings skip, never a gap) and max is the last whole second
        before `until`: an order updated at `until` or later belongs to the next window. The filters travel
        inside page_info, so an order edited during the pull leaves the window instead of shifting pages.
        """
        first_page: dict[str, Any] = {
            "status": "any",
            "limit": PAGE_LIMIT,
            "updated_at_max": _last_second_before(window.until),
        }
        if window.since is not None:
            first_page["updated_at_min"] = _shopify_time(window.since)
        page_info = (resume or {}).get("page_info")
        params = {"limit": PAGE_LIMIT, "page_info": page_info} if page_info else first_page
        stored_cursor = bool(page_info)
        # The request for the next page, sent as soon as a page's Link header names it: Shopify prepares it
        # while this page is mapped and stored, so a pull takes about the longer of the two, not their sum.
        ahead: asyncio.Task[httpx.Response] | None = None
        try:
            while True:
                call = ahead if ahead is not None else self._call("GET", "orders.json", params=params)
                ahead = None
                try:
                    response = await call
                except RemotePermanentError as exc:
                    # A stored cursor Shopify no longer accepts ({"errors": {"page_info": "Invalid value."}})
                    # must not stop the stream for good: read the window again from its first page (what was
                    # already imported is skipped by its binding).
                    if (
                        not stored_cursor
                        or exc.status != 400
                        or "page_info" not in (exc.remote_message or "")
                    ):
                        raise
                    params, stored_cursor = first_page, False
                    continue
                stored_cursor = False
                orders = _body(response, "orders", "GET orders.json")
                if not isinstance(orders, list):
                    raise RetryableError("Shopify answered orders.json without an orders list; try again")
                next_info = _next_page_info(response)
                if next_info is not None:
                    # Follow-up pages carry page_info and limit only: the other filters are in the cursor
                    # (shopify.dev/docs/api/usage/pagination-rest).
                    params = {"limit": PAGE_LIMIT, "page_info": next_info}
                    ahead = await self.client.start(
                        "GET", self._path("orders.json"), operation="rest", params=params
                    )
                records = []
                for raw in orders:
                    mapped = map_order(raw)
                    mapped.raw = raw
                    records.append(mapped)
                yield Page(records, {"page_info": next_info} if next_info else None, raw_count=len(orders))
                if next_info is None:
                    return
        finally:
            await discard(
                ahead
            )  # the caller stopped reading (or this page failed): the next page is not needed

    # -- webhook subscriptions ----------------------------------------------------------------------------

    async def _subscriptions(self, address: str) -> list[dict[str, Any]]:
        # `address` is a documented filter of GET webhooks.json (shopify.dev admin-rest Webhook); the check
        # below keeps us right even if a remote ignored it.
        hooks = await self._json(
            "GET", "webhooks.json", "webhooks", params={"address": address, "limit": 250}
        )
        return [h for h in hooks or [] if isinstance(h, dict) and h.get("address") == address]

    async def subscribe(self, address: str) -> list[str]:
        existing = {h.get("topic"): h.get("id") for h in await self._subscriptions(address)}
        ids: list[str] = []
        for topic in ORDER_TOPICS:
            if topic not in existing:
                body = {"webhook": {"topic": topic, "address": address, "format": "json"}}
                try:
                    # A retried create that had taken effect is refused as "already been taken"; the list
                    # below then finds it (lookup_first).
                    hook = await self._json("POST", "webhooks.json", "webhook", json=body, lookup_first=True)
                    existing[topic] = hook.get("id") if isinstance(hook, dict) else None
                except RemotePermanentError as exc:
                    if exc.status != 422:
                        raise
                    again = {h.get("topic"): h.get("id") for h in await self._subscriptions(address)}
                    if topic not in again:
                        raise
                    existing[topic] = again[topic]
            ids.append(str(existing[topic]))
        return ids

    async def unsubscribe(self, address: str) -> int:
        removed = 0
        for hook in await self._subscriptions(address):
            try:
                await self._call("DELETE", f"webhooks/{hook['id']}.json")
            except RemotePermanentError as exc:
                if exc.status != 404:  # already gone (e.g. a retried delete): what we wanted
                    raise
            removed += 1
        return removed

    # -- fulfillments.push ---------------------------------------------------------------------------------

    async def _order_version(self, order_external_id: str, order_id: uuid.UUID | None) -> str | None:
        """The order's updated_at as an external version (as map_order computes it), or None when unknown."""
        try:
            order = await self._json(
                "GET",
                f"orders/{_id(order_external_id)}.json",
                "order",
                params={"fields": "id,updated_at"},
                order_id=order_id,
            )
        except RetryableError:
            return None  # the fulfillment is what matters; the version only spares an echo import
        updated = order.get("updated_at") if isinstance(order, dict) else None
        try:
            return version_of(datetime.fromisoformat(updated)) if isinstance(updated, str) else None
        except ValueError:
            return None

    async def find_fulfillment(
        self, order_external_id: str, fulfillment: Fulfillment
    ) -> PushedFulfillment | None:
        """The live fulfillment of the order that carries this tracking number. Without a tracking number
        there is nothing to recognise it by; Shopify then refuses a second push itself, because the lines it
        would fulfil are no longer open in the fulfillment orders."""
        number = fulfillment.tracking_number
        if not number:
            return None
        order_id = fulfillment.order_id
        found = await self._json(
            "GET",
            f"orders/{_id(order_external_id)}/fulfillments.json",
            "fulfillments",
            params={"limit": 250},
            order_id=order_id,
        )
        for existing in found or []:
            if not isinstance(existing, dict) or existing.get("status") in DEAD_FULFILLMENT:
                continue
            numbers = existing.get("tracking_numbers") or []
            if existing.get("tracking_number") == number or number in numbers:
                version = await self._order_version(order_external_id, order_id)
                return PushedFulfillment(str(existing["id"]), order_version=version)
        return None

    async def push_fulfillment(
        self, order_external_id: str, fulfillment: Fulfillment, idempotency_key: str
    ) -> PushedFulfillment:
        """Create the fulfillment through the order's fulfillment orders (POST fulfillments.json).

        Shopify's REST API takes no idempotency key, so `idempotency_key` is not sent: the POST is retried
        only because the engine asks `find_fulfillment` before any new attempt (lookup_first)."""
        order_id = fulfillment.order_id
        external = _id(order_external_id)
        fulfillment_orders = await self._json(
            "GET", f"orders/{external}/fulfillment_orders.json", "fulfillment_orders", order_id=order_id
        )
        # Every canonical fulfillment names its lines (Fulfillment.lines has at least one), so "all remaining
        # items" (a fulfillment order without fulfillment_order_line_items, shopify.dev/docs/api/admin-graphql/
        # 2025-01/input-objects/FulfillmentOrderLineItemsInput) is never asked for.
        try:
            body = fulfillment_request(fulfillment, fulfillment_orders or [])
        except PushError as exc:
            raise PermanentError(
                f"cannot fulfil Shopify order {order_external_id}: {exc.field}: {exc.reason}"
            ) from None
        try:
            created = await self._json(
                "POST", "fulfillments.json", "fulfillment", json=body, order_id=order_id, lookup_first=True
            )
        except RemotePermanentError as exc:
            # The client retries a POST whose answer was lost (timeout, 5xx) at once; when the first try had
            # taken effect, Shopify refuses the second (422: those lines are no longer open). The fulfillment
            # carrying our tracking number is then the one we made.
            if exc.status != 422:
                raise
            existing = await self.find_fulfillment(order_external_id, fulfillment)
            if existing is None:
                raise
            return existing
        if not isinstance(created, dict) or created.get("id") is None:
            raise RetryableError(
                "Shopify answered the fulfillment without its id; the engine looks it up before trying again"
            )
        version = await self._order_version(order_external_id, order_id)
        return PushedFulfillment(str(created["id"]), order_version=version)

    async def update_tracking(
        self, order_external_id: str, external_id: str, fulfillment: Fulfillment
    ) -> PushedFulfillment:
        """POST fulfillments/{id}/update_tracking.json (shopify.dev/docs/api/admin-rest/2025-01/resources/
        fulfillment, "Updates the tracking information for a fulfillment")."""
        tracking = {
            "number": fulfillment.tracking_number,
            "company": tracking_company(fulfillment.carrier),
            "url": fulfillment.tracking_url,
        }
        body = {
            "fulfillment": {
                "notify_customer": False,
                "tracking_info": {k: v for k, v in tracking.items() if v},
            }
        }
        order_id = fulfillment.order_id
        # Setting the same tracking twice changes nothing, so a retry of this POST is safe.
        await self._json(
            "POST",
            f"fulfillments/{_id(external_id)}/update_tracking.json",
            "fulfillment",
            json=body,
            order_id=order_id,
            lookup_first=True,
        )
        return PushedFulfillment(
            external_id, order_version=await self._order_version(order_external_id, order_id)
        )

    # -- inventory.push ------------------------------------------------------------------------------------

    async def push_stock(self, levels: list[StockLevel]) -> StockPushed:
        """POST inventory_levels/set.json per level (shopify.dev/docs/api/admin-rest/2025-01/resources/
        inventorylevel, "Sets the inventory level for an inventory item at a location"). A level's SKU is
        found with the GraphQL inventoryItems search (`sku:` filter, shopify.dev/docs/api/admin-graphql/
        2025-01/queries/inventoryItems: REST has no SKU lookup since variants listing was deprecated in
        2024-04); its location is a location id, a location name, or "default" (the shop's primary one)."""
        result = StockPushed()
        if not levels:
            return result
        locations = await self._locations({level.location for level in levels})
        items = await self._inventory_items({level.sku for level in levels})
        for level in levels:
            location = locations.get(level.location)
            item = items.get(level.sku)
            if isinstance(location, str) or isinstance(item, str) or location is None or item is None:
                reasons = [r for r in (location, item) if isinstance(r, str)]
                result.refused[(level.sku, level.location)] = "; ".join(reasons) or "not found"
                continue
            body = {
                "location_id": location,
                "inventory_item_id": item,
                "available": level.available,
                "disconnect_if_necessary": False,
            }
            try:
                # Setting an absolute quantity twice gives the same result, so a retry is safe.
                await self._call("POST", "inventory_levels/set.json", json=body, lookup_first=True)
            except RemotePermanentError as exc:
                result.refused[(level.sku, level.location)] = f"Shopify: {exc.remote_message or exc}"
                continue
            result.set.append(level)
        return result

    async def _locations(self, wanted: Iterable[str]) -> dict[str, int | str]:
        """Our location names -> Shopify location ids, or the reason one cannot be used."""
        found = await self._json("GET", "locations.json", "locations")
        by_id: dict[str, dict[str, Any]] = {}
        by_name: dict[str, list[dict[str, Any]]] = {}
        for loc in found or []:
            if isinstance(loc, dict) and loc.get("id") is not None:
                by_id[str(loc["id"])] = loc
                by_name.setdefault(str(loc.get("name") or "").casefold(), []).append(loc)
        result: dict[str, int | str] = {}
        for name in wanted:
            match: dict[str, Any] | None = by_id.get(name.strip())
            if match is None and name == "default":
                primary = await self._primary_location(by_id)
                match = by_id.get(primary) if primary else None
            if match is None:
                named = by_name.get(name.strip().casefold(), [])
                if len(named) > 1:
                    result[name] = f"{len(named)} Shopify locations are named {name!r}; use the location id"
                    continue
                match = named[0] if named else None
            if match is None:
                result[name] = "no such Shopify location"
            elif match.get("active") is False:
                result[name] = "the Shopify location is deactivated"
            else:
                result[name] = int(match["id"])
        return result

    async def _primary_location(self, by_id: Mapping[str, dict[str, Any]]) -> str | None:
        active = [k for k, loc in by_id.items() if loc.get("active") is not False]
        if len(active) == 1:
            return active[0]
        shop = await self._json("GET", "shop.json", "shop", params={"fields": "primary_location_id"})
        primary = shop.get("primary_location_id") if isinstance(shop, dict) else None
        return str(primary) if primary is not None else None

    async def _inventory_items(self, skus: Iterable[str]) -> dict[str, int | str]:
        """SKU -> inventory item id, or why it has none (unknown, or shared by several items)."""
        wanted = sorted(set(skus))
        hits: dict[str, list[int]] = {}
        for start in range(0, len(wanted), SKUS_PER_SEARCH):
            batch = wanted[start : start + SKUS_PER_SEARCH]
            search = " OR ".join(f"sku:{_search_value(sku)}" for sku in batch)
            after: str | None = None
            while True:
                data = await self._graphql(_INVENTORY_SEARCH, {"query": search, "after": after})
                connection = (data or {}).get("inventoryItems") or {}
                for edge in connection.get("edges") or []:
                    node = (edge or {}).get("node") or {}
                    sku, gid = node.get("sku"), node.get("id")
                    # The search may match loosely; only the exact SKU counts.
                    if sku in batch and isinstance(gid, str):
                        hits.setdefault(sku, []).append(_legacy_id(gid))
                page = connection.get("pageInfo") or {}
                if not page.get("hasNextPage") or not page.get("endCursor"):
                    break
                after = page["endCursor"]
        result: dict[str, int | str] = {}
        for sku in wanted:
            found = sorted(set(hits.get(sku, [])))
            if not found:
                result[sku] = "no Shopify product variant has this SKU"
            elif len(found) > 1:
                result[sku] = f"{len(found)} Shopify inventory items share this SKU"
            else:
                result[sku] = found[0]
        return result

    async def _graphql(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any] | None:
        """One GraphQL Admin query (POST graphql.json). Errors come back with HTTP 200 in `errors`; a throttled
        query says THROTTLED and its cost tells when enough points are back
        (shopify.dev/docs/api/usage/limits#graphql-admin-api-rate-limits)."""
        # A query changes nothing, so retrying this POST is safe. It takes a slot of the REST bucket too: one
        # SKU search per 50 levels is far below GraphQL's own cost budget, so the REST bucket is the tighter one.
        response = await self._call(
            "POST", "graphql.json", json={"query": query, "variables": dict(variables)}, lookup_first=True
        )
        try:
            payload = response.json()
        except ValueError:
            raise RetryableError("Shopify answered a GraphQL query with a body that is not JSON") from None
        if not isinstance(payload, dict):
            raise RetryableError("Shopify answered a GraphQL query with an unexpected body")
        errors = payload.get("errors")
        if errors:
            listed = errors if isinstance(errors, list) else [errors]
            codes = {((e or {}).get("extensions") or {}).get("code") for e in listed if isinstance(e, dict)}
            if "THROTTLED" in codes:
                raise RateLimited(
                    "Shopify throttled a GraphQL query; it will be retried",
                    retry_after=_graphql_wait(payload),
                )
            words = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in listed)
            raise PermanentError(f"Shopify refused a GraphQL query: {words}")
        data = payload.get("data")
        return data if isinstance(data, dict) else None


# -- helpers ------------------------------------------------------------------------------------------------


def _api_version(value: Any) -> str:
    version = str(value).strip() if value else DEFAULT_API_VERSION
    if not API_VERSION_FORMAT.match(version):
        raise ConfigurationError(
            f"the Shopify api_version {version!r} is not a release name: use YYYY-MM, e.g. {DEFAULT_API_VERSION}"
        )
    return version


def _shop_domain(value: Any, *, required: bool) -> str:
    """`acme`, `acme.myshopify.com` or `https://acme.myshopify.com/` -> `acme.myshopify.com`."""
    text = str(value or "").strip()
    if "//" in text:
        text = urlsplit(text).netloc
    text = text.strip("/").lower()
    if text and "." not in text:
        text += ".myshopify.com"
    if required and not SHOP_DOMAIN.match(text):
        raise ConfigurationError(
            f"the Shopify shop setting {value!r} is not a shop domain: use your-shop.myshopify.com"
        )
    return text or "shop.invalid"


def _id(value: str) -> str:
    """A Shopify numeric id for a URL path (ids come from our records, but never let one change the path)."""
    text = str(value).strip()
    if not text.isdigit():
        raise PermanentError(f"{value!r} is not a Shopify id (Shopify ids are numbers)")
    return text


def _body(response: httpx.Response, key: str, what: str) -> Any:
    payload = json_object(response, "Shopify", what)
    if key not in payload:
        raise RetryableError(f"Shopify answered {what} without '{key}'; try again")
    return payload[key]


def _shopify_time(moment: datetime) -> str:
    """Whole seconds in UTC with an explicit offset, the format the REST filters document."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _last_second_before(until: datetime) -> str:
    return _shopify_time(until - timedelta(microseconds=1))


def _next_page_info(response: httpx.Response) -> str | None:
    """page_info of the Link header's rel="next" URL, verbatim; None on the last page."""
    link = response.links.get("next")
    if not link or not link.get("url"):
        return None
    values = parse_qs(urlsplit(link["url"]).query).get("page_info")
    return values[0] if values else None


def _search_value(value: str) -> str:
    """A quoted search term value (shopify.dev/docs/api/usage/search-syntax: quotes keep spaces and special
    characters, a backslash escapes a quote)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _legacy_id(gid: str) -> int:
    """gid://shopify/InventoryItem/123 -> 123 (the REST id)."""
    tail = gid.rsplit("/", 1)[-1].split("?", 1)[0]
    if not tail.isdigit():
        raise RetryableError(f"Shopify answered an id {gid!r} that is not a Shopify global id")
    return int(tail)


def _graphql_wait(payload: Mapping[str, Any]) -> float | None:
    cost = ((payload.get("extensions") or {}).get("cost")) or {}
    status = cost.get("throttleStatus") or {}
    try:
        needed = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
        return max(1.0, needed / float(status["restoreRate"]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None

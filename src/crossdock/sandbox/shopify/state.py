"""The state of one emulated Shopify shop: orders, fulfillments, stock, webhooks, tokens, rate limit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import time
import uuid
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crossdock.sandbox.common import (
    CATALOG,
    Address,
    DataGen,
    Faults,
    Person,
    SandboxConfig,
    WebhookSender,
    from_usd,
)
from crossdock.sandbox.shopify.graphql import PointBucket
from crossdock.sandbox.shopify.orders import (
    CATALOG_USD,
    FOS_PER_ORDER,
    FULFILLMENT_ORDER_ID_BASE,
    INVENTORY_ITEM_ID_BASE,
    LINE_ITEM_ID_BASE,
    LINES_PER_ORDER,
    NEW_FULFILLMENT_ID_BASE,
    ORDER_ID_BASE,
    SEEDED_FULFILLMENT_ID_BASE,
    Fulfillment,
    FulfillmentState,
    Order,
    OrderBody,
    Renderer,
    generate_body,
    initial_fulfillment,
    make_line,
    parse_money,
)

DEFAULT_SHOP = "crossdock-demo.myshopify.com"
DEFAULT_API_VERSION = "2025-01"
# Topics the sandbox emits and accepts subscriptions for (Shopify webhook topics, REST spelling).
TOPICS = (
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "orders/paid",
    "orders/fulfilled",
    "orders/partially_fulfilled",
    "app/uninstalled",
)
ALL_SCOPES = (
    "read_orders",
    "write_orders",
    "read_merchant_managed_fulfillment_orders",
    "write_merchant_managed_fulfillment_orders",
    "read_fulfillments",
    "write_fulfillments",
    "read_inventory",
    "write_inventory",
    "read_locations",
)
# Seeded orders spread over the last 60 days: what an app without read_all_orders can see.
SEED_WINDOW = timedelta(days=60)
# Spacing of seeded order ids (ids grow with time but are not consecutive, as in a real shop).
ORDER_ID_STEP = 1_009


class ShopifyError(Exception):
    """An error answered with Shopify's JSON shape: {"errors": ...} and an HTTP status."""

    def __init__(self, status: int, errors: Any) -> None:
        super().__init__(f"{status}: {errors}")
        self.status = status
        self.errors = errors


@dataclass
class Filters:
    """The orders.json filters a page_info cursor carries."""

    status: str = "open"
    financial_status: str = "any"
    fulfillment_status: str = "any"
    created_at_min: float | None = None
    created_at_max: float | None = None
    updated_at_min: float | None = None
    updated_at_max: float | None = None
    since_id: int | None = None
    ids: tuple[int, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Filters:
        filters = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        if filters.ids is not None:
            filters.ids = tuple(int(i) for i in filters.ids)
        return filters


_FINANCIAL_FILTERS = {
    "any": None,
    "authorized": {"authorized"},
    "pending": {"pending"},
    "paid": {"paid"},
    "partially_paid": {"partially_paid"},
    "refunded": {"refunded"},
    "voided": {"voided"},
    "partially_refunded": {"partially_refunded"},
    "unpaid": {"authorized", "pending", "partially_paid"},
}
_FULFILLMENT_FILTERS: dict[str, set[str | None] | None] = {
    "any": None,
    "shipped": {"fulfilled"},
    "partial": {"partial"},
    "unshipped": {None},
    "unfulfilled": {None, "partial"},
}


def validate_filter_values(filters: Filters) -> None:
    if filters.status not in ("open", "closed", "cancelled", "any"):
        raise ShopifyError(400, {"status": [f"{filters.status} is not a valid status"]})
    if filters.financial_status not in _FINANCIAL_FILTERS:
        raise ShopifyError(400, {"financial_status": [f"{filters.financial_status} is not a valid value"]})
    if filters.fulfillment_status not in _FULFILLMENT_FILTERS:
        raise ShopifyError(
            400, {"fulfillment_status": [f"{filters.fulfillment_status} is not a valid value"]}
        )


class LeakyBucket:
    """Shopify's REST limit: a bucket of 40 calls leaking 2 per second (shopify.dev/docs/api/usage/limits)."""

    def __init__(self, capacity: int = 40, leak_per_s: float = 2.0) -> None:
        self.capacity = capacity
        self.leak_per_s = leak_per_s
        self.level = 0.0
        self._at = time.monotonic()

    def _leak(self) -> None:
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self._at) * self.leak_per_s)
        self._at = now

    def take(self) -> tuple[bool, float]:
        """Add one call; (allowed, seconds until one call fits again)."""
        self._leak()
        if self.level + 1 > self.capacity + 1e-9:
            return False, (self.level + 1 - self.capacity) / self.leak_per_s
        self.level += 1
        return True, 0.0

    def header(self) -> str:
        self._leak()
        return f"{min(self.capacity, math.ceil(self.level - 1e-9))}/{self.capacity}"


@dataclass
class Subscription:
    id: int
    topic: str
    address: str
    format: str
    created_ts: float
    updated_ts: float
    api_version: str
    fields: list[str] = field(default_factory=list)


@dataclass
class OAuthCode:
    code: str
    scope: str
    online: bool
    expires_ts: float


def shopify_hmac_hex(params: dict[str, str], secret: str) -> str:
    """Hex HMAC-SHA256 of the sorted query (without hmac), escaped as Shopify documents for OAuth callbacks."""

    def pair(key: str, value: str) -> str:
        key = key.replace("%", "%25").replace("=", "%3D")
        return f"{key}={value.replace('%', '%25')}".replace("&", "%26")

    message = "&".join(sorted(pair(k, v) for k, v in params.items() if k != "hmac"))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


class ShopState:
    """Everything one sandboxed shop knows. All methods run on the event loop thread."""

    def __init__(self, config: SandboxConfig, faults: Faults, sender: WebhookSender) -> None:
        self.config = config
        self.faults = faults
        self.sender = sender
        self.seed = config.seed
        self.shop = config.extra.get("shop", DEFAULT_SHOP)
        self.shop_name = self.shop.split(".", 1)[0]
        # A shop that has taken orders before (`--extra first_order=N`): ids and numbers go on from order N, so
        # that a hub which knew an earlier sandbox of the same shop never sees one order id twice.
        self.first_order = int(config.extra.get("first_order", "1"))
        if self.first_order < 1:
            raise ValueError("first_order must be 1 or more")
        try:
            self.tz: tzinfo = ZoneInfo(config.extra.get("timezone", "America/New_York"))
        except (ZoneInfoNotFoundError, ValueError):
            self.tz = UTC
        self.renderer = Renderer(self.tz, self.shop)
        self.rng = random.Random(config.seed ^ 0x5E0F)
        # Webhook and event ids come from their own stream so that they do not shift the data.
        self._id_rng = random.Random(config.seed ^ 0xB00C)
        self.token = config.token or "shpat_" + f"{random.Random(config.seed ^ 0x70CE).getrandbits(128):032x}"
        # The fixed token behaves like an installed custom app's token with every scope the sandbox knows.
        self.tokens: dict[str, str] = {self.token: ",".join(ALL_SCOPES)}
        self.oauth_codes: dict[str, OAuthCode] = {}
        scale = 100.0 if config.fast_limits else 1.0
        self.bucket = LeakyBucket(40, 2.0 * scale)
        self.points = PointBucket(scale)
        # The sandbox clock: real time plus what /_sandbox/clock/advance added, or pinned by extra["now"].
        self._clock_offset = 0.0
        if "now" in config.extra:
            pinned = datetime.fromisoformat(config.extra["now"])
            if pinned.tzinfo is None:
                pinned = pinned.replace(tzinfo=UTC)
            self._clock_offset = pinned.timestamp() - time.time()
        self.location: dict[str, Any] = {
            "id": 78_100_000_001,
            "name": "Main Warehouse",
            "address1": "150 Elgin Street",
            "city": "Ottawa",
            "province": "Ontario",
            "province_code": "ON",
            "zip": "K2P 1L4",
            "country": "CA",
            "country_code": "CA",
            "active": True,
        }
        self.location_id: int = self.location["id"]
        self.locations: list[dict[str, Any]] = [
            self.location,
            {
                **self.location,
                "id": 78_100_000_002,
                "name": "Overflow Store",
                "address1": "Kalverstraat 1",
                "city": "Amsterdam",
                "province": "Noord-Holland",
                "province_code": "NH",
                "zip": "1012 NX",
                "country": "NL",
                "country_code": "NL",
            },
        ]
        stock_rng = random.Random(config.seed ^ 0x57C0)
        self.inventory: dict[tuple[int, int], tuple[int, float]] = {}
        for i in range(len(CATALOG)):
            for loc in self.locations:
                self.inventory[(INVENTORY_ITEM_ID_BASE + i * 3, loc["id"])] = (
                    stock_rng.randrange(0, 120),
                    0.0,
                )
        self.subscriptions: dict[int, Subscription] = {}
        self._next_subscription_id = 1_470_000_000_001
        self._next_fulfillment_id = NEW_FULFILLMENT_ID_BASE
        # Fulfillments created through the API -> their order's id (seeded ones follow from the id layout).
        self._fulfillment_orders: dict[int, int] = {}
        # Orders sorted by id (ascending; ids grow with created_at), with an id index and an updated_at index.
        self._ids: list[int] = []
        self._orders: list[Order] = []
        self._created: list[float] = []
        self._by_id: dict[int, Order] = {}
        self._updated: list[tuple[float, int]] = []
        self.webhook_log: list[dict[str, Any]] = []
        self._seed_orders(config.orders)

    # -- time ----------------------------------------------------------------------------------------------

    def now_ts(self) -> float:
        return float(int(time.time() + self._clock_offset))

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ts(), UTC)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._clock_offset += seconds

    # -- seeding -------------------------------------------------------------------------------------------

    def _seed_orders(self, n: int) -> None:
        if n <= 0:
            return
        rng = random.Random(self.seed)
        end = self.now_ts() - 60
        start = end - SEED_WINDOW.total_seconds()
        gaps = [rng.expovariate(1.0) for _ in range(n)]
        scale = (end - start) / (sum(gaps) or 1.0)
        ts = start
        for i in range(n):
            ts += gaps[i] * scale
            created = float(int(ts))
            number = self.first_order + i
            order = Order(ORDER_ID_BASE + number * ORDER_ID_STEP, i, number, created)
            order.updated_ts = created + rng.randrange(1, 30)
            r = rng.random()
            order.financial_status = (
                "paid"
                if r < 0.86
                else "pending"
                if r < 0.91
                else "authorized"
                if r < 0.95
                else "partially_refunded"
                if r < 0.97
                else "refunded"
            )
            age_days = (end - created) / 86400
            if order.financial_status == "paid" and age_days > 2:
                f = rng.random()
                if f < 0.7:
                    order.seed_fulfillment = "fulfilled"
                elif f < 0.76:
                    order.seed_fulfillment = "partial"
            if order.seed_fulfillment:
                shipped = min(end, order.updated_ts + rng.uniform(3600, 3 * 86400))
                order.updated_ts = float(int(shipped))
                order.fulfillment_status = order.seed_fulfillment
                if order.seed_fulfillment == "fulfilled":
                    # Shopify archives paid and fulfilled orders by default ("Automatically archive").
                    order.closed_ts = order.updated_ts
            elif rng.random() < 0.05:
                cancelled = min(end, order.updated_ts + rng.uniform(600, 2 * 86400))
                order.cancelled_ts = order.closed_ts = order.updated_ts = float(int(cancelled))
                order.cancel_reason = rng.choice(("customer", "inventory", "fraud", "declined", "other"))
                order.financial_status = "voided" if order.financial_status != "paid" else "refunded"
            elif rng.random() < 0.2:
                # Later edits (a note, an address fix): updated_at moves, nothing else visible changes.
                order.updated_ts = float(int(min(end, order.updated_ts + rng.uniform(60, 5 * 86400))))
            self._ids.append(order.id)
            self._orders.append(order)
            self._created.append(created)
            self._by_id[order.id] = order
        self._updated = sorted((o.updated_ts, o.id) for o in self._orders)

    # -- access --------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._orders)

    def get(self, order_id: int) -> Order | None:
        return self._by_id.get(order_id)

    def body(self, order: Order) -> OrderBody:
        return order.body if order.body is not None else generate_body(self.seed, order.index)

    def fulfillment(self, order: Order) -> FulfillmentState:
        if order.fulfillment is not None:
            return order.fulfillment
        return initial_fulfillment(order, self.body(order), self.location_id, self.seed)

    def materialize(self, order: Order) -> tuple[OrderBody, FulfillmentState]:
        """Store the derived parts of an order before changing it (afterwards they are no longer derived)."""
        if order.body is None:
            order.body = self.body(order)
        if order.fulfillment is None:
            order.fulfillment = initial_fulfillment(order, order.body, self.location_id, self.seed)
        return order.body, order.fulfillment

    def render(self, order: Order) -> dict[str, Any]:
        return self.renderer.order(order, self.body(order), self.fulfillment(order))

    def orders(self) -> Iterator[Order]:
        return iter(self._orders)

    # -- querying ------------------------------------------------------------------------------------------

    def _matches(self, o: Order, f: Filters) -> bool:
        if f.status == "open" and o.closed_ts is not None:
            return False
        if f.status == "closed" and o.closed_ts is None:
            return False
        if f.status == "cancelled" and o.cancelled_ts is None:
            return False
        fin = _FINANCIAL_FILTERS[f.financial_status]
        if fin is not None and o.financial_status not in fin:
            return False
        ful = _FULFILLMENT_FILTERS[f.fulfillment_status]
        if ful is not None and o.fulfillment_status not in ful:
            return False
        if f.created_at_min is not None and o.created_ts < f.created_at_min:
            return False
        if f.created_at_max is not None and o.created_ts > f.created_at_max:
            return False
        if f.updated_at_min is not None and o.updated_ts < f.updated_at_min:
            return False
        if f.updated_at_max is not None and o.updated_ts > f.updated_at_max:
            return False
        return not (f.since_id is not None and o.id <= f.since_id)

    def _candidates(self, f: Filters) -> list[int]:
        """Ascending ids that may match: the narrowest index range the filters allow."""
        if f.ids is not None:
            return sorted(i for i in set(f.ids) if i in self._by_id)
        lo, hi = 0, len(self._ids)
        # Ids grow with created_at, so created_at bounds are an index range.
        if f.created_at_min is not None:
            lo = max(lo, bisect_left(self._created, f.created_at_min))
        if f.created_at_max is not None:
            hi = min(hi, bisect_right(self._created, f.created_at_max))
        if f.since_id is not None:
            lo = max(lo, bisect_right(self._ids, f.since_id))
        if f.updated_at_min is not None or f.updated_at_max is not None:
            u_lo = 0 if f.updated_at_min is None else bisect_left(self._updated, (f.updated_at_min, -1))
            u_hi = (
                len(self._updated)
                if f.updated_at_max is None
                else bisect_right(self._updated, (f.updated_at_max, math.inf))
            )
            # An incremental pull ("updated since my last sync") touches few orders: use the updated_at index.
            if u_hi - u_lo < hi - lo:
                lo_id = self._ids[lo] if lo < len(self._ids) else math.inf
                hi_id = self._ids[hi - 1] if hi > 0 else -math.inf
                return sorted(i for _, i in self._updated[u_lo:u_hi] if lo_id <= i <= hi_id)
        return self._ids[lo:hi]

    def page(
        self, f: Filters, limit: int, anchor: int | None = None, direction: str = "next"
    ) -> tuple[list[Order], bool, bool]:
        """One page in display order plus (has_previous, has_next).

        Display order is newest first (id descending), or ascending when since_id is given, which is how
        since_id paging works. `anchor` is the last id shown (direction next) or the first (direction prev).
        """
        ids = self._candidates(f)
        ascending = f.since_id is not None
        forward = direction == "next"
        # Walk in display order for "next", against it for "prev".
        step = 1 if ascending == forward else -1
        if anchor is None:
            pos = 0 if step == 1 else len(ids) - 1
        else:
            pos = bisect_right(ids, anchor) if step == 1 else bisect_left(ids, anchor) - 1
        found: list[Order] = []
        by_id = self._by_id
        while 0 <= pos < len(ids) and len(found) <= limit:
            order = by_id[ids[pos]]
            if self._matches(order, f):
                found.append(order)
            pos += step
        more = len(found) > limit
        found = found[:limit]
        if forward:
            return found, anchor is not None, more
        found.reverse()
        return found, more, True

    def count(self, f: Filters) -> int:
        ids = self._candidates(f)
        by_id = self._by_id
        return sum(1 for i in ids if self._matches(by_id[i], f))

    # -- changing orders -----------------------------------------------------------------------------------

    def _touch(self, order: Order) -> None:
        old = (order.updated_ts, order.id)
        # Updates within the same second still move updated_at forward, so a cursor on it sees them.
        order.updated_ts = max(self.now_ts(), order.updated_ts + 1)
        i = bisect_left(self._updated, old)
        if i < len(self._updated) and self._updated[i] == old:
            del self._updated[i]
        insort(self._updated, (order.updated_ts, order.id))

    def create_order(self, spec: dict[str, Any] | None = None) -> Order:
        """A new order now: random, or built from the Shopify-shaped fields given in `spec`."""
        spec = spec or {}
        index = len(self._orders)
        created = self.now_ts()
        if self._created and created < self._created[-1]:
            created = self._created[-1]
        number = self.first_order + index
        order = Order(ORDER_ID_BASE + number * ORDER_ID_STEP, index, number, created)
        country = None
        address_spec = spec.get("shipping_address")
        if isinstance(address_spec, dict) and address_spec.get("country_code"):
            country = str(address_spec["country_code"]).upper()
            if country not in DataGen.country_codes():
                country = None
        body = generate_body(self.seed ^ 0xC0FFEE, index, country)
        _apply_spec(body, spec, index)
        order.body = body
        order.financial_status = str(spec.get("financial_status", "paid"))
        if order.financial_status not in ("pending", "authorized", "paid", "partially_paid"):
            raise ValueError("financial_status: new orders are pending, authorized, partially_paid or paid")
        order.updated_ts = created
        order.fulfillment = initial_fulfillment(order, body, self.location_id, self.seed)
        self._ids.append(order.id)
        self._orders.append(order)
        self._created.append(created)
        self._by_id[order.id] = order
        insort(self._updated, (order.updated_ts, order.id))
        self.emit("orders/create", order)
        if order.financial_status == "paid":
            self.emit("orders/paid", order)
        return order

    def update_order(self, order: Order, changes: dict[str, Any]) -> Order:
        body, _ = self.materialize(order)
        was_paid = order.financial_status == "paid"
        if "note" in changes:
            body.note = None if changes["note"] is None else str(changes["note"])
        if "tags" in changes:
            tags = changes["tags"]
            body.tags = ", ".join(tags) if isinstance(tags, list) else str(tags)
        if "email" in changes:
            body.email = str(changes["email"])
        if "financial_status" in changes:
            status = str(changes["financial_status"])
            if status not in (
                "pending",
                "authorized",
                "partially_paid",
                "paid",
                "partially_refunded",
                "refunded",
                "voided",
            ):
                raise ValueError(f"financial_status: {status!r} is not a Shopify financial status")
            order.financial_status = status
        if isinstance(changes.get("shipping_address"), dict):
            body.shipping_address = _address_from(changes["shipping_address"], body.shipping_address)
        self._touch(order)
        self.emit("orders/updated", order)
        if not was_paid and order.financial_status == "paid":
            self.emit("orders/paid", order)
        return order

    def cancel_order(self, order: Order, reason: str = "other") -> Order:
        if order.cancelled_ts is not None:
            raise ShopifyError(422, {"base": ["Order has already been cancelled"]})
        _, state = self.materialize(order)
        if any(f.status == "success" for f in state.fulfillments):
            raise ShopifyError(422, {"base": ["Cannot cancel an order that has fulfillments"]})
        now = self.now_ts()
        order.cancelled_ts = order.closed_ts = max(now, order.updated_ts + 1)
        order.cancel_reason = reason
        order.financial_status = "refunded" if order.financial_status == "paid" else "voided"
        for fo in state.orders:
            fo.status = "cancelled"
            fo.updated_ts = now
        self._touch(order)
        self.emit("orders/cancelled", order)
        self.emit("orders/updated", order)
        return order

    def fulfillment_order(self, fo_id: int) -> tuple[Order, int] | None:
        """(order, index into its fulfillment orders) for a fulfillment order id, from the id layout."""
        offset = fo_id - FULFILLMENT_ORDER_ID_BASE
        if offset < 0:
            return None
        order = self._order_by_index(offset // FOS_PER_ORDER)
        if order is None:
            return None
        state = self.fulfillment(order)
        for k, fo in enumerate(state.orders):
            if fo.id == fo_id:
                return order, k
        return None

    def _order_by_index(self, index: int) -> Order | None:
        # Orders are only ever appended, so an order's index is its position.
        return self._orders[index] if 0 <= index < len(self._orders) else None

    def create_fulfillment(self, payload: dict[str, Any]) -> tuple[Order, Fulfillment]:
        groups = payload.get("line_items_by_fulfillment_order")
        if not isinstance(groups, list) or not groups:
            raise ShopifyError(400, {"fulfillment": "Required parameter missing or invalid"})
        order: Order | None = None
        requested: list[tuple[int, int | None, int | None]] = []  # (fo index, fo line id, quantity)
        for group in groups:
            if not isinstance(group, dict) or "fulfillment_order_id" not in group:
                raise ShopifyError(400, {"fulfillment": "Required parameter missing or invalid"})
            try:
                fo_id = int(group["fulfillment_order_id"])
            except (TypeError, ValueError):
                raise ShopifyError(400, {"fulfillment": "Required parameter missing or invalid"}) from None
            found = self.fulfillment_order(fo_id)
            if found is None:
                raise ShopifyError(404, "Not Found")
            fo_order, k = found
            if order is not None and fo_order.id != order.id:
                raise ShopifyError(422, {"base": ["All fulfillment orders must belong to the same order."]})
            order = fo_order
            items = group.get("fulfillment_order_line_items")
            if items is None:
                requested.append((k, None, None))
                continue
            if not isinstance(items, list):
                raise ShopifyError(400, {"fulfillment": "Required parameter missing or invalid"})
            for item in items:
                try:
                    requested.append((k, int(item["id"]), int(item["quantity"])))
                except (KeyError, TypeError, ValueError):
                    raise ShopifyError(
                        400, {"fulfillment": "Required parameter missing or invalid"}
                    ) from None
        assert order is not None
        _, state = self.materialize(order)
        # Validate everything before changing anything: a refused request leaves the order as it was.
        plan: dict[int, int] = {}  # fo line id -> quantity
        lines_by_id = {line.id: (fo, line) for fo in state.orders for line in fo.lines}
        for k, line_id, quantity in requested:
            fo = state.orders[k]
            if fo.status not in ("open", "in_progress"):
                raise ShopifyError(
                    422, {"base": [f"Fulfillment order {fo.id} has an unfulfillable status= {fo.status}."]}
                )
            if line_id is None:
                for line in fo.lines:
                    if line.remaining > 0:
                        plan[line.id] = plan.get(line.id, 0) + line.remaining
                continue
            if line_id not in lines_by_id or lines_by_id[line_id][0] is not fo:
                raise ShopifyError(
                    422,
                    {
                        "base": [
                            f"Fulfillment order line item {line_id} does not belong to "
                            f"fulfillment order {fo.id}."
                        ]
                    },
                )
            if quantity is None or quantity <= 0:
                raise ShopifyError(422, {"base": ["Invalid fulfillment order line item quantity requested."]})
            plan[line_id] = plan.get(line_id, 0) + quantity
        for line_id, quantity in plan.items():
            if quantity > lines_by_id[line_id][1].remaining:
                raise ShopifyError(422, {"base": ["Invalid fulfillment order line item quantity requested."]})
        if not plan:
            raise ShopifyError(422, {"base": ["Fulfillment order line items cannot be empty."]})
        tracking = payload.get("tracking_info") or {}
        if not isinstance(tracking, dict):
            raise ShopifyError(400, {"fulfillment": "Required parameter missing or invalid"})
        now = self.now_ts()
        shipped: dict[int, int] = {}
        touched = set()
        for line_id, quantity in plan.items():
            fo, line = lines_by_id[line_id]
            line.remaining -= quantity
            shipped[line.line_item_id] = shipped.get(line.line_item_id, 0) + quantity
            touched.add(fo.id)
        for fo in state.orders:
            if fo.id in touched:
                fo.status = "closed" if all(line.remaining == 0 for line in fo.lines) else "in_progress"
                fo.updated_ts = now
        self._next_fulfillment_id += 1
        number = sum(1 for _ in state.fulfillments) + 1
        fulfillment = Fulfillment(
            id=self._next_fulfillment_id,
            name=f"#{order.number + 1000}.{number}",
            created_ts=now,
            updated_ts=now,
            location_id=state.orders[requested[0][0]].location_id,
            tracking_company=_str_or_none(tracking.get("company")),
            tracking_number=_str_or_none(tracking.get("number")),
            tracking_url=_str_or_none(tracking.get("url")),
            lines=sorted(shipped.items()),
        )
        state.fulfillments.append(fulfillment)
        self._fulfillment_orders[fulfillment.id] = order.id
        all_done = all(
            line.remaining == 0 for fo in state.orders if fo.status != "cancelled" for line in fo.lines
        )
        order.fulfillment_status = "fulfilled" if all_done else "partial"
        if all_done and order.financial_status == "paid":
            order.closed_ts = now
        self._touch(order)
        self.emit("orders/updated", order)
        self.emit("orders/fulfilled" if all_done else "orders/partially_fulfilled", order)
        return order, fulfillment

    def find_fulfillment(self, fulfillment_id: int) -> tuple[Order, Fulfillment] | None:
        if fulfillment_id > NEW_FULFILLMENT_ID_BASE:
            order = self._by_id.get(self._fulfillment_orders.get(fulfillment_id, -1))
            if order is None or order.fulfillment is None:
                return None
            return next(((order, f) for f in order.fulfillment.fulfillments if f.id == fulfillment_id), None)
        index = (fulfillment_id - SEEDED_FULFILLMENT_ID_BASE) // FOS_PER_ORDER
        seeded = self._order_by_index(index) if index >= 0 else None
        if seeded is None:
            return None
        for f in self.fulfillment(seeded).fulfillments:
            if f.id == fulfillment_id:
                return seeded, f
        return None

    def update_tracking(self, fulfillment_id: int, tracking: dict[str, Any]) -> tuple[Order, Fulfillment]:
        found = self.find_fulfillment(fulfillment_id)
        if found is None:
            raise ShopifyError(404, "Not Found")
        order, _ = found
        _, state = self.materialize(order)
        fulfillment = next(f for f in state.fulfillments if f.id == fulfillment_id)
        if "number" in tracking:
            fulfillment.tracking_number = _str_or_none(tracking["number"])
        if "company" in tracking:
            fulfillment.tracking_company = _str_or_none(tracking["company"])
        if "url" in tracking:
            fulfillment.tracking_url = _str_or_none(tracking["url"])
        fulfillment.updated_ts = self.now_ts()
        self._touch(order)
        self.emit("orders/updated", order)
        return order, fulfillment

    # -- inventory -----------------------------------------------------------------------------------------

    def inventory_level(self, item_id: int, location_id: int) -> dict[str, Any]:
        available, updated = self.inventory[(item_id, location_id)]
        return {
            "inventory_item_id": item_id,
            "location_id": location_id,
            "available": available,
            "updated_at": self.renderer.ts(updated or self.now_ts()),
            "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{location_id}?inventory_item_id={item_id}",
        }

    def set_inventory(self, item_id: int, location_id: int, available: int) -> dict[str, Any]:
        self.inventory[(item_id, location_id)] = (available, self.now_ts())
        return self.inventory_level(item_id, location_id)

    # -- webhooks ------------------------------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))

    def sign(self, body: bytes) -> str:
        """X-Shopify-Hmac-Sha256: base64 HMAC-SHA256 of the raw body with the app's client secret."""
        digest = hmac.new(self.config.client_secret.encode(), body, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def emit(self, topic: str, order: Order) -> None:
        targets: list[tuple[str, str]] = []  # (address, api version)
        if self.config.webhook_url:
            targets.append((self.config.webhook_url, DEFAULT_API_VERSION))
        targets.extend((s.address, s.api_version) for s in self.subscriptions.values() if s.topic == topic)
        if not targets:
            return
        body = json.dumps(self.render(order), ensure_ascii=False, separators=(",", ":")).encode()
        event_id = self._uuid()
        triggered = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        for address, version in targets:
            webhook_id = self._uuid()
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Topic": topic,
                "X-Shopify-Hmac-Sha256": self.sign(body),
                "X-Shopify-Shop-Domain": self.shop,
                "X-Shopify-API-Version": version,
                "X-Shopify-Webhook-Id": webhook_id,
                "X-Shopify-Event-Id": event_id,
                "X-Shopify-Triggered-At": triggered,
                "User-Agent": "Shopify-Captain-Hook",
            }
            self.webhook_log.append(
                {
                    "topic": topic,
                    "address": address,
                    "order_id": order.id,
                    "webhook_id": webhook_id,
                    "event_id": event_id,
                    "triggered_at": triggered,
                }
            )
            self.sender.enqueue(address, body, headers)

    def subscribe(
        self, topic: str, address: str, fmt: str, api_version: str, fields: list[str] | None = None
    ) -> Subscription:
        now = self.now_ts()
        self._next_subscription_id += 1
        sub = Subscription(
            self._next_subscription_id, topic, address, fmt, now, now, api_version, fields or []
        )
        self.subscriptions[sub.id] = sub
        return sub

    def render_subscription(self, sub: Subscription) -> dict[str, Any]:
        return {
            "id": sub.id,
            "address": sub.address,
            "topic": sub.topic,
            "created_at": self.renderer.ts(sub.created_ts),
            "updated_at": self.renderer.ts(sub.updated_ts),
            "format": sub.format,
            "fields": sub.fields,
            "metafield_namespaces": [],
            "api_version": sub.api_version,
            "private_metafield_namespaces": [],
        }

    # -- random activity -----------------------------------------------------------------------------------

    def tick(self, changes: int = 5) -> list[dict[str, Any]]:
        """Make `changes` random changes a live shop would see, each emitting its webhooks."""
        done: list[dict[str, Any]] = []
        for _ in range(changes):
            r = self.rng.random()
            recent = [o for o in self._orders[-500:] if o.closed_ts is None]
            if r < 0.4 or not recent:
                order = self.create_order({"financial_status": self.rng.choice(("paid", "paid", "pending"))})
                done.append({"change": "created", "order_id": order.id})
                continue
            order = self.rng.choice(recent)
            if r < 0.65:
                self.update_order(
                    order,
                    {
                        "note": self.rng.choice(
                            ("Gift wrap, please", "Leave at the door", "Call before delivery", None)
                        )
                    },
                )
                done.append({"change": "updated", "order_id": order.id})
            elif r < 0.85 and order.financial_status in ("pending", "authorized"):
                self.update_order(order, {"financial_status": "paid"})
                done.append({"change": "paid", "order_id": order.id})
            elif order.fulfillment_status is None and order.cancelled_ts is None:
                self.cancel_order(order, self.rng.choice(("customer", "inventory", "declined")))
                done.append({"change": "cancelled", "order_id": order.id})
            else:
                self.update_order(order, {"tags": self.rng.choice(("vip", "wholesale", "repeat"))})
                done.append({"change": "tagged", "order_id": order.id})
        return done


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _address_from(spec: dict[str, Any], base: Address | None) -> Address:
    def pick(key: str, current: str | None) -> str | None:
        return _str_or_none(spec[key]) if key in spec else current

    b = base or Address("", "", None, "", None, "", None, None, None, "US", "United States", None)
    return Address(
        first_name=pick("first_name", b.first_name) or "",
        last_name=pick("last_name", b.last_name) or "",
        company=pick("company", b.company),
        line1=pick("address1", b.line1) or "",
        line2=pick("address2", b.line2),
        city=pick("city", b.city) or "",
        province=pick("province", b.province),
        province_code=pick("province_code", b.province_code),
        postal_code=pick("zip", b.postal_code),
        country_code=(pick("country_code", b.country_code) or "").upper(),
        country_name=pick("country", b.country_name) or "",
        phone=pick("phone", b.phone),
    )


def _apply_spec(body: OrderBody, spec: dict[str, Any], index: int) -> None:
    """Overlay the Shopify-shaped fields of an admin 'create order' request on a generated body."""
    if "currency" in spec:
        currency = str(spec["currency"]).upper()
        if len(currency) != 3 or not currency.isalpha():
            raise ValueError(f"currency: {spec['currency']!r} is not an ISO 4217 code")
        # Re-price the generated items in the requested currency so amounts keep its minor units.
        body.currency = currency
        for line in body.lines:
            line.price = from_usd(CATALOG_USD.get(line.sku or "", Decimal("10")), currency)
        body.shipping_price = from_usd(Decimal("4.95"), currency) if body.shipping_address else Decimal(0)
        body.discount = Decimal(0)
        body.discount_code = None
    if "email" in spec:
        body.email = str(spec["email"])
    if "note" in spec:
        body.note = _str_or_none(spec["note"])
    if "tags" in spec:
        body.tags = str(spec["tags"])
    if isinstance(spec.get("shipping_address"), dict):
        body.shipping_address = _address_from(spec["shipping_address"], body.shipping_address)
        a = body.shipping_address
        body.customer = Person(
            a.first_name, a.last_name, f"{a.first_name} {a.last_name}", body.email, a.phone, a.company, ""
        )
    if isinstance(spec.get("billing_address"), dict):
        body.billing_address = _address_from(spec["billing_address"], body.billing_address)
    if isinstance(spec.get("line_items"), list) and spec["line_items"]:
        lines = []
        for j, item in enumerate(spec["line_items"][:LINES_PER_ORDER]):
            if not isinstance(item, dict):
                raise ValueError(f"line_items[{j}] must be an object")
            sku = _str_or_none(item.get("sku"))
            catalog = next((c for c in CATALOG if c[0] == sku), None)
            title = str(item.get("title") or (catalog[1] if catalog else "Custom item"))
            price_value = item.get("price", catalog[2] if catalog else None)
            if price_value is None:
                raise ValueError(f"line_items[{j}].price is required for an item not in the catalog")
            price = (
                parse_money(price_value, body.currency, f"line_items[{j}].price")
                if "price" in item
                else from_usd(Decimal(str(price_value)), body.currency)
            )
            quantity = int(item.get("quantity", 1))
            if quantity < 1:
                raise ValueError(f"line_items[{j}].quantity must be at least 1")
            grams = int(item.get("grams", catalog[3] if catalog else 0))
            ships = bool(item.get("requires_shipping", catalog[4] if catalog else True))
            lines.append(
                make_line(
                    LINE_ITEM_ID_BASE + index * LINES_PER_ORDER + j, sku, title, quantity, price, grams, ships
                )
            )
        body.lines = lines
        if not any(line.requires_shipping for line in lines):
            body.shipping_price = Decimal(0)
    if "discount" in spec or body.discount > body.line_items_total:
        body.discount = parse_money(spec.get("discount", 0), body.currency, "discount")
        body.discount_code = str(spec.get("discount_code", "ADMIN")) if body.discount else None

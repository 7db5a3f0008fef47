"""What keeps the demo moving: customers placing orders in the channel sandboxes, carriers scanning the parcels
in the shipping sandboxes, and a feed in the terminal of what the hub made of it.

Everything is done through each sandbox's own admin API (`/_sandbox/...`, docs/sandboxes.md), so the orders and
the tracking reach the hub the way they would from the real services: Shopify's order webhooks, eBay's and
Amazon's scheduled pulls, Shippo's tracking webhooks, MyParcel.com's tracking polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from crossdock.demo.sandboxes import Sandbox
from crossdock.hub import Hub
from crossdock.logs import get_logger
from crossdock.sandbox.myparcelcom.resources import PROGRESSION
from crossdock.sandbox.shippo.state import TRACKING_PROGRESSION
from crossdock.store import tables as t
from crossdock.store.types import utcnow

log = get_logger(__name__)

# A new order every 2 to 4 seconds, the channels taking turns.
ORDER_EVERY_S = (2.0, 4.0)
# Orders placed at start, before the steady flow (Shopify's reach the hub at once, by webhook).
FIRST_ORDERS = 3
# Most orders are paid when placed; the others are paid a little later.
PAID_SHARE = 0.85
PAY_LATER_S = 10.0
# A parcel is scanned into the carrier's network this long after its label was bought, and delivered after as
# long again in transit.
IN_TRANSIT_AFTER_S = 8.0
DELIVERED_AFTER_S = 15.0
# Destinations of new orders, so that every shipping rule gets its turn.
COUNTRIES = ("US", "US", "US", "US", "US", "GB", "DE", "NL", "FR", "ES", "CA", "JP")
# The shipping sandboxes' statuses of a parcel on its way, each of which a scan moves one step on (the last
# step delivers it).
SHIPPO_OPEN = TRACKING_PROGRESSION[:-1]
MYPARCELCOM_OPEN = PROGRESSION[PROGRESSION.index("shipment-registered") : -1]
# The feed reads what changed since its last look and a little before: a change is dated when it is made and
# seen once committed, which may be a moment later. What it has told already it does not tell again.
OVERLAP = timedelta(seconds=10)


@dataclass
class Traffic:
    """Customers and carriers, acting on the sandboxes through their admin APIs."""

    sandboxes: dict[str, Sandbox]
    rng: random.Random = field(default_factory=random.Random)
    # When each parcel (by tracking number or shipment id) was last seen to change at the carrier.
    _seen: dict[str, tuple[str, float]] = field(default_factory=dict)
    # Shopify orders to pay later: (when, order id).
    _pay_later: list[tuple[float, str]] = field(default_factory=list)
    _clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def client(self, name: str) -> httpx.AsyncClient:
        if name not in self._clients:
            self._clients[name] = httpx.AsyncClient(base_url=self.sandboxes[name].url, timeout=10.0)
        return self._clients[name]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def place_order(self, channel: str) -> None:
        """One customer's order at `channel`, placed through the sandbox's admin API."""
        paid = self.rng.random() < PAID_SHARE
        country = self.rng.choice(COUNTRIES)
        admin = self.client(channel)
        if channel == "shopify":
            spec = {
                "financial_status": "paid" if paid else "pending",
                "shipping_address": {"country_code": country},
            }
            r = await admin.post("/_sandbox/orders", json={"order": spec})
            r.raise_for_status()
            if not paid:
                order_id = str(r.json()["order"]["id"])
                self._pay_later.append((time.monotonic() + PAY_LATER_S, order_id))
        elif channel == "ebay":
            body = {"count": 1, "country": country, "payment_status": "PAID" if paid else "PENDING"}
            (await admin.post("/_sandbox/orders", json=body)).raise_for_status()
        elif channel == "amazon":
            body = {"count": 1, "country": country, "status": "Unshipped" if paid else "Pending"}
            (await admin.post("/_sandbox/orders", json=body)).raise_for_status()

    async def settle_payments(self) -> None:
        """Pending payments clear: eBay's and Amazon's at the sandbox's tick, Shopify's one by one when due."""
        await self._settle_shopify()
        for channel in ("ebay", "amazon"):
            (await self.client(channel).post("/_sandbox/tick", json={"new_orders": 0})).raise_for_status()

    def _due(self, key: str, status: str, after_s: float) -> bool:
        """Whether the parcel `key`, now in `status`, has been in it `after_s` seconds."""
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is None or seen[0] != status:
            self._seen[key] = (status, now)
            return False
        return now - seen[1] >= after_s

    async def scan_parcels(self) -> None:
        """Carriers move the parcels whose labels were bought: in transit, then delivered."""
        shippo = self.client("shippo")
        r = await shippo.get("/_sandbox/tracks")
        r.raise_for_status()
        for track in r.json():
            number = track.get("tracking_number")
            status = (track.get("tracking_status") or {}).get("status")
            if not number or status not in SHIPPO_OPEN:
                continue
            wait = IN_TRANSIT_AFTER_S if status == "PRE_TRANSIT" else DELIVERED_AFTER_S
            if self._due(f"shippo:{number}", status, wait):
                await shippo.post(f"/_sandbox/tracks/{number}/advance", json={})
        myparcelcom = self.client("myparcelcom")
        r = await myparcelcom.get("/_sandbox/shipments")
        r.raise_for_status()
        for shipment in r.json():
            shipment_id, status = shipment["id"], shipment["status"]
            if status not in MYPARCELCOM_OPEN:
                continue
            if self._due(f"myparcelcom:{shipment_id}", status, IN_TRANSIT_AFTER_S):
                await myparcelcom.post(f"/_sandbox/shipments/{shipment_id}/advance", json={})

    async def run(self) -> None:
        """Place the first orders, then one every few seconds, settling payments and moving parcels between."""
        channels = itertools.cycle(("shopify", "ebay", "amazon"))
        for _ in range(FIRST_ORDERS):
            await self._quietly(self.place_order("shopify"))
        next_order = time.monotonic()
        next_tick = time.monotonic() + 30.0
        while True:
            now = time.monotonic()
            if now >= next_order:
                await self._quietly(self.place_order(next(channels)))
                next_order = now + self.rng.uniform(*ORDER_EVERY_S)
            if now >= next_tick:
                await self._quietly(self.settle_payments())
                next_tick = now + 30.0
            elif self._pay_later and self._pay_later[0][0] <= now:
                await self._quietly(self._settle_shopify())
            await self._quietly(self.scan_parcels())
            await asyncio.sleep(1.0)

    async def _settle_shopify(self) -> None:
        now = time.monotonic()
        due = [item for item in self._pay_later if item[0] <= now]
        self._pay_later = [item for item in self._pay_later if item[0] > now]
        for _at, order_id in due:
            r = await self.client("shopify").patch(
                f"/_sandbox/orders/{order_id}", json={"financial_status": "paid"}
            )
            r.raise_for_status()

    @staticmethod
    async def _quietly(step: Any) -> None:
        """A step that fails (a sandbox busy or stopping) is logged and skipped: the demo goes on."""
        try:
            await step
        except httpx.HTTPStatusError as exc:
            log.warning("demo traffic step refused", url=str(exc.request.url), answer=exc.response.text[:300])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("demo traffic step failed", error=str(exc))


# The feed -------------------------------------------------------------------------------------------------
@dataclass
class Feed:
    """Prints, as it happens, each order the hub received and each step it took: paid, label bought, in transit,
    delivered. Read from the hub's database, so it shows what the hub did, not what the sandboxes were told."""

    hub: Hub
    account_id: uuid.UUID
    titles: dict[uuid.UUID, str]
    say: Callable[[str], None]
    _orders: dict[uuid.UUID, str] = field(default_factory=dict)
    _shipments: dict[uuid.UUID, str] = field(default_factory=dict)
    _seen_quarantined: set[str] = field(default_factory=set)
    _since: datetime | None = None

    async def look(self) -> None:
        since = self._since
        self._since = utcnow()
        async with self.hub.db.session() as session:
            order_stmt = select(t.Order).where(t.Order.account_id == self.account_id)
            ship_stmt = select(t.Shipment).where(t.Shipment.account_id == self.account_id)
            if since is not None:
                order_stmt = order_stmt.where(t.Order.updated_at >= since - OVERLAP)
                ship_stmt = ship_stmt.where(t.Shipment.updated_at >= since - OVERLAP)
            inbox_stmt = select(t.InboxMessage).where(
                t.InboxMessage.account_id == self.account_id, t.InboxMessage.status == "quarantined"
            )
            if since is not None:
                inbox_stmt = inbox_stmt.where(t.InboxMessage.received_at >= since - OVERLAP)
            quarantined = list((await session.scalars(inbox_stmt)).all())
            orders = list((await session.scalars(order_stmt.order_by(t.Order.created_at))).all())
            shipments = list((await session.scalars(ship_stmt.order_by(t.Shipment.created_at))).all())
            names = {o.id: self._name(o) for o in orders}
            missing = {s.order_id for s in shipments} - names.keys()
            if missing:
                for row in (await session.scalars(select(t.Order).where(t.Order.id.in_(missing)))).all():
                    names[row.id] = self._name(row)
        first = since is None
        for item in quarantined:
            self._quarantined(item, report=not first)
        for order in orders:
            before = self._orders.get(order.id)
            self._orders[order.id] = order.status
            if first or before == order.status or order.status in ("shipped", "delivered"):
                continue
            country = (order.shipping_address or {}).get("country", "?")
            what = "new order" if before is None else "order"
            self.say(f"{_clock()}  {what} {names[order.id]} to {country}: {order.status.replace('_', ' ')}")
        for shipment in shipments:
            before = self._shipments.get(shipment.id)
            self._shipments[shipment.id] = shipment.status
            if first or before == shipment.status:
                continue
            line = _shipment_line(shipment, names.get(shipment.order_id, "an order"))
            if line:
                self.say(f"{_clock()}  {line}")

    def _quarantined(self, item: t.InboxMessage, *, report: bool) -> None:
        """A payload the hub could not import, told once per remote order (a webhook and a pull may bring the
        same one)."""
        body = _json_object(item.body)
        ident = (
            body.get("name") or body.get("orderId") or body.get("AmazonOrderId") or body.get("id") or item.id
        )
        key = f"{item.connection_id}:{ident}"
        if key in self._seen_quarantined:
            return
        self._seen_quarantined.add(key)
        if report:
            channel = self.titles.get(item.connection_id, "a remote") if item.connection_id else "a remote"
            reason = (item.error or "").removeprefix("orders/create: ")
            self.say(
                f"{_clock()}  {channel} order {ident} not imported, quarantined with its reason: {reason}"
            )

    def _name(self, order: t.Order) -> str:
        channel = self.titles.get(order.connection_id, "API") if order.connection_id else "API"
        return f"{channel} {order.external_number or order.external_id or str(order.id)[:8]}"

    async def run(self) -> None:
        while True:
            try:
                await self.look()
            except Exception as exc:  # the feed only reads; a busy database must not end the demo
                log.warning("demo feed could not read the orders", error=str(exc))
            await asyncio.sleep(2.0)


def _json_object(raw: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def _shipment_line(shipment: t.Shipment, order: str) -> str | None:
    number = shipment.tracking_number or ""
    if shipment.status == "label_purchased":
        # The rules' own sentence, e.g. "rule 2: 'US parcels under 2 kg', cheapest ... -> USPS Ground Advantage".
        why = shipment.decision or " ".join(p for p in (shipment.carrier, shipment.service_code) if p)
        return f"{order} shipped: label {number} bought by {why}"
    if shipment.status == "in_transit":
        return f"{order} in transit ({shipment.carrier} {number})"
    if shipment.status == "delivered":
        return f"{order} delivered ({shipment.carrier} {number})"
    if shipment.status == "failed":
        reason = (shipment.error or "see the order's timeline").splitlines()[0][:160]
        return f"{order}: no label, {reason}"
    return None


async def run_forever(*tasks: Any) -> None:
    """Run the coroutines until cancelled."""
    running = [asyncio.create_task(task) for task in tasks]
    try:
        await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

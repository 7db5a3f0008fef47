"""Helpers for the fulfillment push tests: a channel's sandbox on 127.0.0.1 behind a front that can lose one
answer, a connection to it, and what the channel holds for an order, read back from the sandbox.

Each channel (Shopify, eBay, Amazon) says how to connect to its sandbox, which request is the push (the one the
front may lose) and how to list the shipments the channel has for an order, in one shape (RemoteShipment).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig, run_in_thread
from crossdock.store import repo

CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"
SHOPIFY_TOKEN = "shpat_fulfillment_push_test_0123456789"
SHOPIFY_SHOP = "crossdock-demo.myshopify.com"
SHOPIFY_API = "/admin/api/2025-01"
AMAZON_MARKETPLACE = "ATVPDKIKX0DER"
AMAZON_REFRESH_TOKEN = "Atzr|IwEBI-crossdock-fulfillment-push-test-0001"
# Seeded orders per sandbox: enough that some are open and unshipped, few enough to pull in a blink.
SEEDED_ORDERS = 6


@dataclass
class LosesAnswers:
    """An ASGI front for a sandbox on a real socket. When armed (`lose_next`), the next push request (`is_push`)
    reaches the sandbox, which acts on it in full, and then the connection closes before the answer arrives.

    What goes on the wire for that request: the status line `HTTP/1.1 200 OK` and `content-length: 1`, then the
    connection is closed with no body (uvicorn closes it because the response was never completed). httpx raises
    RemoteProtocolError ("peer closed connection without sending complete message body"): the client knows the
    request went out and learns nothing of its outcome. The status line is not the sandbox's: a 204 (Amazon's
    confirmShipment) has no body to cut short, so every lost answer promises one byte that never comes.

    The sandboxes' own fault injection cannot do this: its faults are seeded random draws over all requests (no
    aiming at one POST in a flow of GETs), and its `timeout` fault answers 504 without processing the request."""

    app: ASGIApp
    is_push: Callable[[str, str], bool]
    lose_next: bool = False
    # Answer this many of the next GET requests of the channel's API with 503 and `Retry-After: 60` before they
    # reach the sandbox: the channel is down for a minute, so nothing can be looked up, and the client does not
    # wait inline (a wait over its 10 s inline limit goes back to the job queue).
    unavailable_gets: int = 0
    # Push requests that reached the sandbox, lost or not.
    pushes_received: int = 0
    lost: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif self.is_push(scope["method"], scope["path"]):
            await self._push(scope, receive, send)
        elif scope["method"] == "GET" and not scope["path"].startswith("/_sandbox") and self.unavailable_gets:
            self.unavailable_gets -= 1
            down = PlainTextResponse("Service Unavailable", status_code=503, headers={"Retry-After": "60"})
            await down(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _push(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.pushes_received += 1
        if not self.lose_next:
            await self.app(scope, receive, send)
            return
        self.lose_next = False
        self.lost += 1

        async def discard(_message: Message) -> None:
            return None

        await self.app(scope, receive, discard)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})


@dataclass(frozen=True)
class RemoteShipment:
    """One fulfillment (Shopify), shipping fulfillment (eBay) or confirmed package (Amazon) of an order."""

    external_id: str
    tracking_number: str | None
    carrier: str | None
    tracking_url: str | None = None
    # Amazon: how many times the package was confirmed again (edited); 0 elsewhere.
    edits: int = 0


@dataclass
class Channel:
    name: str
    url: str
    front: LosesAnswers
    state: Any
    admin: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.admin = httpx.AsyncClient(base_url=self.url, timeout=10.0)

    async def connect(self, hub: Any, account_id: uuid.UUID) -> uuid.UUID:
        """A connection of the account to this sandbox, as the channel's OAuth flow leaves it."""
        settings, secrets = await self._credentials()
        async with hub.db.transaction() as session:
            row = await repo.Tenant(session, account_id).create_connection(
                connector=self.name,
                name=f"Acme on {self.name}",
                vault=hub.vault,
                settings=settings,
                base_url=self.url,
                secrets=secrets,
            )
        return row.id

    async def _credentials(self) -> tuple[dict[str, Any], dict[str, str]]:
        if self.name == "shopify":
            return {"shop": SHOPIFY_SHOP, "api_version": "2025-01"}, {"access_token": SHOPIFY_TOKEN}
        if self.name == "ebay":
            r = await self.admin.post("/_sandbox/tokens", json={})
            assert r.status_code == 200, r.text
            tokens = r.json()
            expires = datetime.now(UTC) + timedelta(hours=2)
            return {"client_id": CLIENT_ID}, {
                "client_secret": CLIENT_SECRET,
                "refresh_token": tokens["refresh_token"],
                "access_token": tokens["access_token"],
                "access_token_expires_at": expires.isoformat(timespec="seconds"),
            }
        return {
            "client_id": CLIENT_ID,
            "marketplace_ids": AMAZON_MARKETPLACE,
            "lwa_url": f"{self.url}/auth/o2/token",
        }, {"client_secret": CLIENT_SECRET, "refresh_token": AMAZON_REFRESH_TOKEN}

    async def shipments(self, order_external_id: str) -> list[RemoteShipment]:
        """What the channel itself says it has for the order, read through its API (Shopify) or the sandbox's
        admin listing (eBay, Amazon)."""
        if self.name == "shopify":
            r = await self.admin.get(
                f"{SHOPIFY_API}/orders/{order_external_id}/fulfillments.json",
                headers={"X-Shopify-Access-Token": SHOPIFY_TOKEN},
            )
            assert r.status_code == 200, r.text
            return [
                RemoteShipment(
                    str(f["id"]), f.get("tracking_number"), f.get("tracking_company"), f.get("tracking_url")
                )
                for f in r.json()["fulfillments"]
                if f.get("status") not in ("cancelled", "error", "failure")
            ]
        if self.name == "ebay":
            r = await self.admin.get("/_sandbox/fulfillments")
            assert r.status_code == 200, r.text
            return [
                RemoteShipment(
                    f["fulfillmentId"], f.get("shipmentTrackingNumber"), f.get("shippingCarrierCode")
                )
                for f in r.json()["fulfillments"]
                if f["orderId"] == order_external_id
            ]
        r = await self.admin.get("/_sandbox/confirmations")
        assert r.status_code == 200, r.text
        return [
            RemoteShipment(
                c["packageReferenceId"], c["trackingNumber"], c["carrierCode"], edits=int(c["edits"])
            )
            for c in r.json()["confirmations"]
            if c["amazonOrderId"] == order_external_id
        ]

    def order_status(self, order_external_id: str) -> str:
        """The order's fulfilment status in the channel's own words (Shopify fulfillment_status, eBay
        orderFulfillmentStatus, Amazon OrderStatus)."""
        if self.name == "shopify":
            return str(self.state.render(self.state.get(int(order_external_id)))["fulfillment_status"])
        if self.name == "ebay":
            [order] = [o for o in self.state.all_orders() if o.order_id == order_external_id]
            return str(order.fulfillment_status)
        return str(self.state.orders[order_external_id].status)

    def can_ship(self, order_external_id: str) -> bool:
        """The sandbox would take a first shipment of the whole order: open, paid, nothing shipped, and (Amazon)
        shipped by the seller."""
        if self.name == "shopify":
            order = self.state.get(int(order_external_id))
            return (
                order is not None
                and order.cancelled_ts is None
                and order.financial_status == "paid"
                and not self.state.fulfillment(order).fulfillments
            )
        if self.name == "ebay":
            found = [o for o in self.state.all_orders() if o.order_id == order_external_id]
            return bool(found) and (
                found[0].cancel_state == "NONE_REQUESTED"
                and found[0].payment_status == "PAID"
                and found[0].fulfillment_status == "NOT_STARTED"
            )
        order = self.state.orders.get(order_external_id)
        return order is not None and order.status == "Unshipped" and order.fulfillment_channel == "MFN"


def _is_push(name: str) -> Callable[[str, str], bool]:
    suffix = {
        "shopify": f"{SHOPIFY_API}/fulfillments.json",
        "ebay": "/shipping_fulfillment",
        "amazon": "/shipmentConfirmation",
    }[name]
    return lambda method, path: method == "POST" and path.endswith(suffix)


def _config(name: str) -> SandboxConfig:
    if name == "shopify":
        return SandboxConfig(seed=3, orders=SEEDED_ORDERS, token=SHOPIFY_TOKEN, fast_limits=True)
    if name == "ebay":
        return SandboxConfig(seed=3, orders=SEEDED_ORDERS, fast_limits=True, extra={"days": "30"})
    return SandboxConfig(
        seed=3,
        orders=SEEDED_ORDERS,
        # Amazon's own usage plans: a pull of a dozen orders and a few confirmations stay inside the bursts.
        fast_limits=False,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        extra={"marketplace_ids": AMAZON_MARKETPLACE, "refresh_token": AMAZON_REFRESH_TOKEN},
    )


@asynccontextmanager
async def serve_channel(name: str) -> AsyncIterator[Channel]:
    """The channel's sandbox with seeded orders, on 127.0.0.1 behind a LosesAnswers front."""
    app = create_sandbox_app(name, _config(name))
    front = LosesAnswers(app, _is_push(name))
    with run_in_thread(front) as url:
        channel = Channel(name, url, front, app.state.sandbox)
        try:
            yield channel
        finally:
            await channel.admin.aclose()

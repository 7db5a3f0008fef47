"""The order channels behind one face, for the pull tests: each channel's sandbox served on a loopback socket, a
connection to it stored in the hub as its OAuth flow or setup leaves it, the sandbox's order ids, and changes
made on the remote side through the sandbox's own admin API (an edit, a cancellation).

A channel whose pulls end `window_lag` before now (eBay a minute, Amazon two) shows a change to a pull only once
it is that old. The changes are therefore made with the sandbox clock set back a little longer than the lag,
as if they had happened just before the test looked, so that the very next pull's window covers them.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
from starlette.applications import Starlette

from crossdock.connectors.amazon import client as amazon_client
from crossdock.connectors.ebay import client as ebay_client
from crossdock.connectors.shopify import client as shopify_client
from crossdock.hub import Hub
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.amazon import AmazonState
from crossdock.sandbox.amazon.state import TokenBucket
from crossdock.sandbox.common import SandboxConfig, run_in_thread
from crossdock.sandbox.ebay import EbayState
from crossdock.sandbox.shopify.state import ShopState
from crossdock.store import repo

CHANNELS = ("shopify", "ebay", "amazon")
# Before every sandbox's oldest seeded order: a backfill from here reads a channel's whole history.
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
NOTE = "leave at the back door"
CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"
# How much older than the pull's lag a remote change is made (see the module doc).
MARGIN = timedelta(seconds=30)


class Channel(ABC):
    """One channel's sandbox, reached at `url`, and what the tests need to know and do on the remote side."""

    name: ClassVar[str]
    # The stored order column an edit changes, and the value it has after the next pull.
    edited_column: ClassVar[str]
    edited_value: ClassVar[str]
    # How far before now a pull window of this channel ends (the connector's window_lag).
    lag: ClassVar[timedelta] = timedelta(0)
    # Orders on a full page of the connector's pull.
    page_size: ClassVar[int]

    def __init__(self, url: str, app: Starlette) -> None:
        self.url = url
        self.app = app
        self.admin = httpx.AsyncClient(base_url=url, timeout=30.0)

    @staticmethod
    @abstractmethod
    def config(seed: int, orders: int) -> SandboxConfig: ...

    @abstractmethod
    async def connect(self, hub: Hub, account_id: uuid.UUID) -> uuid.UUID:
        """Store a connection to this sandbox in the hub; returns its id."""

    @abstractmethod
    def order_ids(self) -> set[str]:
        """The external id of every order the sandbox holds."""

    @abstractmethod
    def newest_change(self) -> datetime:
        """When the most recently changed order changed (the remote's updated time)."""

    @abstractmethod
    def changeable(self, edits: int, cancellations: int) -> tuple[list[str], list[str]]:
        """Open orders, none in both lists: `edits` the edit applies to, `cancellations` that can be cancelled."""

    @abstractmethod
    def edit_body(self) -> dict[str, Any]:
        """The body of the admin API's order PATCH that makes the edit."""

    @contextmanager
    def dated_back(self) -> Iterator[None]:
        """Remote changes made inside are dated lag + MARGIN ago (see the module doc)."""
        yield

    async def edit(self, order_id: str) -> None:
        with self.dated_back():
            response = await self.admin.patch(f"/_sandbox/orders/{order_id}", json=self.edit_body())
        assert response.status_code == 200, response.text

    async def cancel(self, order_id: str) -> None:
        with self.dated_back():
            response = await self.admin.post(f"/_sandbox/orders/{order_id}/cancel", json={})
        assert response.status_code == 200, response.text


class Shopify(Channel):
    name = "shopify"
    edited_column = "notes"
    edited_value = NOTE
    page_size = shopify_client.PAGE_LIMIT
    TOKEN = "shpat_sandbox_sync_test"
    SHOP = "sync-test.myshopify.com"

    @staticmethod
    def config(seed: int, orders: int) -> SandboxConfig:
        return SandboxConfig(
            seed=seed, orders=orders, token=Shopify.TOKEN, fast_limits=True, extra={"shop": Shopify.SHOP}
        )

    @property
    def state(self) -> ShopState:
        state: ShopState = self.app.state.sandbox
        return state

    async def connect(self, hub: Hub, account_id: uuid.UUID) -> uuid.UUID:
        async with hub.db.transaction() as session:
            row = await repo.Tenant(session, account_id).create_connection(
                connector="shopify",
                name="Acme shop",
                vault=hub.vault,
                settings={"shop": self.SHOP},
                base_url=self.url,
                secrets={"access_token": self.TOKEN, "api_secret": CLIENT_SECRET},
            )
        return row.id

    def order_ids(self) -> set[str]:
        return {str(order.id) for order in self.state.orders()}

    def newest_change(self) -> datetime:
        return datetime.fromtimestamp(max(order.updated_ts for order in self.state.orders()), UTC)

    def changeable(self, edits: int, cancellations: int) -> tuple[list[str], list[str]]:
        state = self.state
        open_orders = [
            str(o.id)
            for o in sorted(state.orders(), key=lambda o: o.id)
            if o.cancelled_ts is None
            and o.financial_status == "paid"
            and not state.fulfillment(o).fulfillments
        ]
        return _split(open_orders, open_orders, edits, cancellations)

    def edit_body(self) -> dict[str, Any]:
        return {"note": NOTE}


class Ebay(Channel):
    name = "ebay"
    edited_column = "notes"
    edited_value = NOTE
    lag = ebay_client.EbayConnector.window_lag
    page_size = ebay_client.PAGE_LIMIT

    @staticmethod
    def config(seed: int, orders: int) -> SandboxConfig:
        return SandboxConfig(seed=seed, orders=orders, fast_limits=True, extra={"days": "60"})

    @property
    def state(self) -> EbayState:
        state: EbayState = self.app.state.sandbox
        return state

    async def connect(self, hub: Hub, account_id: uuid.UUID) -> uuid.UUID:
        # A user token pair as the consent flow leaves it (the sandbox hands one out without the consent page).
        response = await self.admin.post("/_sandbox/tokens", json={})
        assert response.status_code == 200, response.text
        tokens = response.json()
        expires = datetime.now(UTC) + timedelta(seconds=int(tokens["expires_in"]))
        async with hub.db.transaction() as session:
            row = await repo.Tenant(session, account_id).create_connection(
                connector="ebay",
                name="Acme on eBay",
                vault=hub.vault,
                settings={"client_id": CLIENT_ID},
                base_url=self.url,
                secrets={
                    "client_secret": CLIENT_SECRET,
                    "refresh_token": tokens["refresh_token"],
                    "access_token": tokens["access_token"],
                    "access_token_expires_at": expires.isoformat(timespec="seconds"),
                },
            )
        return row.id

    def order_ids(self) -> set[str]:
        return set(self.state.orders)

    def newest_change(self) -> datetime:
        return max(order.modified for order in self.state.orders.values())

    def changeable(self, edits: int, cancellations: int) -> tuple[list[str], list[str]]:
        open_orders = [
            o.order_id
            for o in self.state.all_orders()
            if o.cancel_state == "NONE_REQUESTED"
            and o.payment_status == "PAID"
            and o.fulfillment_status == "NOT_STARTED"
            and not o.checkout_notes
        ]
        return _split(open_orders, open_orders, edits, cancellations)

    def edit_body(self) -> dict[str, Any]:
        return {"buyerCheckoutNotes": NOTE}

    @contextmanager
    def dated_back(self) -> Iterator[None]:
        back = (self.lag + MARGIN).total_seconds()
        self.state.advance_clock(-back)
        try:
            yield
        finally:
            self.state.advance_clock(back)


class Amazon(Channel):
    """Amazon's edit is the buyer's payment being authorised: a Pending order becomes Unshipped (paid).

    The seller is on a usage plan far above Amazon's defaults: a pull calls getOrderItems once per order, which
    at the default 0.5 a second (even the sandbox's fast 50) would take minutes for the tests' backfills. SP-API
    sets usage plans per selling partner and application and states the current rate in x-amzn-RateLimit-Limit
    (developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-limits), which the connector's limiter follows.
    """

    name = "amazon"
    edited_column = "status"
    edited_value = "paid"
    lag = amazon_client.AmazonConnector.window_lag
    page_size = amazon_client.PAGE_SIZE
    MARKETPLACE = "ATVPDKIKX0DER"
    REFRESH_TOKEN = "Atzr|IwEBI-crossdock-sync-test-refresh-token"
    SELLER = "A3SANDBOXSELLER"
    USAGE_PLAN_FACTOR = 1000

    def __init__(self, url: str, app: Starlette) -> None:
        super().__init__(url, app)
        buckets = self.state.buckets
        for operation, bucket in buckets.items():
            buckets[operation] = TokenBucket(bucket.rate * self.USAGE_PLAN_FACTOR, bucket.burst)

    @staticmethod
    def config(seed: int, orders: int) -> SandboxConfig:
        return SandboxConfig(
            seed=seed,
            orders=orders,
            fast_limits=True,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            extra={
                "marketplace_ids": Amazon.MARKETPLACE,
                "refresh_token": Amazon.REFRESH_TOKEN,
                "selling_partner_id": Amazon.SELLER,
                # Seeded orders placed within the last hour may still wait for their payment (Pending); a day
                # of orders has some of them.
                "days": "1",
                # getOrders' MaxResultsPerPage is at most 100 (ordersV0.json); the sandbox's page is that size.
                "orders_page_size": "100",
            },
        )

    @property
    def state(self) -> AmazonState:
        state: AmazonState = self.app.state.sandbox
        return state

    async def connect(self, hub: Hub, account_id: uuid.UUID) -> uuid.UUID:
        async with hub.db.transaction() as session:
            row = await repo.Tenant(session, account_id).create_connection(
                connector="amazon",
                name="Amazon US",
                vault=hub.vault,
                settings={
                    "client_id": CLIENT_ID,
                    "marketplace_ids": self.MARKETPLACE,
                    "lwa_url": f"{self.url}/auth/o2/token",
                    "selling_partner_id": self.SELLER,
                },
                base_url=self.url,
                secrets={"client_secret": CLIENT_SECRET, "refresh_token": self.REFRESH_TOKEN},
            )
        return row.id

    def order_ids(self) -> set[str]:
        return set(self.state.orders)

    def newest_change(self) -> datetime:
        return max(order.last_update for order in self.state.orders.values())

    def changeable(self, edits: int, cancellations: int) -> tuple[list[str], list[str]]:
        orders = self.state.all_orders()
        pending = [o.amazon_order_id for o in orders if o.status == "Pending"]
        unshipped = [
            o.amazon_order_id
            for o in orders
            if o.status == "Unshipped"
            and o.fulfillment_channel == "MFN"
            and not any(i.shipped for i in o.items)
        ]
        return _split(pending, unshipped, edits, cancellations)

    def edit_body(self) -> dict[str, Any]:
        return {"OrderStatus": "Unshipped"}

    @contextmanager
    def dated_back(self) -> Iterator[None]:
        back = (self.lag + MARGIN).total_seconds()
        self.state.advance_clock(-back)
        try:
            yield
        finally:
            self.state.advance_clock(back)


KINDS: dict[str, type[Channel]] = {kind.name: kind for kind in (Shopify, Ebay, Amazon)}


def _split(
    editable: list[str], cancellable: list[str], edits: int, cancellations: int
) -> tuple[list[str], list[str]]:
    edited = editable[:edits]
    cancelled = [order_id for order_id in cancellable if order_id not in edited][:cancellations]
    assert len(edited) == edits and len(cancelled) == cancellations, (
        f"the sandbox's seed has too few open orders: {len(editable)} to edit, {len(cancellable)} to cancel"
    )
    return edited, cancelled


@asynccontextmanager
async def serve_channel(name: str, *, seed: int, orders: int) -> AsyncIterator[Channel]:
    """The channel's sandbox, seeded with `orders` orders, served from a thread on 127.0.0.1."""
    kind = KINDS[name]
    app = create_sandbox_app(name, kind.config(seed, orders))
    with run_in_thread(app) as url:
        channel = kind(url, app)
        try:
            yield channel
        finally:
            await channel.admin.aclose()

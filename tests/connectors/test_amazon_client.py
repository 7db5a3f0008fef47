"""The Amazon SP-API connector against the Amazon sandbox on a real socket, opened from a connection stored in the
hub: LWA tokens (cached, shared through the vault, refreshed once, revoked), getOrders windows over several
pages with items over several pages, resuming, confirmShipment sent once, and nothing secret in the records."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.types import Message, Receive, Scope, Send

from crossdock.connectors.amazon.client import AmazonConnector, package_reference_id
from crossdock.connectors.base import Mapped, Page, PullWindow
from crossdock.engine.connections import ConnectionUnavailable, open_connector
from crossdock.engine.errors import RetryableError
from crossdock.engine.http import RemoteConfigurationError
from crossdock.hub import Hub
from crossdock.model import Fulfillment, FulfillmentLine, OrderStatus
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.amazon import AmazonState
from crossdock.sandbox.common import SandboxConfig, run_in_thread
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from tests.support import Tenant as Account

US = "ATVPDKIKX0DER"
REFRESH_TOKEN = "Atzr|IwEBI-crossdock-test-refresh-token-0001"
CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"
LWA_PATH = "/auth/o2/token"
INTERNAL_FAILURE = (
    b'{"errors":[{"code":"InternalFailure","message":"We encountered an internal error. Please try again.",'
    b'"details":""}]}'
)


@dataclass
class LosesAnswers:
    """In front of the sandbox: counts confirmShipment requests and, when asked, lets Amazon act on the next one
    but loses its answer (the client sees a 503), which is what an unknown outcome looks like."""

    app: Any
    lose_next_confirmation: bool = False
    confirmations_received: int = 0
    # Answer the next LWA token request 503 without passing it on (what a lost answer looks like to the client).
    fail_next_token: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fail_next_token and scope["type"] == "http" and scope["path"] == LWA_PATH:
            self.fail_next_token = False
            await send(
                {"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]}
            )
            await send({"type": "http.response.body", "body": b"Service Unavailable"})
            return
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/shipmentConfirmation")
        ):
            self.confirmations_received += 1
            if self.lose_next_confirmation:
                self.lose_next_confirmation = False

                async def discard(_message: Message) -> None:
                    return None

                await self.app(scope, receive, discard)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": INTERNAL_FAILURE})
                return
        await self.app(scope, receive, send)


@dataclass
class Amazon:
    url: str
    front: LosesAnswers
    state: AmazonState
    admin: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.admin = httpx.AsyncClient(base_url=self.url)

    async def create_orders(self, count: int, *, status: str = "Unshipped", items: int = 3) -> list[str]:
        r = await self.admin.post("/_sandbox/orders", json={"count": count, "status": status, "items": items})
        assert r.status_code == 201, r.text
        return [o["AmazonOrderId"] for o in r.json()["orders"]]

    async def settle(self) -> PullWindow:
        """Move Amazon's clock on 3 minutes, so that LastUpdatedBefore can cover the orders just made (it must be
        at least 2 minutes before Amazon's now); the window covers the last hour up to now."""
        await self.admin.post("/_sandbox/clock", json={"advance_s": 180})
        now = datetime.now(UTC)
        return PullWindow(since=now - timedelta(hours=1), until=now + timedelta(seconds=5))

    async def confirmations(self, order_id: str) -> list[dict[str, Any]]:
        rows = (await self.admin.get("/_sandbox/confirmations")).json()["confirmations"]
        return [c for c in rows if c["amazonOrderId"] == order_id]


@pytest.fixture
async def amazon() -> AsyncIterator[Amazon]:
    app = create_sandbox_app(
        "amazon",
        SandboxConfig(
            seed=11,
            # Amazon's own usage plans: every test stays inside the bursts, so nothing waits, and the limiter's
            # plan agrees with the x-amzn-RateLimit-Limit the sandbox sends.
            fast_limits=False,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            extra={
                "marketplace_ids": US,
                "refresh_token": REFRESH_TOKEN,
                "orders_page_size": "3",
                "order_items_page_size": "2",
            },
        ),
    )
    front = LosesAnswers(app)
    with run_in_thread(front) as url:
        sandbox = Amazon(url, front, app.state.sandbox)
        yield sandbox
        await sandbox.admin.aclose()


async def connect(hub: Hub, account: Account, amazon: Amazon) -> uuid.UUID:
    async with hub.db.transaction() as session:
        row = await Tenant(session, uuid.UUID(account.id)).create_connection(
            connector="amazon",
            name="Amazon US",
            vault=hub.vault,
            settings={"client_id": CLIENT_ID, "marketplace_ids": US, "lwa_url": f"{amazon.url}{LWA_PATH}"},
            base_url=amazon.url,
            secrets={"client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN},
        )
        return row.id


async def pull(
    connector: AmazonConnector, window: PullWindow, resume: dict[str, Any] | None = None, *, pages: int = 0
) -> list[Page]:
    read: list[Page] = []
    stream = connector.pull_orders(window, resume)
    async for page in stream:
        read.append(page)
        if pages and len(read) == pages:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    return read


def records(pages: list[Page]) -> list[Mapped]:
    return [record for page in pages for record in page.records]


async def remote_calls(hub: Hub, connection_id: uuid.UUID) -> list[t.RemoteCall]:
    async with hub.db.session() as session:
        rows = await session.scalars(select(t.RemoteCall).where(t.RemoteCall.connection_id == connection_id))
        return list(rows.all())


async def lwa_calls(hub: Hub, connection_id: uuid.UUID) -> int:
    return sum(LWA_PATH in row.url for row in await remote_calls(hub, connection_id))


async def vault_secrets(hub: Hub, account: Account, connection_id: uuid.UUID) -> dict[str, str]:
    async with hub.db.session() as session:
        return await Tenant(session, uuid.UUID(account.id)).get_secrets(connection_id, hub.vault)


async def connection_row(hub: Hub, account: Account, connection_id: uuid.UUID) -> t.Connection:
    async with hub.db.session() as session:
        return await Tenant(session, uuid.UUID(account.id)).get_connection(connection_id)


async def assert_no_secret_recorded(hub: Hub, connection_id: uuid.UUID, amazon: Amazon) -> None:
    secrets = {REFRESH_TOKEN, CLIENT_SECRET, *amazon.state.access_tokens}
    for row in await remote_calls(hub, connection_id):
        text = f"{row.url} {row.error or ''}"
        assert not any(secret in text for secret in secrets), text


# -- check and LWA tokens ---------------------------------------------------------------------------------------
async def test_check_reaches_the_seller_and_keeps_the_access_token_in_the_vault(
    hub: Hub, acme: Account, amazon: Amazon
) -> None:
    cid = await connect(hub, acme, amazon)
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        assert await connector.check() == f"Amazon seller, marketplaces {US}"
    kept = await vault_secrets(hub, acme, cid)
    assert kept["access_token"] in amazon.state.access_tokens
    expires = datetime.fromisoformat(kept["access_token_expires_at"])
    assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)
    calls = await remote_calls(hub, cid)
    assert [(c.operation, c.status) for c in calls] == [("lwa.token", 200), ("getOrders", 200)]


async def test_one_lwa_token_serves_concurrent_callers_and_the_next_worker(
    hub: Hub, acme: Account, amazon: Amazon
) -> None:
    cid = await connect(hub, acme, amazon)
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        await asyncio.gather(*(connector.check() for _ in range(5)))
    assert await lwa_calls(hub, cid) == 1
    # Another worker opens the connection: it signs with the token from the vault and asks LWA nothing.
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        await connector.check()
        await connector.check()
    assert await lwa_calls(hub, cid) == 1
    assert len(await remote_calls(hub, cid)) == 1 + 5 + 2


async def test_a_refused_access_token_is_refreshed_once_and_the_new_one_kept(
    hub: Hub, acme: Account, amazon: Amazon
) -> None:
    cid = await connect(hub, acme, amazon)
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        await connector.check()
        first = (await vault_secrets(hub, acme, cid))["access_token"]
        del amazon.state.access_tokens[first]  # Amazon no longer honours it (revoked early, clock skew)
        await asyncio.gather(connector.check(), connector.check())
    second = (await vault_secrets(hub, acme, cid))["access_token"]
    assert second != first and second in amazon.state.access_tokens
    assert await lwa_calls(hub, cid) == 2
    assert (await connection_row(hub, acme, cid)).status == "active"


async def test_a_token_request_whose_answer_is_lost_is_asked_again_by_the_jobs_retry(
    hub: Hub, acme: Account, amazon: Amazon
) -> None:
    """A refresh-token grant only issues another access token, so an LWA answer lost (a 503, a dropped
    connection) is a retry, not an unknown outcome that stops the job for good."""
    cid = await connect(hub, acme, amazon)
    amazon.front.fail_next_token = True
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        with pytest.raises(RetryableError):
            await connector.check()
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        await connector.check()  # the job's next try
    calls = sorted(await remote_calls(hub, cid), key=lambda c: c.at)
    assert [(c.operation, c.status) for c in calls] == [
        ("lwa.token", 503),
        ("lwa.token", 200),
        ("getOrders", 200),
    ]
    assert (await connection_row(hub, acme, cid)).status == "active"


async def test_a_revoked_refresh_token_needs_reauthorisation_in_seller_central_without_a_retry_storm(
    hub: Hub, acme: Account, amazon: Amazon
) -> None:
    cid = await connect(hub, acme, amazon)
    amazon.state.refresh_tokens.discard(REFRESH_TOKEN)  # the seller removed the app in Seller Central
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        for _ in range(3):
            with pytest.raises(RemoteConfigurationError) as refused:
                await connector.check()
            assert "Authorise the app again in Seller Central" in refused.value.message
    assert await lwa_calls(hub, cid) == 1
    row = await connection_row(hub, acme, cid)
    assert row.status == "needs_reauth"
    assert row.status_reason is not None and "Seller Central" in row.status_reason
    with pytest.raises(ConnectionUnavailable):
        async with open_connector(hub, uuid.UUID(acme.id), cid):
            pass
    await assert_no_secret_recorded(hub, cid, amazon)


async def test_a_refresh_token_revoked_while_the_access_token_lives_stops_at_the_first_refusal(
    hub: Hub, acme: Account, amazon: Amazon
) -> None:
    cid = await connect(hub, acme, amazon)
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        await connector.check()
        amazon.state.refresh_tokens.discard(REFRESH_TOKEN)
        amazon.state.access_tokens.pop((await vault_secrets(hub, acme, cid))["access_token"])
        for _ in range(2):
            with pytest.raises(RemoteConfigurationError, match="Seller Central"):
                await connector.check()
    assert await lwa_calls(hub, cid) == 2  # the first token, then the one refusal
    assert (await connection_row(hub, acme, cid)).status == "needs_reauth"


# -- pulling orders ---------------------------------------------------------------------------------------------
async def test_a_window_over_several_pages_returns_every_order_once_with_all_its_items(
    hub: Hub, acme: Account, amazon: Amazon
) -> None:
    made = await amazon.create_orders(7, items=3)
    window = await amazon.settle()
    cid = await connect(hub, acme, amazon)
    started = time.time()
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        pages = await pull(connector, window)
    assert [len(p.records) for p in pages] == [3, 3, 1]
    assert pages[-1].resume is None and all(p.resume for p in pages[:-1])
    pulled = records(pages)
    assert sorted(r.external_id for r in pulled if r.external_id) == sorted(made)
    for record in pulled:
        assert record.ok, record.problems
        assert record.value is not None and len(record.value.lines) == 3  # items over two pages of two
        assert record.raw["Order"]["AmazonOrderId"] == record.external_id
        assert len(record.raw["OrderItems"]) == 3
    calls = await remote_calls(hub, cid)
    assert sum(c.operation == "getOrders" for c in calls) == 3
    assert sum(c.operation == "getOrderItems" for c in calls) == 7 * 2
    assert await lwa_calls(hub, cid) == 1  # one access token signed all 17 calls
    # The calls went through the connection's usage-plan buckets, which follow x-amzn-RateLimit-Limit.
    async with hub.db.session() as session:
        buckets = {
            b.bucket: b
            for b in await session.scalars(select(t.RateLimit).where(t.RateLimit.connection_id == cid))
        }
    assert set(buckets) == {"getOrders", "getOrderItems"}
    assert buckets["getOrders"].interval_s == pytest.approx(1 / 0.0167)
    assert buckets["getOrderItems"].interval_s == pytest.approx(1 / 0.5)
    # Each call took a slot: the theoretical arrival time moved one interval per call.
    assert buckets["getOrders"].tat == pytest.approx(started + 3 / 0.0167, abs=5)
    assert buckets["getOrderItems"].tat == pytest.approx(started + 14 / 0.5, abs=5)
    await assert_no_secret_recorded(hub, cid, amazon)


async def test_a_resumed_window_continues_without_gap_or_repeat(
    hub: Hub, acme: Account, amazon: Amazon
) -> None:
    made = await amazon.create_orders(7, items=1)
    window = await amazon.settle()
    cid = await connect(hub, acme, amazon)
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        first = await pull(connector, window, pages=1)
    assert first[0].resume is not None
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        rest = await pull(connector, window, first[0].resume)
    ids = [r.external_id for r in records(first + rest)]
    assert len(ids) == len(set(ids)) == 7
    assert set(ids) == set(made)


async def test_an_invalid_next_token_on_resume_restarts_the_window_from_its_first_page(
    hub: Hub, acme: Account, amazon: Amazon
) -> None:
    made = await amazon.create_orders(4, items=1)
    window = await amazon.settle()
    cid = await connect(hub, acme, amazon)
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        pages = await pull(connector, window, {"next_token": "expired-token"})
    assert sorted(r.external_id for r in records(pages) if r.external_id) == sorted(made)
    statuses = [(c.operation, c.status) for c in await remote_calls(hub, cid) if c.operation == "getOrders"]
    assert statuses == [("getOrders", 400), ("getOrders", 200), ("getOrders", 200)]


async def test_a_pending_order_without_prices_maps(hub: Hub, acme: Account, amazon: Amazon) -> None:
    (pending,) = await amazon.create_orders(1, status="Pending", items=3)
    window = await amazon.settle()
    cid = await connect(hub, acme, amazon)
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        (record,) = records(await pull(connector, window))
    assert record.ok, record.problems
    assert record.external_id == pending
    assert record.value is not None
    assert record.value.status is OrderStatus.PENDING
    assert record.value.currency == "USD"
    assert [line.unit_price for line in record.value.lines] == [None, None, None]
    assert "ItemPrice" not in record.raw["OrderItems"][0]


def test_windows_end_two_minutes_before_now() -> None:
    assert AmazonConnector.window_lag == timedelta(minutes=2)


# -- confirming shipments ---------------------------------------------------------------------------------------
async def pulled_order(
    hub: Hub, acme: Account, amazon: Amazon, cid: uuid.UUID, window: PullWindow
) -> tuple[str, uuid.UUID, list[tuple[str, int]]]:
    """The order pulled and stored in the hub: its Amazon id, our id, and its (OrderItemId, quantity) lines."""
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        (record,) = records(await pull(connector, window))
    assert record.value is not None and record.external_id is not None
    async with hub.db.transaction() as session:
        row = await Tenant(session, uuid.UUID(acme.id)).create_order(record.value, source="amazon")
    lines = [(line.external_id or "", line.quantity) for line in record.value.lines]
    return record.external_id, row.id, lines


def fulfillment(order_id: uuid.UUID, lines: list[tuple[str, int]], tracking: str) -> Fulfillment:
    return Fulfillment(
        order_id=order_id,
        lines=[FulfillmentLine(line_external_id=item, quantity=qty) for item, qty in lines],
        carrier="UPS",
        tracking_number=tracking,
    )


async def test_confirm_shipment_reaches_amazon_once_when_its_answer_is_lost(
    hub: Hub, acme: Account, amazon: Amazon
) -> None:
    await amazon.create_orders(1, items=2)
    window = await amazon.settle()
    cid = await connect(hub, acme, amazon)
    amazon_id, order_id, lines = await pulled_order(hub, acme, amazon, cid, window)
    package = fulfillment(order_id, lines, "1Z999AA10123456784")
    amazon.front.lose_next_confirmation = True
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        assert await connector.find_fulfillment(amazon_id, package) is None
        pushed = await connector.push_fulfillment(amazon_id, package, "push-1")
        # The engine, not knowing the first outcome, asks before pushing again.
        again = await connector.find_fulfillment(amazon_id, package)
    assert pushed.external_id == package_reference_id(package)
    assert again is not None and again.external_id == pushed.external_id
    assert amazon.front.confirmations_received == 1
    (confirmed,) = await amazon.confirmations(amazon_id)
    assert (confirmed["trackingNumber"], confirmed["edits"]) == ("1Z999AA10123456784", 0)
    assert confirmed["packageReferenceId"] == pushed.external_id
    assert amazon.state.orders[amazon_id].status == "Shipped"
    pushes = [c for c in await remote_calls(hub, cid) if c.operation == "confirmShipment"]
    assert [(c.status, c.order_id) for c in pushes] == [(503, order_id)]
    await assert_no_secret_recorded(hub, cid, amazon)


async def test_a_package_pushed_again_is_edited_not_added(hub: Hub, acme: Account, amazon: Amazon) -> None:
    await amazon.create_orders(1, items=2)
    window = await amazon.settle()
    cid = await connect(hub, acme, amazon)
    amazon_id, order_id, lines = await pulled_order(hub, acme, amazon, cid, window)
    package = fulfillment(order_id, lines[:1], "1Z999AA10123456785")
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        first = await connector.push_fulfillment(amazon_id, package, "push-1")
        second = await connector.push_fulfillment(amazon_id, package, "push-1")
    assert first == second
    (confirmed,) = await amazon.confirmations(amazon_id)
    assert confirmed["edits"] == 1
    order = amazon.state.orders[amazon_id]
    assert [item.shipped for item in order.items] == [lines[0][1], 0]
    assert order.status == "PartiallyShipped"


async def test_update_tracking_edits_the_confirmed_package(hub: Hub, acme: Account, amazon: Amazon) -> None:
    await amazon.create_orders(1, items=1)
    window = await amazon.settle()
    cid = await connect(hub, acme, amazon)
    amazon_id, order_id, lines = await pulled_order(hub, acme, amazon, cid, window)
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        pushed = await connector.push_fulfillment(
            amazon_id, fulfillment(order_id, lines, "1Z999AA10123456786"), "push-1"
        )
        updated = await connector.update_tracking(
            amazon_id, pushed.external_id, fulfillment(order_id, lines, "1Z999AA10123456799")
        )
    assert updated.external_id == pushed.external_id
    (confirmed,) = await amazon.confirmations(amazon_id)
    assert (confirmed["trackingNumber"], confirmed["edits"]) == ("1Z999AA10123456799", 1)


def test_package_reference_ids_are_positive_numbers_fixed_by_the_tracking_number() -> None:
    order_id = uuid.uuid4()
    one = fulfillment(order_id, [("1", 1)], "1Z999AA10123456784")
    same = fulfillment(uuid.uuid4(), [("2", 3)], "1Z999AA10123456784")
    other = fulfillment(order_id, [("1", 1)], "1Z999AA10123456785")
    assert package_reference_id(one) == package_reference_id(same) != package_reference_id(other)
    for package in (one, other):
        reference = package_reference_id(package)
        assert reference.isdigit() and 0 < int(reference) < 2**31

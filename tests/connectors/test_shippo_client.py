"""The Shippo connector against the Shippo sandbox on a real socket, opened from a connection stored in the hub:
rates for an order's parcels, labels bought at once, after QUEUED, refused, or with the answer lost (exactly one
purchase), found again by idempotency key, voided, tracked; a refused token marks the connection; a 429 is
honoured."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pypdf
import pytest
from sqlalchemy import select
from starlette.types import Message, Receive, Scope, Send

from crossdock.connectors.base import ShippingLabels, ShippingRates, TrackingSource
from crossdock.connectors.shippo.client import ShippoConnector, carrier_token
from crossdock.engine.connections import load_context
from crossdock.engine.errors import ConfigurationError, PermanentError, RetryableError
from crossdock.hub import Hub
from crossdock.model import (
    Address,
    Customer,
    Dimensions,
    LabelFormat,
    Length,
    Money,
    Order,
    OrderLine,
    Parcel,
    Shipment,
    TrackingStatus,
    Weight,
)
from crossdock.sandbox.common import SandboxConfig, run_in_thread
from crossdock.sandbox.shippo import ShippoState, create_app
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from tests.support import Tenant as Account

# A live-mode token gets Shippo's live limits (lists 50 a minute): the limiter then lets a test make a few list
# calls without waiting, as it would for a real merchant. test_check_with_a_test_token covers test mode.
LIVE_TOKEN = "shippo_live_0123456789abcdef0123456789abcdef"
TEST_TOKEN = "shippo_test_0123456789abcdef0123456789abcdef"
ORIGIN = {
    "name": "Acme Warehouse",
    "company": "Acme",
    "street1": "215 Clayton St.",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94117",
    "country": "US",
    "phone": "+1 415 555 0100",
    "email": "warehouse@example.com",
}
THROTTLED = b'{"detail":"Request was throttled. Expected available in 1 second."}'


@dataclass
class Front:
    """In front of the sandbox, like the network between us and Shippo: records each request and, when asked,
    loses the answer to the next label purchase after Shippo made it (a 502 reaches us), throttles the next
    request with Shippo's 429, or makes Shippo queue purchases (async) as it does when a carrier is slow."""

    app: Any
    lose_next_purchase: bool = False
    throttle_next: str | None = None  # a path: its next request gets a 429
    queue_purchases: bool = False
    seen: list[tuple[str, str, float]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        self.seen.append((method, path, time.monotonic()))
        if self.throttle_next == path:
            self.throttle_next = None
            await _answer(send, 429, THROTTLED, [(b"retry-after", b"1")])
            return
        purchase = method == "POST" and path.rstrip("/") == "/transactions"
        if purchase and self.queue_purchases:
            receive = await _with_body(receive, lambda body: {**body, "async": True})
        if purchase and self.lose_next_purchase:
            self.lose_next_purchase = False

            async def discard(_message: Message) -> None:
                return None

            await self.app(scope, receive, discard)
            await _answer(send, 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", [])
            return
        await self.app(scope, receive, send)

    def requests(self, method: str, prefix: str) -> list[tuple[str, str, float]]:
        return [r for r in self.seen if r[0] == method and r[1].startswith(prefix)]


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _with_body(receive: Receive, change: Any) -> Receive:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps(change(json.loads(b"".join(chunks)))).encode()
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


@dataclass
class Shippo:
    url: str
    front: Front
    state: ShippoState
    admin: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.admin = httpx.AsyncClient(base_url=self.url)

    async def transactions(self) -> list[dict[str, Any]]:
        return list((await self.admin.get("/_sandbox/transactions")).json())

    async def advance(self, transaction_id: str, status: str | None = None) -> None:
        body = {"status": status} if status else {}
        r = await self.admin.post(f"/_sandbox/transactions/{transaction_id}/advance", json=body)
        assert r.status_code == 200, r.text


def sandbox_app(**extra: str) -> Any:
    knobs = {"async_delay_s": "0.05", **extra}
    return create_app(SandboxConfig(seed=5, token=LIVE_TOKEN, extra=knobs))


@pytest.fixture
def knobs() -> dict[str, str]:
    return {}


@pytest.fixture
async def sandbox(knobs: dict[str, str]) -> AsyncIterator[Shippo]:
    app = sandbox_app(**knobs)
    front = Front(app)
    with run_in_thread(front) as url:
        remote = Shippo(url, front, app.state.sandbox)
        yield remote
        await remote.admin.aclose()


async def connect(
    hub: Hub,
    account: Account,
    sandbox: Shippo,
    *,
    token: str = LIVE_TOKEN,
    settings: dict[str, Any] | None = None,
) -> uuid.UUID:
    async with hub.db.transaction() as session:
        row = await Tenant(session, uuid.UUID(account.id)).create_connection(
            connector="shippo",
            name="Shippo",
            vault=hub.vault,
            settings={"from_address": ORIGIN} if settings is None else settings,
            base_url=sandbox.url,
            secrets={"api_token": token},
        )
        return row.id


async def open_shippo(hub: Hub, account: Account, connection_id: uuid.UUID) -> ShippoConnector:
    _row, ctx = await load_context(hub, uuid.UUID(account.id), connection_id)
    return ShippoConnector(ctx)


@pytest.fixture
async def shippo(hub: Hub, acme: Account, sandbox: Shippo) -> AsyncIterator[ShippoConnector]:
    connector = await open_shippo(hub, acme, await connect(hub, acme, sandbox))
    yield connector
    await connector.aclose()


def an_order(**changes: Any) -> Order:
    fields: dict[str, Any] = {
        "currency": "USD",
        "external_number": "#1001",
        "customer": Customer(name="Mr Hippo", email="hippo@example.com"),
        "shipping_address": Address(
            first_name="Mr",
            last_name="Hippo",
            line1="350 5th Ave",
            city="New York",
            subdivision="US-NY",
            postal_code="10118",
            country="US",
        ),
        "lines": [OrderLine(sku="MUG-1", title="Mug", quantity=2, unit_price=Money.of("12.50", "USD"))],
    }
    fields.update(changes)
    return Order(**fields)


Orders = Callable[..., Awaitable[Order]]


@pytest.fixture
def orders(hub: Hub, acme: Account) -> Orders:
    """`await orders(**changes)`: an order stored in the hub (calls are recorded on its timeline)."""

    async def place(**changes: Any) -> Order:
        order = an_order(**changes)
        async with hub.db.transaction() as session:
            row = await Tenant(session, uuid.UUID(acme.id)).create_order(order)
        return order.model_copy(update={"id": row.id})

    return place


def a_shipment(order: Order, *, dimensions: bool = True) -> Shipment:
    dims = Dimensions(length=Length(value="30", unit="cm"), width=Length(value="20", unit="cm"),
                      height=Length(value="100", unit="mm")) if dimensions else None  # fmt: skip
    parcel = Parcel(weight=Weight(value="1.25", unit="kg"), dimensions=dims)
    assert order.id is not None
    return Shipment(order_id=order.id, parcels=[parcel])


async def remote_calls(hub: Hub, connection_id: uuid.UUID) -> list[t.RemoteCall]:
    async with hub.db.session() as session:
        rows = await session.scalars(
            select(t.RemoteCall).where(t.RemoteCall.connection_id == connection_id).order_by(t.RemoteCall.at)
        )
        return list(rows.all())


async def cheapest(shippo: ShippoConnector, shipment: Shipment, order: Order, provider: str = "USPS") -> Any:
    offered = [r for r in await shippo.rates(shipment, order) if r.carrier == provider]
    return min(offered, key=lambda r: r.price.amount)


# -- check and auth -------------------------------------------------------------------------------------------------


async def test_check_reaches_the_account_and_implements_the_shipping_protocols(
    shippo: ShippoConnector,
) -> None:
    assert await shippo.check() == "Shippo account (live token)"
    assert isinstance(shippo, ShippingRates)
    assert isinstance(shippo, ShippingLabels)
    assert isinstance(shippo, TrackingSource)


async def test_check_with_a_test_token(hub: Hub, acme: Account) -> None:
    app = create_app(SandboxConfig(seed=5, token=TEST_TOKEN))
    with run_in_thread(app) as url:
        remote = Shippo(url, Front(app), app.state.sandbox)
        connector = await open_shippo(hub, acme, await connect(hub, acme, remote, token=TEST_TOKEN))
        try:
            assert await connector.check() == "Shippo account (test token)"
        finally:
            await connector.aclose()
            await remote.admin.aclose()


async def test_a_refused_token_marks_the_connection_and_says_to_check_the_token(
    hub: Hub, acme: Account, sandbox: Shippo
) -> None:
    cid = await connect(hub, acme, sandbox, token="shippo_live_revoked000000000000000000000000")
    connector = await open_shippo(hub, acme, cid)
    try:
        with pytest.raises(ConfigurationError) as refused:
            await connector.check()
    finally:
        await connector.aclose()
    assert "Token does not exist" in refused.value.message
    assert "check the API token" in refused.value.message
    async with hub.db.session() as session:
        row = await Tenant(session, uuid.UUID(acme.id)).get_connection(cid)
    assert row.status == "needs_reauth"
    calls = await remote_calls(hub, cid)
    assert [c.status for c in calls] == [401]
    assert all("revoked" not in f"{c.url} {c.error}" for c in calls)


async def test_a_connection_without_a_token_or_with_a_bad_setting_says_what_to_set(
    hub: Hub, acme: Account, sandbox: Shippo
) -> None:
    async with hub.db.transaction() as session:
        row = await Tenant(session, uuid.UUID(acme.id)).create_connection(
            connector="shippo", name="s", vault=hub.vault, base_url=sandbox.url
        )
    _row, ctx = await load_context(hub, uuid.UUID(acme.id), row.id)
    with pytest.raises(ConfigurationError, match="no api_token"):
        ShippoConnector(ctx)
    for settings, words in (
        ({"label_file_type": "GIF"}, "not one Shippo prints"),
        ({"from_address": {"street1": "1 Main St", "country": "US"}}, "lacks name, city"),
        ({"from_address": "not-an-id"}, "neither an address object"),
        ({"from_address": "{not json"}, "not valid JSON"),
    ):
        cid = await connect(hub, acme, sandbox, settings=settings)
        _row, ctx = await load_context(hub, uuid.UUID(acme.id), cid)
        with pytest.raises(ConfigurationError, match=words):
            ShippoConnector(ctx)


# -- rates ----------------------------------------------------------------------------------------------------------


async def test_rates_for_the_orders_parcels_from_the_connections_address(
    shippo: ShippoConnector, sandbox: Shippo, orders: Orders
) -> None:
    order = await orders()
    rates = await shippo.rates(a_shipment(order), order)
    [shipment] = sandbox.state.shipments.values()
    assert shipment["address_from"]["street1"] == "215 Clayton St."
    assert shipment["address_from"]["name"] == "Acme Warehouse"
    to = shipment["address_to"]
    assert (to["name"], to["street1"], to["city"], to["state"], to["zip"], to["country"]) == (
        "Mr Hippo", "350 5th Ave", "New York", "NY", "10118", "US",
    )  # fmt: skip
    assert to["email"] == "hippo@example.com"
    [parcel] = shipment["parcels"]
    # One distance unit for the parcel (the length's): 100 mm high is sent as 10 cm.
    assert {k: parcel[k] for k in ("length", "width", "height", "distance_unit", "weight", "mass_unit")} == {
        "length": "30", "width": "20", "height": "10", "distance_unit": "cm", "weight": "1.25", "mass_unit": "kg",
    }  # fmt: skip
    assert shipment["metadata"] == "Order #1001"
    by_id = {r["object_id"]: r for r in shipment["rates"]}
    assert len(rates) == len(by_id) >= 3
    for rate in rates:
        remote = by_id[rate.remote_id or ""]
        assert rate.carrier == remote["provider"]
        assert rate.service_code == remote["servicelevel"]["token"]
        assert rate.service_name == remote["servicelevel"]["name"]
        assert rate.price == Money.of(remote["amount"], remote["currency"])
        assert rate.estimated_days == remote["estimated_days"]
    assert {"usps_priority", "ups_ground"} <= {r.service_code for r in rates}


async def test_rates_need_the_from_address_and_parcel_dimensions(
    hub: Hub, acme: Account, sandbox: Shippo, shippo: ShippoConnector, orders: Orders
) -> None:
    order = await orders()
    with pytest.raises(PermanentError, match=r"parcels\[0\].dimensions: Shippo rates a parcel by its size"):
        await shippo.rates(a_shipment(order, dimensions=False), order)
    with pytest.raises(PermanentError, match="no shipping address"):
        await shippo.rates(a_shipment(order), await orders(shipping_address=None))
    connector = await open_shippo(hub, acme, await connect(hub, acme, sandbox, settings={}))
    try:
        with pytest.raises(ConfigurationError, match="no from_address"):
            await connector.rates(a_shipment(order), order)
    finally:
        await connector.aclose()
    assert sandbox.state.shipments == {}


async def test_a_shippo_address_object_id_can_be_the_origin(
    hub: Hub, acme: Account, sandbox: Shippo, shippo: ShippoConnector, orders: Orders
) -> None:
    order = await orders()
    await shippo.rates(a_shipment(order), order)
    [first] = sandbox.state.shipments.values()
    saved = first["address_from"]["object_id"]
    connector = await open_shippo(
        hub, acme, await connect(hub, acme, sandbox, settings={"from_address": saved})
    )
    try:
        assert await connector.rates(a_shipment(order), order)
    finally:
        await connector.aclose()
    assert all(s["address_from"]["object_id"] == saved for s in sandbox.state.shipments.values())


async def test_a_429_is_honoured_and_the_call_goes_through_after_retry_after(
    hub: Hub, acme: Account, sandbox: Shippo, orders: Orders
) -> None:
    cid = await connect(hub, acme, sandbox)
    connector = await open_shippo(hub, acme, cid)
    sandbox.front.throttle_next = "/shipments"
    order = await orders()
    try:
        assert await connector.rates(a_shipment(order), order)
    finally:
        await connector.aclose()
    first, second = sandbox.front.requests("POST", "/shipments")
    # Shippo said "Retry-After: 1": the retry did not come sooner.
    assert second[2] - first[2] >= 0.95
    assert [c.status for c in await remote_calls(hub, cid)] == [429, 201]
    assert len(sandbox.state.shipments) == 1


# -- labels ---------------------------------------------------------------------------------------------------------


async def test_buy_label_returns_the_pdf_with_tracking_and_marks_the_purchase_with_the_key(
    shippo: ShippoConnector, sandbox: Shippo, orders: Orders
) -> None:
    order = await orders()
    shipment = a_shipment(order)
    rate = await cheapest(shippo, shipment, order)
    label = await shippo.buy_label(shipment, order, rate, "label:order-1:parcel-1")
    [transaction] = await sandbox.transactions()
    assert transaction["metadata"] == "crossdock:label:order-1:parcel-1"
    assert transaction["label_file_type"] == "PDF"
    assert transaction["rate"]["object_id"] == rate.remote_id
    assert label.remote_id == transaction["object_id"]
    assert label.tracking_number == transaction["tracking_number"]
    assert label.tracking_url == transaction["tracking_url_provider"]
    assert (label.carrier, label.service_code) == ("USPS", rate.service_code)
    assert label.price == rate.price
    assert label.file_format is LabelFormat.PDF
    text = pypdf.PdfReader(io.BytesIO(label.file)).pages[0].extract_text()
    assert label.tracking_number and label.tracking_number in text
    assert label.raw["status"] == "SUCCESS"
    # The API token went to the API only; the label came from the file host's URL.
    assert sandbox.front.requests("GET", "/labels/")


@pytest.mark.parametrize(
    ("file_type", "fmt", "start"), [("PNG", LabelFormat.PNG, b"\x89PNG"), ("ZPLII", LabelFormat.ZPL, b"^XA")]
)
async def test_the_connection_chooses_png_or_zpl_labels(
    hub: Hub, acme: Account, sandbox: Shippo, file_type: str, fmt: LabelFormat, start: bytes, orders: Orders
) -> None:
    settings = {"from_address": json.dumps(ORIGIN), "label_file_type": file_type.lower()}
    connector = await open_shippo(hub, acme, await connect(hub, acme, sandbox, settings=settings))
    order = await orders()
    shipment = a_shipment(order)
    try:
        label = await connector.buy_label(shipment, order, await cheapest(connector, shipment, order), "k-1")
    finally:
        await connector.aclose()
    assert label.file_format is fmt
    assert label.file.startswith(start)
    assert [tr["label_file_type"] for tr in await sandbox.transactions()] == [file_type]


async def test_a_queued_purchase_is_waited_for_until_success(
    shippo: ShippoConnector, sandbox: Shippo, orders: Orders
) -> None:
    sandbox.front.queue_purchases = True
    order = await orders()
    shipment = a_shipment(order)
    label = await shippo.buy_label(shipment, order, await cheapest(shippo, shipment, order), "k-queued")
    [transaction] = await sandbox.transactions()
    assert transaction["status"] == "SUCCESS"
    assert label.remote_id == transaction["object_id"] and label.tracking_number
    assert sandbox.front.requests("GET", f"/transactions/{label.remote_id}")
    assert label.file.startswith(b"%PDF")


@pytest.mark.parametrize("knobs", [{"async_delay_s": "600"}])
async def test_a_purchase_queued_past_the_wait_is_retryable_and_never_bought_again(
    shippo: ShippoConnector, sandbox: Shippo, orders: Orders
) -> None:
    sandbox.front.queue_purchases = True
    shippo.label_wait_s = 0.3
    order = await orders()
    shipment = a_shipment(order)
    rate = await cheapest(shippo, shipment, order)
    with pytest.raises(RetryableError, match="still working on the label") as queued:
        await shippo.buy_label(shipment, order, rate, "k-slow")
    assert queued.value.retry_after == 30.0
    # The retried job asks first: the purchase in progress is neither "no label" nor bought again.
    with pytest.raises(RetryableError, match="still working"):
        await shippo.find_label("k-slow")
    [transaction] = await sandbox.transactions()
    sandbox.state.finish_transaction(transaction["object_id"])
    found = await shippo.find_label("k-slow")
    assert found is not None and found.remote_id == transaction["object_id"]
    assert len(await sandbox.transactions()) == 1


@pytest.mark.parametrize("knobs", [{"fail_labels": "1"}])
async def test_a_refused_purchase_is_permanent_with_shippos_words(
    shippo: ShippoConnector, sandbox: Shippo, orders: Orders
) -> None:
    order = await orders()
    shipment = a_shipment(order)
    with pytest.raises(PermanentError) as refused:
        await shippo.buy_label(shipment, order, await cheapest(shippo, shipment, order), "k-err")
    [transaction] = await sandbox.transactions()
    assert transaction["status"] == "ERROR"
    assert f"transaction {transaction['object_id']}" in refused.value.message
    assert "USPS: carrier_timeout: USPS did not answer in time" in refused.value.message
    # A failed purchase left no label: the key may buy again.
    assert await shippo.find_label("k-err") is None


async def test_a_queued_purchase_that_fails_is_permanent(
    shippo: ShippoConnector, sandbox: Shippo, orders: Orders
) -> None:
    sandbox.front.queue_purchases = True
    order = await orders(shipping_address=Address(line1="350 5th Ave", city="New York", country="US"))
    shipment = a_shipment(order)
    with pytest.raises(PermanentError, match="address_incomplete"):
        await shippo.buy_label(shipment, order, await cheapest(shippo, shipment, order), "k-queued-err")


async def test_buying_needs_a_shippo_rate(shippo: ShippoConnector, sandbox: Shippo, orders: Orders) -> None:
    order = await orders()
    with pytest.raises(PermanentError, match="ask this connection for rates first"):
        await shippo.buy_label(a_shipment(order), order, None, "k")
    assert await sandbox.transactions() == []


async def test_a_lost_purchase_answer_is_looked_up_and_exactly_one_label_is_bought(
    hub: Hub, acme: Account, sandbox: Shippo, orders: Orders
) -> None:
    cid = await connect(hub, acme, sandbox)
    connector = await open_shippo(hub, acme, cid)
    order = await orders()
    shipment = a_shipment(order)
    try:
        rate = await cheapest(connector, shipment, order)
        sandbox.front.lose_next_purchase = True
        label = await connector.buy_label(shipment, order, rate, "label:lost")
        # The engine asks before any retry of the job: the same label, nothing bought.
        again = await connector.find_label("label:lost")
    finally:
        await connector.aclose()
    [transaction] = await sandbox.transactions()
    assert len(sandbox.front.requests("POST", "/transactions")) == 1
    assert label.remote_id == transaction["object_id"] == (again.remote_id if again else None)
    assert label.tracking_number == transaction["tracking_number"]
    assert label.file.startswith(b"%PDF")
    statuses = [
        (c.method, c.status, c.error_kind) for c in await remote_calls(hub, cid) if "/transactions" in c.url
    ]
    assert statuses[0] == ("POST", 502, "retryable")
    assert ("GET", 200, None) in statuses[1:]


async def test_find_label_pages_back_through_recent_purchases(
    shippo: ShippoConnector, sandbox: Shippo, orders: Orders
) -> None:
    order = await orders()
    shipment = a_shipment(order)
    bought = []
    for key in ("k-a", "k-b", "k-c"):
        bought.append(await shippo.buy_label(shipment, order, await cheapest(shippo, shipment, order), key))
    shippo.lookup_page_size = 2  # newest first: k-c and k-b on page 1, k-a on page 2
    found = await shippo.find_label("k-a")
    assert found is not None and found.remote_id == bought[0].remote_id
    assert found.file.startswith(b"%PDF") and found.tracking_number == bought[0].tracking_number
    assert await shippo.find_label("k-unknown") is None
    assert len(await sandbox.transactions()) == 3


# -- void -----------------------------------------------------------------------------------------------------------


async def test_void_refunds_an_unused_label_and_a_second_void_still_says_voided(
    shippo: ShippoConnector, sandbox: Shippo, orders: Orders
) -> None:
    order = await orders()
    shipment = a_shipment(order)
    label = await shippo.buy_label(shipment, order, await cheapest(shippo, shipment, order), "k-void")
    outcome = await shippo.void_label(label.remote_id)
    assert outcome.voided and "refunded the label" in outcome.message
    [refund] = sandbox.state.refunds.values()
    assert refund["transaction"] == label.remote_id and refund["status"] == "SUCCESS"
    assert sandbox.state.transactions[label.remote_id]["status"] == "REFUNDED"
    # A retried void after a lost answer: Shippo refuses a second refund, the label is voided all the same.
    again = await shippo.void_label(label.remote_id)
    assert again.voided and "REFUNDED" in again.message
    assert len(sandbox.state.refunds) == 1


async def test_void_of_a_scanned_label_is_refused_in_shippos_words(
    shippo: ShippoConnector, sandbox: Shippo, orders: Orders
) -> None:
    order = await orders()
    shipment = a_shipment(order)
    label = await shippo.buy_label(shipment, order, await cheapest(shippo, shipment, order), "k-used")
    await sandbox.advance(label.remote_id)  # PRE_TRANSIT -> TRANSIT: the carrier has it
    outcome = await shippo.void_label(label.remote_id)
    assert not outcome.voided
    assert "already been used and can no longer be refunded" in outcome.message
    assert sandbox.state.refunds == {}


# -- tracking -------------------------------------------------------------------------------------------------------


async def test_track_maps_the_history_oldest_first(
    shippo: ShippoConnector, sandbox: Shippo, orders: Orders
) -> None:
    order = await orders()
    shipment = a_shipment(order)
    label = await shippo.buy_label(shipment, order, await cheapest(shippo, shipment, order), "k-track")
    await sandbox.advance(label.remote_id)
    await sandbox.advance(label.remote_id)
    bought = shipment.model_copy(update={"carrier": label.carrier, "tracking_number": label.tracking_number})
    events = await shippo.track(bought)
    assert [e.status for e in events] == [
        TrackingStatus.PRE_TRANSIT, TrackingStatus.IN_TRANSIT, TrackingStatus.DELIVERED,
    ]  # fmt: skip
    assert [e.raw_status for e in events] == ["PRE_TRANSIT", "TRANSIT", "DELIVERED"]
    assert events[-1].description == "Your shipment has been delivered."
    assert events[-1].location == "New York, NY 10118, US"
    assert events[0].occurred_at <= events[1].occurred_at <= events[2].occurred_at
    assert sandbox.front.requests("GET", f"/tracks/usps/{label.tracking_number}")


async def test_track_a_shippo_test_number_and_an_unknown_one(shippo: ShippoConnector, orders: Orders) -> None:
    order = await orders()
    base = a_shipment(order)
    returned = await shippo.track(
        base.model_copy(update={"carrier": "shippo", "tracking_number": "SHIPPO_RETURNED"})
    )
    assert [e.status for e in returned] == [TrackingStatus.RETURNED]
    failed = await shippo.track(
        base.model_copy(update={"carrier": "shippo", "tracking_number": "SHIPPO_FAILURE"})
    )
    assert [e.status for e in failed] == [TrackingStatus.EXCEPTION]
    unknown = await shippo.track(
        base.model_copy(update={"carrier": "USPS", "tracking_number": "9400000000000"})
    )
    assert unknown == []
    with pytest.raises(PermanentError, match="no tracking number"):
        await shippo.track(base)


def test_carrier_tokens_from_provider_names() -> None:
    assert [carrier_token(n) for n in ("USPS", "DHL Express", "Canada Post", "Evri", "dhl_express")] == [
        "usps", "dhl_express", "canada_post", "hermes_uk", "dhl_express",
    ]  # fmt: skip


def test_parcel_numbers_are_rounded_up_to_four_decimals() -> None:
    from crossdock.connectors.shippo.mapping import parcel_request

    parcel = Parcel(
        weight=Weight(value=Decimal("0.45359237"), unit="lb"),
        dimensions=Dimensions(length=Length(value="10", unit="in"), width=Length(value="254", unit="mm"),
                              height=Length(value="2.54", unit="cm")),
    )  # fmt: skip
    assert parcel_request(parcel, "parcels[0]") == {
        "length": "10", "width": "10", "height": "1", "distance_unit": "in", "weight": "0.4536", "mass_unit": "lb",
    }  # fmt: skip


async def test_the_registry_opens_a_shippo_connection_as_this_connector(
    hub: Hub, acme: Account, sandbox: Shippo
) -> None:
    from crossdock.engine.connections import open_connector

    cid = await connect(hub, acme, sandbox)
    async with open_connector(hub, uuid.UUID(acme.id), cid) as (_row, connector):
        assert isinstance(connector, ShippoConnector)
        assert await connector.check() == "Shippo account (live token)"

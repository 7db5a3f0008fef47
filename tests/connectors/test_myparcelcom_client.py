"""The MyParcel.com connector against the MyParcel.com sandbox on a real socket, opened from a connection stored in
the hub: client-credentials tokens kept in the vault and renewed after a 401, labels created once per
idempotency key and found again by it, refusals naming the field, registration that takes longer than a call,
voids, status tracking, and the sandbox's injected faults."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pypdf
import pytest
from sqlalchemy import select
from starlette.types import Receive, Scope, Send

from crossdock.connectors.base import ShippingLabels, ShippingRates, TrackingSource
from crossdock.connectors.myparcelcom.client import MyParcelComConnector
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
    Rate,
    Shipment,
    TrackingStatus,
    Weight,
)
from crossdock.sandbox.common import FaultSpec, SandboxConfig, run_in_thread
from crossdock.sandbox.myparcelcom import MyParcelComState, create_app
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from tests.support import Tenant as Account

CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"


@dataclass
class Front:
    """In front of the sandbox, like the network between us and MyParcel.com: records each request."""

    app: Any
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.seen.append((scope["method"], scope["path"], headers))
        await self.app(scope, receive, send)

    def requests(self, method: str, path: str) -> list[dict[str, str]]:
        return [h for m, p, h in self.seen if m == method and p == path]


@dataclass
class MyParcelCom:
    url: str
    front: Front
    state: MyParcelComState
    admin: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.admin = httpx.AsyncClient(base_url=self.url)

    @property
    def shop_id(self) -> str:
        return self.state.default_shop_id

    async def advance(self, shipment_id: str, status: str | None = None) -> None:
        body = {"status": status} if status else {}
        r = await self.admin.post(f"/_sandbox/shipments/{shipment_id}/advance", json=body)
        assert r.status_code == 200, r.text

    def status_of(self, shipment_id: str) -> str:
        return self.state.shipments[shipment_id].status_code


@pytest.fixture
def knobs() -> dict[str, str]:
    return {}


@pytest.fixture
async def sandbox(knobs: dict[str, str]) -> AsyncIterator[MyParcelCom]:
    app = create_app(SandboxConfig(seed=7, extra={"processing_s": "0", **knobs}))
    front = Front(app)
    with run_in_thread(front) as url:
        remote = MyParcelCom(url, front, app.state.sandbox)
        yield remote
        await remote.admin.aclose()


async def connect(
    hub: Hub,
    account: Account,
    sandbox: MyParcelCom,
    *,
    settings: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
) -> uuid.UUID:
    values = {"client_id": CLIENT_ID, "shop_id": sandbox.shop_id, "default_service": "dpd-classic"}
    async with hub.db.transaction() as session:
        row = await Tenant(session, uuid.UUID(account.id)).create_connection(
            connector="myparcelcom",
            name="MyParcel.com",
            vault=hub.vault,
            settings={**values, **(settings or {})},
            base_url=sandbox.url,
            secrets={"client_secret": CLIENT_SECRET, **(secrets or {})},
        )
        return row.id


async def open_myparcelcom(hub: Hub, account: Account, connection_id: uuid.UUID) -> MyParcelComConnector:
    _row, ctx = await load_context(hub, uuid.UUID(account.id), connection_id)
    return MyParcelComConnector(ctx)


@pytest.fixture
async def connection(hub: Hub, acme: Account, sandbox: MyParcelCom) -> uuid.UUID:
    return await connect(hub, acme, sandbox)


@pytest.fixture
async def mpc(hub: Hub, acme: Account, connection: uuid.UUID) -> AsyncIterator[MyParcelComConnector]:
    connector = await open_myparcelcom(hub, acme, connection)
    connector.label_wait_s = 5.0
    yield connector
    await connector.aclose()


def an_order(**changes: Any) -> Order:
    fields: dict[str, Any] = {
        "currency": "GBP",
        "external_number": "#1001",
        "customer": Customer(name="Ada Lovelace", email="ada@example.com", phone="+31 20 123 4567"),
        "shipping_address": Address(
            first_name="Ada",
            last_name="Lovelace",
            line1="Damrak 1",
            line2="Floor 2",
            city="Amsterdam",
            postal_code="1012 LG",
            country="NL",
        ),
        "lines": [
            OrderLine(
                sku="MUG-1",
                title="Mug",
                quantity=2,
                unit_price=Money.of("12.50", "GBP"),
                weight=Weight(value="400.2", unit="g"),
            ),
            OrderLine(
                title="Gift card", quantity=1, unit_price=Money.of("10", "GBP"), requires_shipping=False
            ),
        ],
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


def a_shipment(order: Order, parcels: int = 1) -> Shipment:
    dims = Dimensions(length=Length(value="30", unit="cm"), width=Length(value="20", unit="cm"),
                      height=Length(value="10.05", unit="cm"))  # fmt: skip
    assert order.id is not None
    return Shipment(
        order_id=order.id,
        parcels=[Parcel(weight=Weight(value="1.2501", unit="kg"), dimensions=dims)] * parcels,
    )


async def remote_calls(hub: Hub, connection_id: uuid.UUID) -> list[t.RemoteCall]:
    async with hub.db.session() as session:
        rows = await session.scalars(
            select(t.RemoteCall).where(t.RemoteCall.connection_id == connection_id).order_by(t.RemoteCall.at)
        )
        return list(rows.all())


async def secrets_of(hub: Hub, account: Account, connection_id: uuid.UUID) -> dict[str, str]:
    async with hub.db.session() as session:
        return dict(await Tenant(session, uuid.UUID(account.id)).get_secrets(connection_id, hub.vault))


# -- check and auth -------------------------------------------------------------------------------------------------


async def test_check_reaches_the_shop_and_implements_labels_and_tracking(
    mpc: MyParcelComConnector, sandbox: MyParcelCom
) -> None:
    assert await mpc.check() == f"MyParcel.com shop Crossdock Sandbox Shop ({sandbox.shop_id})"
    assert isinstance(mpc, ShippingLabels)
    assert isinstance(mpc, TrackingSource)
    # The sandbox serves no service rates, so the connector offers none.
    assert not isinstance(mpc, ShippingRates)
    [grant] = sandbox.front.requests("POST", "/access-token")
    [shop] = sandbox.front.requests("GET", f"/shops/{sandbox.shop_id}")
    assert shop["authorization"].startswith("Bearer ")
    assert shop["accept"] == "application/vnd.api+json"
    assert "authorization" not in grant


async def test_the_token_is_kept_in_the_vault_and_reused_by_the_next_runtime(
    hub: Hub, acme: Account, sandbox: MyParcelCom, connection: uuid.UUID
) -> None:
    before = datetime.now(UTC)
    for _ in range(2):
        connector = await open_myparcelcom(hub, acme, connection)
        try:
            await connector.check()
        finally:
            await connector.aclose()
    assert len(sandbox.front.requests("POST", "/access-token")) == 1
    kept = await secrets_of(hub, acme, connection)
    assert sandbox.state.check_token(kept["access_token"]) is None
    expires = datetime.fromisoformat(kept["access_token_expires_at"])
    assert before + timedelta(seconds=86400) <= expires <= datetime.now(UTC) + timedelta(seconds=86400)
    # Both API calls carried the kept token.
    assert {h["authorization"] for h in sandbox.front.requests("GET", f"/shops/{sandbox.shop_id}")} == {
        f"Bearer {kept['access_token']}"
    }


async def test_a_token_close_to_its_expiry_is_replaced_before_use(
    hub: Hub, acme: Account, sandbox: MyParcelCom
) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    old = sandbox.state.issue_token("*")
    cid = await connect(hub, acme, sandbox, secrets={"access_token": old, "access_token_expires_at": soon})
    connector = await open_myparcelcom(hub, acme, cid)
    try:
        await connector.check()
    finally:
        await connector.aclose()
    assert len(sandbox.front.requests("POST", "/access-token")) == 1
    assert (await secrets_of(hub, acme, cid))["access_token"] != old


async def test_a_refused_token_gets_one_new_token_and_the_call_goes_through(
    hub: Hub, acme: Account, sandbox: MyParcelCom
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=12)).isoformat()
    cid = await connect(
        hub, acme, sandbox, secrets={"access_token": "not.a-valid.token", "access_token_expires_at": later}
    )
    connector = await open_myparcelcom(hub, acme, cid)
    try:
        assert await connector.check()
    finally:
        await connector.aclose()
    calls = [(c.operation, c.status) for c in await remote_calls(hub, cid)]
    assert calls == [("shop", 401), ("token", 200), ("shop", 200)]
    assert (await secrets_of(hub, acme, cid))["access_token"] != "not.a-valid.token"
    async with hub.db.session() as session:
        assert (await Tenant(session, uuid.UUID(acme.id)).get_connection(cid)).status == "active"


async def test_refused_client_credentials_mark_the_connection_and_say_what_to_check(
    hub: Hub, acme: Account, sandbox: MyParcelCom
) -> None:
    wrong = "wrong-client-secret-123456"
    cid = await connect(hub, acme, sandbox, secrets={"client_secret": wrong})
    connector = await open_myparcelcom(hub, acme, cid)
    try:
        with pytest.raises(ConfigurationError) as refused:
            await connector.check()
        # Remembered: the next call does not ask the auth server again.
        with pytest.raises(ConfigurationError):
            await connector.check()
    finally:
        await connector.aclose()
    assert refused.value.message.count("client_secret secret") == 1
    assert "client_id setting and the client_secret secret" in refused.value.message
    assert "client credentials are invalid" in refused.value.message
    assert len(sandbox.front.requests("POST", "/access-token")) == 1
    async with hub.db.session() as session:
        row = await Tenant(session, uuid.UUID(acme.id)).get_connection(cid)
    assert row.status == "needs_reauth"
    for call in await remote_calls(hub, cid):
        assert wrong not in f"{call.url} {call.error}"
    assert wrong not in f"{refused.value.message} {row.status_reason}"


async def test_settings_that_cannot_work_are_refused_by_name(
    hub: Hub, acme: Account, sandbox: MyParcelCom
) -> None:
    for settings, words in (
        ({"shop_id": "shop-1"}, "shop_id setting 'shop-1' is not a shop UUID"),
        (
            {"sender_address": {"street_1": "Main 1", "country_code": "GB"}},
            "sender_address setting lacks city",
        ),
        ({"sender_address": "{oops"}, "sender_address setting is not valid JSON"),
    ):
        cid = await connect(hub, acme, sandbox, settings=settings)
        _row, ctx = await load_context(hub, uuid.UUID(acme.id), cid)
        with pytest.raises(ConfigurationError, match=words):
            MyParcelComConnector(ctx)
    cid = await connect(hub, acme, sandbox, settings={"shop_id": str(uuid.uuid4())})
    connector = await open_myparcelcom(hub, acme, cid)
    try:
        with pytest.raises(ConfigurationError, match=r"no shop .* check the connection's shop_id setting"):
            await connector.check()
    finally:
        await connector.aclose()


# -- labels ---------------------------------------------------------------------------------------------------------


async def test_buy_label_creates_a_registered_shipment_and_returns_its_pdf(
    mpc: MyParcelComConnector, sandbox: MyParcelCom, orders: Orders
) -> None:
    order = await orders()
    label = await mpc.buy_label(a_shipment(order), order, None, "crossdock-label-1")
    [post] = sandbox.front.requests("POST", "/shipments")
    assert post["idempotency-key"] == "crossdock-label-1"
    assert post["content-type"] == "application/vnd.api+json"
    record = sandbox.state.shipments[label.remote_id]
    a = record.attributes
    assert a["recipient_address"] == {
        "street_1": "Damrak 1", "street_2": "Floor 2", "postal_code": "1012 LG", "city": "Amsterdam",
        "country_code": "NL", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
        "phone_number": "+31 20 123 4567",
    }  # fmt: skip
    shop = sandbox.state.shops[sandbox.shop_id]["attributes"]
    assert a["sender_address"] == {k: v for k, v in shop["sender_address"].items() if v}
    assert a["return_address"] == {k: v for k, v in shop["return_address"].items() if v}
    # Grams and millimetres, rounded up: 1250.1 g, 100.5 mm.
    assert a["physical_properties"] == {"weight": 1251, "length": 300, "width": 200, "height": 101}
    assert a["items"] == [
        {"description": "Mug", "quantity": 2, "sku": "MUG-1", "item_value": {"amount": 1250, "currency": "GBP"},
         "item_weight": 401, "item_weight_unit": "g"},
    ]  # fmt: skip
    assert a["description"] == "2 x Mug"
    assert a["total_value"] == {"amount": 3500, "currency": "GBP"}
    assert (a["customer_reference"], a["channel"], a["tags"]) == (
        "crossdock-label-1",
        "crossdock-api",
        ["#1001"],
    )
    assert record.shop_id == sandbox.shop_id and record.service_code == "dpd-classic"
    assert record.status_code == "shipment-registered"
    assert label.tracking_number == a["tracking_code"] and label.tracking_url == a["tracking_url"]
    assert (label.carrier, label.service_code) == ("DPD", "dpd-classic")
    assert label.price == Money.from_minor(a["price"]["amount"], a["price"]["currency"])
    assert label.file_format is LabelFormat.PDF
    text = pypdf.PdfReader(io.BytesIO(label.file)).pages[0].extract_text()
    assert label.tracking_number and label.tracking_number in text
    assert label.raw["status"] == "shipment-registered"
    [file_get] = [h for m, p, h in sandbox.front.seen if m == "GET" and p.startswith("/files/")]
    assert file_get["accept"] == "application/pdf"


async def test_the_rates_service_wins_and_a_sender_address_setting_replaces_the_shops(
    hub: Hub, acme: Account, sandbox: MyParcelCom, orders: Orders
) -> None:
    sender = {"street_1": "Warehouse Road", "street_number": 5, "postal_code": "M1 1AA", "city": "Manchester",
              "country_code": "GB", "company": "Acme"}  # fmt: skip
    cid = await connect(hub, acme, sandbox, settings={"sender_address": sender, "default_service": ""})
    connector = await open_myparcelcom(hub, acme, cid)
    order = await orders()
    rate = Rate(carrier="Royal Mail", service_code="royal-mail-tracked-48", price=Money.of("7.95", "GBP"))
    try:
        label = await connector.buy_label(a_shipment(order), order, rate, "k-rate")
        with pytest.raises(PermanentError, match=r"needs a service .* default_service"):
            await connector.buy_label(a_shipment(order), order, None, "k-none")
    finally:
        await connector.aclose()
    record = sandbox.state.shipments[label.remote_id]
    assert record.service_code == "royal-mail-tracked-48"
    assert (label.carrier, label.service_code) == ("Royal Mail", "royal-mail-tracked-48")
    assert record.attributes["sender_address"] == sender
    # The shop's return address stays the return address.
    assert record.attributes["return_address"]["street_1"] != "Warehouse Road"
    assert len(sandbox.state.shipments) == 1


async def test_the_same_key_twice_makes_one_shipment(
    mpc: MyParcelComConnector, sandbox: MyParcelCom, orders: Orders
) -> None:
    order = await orders()
    first = await mpc.buy_label(a_shipment(order), order, None, "crossdock-label-twice")
    again = await mpc.buy_label(a_shipment(order), order, None, "crossdock-label-twice")
    assert again.remote_id == first.remote_id and again.tracking_number == first.tracking_number
    assert len(sandbox.state.shipments) == 1
    assert len(sandbox.front.requests("POST", "/shipments")) == 2
    assert sandbox.state.idempotency["crossdock-label-twice"].state == "done"


async def test_find_label_finds_the_keys_shipment_and_never_creates_one(
    mpc: MyParcelComConnector, sandbox: MyParcelCom, orders: Orders
) -> None:
    assert await mpc.find_label("crossdock-label-lost") is None
    order = await orders()
    bought = await mpc.buy_label(a_shipment(order), order, None, "crossdock-label-lost")
    found = await mpc.find_label("crossdock-label-lost")
    assert found is not None
    assert (found.remote_id, found.tracking_number, found.carrier) == (
        bought.remote_id, bought.tracking_number, "DPD",
    )  # fmt: skip
    assert found.file.startswith(b"%PDF")
    assert await mpc.find_label("crossdock-label-other") is None
    assert len(sandbox.front.requests("POST", "/shipments")) == 1
    assert len(sandbox.state.shipments) == 1


async def test_a_key_longer_than_a_reference_is_kept_as_its_hash(
    mpc: MyParcelComConnector, sandbox: MyParcelCom, orders: Orders
) -> None:
    key = "k" * 300
    order = await orders()
    bought = await mpc.buy_label(a_shipment(order), order, None, key)
    assert sandbox.state.shipments[bought.remote_id].attributes["customer_reference"].startswith("sha256:")
    found = await mpc.find_label(key)
    assert found is not None and found.remote_id == bought.remote_id


@pytest.mark.parametrize("knobs", [{"processing_s": "600"}])
async def test_a_shipment_still_processing_past_the_wait_is_retryable_and_found_later(
    mpc: MyParcelComConnector, sandbox: MyParcelCom, orders: Orders
) -> None:
    mpc.label_wait_s = 0.3
    order = await orders()
    with pytest.raises(RetryableError, match=r"still registering shipment .* shipment-processing") as waiting:
        await mpc.buy_label(a_shipment(order), order, None, "crossdock-label-slow")
    assert waiting.value.retry_after == 30.0
    with pytest.raises(RetryableError, match="still registering"):
        await mpc.find_label("crossdock-label-slow")
    [shipment_id] = sandbox.state.shipments
    await sandbox.advance(shipment_id)  # processing -> concept; its register_at is past, so it registers
    found = await mpc.find_label("crossdock-label-slow")
    assert found is not None and found.remote_id == shipment_id and found.tracking_number
    assert len(sandbox.state.shipments) == 1


async def test_a_refused_shipment_is_permanent_and_names_the_field(
    hub: Hub, acme: Account, sandbox: MyParcelCom, orders: Orders
) -> None:
    sender = {"street_1": "Warehouse Road", "city": "Manchester", "country_code": "gb"}
    cid = await connect(hub, acme, sandbox, settings={"sender_address": sender})
    connector = await open_myparcelcom(hub, acme, cid)
    order = await orders()
    try:
        with pytest.raises(PermanentError) as refused:
            await connector.buy_label(a_shipment(order), order, None, "crossdock-label-bad")
    finally:
        await connector.aclose()
    message = refused.value.message
    assert "HTTP 422" in message
    assert "/data/attributes/sender_address/country_code" in message
    assert "Does not match the regex pattern" in message
    assert "Check the connection's sender_address setting" in message
    assert sandbox.state.shipments == {}
    # A refusal does not use the key up: the corrected request may use it.
    assert "crossdock-label-bad" not in sandbox.state.idempotency


async def test_what_crossdock_cannot_send_is_refused_before_calling(
    mpc: MyParcelComConnector, sandbox: MyParcelCom, orders: Orders
) -> None:
    order = await orders()
    with pytest.raises(
        PermanentError, match=r"shipment.parcels: MyParcel.com registers one parcel per shipment"
    ):
        await mpc.buy_label(a_shipment(order, parcels=2), order, None, "k-two")
    nameless = await orders(
        customer=Customer(), shipping_address=Address(line1="Damrak 1", city="Amsterdam", country="NL")
    )
    with pytest.raises(PermanentError, match="needs the recipient's name"):
        await mpc.buy_label(a_shipment(nameless), nameless, None, "k-nameless")
    assert sandbox.front.requests("POST", "/shipments") == []


@pytest.mark.parametrize("knobs", [{"fail_registration": "1"}])
async def test_a_registration_the_carrier_refuses_is_permanent_with_its_words(
    mpc: MyParcelComConnector, sandbox: MyParcelCom, orders: Orders
) -> None:
    order = await orders()
    with pytest.raises(PermanentError) as refused:
        await mpc.buy_label(a_shipment(order), order, None, "crossdock-label-refused")
    [shipment_id] = sandbox.state.shipments
    assert f"shipment {shipment_id}" in refused.value.message
    assert "Carrier API Error: DPD rejected the shipment" in refused.value.message
    # It left no label: the engine may ask again with the same key.
    assert await mpc.find_label("crossdock-label-refused") is None


# -- void -----------------------------------------------------------------------------------------------------------


async def test_a_registered_label_is_voided_and_a_scanned_one_is_not(
    mpc: MyParcelComConnector, sandbox: MyParcelCom, orders: Orders
) -> None:
    order = await orders()
    label = await mpc.buy_label(a_shipment(order), order, None, "k-void")
    outcome = await mpc.void_label(label.remote_id)
    assert outcome.voided and "voided shipment" in outcome.message
    assert sandbox.status_of(label.remote_id) == "shipment-voided"
    [void] = sandbox.front.requests("POST", "/void-shipment")
    assert void["content-type"] == "application/vnd.api+json"
    again = await mpc.void_label(label.remote_id)
    assert again.voided and "voided already" in again.message
    # A voided shipment has no label left to find.
    assert await mpc.find_label("k-void") is None

    scanned = await mpc.buy_label(a_shipment(order), order, None, "k-scanned")
    await sandbox.advance(scanned.remote_id, "shipment-received-by-carrier")
    refused = await mpc.void_label(scanned.remote_id)
    assert not refused.voided
    assert "shipment-received-by-carrier" in refused.message
    assert "ask the carrier" in refused.message
    assert sandbox.status_of(scanned.remote_id) == "shipment-received-by-carrier"


# -- tracking -------------------------------------------------------------------------------------------------------


async def test_track_maps_every_status_of_the_shipment_oldest_first(
    mpc: MyParcelComConnector, sandbox: MyParcelCom, orders: Orders
) -> None:
    order = await orders()
    label = await mpc.buy_label(a_shipment(order), order, None, "k-track")
    for _ in range(4):
        await sandbox.advance(label.remote_id)
    shipment = a_shipment(order).model_copy(update={"tracking_number": label.tracking_number})
    events = await mpc.track(shipment)
    assert [(e.raw_status, e.status) for e in events] == [
        ("shipment-processing", TrackingStatus.PRE_TRANSIT),
        ("shipment-concept", TrackingStatus.PRE_TRANSIT),
        ("shipment-registered", TrackingStatus.PRE_TRANSIT),
        ("shipment-received-by-carrier", TrackingStatus.IN_TRANSIT),
        ("shipment-at-sorting", TrackingStatus.IN_TRANSIT),
        ("shipment-with-courier", TrackingStatus.OUT_FOR_DELIVERY),
        ("shipment-delivered", TrackingStatus.DELIVERED),
    ]
    assert events[-1].description == "The shipment was delivered successfully."
    assert all(e.occurred_at.tzinfo is not None for e in events)
    with pytest.raises(PermanentError, match="no shipment with the tracking code NOPE"):
        await mpc.track(shipment.model_copy(update={"tracking_number": "NOPE"}))
    with pytest.raises(PermanentError, match="no tracking number yet"):
        await mpc.track(a_shipment(order))


# -- faults ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("5xx=1", "HTTP 500"),
        ("timeout=1,timeout_s=0.05", "HTTP 504"),
        ("malformed=1", "without an access_token"),
    ],
)
async def test_sandbox_faults_are_retryable(
    hub: Hub, acme: Account, orders: Orders, spec: str, words: str
) -> None:
    app = create_app(SandboxConfig(seed=7, faults=FaultSpec.parse(spec), extra={"processing_s": "0"}))
    with run_in_thread(app) as url:
        remote = MyParcelCom(url, Front(app), app.state.sandbox)
        connector = await open_myparcelcom(hub, acme, await connect(hub, acme, remote))
        order = await orders()
        try:
            with pytest.raises(RetryableError) as failed:
                await connector.buy_label(a_shipment(order), order, None, "k-fault")
        finally:
            await connector.aclose()
            await remote.admin.aclose()
    assert words in failed.value.message
    assert app.state.sandbox.shipments == {}


async def test_a_failure_after_the_shipment_was_made_is_retried_with_the_same_key(
    mpc: MyParcelComConnector, sandbox: MyParcelCom, orders: Orders
) -> None:
    """The first POST's answer is lost (the sandbox made the shipment, then a 5xx reached us): the retry under
    the same Idempotency-Key gets the stored answer, not a second shipment."""
    await mpc.check()  # the token first, so the fault below hits the POST
    original = sandbox.front.app

    class LoseOnce:
        lost = False

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if (
                scope["type"] == "http"
                and scope["method"] == "POST"
                and scope["path"] == "/shipments"
                and not self.lost
            ):
                self.lost = True

                async def discard(_message: Any) -> None:
                    return None

                await original(scope, receive, discard)
                await send({"type": "http.response.start", "status": 502, "headers": []})
                await send({"type": "http.response.body", "body": b"<html>502 Bad Gateway</html>"})
                return
            await original(scope, receive, send)

    sandbox.front.app = LoseOnce()
    order = await orders()
    label = await mpc.buy_label(a_shipment(order), order, None, "k-lost-answer")
    assert len(sandbox.front.requests("POST", "/shipments")) == 2
    assert list(sandbox.state.shipments) == [label.remote_id]

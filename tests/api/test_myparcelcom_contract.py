"""The MyParcel.com integration contract (PROTOCOLS.md section 9), served by crossdock's API on a real loopback
socket and driven by the sandbox's platform simulator, which checks every answer against the contract."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crossdock import model as m
from crossdock.api.app import create_app
from crossdock.api.routes_myparcelcom import PREFIX
from crossdock.config import Settings
from crossdock.engine import sync
from crossdock.engine.connect import connect, set_status
from crossdock.engine.fulfillments import PUSH_JOB
from crossdock.hub import Hub
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig
from crossdock.sandbox.common.server import run_in_thread
from crossdock.sandbox.myparcelcom.platform import ContractViolation, MyParcelComPlatform, PageHandler
from crossdock.store import repo
from crossdock.store import tables as t
from tests.connectors.test_myparcelcom_client import CLIENT_SECRET as MPC_SECRET
from tests.connectors.test_myparcelcom_client import Front, MyParcelCom
from tests.connectors.test_myparcelcom_client import connect as connect_mpc
from tests.engine.fulfil_support import serve_channel
from tests.engine.support import eventually, fast, running_worker, timeline
from tests.support import Tenant, new_account

SHOP_A = "3f0e7d2c-8a41-4c5b-9e6f-0a1b2c3d4e5f"
SHOP_B = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
SECRET_A = "mpc-client-secret-of-acme"
SECRET_B = "mpc-client-secret-of-globex"
DONE = "https://platform.example/shops/done"
JANUARY = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def served(hub: Hub) -> Iterator[str]:
    """crossdock's API on a loopback port. The server gets its own Hub on the same database and vault (its
    connections live on the server thread's event loop); public_url is where it listens, so the links it
    hands out lead back to it."""
    server_hub = Hub.from_settings(hub.settings.model_copy())
    with run_in_thread(create_app(server_hub, dispose_on_shutdown=True)) as url:
        server_hub.settings.public_url = url
        yield url + PREFIX


@pytest.fixture
async def platform(served: str) -> AsyncIterator[MyParcelComPlatform]:
    async with MyParcelComPlatform(served, channel="crossdock", timeout_s=10.0) as simulator:
        yield simulator


@dataclass
class Shop:
    account_id: uuid.UUID
    shop_id: str
    secret: str
    connection_id: uuid.UUID


async def add_shop(hub: Hub, name: str, shop_id: str, secret: str) -> Shop:
    account = await new_account(hub, name)
    connected = await connect(
        hub,
        uuid.UUID(account.id),
        connector="myparcelcom",
        name=f"{name} MyParcel.com",
        settings={"client_id": f"{name.lower()}-client", "shop_id": shop_id},
        secrets={"client_secret": secret},
        # The contract is MyParcel.com calling crossdock; crossdock never calls MyParcel.com's API here.
        check=False,
    )
    return Shop(uuid.UUID(account.id), shop_id, secret, connected.connection.id)


def consent_with(secret: str) -> PageHandler:
    """The merchant on crossdock's consent page: fills in the client secret and submits the form."""

    async def on_page(page: httpx.Response) -> httpx.Request:
        assert page.status_code == 200 and "client_secret" in page.text
        token = re.search(r'name="session_token" value="([^"]+)"', page.text)
        assert token is not None
        return httpx.Request(
            "POST", page.request.url, data={"session_token": token.group(1), "client_secret": secret}
        )

    return on_page


async def authorize(platform: MyParcelComPlatform, shop: Shop) -> None:
    landed = await platform.authorize(shop.shop_id, DONE, on_page=consent_with(shop.secret))
    assert str(landed) == DONE


async def add_order(
    hub: Hub,
    account_id: uuid.UUID,
    number: str,
    *,
    placed_at: datetime = JANUARY,
    status: m.OrderStatus = m.OrderStatus.PAID,
    address: bool = True,
    connection_id: uuid.UUID | None = None,
    tags: tuple[str, ...] = (),
) -> uuid.UUID:
    order = m.Order(
        status=status,
        currency="EUR",
        customer=m.Customer(name="Ana Ruiz", email="ana@example.com", phone="+34 912 345 678"),
        shipping_address=m.Address(
            first_name="Ana",
            last_name="Ruiz",
            line1="Calle Mayor 1",
            line2="2º izquierda",
            city="Madrid",
            postal_code="28013",
            subdivision="M",
            country="ES",
        )
        if address
        else None,
        lines=[
            m.OrderLine(
                sku="MUG-1",
                title="Mug",
                quantity=2,
                unit_price=m.Money.of("12.50", "EUR"),
                weight=m.Weight.grams("350.4"),
                external_id=f"{number}-line-1",
            ),
            m.OrderLine(sku="GIFT", title="Gift card", quantity=1, requires_shipping=False),
        ],
        totals=m.Totals(total=m.Money.of("29.99", "EUR")),
        external_number=number,
        external_id=f"ext-{number}" if connection_id else None,
        connection_id=connection_id,
        placed_at=placed_at,
        tags=list(tags),
    )
    async with hub.db.transaction() as session:
        row = await repo.Tenant(session, account_id).create_order(order)
    return row.id


async def pull(platform: MyParcelComPlatform, shop: Shop, **params: str) -> httpx.Response:
    return await platform.client.get(platform.url("/shipments"), params={"shop_id": shop.shop_id, **params})


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/vnd.api+json"), response.text
    [error] = response.json()["errors"]
    assert error["status"] == str(response.status_code)
    return dict(error)


# -- health, refusals and authorization -------------------------------------------------------------------------
async def test_healthz_answers_200(platform: MyParcelComPlatform) -> None:
    await platform.healthz()
    root = await platform.client.get(platform.url("/"))
    assert root.status_code == 200 and root.json()["meta"]["status"] == "OK"


async def test_refusals_are_400_422_401_as_documented(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    # The simulator checks 400 (no shop_id), 422 (no UUID) and 401 (no token), each a JSON:API error.
    await platform.check_refusals(shop.shop_id)
    missing = await platform.client.get(platform.url("/shipments"))
    assert error_of(missing)["source"] == {"parameter": "shop_id"}
    not_uuid = await platform.client.get(platform.url("/shipments"), params={"shop_id": "1234567"})
    assert "not a valid UUID" in error_of(not_uuid)["detail"]
    unauthorized = await pull(platform, shop)
    assert unauthorized.status_code == 401
    assert "has not authorized crossdock yet" in error_of(unauthorized)["detail"]


async def test_unknown_shop_is_401_naming_the_fix(platform: MyParcelComPlatform) -> None:
    stranger = str(uuid.uuid4())
    await platform.check_refusals(stranger)
    response = await platform.client.get(platform.url("/shipments"), params={"shop_id": stranger})
    assert response.status_code == 401
    assert f"add a MyParcel.com connection with shop_id {stranger}" in error_of(response)["detail"]


async def test_init_auth_for_a_shop_without_connection_is_404(platform: MyParcelComPlatform) -> None:
    response = await platform.client.post(
        platform.url("/public/init-auth"), json={"data": {"shop_id": str(uuid.uuid4()), "redirect_uri": DONE}}
    )
    assert response.status_code == 404
    assert error_of(response)["source"] == {"pointer": "/data/shop_id"}


async def test_init_auth_refuses_missing_and_malformed_input(hub: Hub, platform: MyParcelComPlatform) -> None:
    await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    cases = [
        ({"data": {"redirect_uri": DONE}}, 400, "/data/shop_id"),
        ({"data": {"shop_id": "shop-7", "redirect_uri": DONE}}, 422, "/data/shop_id"),
        ({"data": {"shop_id": SHOP_A}}, 400, "/data/redirect_uri"),
        ({"data": {"shop_id": SHOP_A, "redirect_uri": "javascript:alert(1)"}}, 422, "/data/redirect_uri"),
    ]
    for body, status, pointer in cases:
        response = await platform.client.post(platform.url("/public/init-auth"), json=body)
        assert response.status_code == status, body
        assert error_of(response)["source"] == {"pointer": pointer}


async def test_authorization_links_the_shop_and_never_shows_the_secret(
    hub: Hub, platform: MyParcelComPlatform
) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    link = await platform.init_auth(shop.shop_id, DONE)
    assert link.startswith(platform.url("/public/authorize?session_token="))
    page = await platform.client.get(link)
    assert page.status_code == 200 and SECRET_A not in page.text and shop.shop_id in page.text
    await authorize(platform, shop)
    response = await pull(platform, shop)
    assert response.status_code == 200 and SECRET_A not in response.text


async def test_wrong_client_secret_is_401_and_the_shop_stays_unauthorized(
    hub: Hub, platform: MyParcelComPlatform
) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    with pytest.raises(ContractViolation, match="stopped before reaching redirect_uri") as refused:
        await platform.authorize(shop.shop_id, DONE, on_page=consent_with("guessed-secret"))
    assert refused.value.status == 401
    assert (await pull(platform, shop)).status_code == 401


async def test_a_session_is_used_up_after_five_wrong_secrets(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    link = await platform.init_auth(shop.shop_id, DONE)
    token = httpx.URL(link).params["session_token"]
    for attempt in range(5):
        wrong = await platform.client.post(
            link, data={"session_token": token, "client_secret": f"no-{attempt}"}
        )
        assert wrong.status_code == 401
    right = await platform.client.post(link, data={"session_token": token, "client_secret": SECRET_A})
    assert right.status_code == 400 and "used up" in error_of(right)["detail"]


async def test_authenticate_cannot_be_replayed_or_forged(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    link = await platform.init_auth(shop.shop_id, DONE)
    token = httpx.URL(link).params["session_token"]
    forged = await platform.client.get(
        platform.url("/public/authenticate"), params={"session_token": token, "code": "made-up"}
    )
    assert forged.status_code == 400 and error_of(forged)["source"] == {"parameter": "code"}
    # The forged attempt used the session up: consenting now is refused too.
    late = await platform.client.post(link, data={"session_token": token, "client_secret": SECRET_A})
    assert late.status_code == 400
    assert (await pull(platform, shop)).status_code == 401

    link = await platform.init_auth(shop.shop_id, DONE)
    token = httpx.URL(link).params["session_token"]
    consented = await platform.client.post(link, data={"session_token": token, "client_secret": SECRET_A})
    assert consented.status_code == 303
    callback = consented.headers["location"]
    assert (await platform.client.get(callback)).headers["location"] == DONE
    replay = await platform.client.get(callback)
    assert replay.status_code == 400 and "used up" in error_of(replay)["detail"]


# -- GET /shipments --------------------------------------------------------------------------------------------
async def test_pages_and_meta_match_the_totals(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    for i in range(7):
        await add_order(hub, shop.account_id, f"#10{i:02d}", placed_at=JANUARY + timedelta(hours=i))
    await authorize(platform, shop)

    pages = [
        page
        async for page in platform.iter_shipment_pages(shop.shop_id, date(2024, 1, 1), date(2024, 1, 31), 3)
    ]
    assert [len(p) for p in pages] == [3, 3, 1]
    references = [s["attributes"]["customer_reference"] for page in pages for s in page]
    assert references == [f"#10{i:02d}" for i in range(7)]  # oldest first, none twice

    window = {"filter[start_date]": "2024-01-01", "filter[end_date]": "2024-01-31", "page[size]": "3"}
    first = (await pull(platform, shop, **window)).json()
    assert first["meta"] == {"total_records": 7, "total_pages": 3}
    assert "prev" not in first["links"] and "page%5Bnumber%5D=2" in first["links"]["next"]
    assert "page%5Bnumber%5D=3" in first["links"]["last"]
    last = (await pull(platform, shop, **window, **{"page[number]": "3"})).json()
    assert (
        len(last["data"]) == 1
        and "next" not in last["links"]
        and "page%5Bnumber%5D=2" in last["links"]["prev"]
    )
    beyond = (await pull(platform, shop, **window, **{"page[number]": "4"})).json()
    assert beyond["data"] == [] and beyond["meta"] == {"total_records": 7, "total_pages": 3}
    whole = (await pull(platform, shop, **{**window, "page[size]": "10"})).json()
    assert len(whole["data"]) == 7 and whole["meta"] == {"total_records": 7, "total_pages": 1}
    default = (await pull(platform, shop)).json()
    assert len(default["data"]) == 7 and default["meta"]["total_pages"] == 1  # page[size] 30


async def test_no_orders_is_an_empty_first_page(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    await authorize(platform, shop)
    assert await platform.list_shipments(shop.shop_id, date(2024, 1, 1), date(2024, 1, 31)) == []
    body = (await pull(platform, shop)).json()
    assert body["data"] == [] and body["meta"] == {"total_records": 0, "total_pages": 0}


async def test_paging_parameters_are_checked(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    await authorize(platform, shop)
    for name, value in (
        ("page[number]", "0"),
        ("page[size]", "ten"),
        ("page[size]", "501"),
        ("filter[start_date]", "10/01/2024"),
        ("filter[end_date]", "2024-02-30"),
    ):
        response = await pull(platform, shop, **{name: value})
        assert response.status_code == 422, (name, value)
        assert error_of(response)["source"] == {"parameter": name}
    backwards = await pull(
        platform, shop, **{"filter[start_date]": "2024-02-01", "filter[end_date]": "2024-01-01"}
    )
    assert backwards.status_code == 422


async def test_date_filters_take_whole_days_with_the_end_day_included(
    hub: Hub, platform: MyParcelComPlatform
) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    for number, day in (("#1", 10), ("#2", 13), ("#3", 16)):
        await add_order(hub, shop.account_id, number, placed_at=datetime(2024, 1, day, 23, 59, tzinfo=UTC))
    await add_order(hub, shop.account_id, "#4", placed_at=datetime(2024, 1, 17, 0, 0, tzinfo=UTC))
    await authorize(platform, shop)

    def refs(shipments: list[dict[str, Any]]) -> list[str]:
        return [s["attributes"]["customer_reference"] for s in shipments]

    # The simulator also checks that every created_at lies inside the filter.
    assert refs(await platform.list_shipments(shop.shop_id, date(2024, 1, 10), date(2024, 1, 13))) == [
        "#1",
        "#2",
    ]
    assert refs(await platform.list_shipments(shop.shop_id, date(2024, 1, 16), date(2024, 1, 16))) == ["#3"]
    assert await platform.list_shipments(shop.shop_id, date(2024, 1, 14), date(2024, 1, 15)) == []
    assert refs(await platform.list_shipments(shop.shop_id, date(2024, 1, 1), date(2024, 12, 31))) == [
        "#1",
        "#2",
        "#3",
        "#4",
    ]
    since = (await pull(platform, shop, **{"filter[start_date]": "2024-01-16"})).json()
    assert refs(since["data"]) == ["#3", "#4"]


async def test_only_orders_ready_to_ship_are_served_mapped_as_shipments(
    hub: Hub, platform: MyParcelComPlatform
) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    await add_order(hub, shop.account_id, "#PAID", tags=("gift", "express"))
    await add_order(hub, shop.account_id, "#READY", status=m.OrderStatus.READY_TO_SHIP)
    for number, status in (
        ("#PENDING", m.OrderStatus.PENDING),
        ("#CANCELLED", m.OrderStatus.CANCELLED),
        ("#SHIPPED", m.OrderStatus.SHIPPED),
        ("#REFUNDED", m.OrderStatus.REFUNDED),
    ):
        await add_order(hub, shop.account_id, number, status=status)
    await add_order(hub, shop.account_id, "#NOWHERE", address=False)
    await authorize(platform, shop)

    shipments = await platform.list_shipments(shop.shop_id, date(2024, 1, 1), date(2024, 1, 31))
    by_reference = {s["attributes"]["customer_reference"]: s for s in shipments}
    assert sorted(by_reference) == ["#PAID", "#READY"]
    paid = by_reference["#PAID"]
    assert "id" not in paid  # the platform gives its own (marketplace-commons Shipment)
    assert paid["relationships"] == {"shop": {"data": {"type": "shops", "id": SHOP_A}}}
    assert paid["attributes"] == {
        "created_at": int(JANUARY.timestamp()),
        "recipient_address": {
            "street_1": "Calle Mayor 1",
            "street_2": "2º izquierda",
            "postal_code": "28013",
            "city": "Madrid",
            "state_code": "M",
            "country_code": "ES",
            "first_name": "Ana",
            "last_name": "Ruiz",
            "email": "ana@example.com",
            "phone_number": "+34912345678",
        },
        "description": "2 x Mug",
        "customer_reference": "#PAID",
        "channel": "crossdock",
        "total_value": {"amount": 2999, "currency": "EUR"},
        "price": {"amount": 2999, "currency": "EUR"},
        # Two mugs of 350.4 g: 700.8 g, rounded up to whole grams; the gift card does not ship.
        "physical_properties": {"weight": 701},
        "items": [
            {
                "sku": "MUG-1",
                "description": "Mug",
                "quantity": 2,
                "item_value": {"amount": 1250, "currency": "EUR"},
                "item_weight": 351,
            }
        ],
        "tags": ["gift", "express"],
    }


async def test_a_shop_sees_only_its_own_accounts_orders(hub: Hub, platform: MyParcelComPlatform) -> None:
    acme = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    globex = await add_shop(hub, "Globex", SHOP_B, SECRET_B)
    await add_order(hub, acme.account_id, "#A-1")
    await add_order(hub, acme.account_id, "#A-2")
    await add_order(hub, globex.account_id, "#B-1")
    # Globex cannot link Acme's shop with its own secret, nor Acme's shop with a guess.
    with pytest.raises(ContractViolation) as refused:
        await platform.authorize(acme.shop_id, DONE, on_page=consent_with(SECRET_B))
    assert refused.value.status == 401
    await authorize(platform, acme)
    await authorize(platform, globex)

    january = (date(2024, 1, 1), date(2024, 1, 31))
    seen_a = await platform.list_shipments(acme.shop_id, *january)
    seen_b = await platform.list_shipments(globex.shop_id, *january)
    assert sorted(s["attributes"]["customer_reference"] for s in seen_a) == ["#A-1", "#A-2"]
    assert [s["attributes"]["customer_reference"] for s in seen_b] == ["#B-1"]

    # Globex's shop reporting a status for Acme's order number finds no such order in Globex's account.
    stolen = {**seen_a[0], "id": str(uuid.uuid4())}
    stolen["relationships"] = {"shop": {"data": {"type": "shops", "id": globex.shop_id}}}
    with pytest.raises(ContractViolation) as not_found:
        await platform.post_status_callback(with_tracking(stolen, "TRACK-STOLEN"), "shipment-registered")
    assert not_found.value.status == 404
    async with hub.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(t.Fulfillment)) == 0


async def test_a_shop_named_by_two_accounts_is_refused(hub: Hub, platform: MyParcelComPlatform) -> None:
    await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    await add_shop(hub, "Globex", SHOP_A, SECRET_B)
    response = await platform.client.post(
        platform.url("/public/init-auth"), json={"data": {"shop_id": SHOP_A, "redirect_uri": DONE}}
    )
    assert response.status_code == 409 and "more than one crossdock account" in error_of(response)["detail"]


async def test_deleting_the_connection_unlinks_the_shop(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    await authorize(platform, shop)
    assert (await pull(platform, shop)).status_code == 200
    async with hub.db.transaction() as session:
        await repo.Tenant(session, shop.account_id).delete_connection(shop.connection_id)
    response = await pull(platform, shop)
    assert response.status_code == 401 and "unknown to crossdock" in error_of(response)["detail"]


async def test_a_paused_connection_serves_nothing_until_resumed(
    hub: Hub, platform: MyParcelComPlatform
) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    await add_order(hub, shop.account_id, "#P-1")
    await authorize(platform, shop)
    await set_status(hub, shop.account_id, shop.connection_id, "paused")
    paused = await pull(platform, shop)
    assert (
        paused.status_code == 401 and f"connections resume {shop.connection_id}" in error_of(paused)["detail"]
    )
    await set_status(hub, shop.account_id, shop.connection_id, "active")
    assert len((await pull(platform, shop)).json()["data"]) == 1


# -- POST /callback/shipment-statuses --------------------------------------------------------------------------
def with_tracking(shipment: dict[str, Any], code: str | None) -> dict[str, Any]:
    """The shipment as the platform holds it after registration: its own id, a tracking code and URL."""
    attributes = dict(shipment["attributes"])
    if code:
        attributes.update(tracking_code=code, tracking_url=f"https://tracking.myparcel.com/{code}")
    return {**shipment, "id": shipment.get("id") or str(uuid.uuid4()), "attributes": attributes}


async def imported(platform: MyParcelComPlatform, shop: Shop, reference: str) -> dict[str, Any]:
    shipments = await platform.list_shipments(shop.shop_id, date(2024, 1, 1), date(2024, 1, 31))
    [shipment] = [s for s in shipments if s["attributes"]["customer_reference"] == reference]
    return {**shipment, "id": str(uuid.uuid4())}


async def order_state(hub: Hub, account_id: uuid.UUID, order_id: uuid.UUID) -> dict[str, Any]:
    async with hub.db.session() as session:
        tenant = repo.Tenant(session, account_id)
        order = await tenant.get_order(order_id)
        fulfillments = (
            await session.scalars(tenant.scoped(t.Fulfillment).where(t.Fulfillment.order_id == order_id))
        ).all()
        jobs = await session.scalar(
            select(func.count()).select_from(t.Job).where(t.Job.order_id == order_id, t.Job.kind == PUSH_JOB)
        )
        events = [e.kind for e in await tenant.timeline(order_id)]
        tracking = (
            await session.scalars(
                select(t.TrackingEvent.raw_status)
                .join(t.Shipment, t.Shipment.id == t.TrackingEvent.shipment_id)
                .where(t.Shipment.order_id == order_id)
                .order_by(t.TrackingEvent.occurred_at)
            )
        ).all()
    return {
        "status": order.status,
        "fulfillments": [(f.tracking_number, f.tracking_url, f.status) for f in fulfillments],
        "push_jobs": jobs,
        "events": events,
        "tracking": list(tracking),
    }


async def test_a_tracked_status_records_the_fulfillment_once(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    async with hub.db.transaction() as session:
        shopify = await repo.Tenant(session, shop.account_id).create_connection(
            connector="shopify",
            name="Acme Shopify",
            vault=hub.vault,
            settings={"shop": "acme.myshopify.com"},
            secrets={"access_token": "shpat_test"},
        )
    order_id = await add_order(hub, shop.account_id, "#1001", connection_id=shopify.id)
    await authorize(platform, shop)
    shipment = with_tracking(await imported(platform, shop, "#1001"), "DPD0123456789")

    first = await platform.post_status_callback(shipment, "shipment-registered")
    assert first.status_code == 200
    assert first.json()["meta"] == {
        "status": "shipment-registered",
        "order_id": str(order_id),
        "result": "recorded",
        "fulfillment": "recorded",
    }
    after_first = await order_state(hub, shop.account_id, order_id)
    assert after_first["status"] == "shipped"
    assert after_first["fulfillments"] == [
        ("DPD0123456789", "https://tracking.myparcel.com/DPD0123456789", "pending")
    ]
    assert after_first["push_jobs"] == 1  # to Shopify, by engine.fulfillments
    assert after_first["events"].count("myparcelcom.status") == 1

    again = await platform.post_status_callback(shipment, "shipment-registered")
    assert again.json()["meta"]["result"] == "already recorded"
    assert await order_state(hub, shop.account_id, order_id) == after_first

    await platform.post_status_callback(shipment, "shipment-with-courier")
    await platform.post_status_callback(shipment, "shipment-delivered")
    final = await order_state(hub, shop.account_id, order_id)
    assert final["status"] == "delivered"
    assert final["fulfillments"] == after_first["fulfillments"] and final["push_jobs"] == 1
    assert final["tracking"] == ["shipment-registered", "shipment-with-courier", "shipment-delivered"]
    assert final["events"].count("myparcelcom.status") == 3


async def test_a_new_tracking_number_updates_the_fulfillment(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    order_id = await add_order(hub, shop.account_id, "#1002")
    await authorize(platform, shop)
    shipment = await imported(platform, shop, "#1002")
    await platform.post_status_callback(with_tracking(shipment, "OLD-1"), "shipment-registered")
    response = await platform.post_status_callback(
        with_tracking(shipment, "NEW-2"), "shipment-received-by-carrier"
    )
    assert response.json()["meta"]["fulfillment"] == "tracking updated"
    state = await order_state(hub, shop.account_id, order_id)
    assert state["fulfillments"] == [("NEW-2", "https://tracking.myparcel.com/NEW-2", "local")]


async def test_statuses_without_tracking_go_on_the_timeline(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    order_id = await add_order(hub, shop.account_id, "#1003")
    await authorize(platform, shop)
    shipment = await imported(platform, shop, "#1003")
    await platform.post_status_callback(shipment, "shipment-concept")
    failed = await platform.post_status_callback(shipment, "shipment-registration-failed")
    assert "fulfillment" not in failed.json()["meta"]
    state = await order_state(hub, shop.account_id, order_id)
    assert state["status"] == "paid" and state["fulfillments"] == [] and state["push_jobs"] == 0
    assert state["tracking"] == ["shipment-concept", "shipment-registration-failed"]
    async with hub.db.session() as session:
        events = await repo.Tenant(session, shop.account_id).timeline(order_id)
    statuses = [(e.summary, e.severity) for e in events if e.kind == "myparcelcom.status"]
    assert statuses == [
        ("MyParcel.com shipment Concept (shipment-concept)", "info"),
        ("MyParcel.com shipment Registration failed (shipment-registration-failed)", "warning"),
    ]


async def test_a_label_without_tracking_ships_the_order(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    order_id = await add_order(hub, shop.account_id, "#1004")
    await authorize(platform, shop)
    shipment = await imported(platform, shop, "#1004")
    await platform.post_status_callback(shipment, "shipment-created-without-tracking")
    state = await order_state(hub, shop.account_id, order_id)
    assert state["status"] == "shipped" and state["fulfillments"] == [(None, None, "local")]


async def test_a_cancelled_order_is_not_shipped_but_noted(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    order_id = await add_order(hub, shop.account_id, "#1005")
    await authorize(platform, shop)
    shipment = await imported(platform, shop, "#1005")
    async with hub.db.transaction() as session:
        tenant = repo.Tenant(session, shop.account_id)
        await tenant.transition_order(await tenant.get_order(order_id), m.OrderStatus.CANCELLED)
    response = await platform.post_status_callback(with_tracking(shipment, "LATE-1"), "shipment-registered")
    assert response.json()["meta"]["fulfillment"] == "refused"
    state = await order_state(hub, shop.account_id, order_id)
    assert state["status"] == "cancelled" and state["fulfillments"] == []
    assert "myparcelcom.not_fulfilled" in state["events"]


async def test_callback_refusals(hub: Hub, platform: MyParcelComPlatform) -> None:
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    await add_order(hub, shop.account_id, "#1006")
    await authorize(platform, shop)
    shipment = await imported(platform, shop, "#1006")

    other_channel = {**shipment, "attributes": {**shipment["attributes"], "channel": "someone-else"}}
    assert (await platform.post_status_callback(other_channel, "shipment-registered")).status_code == 204

    unknown = {**shipment, "attributes": {**shipment["attributes"], "customer_reference": "#NOPE"}}
    with pytest.raises(ContractViolation) as not_found:
        await platform.post_status_callback(unknown, "shipment-registered")
    assert not_found.value.status == 404

    stranger = {**shipment, "relationships": {"shop": {"data": {"type": "shops", "id": str(uuid.uuid4())}}}}
    with pytest.raises(ContractViolation) as unauthorized:
        await platform.post_status_callback(stranger, "shipment-registered")
    assert unauthorized.value.status == 401

    for shop_id, status in ((None, 400), ("1234567", 422)):
        broken = {**shipment, "relationships": {"shop": {"data": {"type": "shops", "id": shop_id}}}}
        response = await platform.client.post(
            platform.url("/callback/shipment-statuses"),
            json=platform.status_document(broken, "shipment-registered"),
        )
        assert response.status_code == status
        assert error_of(response)["source"] == {"pointer": "/included/1/relationships/shop/data/id"}

    document = platform.status_document(shipment, "shipment-registered")
    document["included"][0]["attributes"]["code"] = "shipment-teleported"
    response = await platform.client.post(platform.url("/callback/shipment-statuses"), json=document)
    assert response.status_code == 422 and error_of(response)["source"] == {
        "pointer": "/included/0/attributes/code"
    }
    not_json = await platform.client.post(platform.url("/callback/shipment-statuses"), content=b"{")
    assert not_json.status_code == 400 and "not valid JSON" in error_of(not_json)["detail"]


@dataclass
class ContractEbay:
    """An eBay order pulled from the eBay sandbox and served by the contract to the MyParcel.com platform, whose
    API (the MyParcel.com sandbox) the shop's connection reaches with its own credentials."""

    account: Tenant
    order_id: uuid.UUID
    external_id: str
    served: dict[str, Any]
    ebay: Any
    mpc_url: str
    mpc_id: uuid.UUID
    state: Any


@asynccontextmanager
async def contract_ebay_order(hub: Hub, platform: MyParcelComPlatform) -> AsyncIterator[ContractEbay]:
    account = await new_account(hub, "Acme")
    account_id = uuid.UUID(account.id)
    app = create_sandbox_app("myparcelcom", SandboxConfig(seed=7, extra={"processing_s": "0"}))
    with run_in_thread(app) as mpc_url:
        mpc = MyParcelCom(mpc_url, Front(app), app.state.sandbox)
        mpc_id = await connect_mpc(hub, account, mpc)
        landed = await platform.authorize(mpc.shop_id, DONE, on_page=consent_with(MPC_SECRET))
        assert str(landed) == DONE
        async with serve_channel("ebay") as ebay:
            ebay_id = await ebay.connect(hub, account_id)
            run = await sync.run_pull(hub, account_id, ebay_id, since=datetime.now(UTC) - timedelta(days=90))
            assert run.status == "succeeded" and run.created > 0, run.error
            async with hub.db.session() as session:
                rows = (
                    await session.execute(
                        select(t.Order.id, t.Order.external_id, t.Order.external_number).where(
                            t.Order.connection_id == ebay_id, t.Order.status == "paid"
                        )
                    )
                ).all()
            order_id, external_id, number = next(
                r for r in rows if r.external_id and ebay.can_ship(r.external_id)
            )
            today = datetime.now(UTC).date()
            listed = await platform.list_shipments(mpc.shop_id, today - timedelta(days=90), today)
            [served] = [s for s in listed if s["attributes"]["customer_reference"] == number]
            yield ContractEbay(
                account, order_id, external_id, served, ebay, mpc_url, mpc_id, app.state.sandbox
            )
        await mpc.admin.aclose()


async def until_on_ebay(hub: Hub, case: ContractEbay) -> list[Any]:
    """Run the worker until eBay has a shipping fulfillment for the order, or its push failed."""

    async def settled() -> bool:
        if await case.ebay.shipments(case.external_id):
            return True
        async with hub.db.session() as session:
            rows = (
                await session.scalars(select(t.Fulfillment).where(t.Fulfillment.order_id == case.order_id))
            ).all()
        return any(row.status == "failed" for row in rows)

    async with running_worker(fast(hub), run_periodic=False):
        await eventually(settled, within_s=60)
    return list(await case.ebay.shipments(case.external_id))


async def the_fulfillment(hub: Hub, order_id: uuid.UUID) -> t.Fulfillment:
    async with hub.db.session() as session:
        (row,) = (
            await session.scalars(select(t.Fulfillment).where(t.Fulfillment.order_id == order_id))
        ).all()
    return row


async def test_an_ebay_order_shipped_through_the_contract_reaches_ebay_with_the_carrier_myparcelcom_chose(
    hub: Hub, platform: MyParcelComPlatform
) -> None:
    """The contract's callback names a shipment and its tracking code, never its carrier, and eBay takes a
    tracking number only with its carrier. The fulfillment's push asks MyParcel.com's API for the shipment's
    service and that service's carrier (the connection's own credentials), keeps it, and confirms the shipment
    on eBay with eBay's code for that carrier."""
    async with contract_ebay_order(hub, platform) as case:
        # MyParcel.com's platform imports the listed shipment and registers it with DPD.
        record = case.state.import_shipment(case.served, "dpd-classic")
        tracking = record.attributes["tracking_code"]
        called = await platform.post_status_callback(
            case.state.shipment_resource(record, case.mpc_url), "shipment-registered"
        )
        assert called.json()["meta"]["fulfillment"] == "recorded"
        remote = await until_on_ebay(hub, case)

    assert [(s.tracking_number, s.carrier) for s in remote] == [(tracking, "DPD")]
    fulfillment = await the_fulfillment(hub, case.order_id)
    async with hub.db.session() as session:
        (shipment,) = (
            await session.scalars(select(t.Shipment).where(t.Shipment.order_id == case.order_id))
        ).all()
    assert fulfillment.carrier == shipment.carrier == "DPD"
    assert fulfillment.status == "pushed" and shipment.connection_id == case.mpc_id
    learned = [e for e in await timeline(hub, case.order_id) if e.kind == "fulfillment.carrier_learned"]
    assert [e.summary for e in learned] == [f"MyParcel.com says shipment {record.id} goes with DPD"]


async def test_a_carrier_myparcelcom_cannot_name_is_said_with_what_to_do_and_can_be_given_by_hand(
    hub: Hub, platform: MyParcelComPlatform, client: httpx.AsyncClient
) -> None:
    """A shipment MyParcel.com's API does not know (404): the timeline says the carrier is unknown and how to
    give it; eBay refuses the tracking without a carrier, by name; the carrier given through the API sends it."""
    async with contract_ebay_order(hub, platform) as case:
        shipment = with_tracking({**case.served, "id": str(uuid.uuid4())}, "DPD0999999999")
        called = await platform.post_status_callback(shipment, "shipment-registered")
        assert called.json()["meta"]["fulfillment"] == "recorded"
        assert await until_on_ebay(hub, case) == []
        fulfillment = await the_fulfillment(hub, case.order_id)
        assert fulfillment.status == "failed" and fulfillment.carrier is None
        assert fulfillment.error is not None and "carrier" in fulfillment.error
        [unknown] = [e for e in await timeline(hub, case.order_id) if e.kind == "fulfillment.carrier_unknown"]
        assert unknown.severity == "warning"
        patch_path = f"/api/v1/orders/{case.order_id}/fulfillments/{fulfillment.id}"
        assert f"PATCH {patch_path}" in unknown.summary

        given = await client.patch(
            patch_path,
            json={"tracking_number": "DPD0999999999", "carrier": "DPD"},
            headers=case.account.headers,
        )
        assert given.status_code == 200, given.text
        remote = await until_on_ebay(hub, case)
    assert [(s.tracking_number, s.carrier) for s in remote] == [("DPD0999999999", "DPD")]
    assert (await the_fulfillment(hub, case.order_id)).status == "pushed"


async def test_only_the_named_networks_may_list_shipments_or_post_statuses(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CROSSDOCK_MYPARCELCOM_ALLOWED_NETWORKS: the platform's calls carry no credential of their own, so an
    operator can name where MyParcel.com calls from; the platform simulator here calls from 127.0.0.1."""
    shop = await add_shop(hub, "Acme", SHOP_A, SECRET_A)
    await add_order(hub, shop.account_id, "#1001")
    for networks, allowed in (('["192.0.2.0/24", "2001:db8::/32"]', False), ('["127.0.0.0/8"]', True)):
        monkeypatch.setenv("CROSSDOCK_MYPARCELCOM_ALLOWED_NETWORKS", networks)
        named = Settings().myparcelcom_allowed_networks  # as the hub reads it from its environment
        assert [str(n) for n in named] == json.loads(networks)
        settings = hub.settings.model_copy(update={"myparcelcom_allowed_networks": named})
        server_hub = Hub.from_settings(settings)
        with run_in_thread(create_app(server_hub, dispose_on_shutdown=True)) as url:
            server_hub.settings.public_url = url
            async with MyParcelComPlatform(url + PREFIX, channel="crossdock", timeout_s=10.0) as platform:
                # Linking is the merchant's browser's way in: it stays open.
                await authorize(platform, shop)
                listed = await pull(platform, shop)
                callback = await platform.client.post(
                    platform.url("/callback/shipment-statuses"),
                    content=b"{}",
                    headers={"Content-Type": "application/vnd.api+json"},
                )
        if allowed:
            assert listed.status_code == 200 and len(listed.json()["data"]) == 1
            assert callback.status_code == 422  # let in, and refused for what the body lacks
        else:
            for refused in (listed, callback):
                error = error_of(refused)
                assert refused.status_code == 403 and "127.0.0.1" in error["detail"]
                assert "CROSSDOCK_MYPARCELCOM_ALLOWED_NETWORKS" in error["detail"]

"""The panel's Orders pages through the real app with a signed-in session: the list with its filters, search and
pages; one order with its lines, address, shipments, labels and timeline; the label and packing-slip files; the
"Ship now" and "Void label" actions with their CSRF check; and another account's orders staying out of sight."""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape

import httpx
import pypdf
import pytest
from sqlalchemy import func, select

from crossdock import model as m
from crossdock.engine.inbox import receive
from crossdock.flows.labels import SHIP_JOB, VOID_JOB
from crossdock.hub import Hub
from crossdock.sandbox.labels import LabelData, render_pdf
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.web import pages_orders
from tests.support import Tenant, order_body
from tests.web.support import signed_in

TRACKING = "9400111899223197428490"
SHOP = {
    "connector": "shopify",
    "name": "Acme shop",
    "settings": {"shop": "acme-panel.myshopify.com"},
    "secrets": {"access_token": "shpat_panel_secret"},
}
# A shipping address in Cyrillic and a customer in Japanese: the page must carry them as they are.
MOSCOW = {
    "first_name": "Иван",
    "last_name": "Петров",
    "line1": "ул. Тверская, д. 7",
    "city": "Москва",
    "postal_code": "125009",
    "country": "RU",
}


async def new_order(client: httpx.AsyncClient, owner: Tenant, **overrides: object) -> str:
    created = await client.post("/api/v1/orders", json=order_body(**overrides), headers=owner.headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def bought_label(
    hub: Hub,
    owner: Tenant,
    order_id: str,
    tracking: str = TRACKING,
    status: m.ShipmentStatus = m.ShipmentStatus.LABEL_PURCHASED,
) -> str:
    """A shipment of the order whose PDF label was bought and stored in the hub's blob store."""
    account_id = uuid.UUID(owner.id)
    pdf = render_pdf(
        LabelData(
            carrier="USPS",
            service="Priority Mail",
            tracking_number=tracking,
            sender=["Acme", "Hafenstr. 1", "20457 Hamburg"],
            recipient=["Иван Петров", "ул. Тверская, д. 7", "125009 Москва"],
            created_at=datetime(2025, 3, 1, tzinfo=UTC),
        )
    )
    key = hub.blobs.put(pdf)
    async with hub.db.transaction() as session:
        shipment = t.Shipment(
            account_id=account_id,
            order_id=uuid.UUID(order_id),
            status=status.value,
            carrier="usps",
            service_code="usps_priority",
            tracking_number=tracking,
            tracking_url=f"https://tools.usps.com/go/TrackConfirmAction?tLabels={tracking}",
            external_id=f"txn-{tracking}",
            rate={"carrier": "usps", "service_code": "usps_priority", "service_name": "Priority Mail"},
            rate_minor=790,
            rate_currency="USD",
            decision="Rule 'Russia' chose the cheapest of 3 rates: USPS Priority Mail at 7.90 USD.",
        )
        shipment.parcels = [t.Parcel(account_id=account_id, position=0, weight_g=Decimal("850"))]
        session.add(shipment)
        await session.flush()
        session.add(
            t.Label(
                account_id=account_id,
                shipment_id=shipment.id,
                format="pdf",
                blob_key=key,
                size=len(pdf),
                tracking_number=tracking,
            )
        )
        return str(shipment.id)


async def jobs(hub: Hub, order_id: str, kind: str) -> int:
    async with hub.db.session() as session:
        return int(
            await session.scalar(
                select(func.count()).where(t.Job.order_id == uuid.UUID(order_id), t.Job.kind == kind)
            )
            or 0
        )


def numbers_in(html: str) -> list[str]:
    """The order numbers of the list's rows, top to bottom."""
    return [
        unescape(n) for n in re.findall(r'<th scope="row"><a href="/orders/[0-9a-f-]+">([^<]+)</a>', html)
    ]


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


# The list -----------------------------------------------------------------------------------------------------
async def test_the_list_shows_the_accounts_orders_with_their_columns(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    order_id = await new_order(
        client, acme, external_number="M-1", customer={"name": "山田太郎", "email": "taro@example.jp"}
    )

    page = await client.get("/orders")

    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert numbers_in(page.text) == ["M-1"]
    assert f'<a href="/orders/{order_id}">M-1</a>' in page.text
    for shown in (
        "山田太郎",
        "taro@example.jp",
        "<td>ES</td>",
        "25.00 EUR",
        'class="badge s-paid"',
        "Manual",
    ):
        assert shown in page.text
    assert 'data-live="orders"' in page.text and 'aria-current="page"' in page.text


async def test_an_account_without_orders_is_told_what_to_do(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)

    page = await client.get("/orders")

    assert "No orders yet" in page.text and 'href="/connections"' in page.text
    assert "<table" not in page.text


async def test_the_status_filter_the_dashboard_links_to(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    await new_order(client, acme, external_number="P-1", status="pending")
    await new_order(client, acme, external_number="C-1", status="paid")

    pending = await client.get("/orders?status=pending")
    cancelled = await client.get("/orders?status=cancelled")
    blank = await client.get("/orders?status=&connection=&q=")  # the form sent with nothing chosen
    wrong = await client.get("/orders?status=lost")

    assert numbers_in(pending.text) == ["P-1"]
    assert '<option value="pending" selected>' in pending.text
    assert numbers_in(cancelled.text) == [] and "No orders match these filters" in cancelled.text
    assert sorted(numbers_in(blank.text)) == ["C-1", "P-1"]
    assert wrong.status_code == 400 and "is not an order status" in wrong.text


async def test_the_channel_filter_shows_one_connections_orders(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    shop = await client.post("/api/v1/connections", json=SHOP, headers=acme.headers)
    assert shop.status_code == 201, shop.text
    shop_id = shop.json()["id"]
    await new_order(client, acme, external_number="S-1", connection_id=shop_id)
    await new_order(client, acme, external_number="M-1")

    page = await client.get(f"/orders?connection={shop_id}")

    assert numbers_in(page.text) == ["S-1"]
    assert f'<option value="{shop_id}" selected>Acme shop</option>' in page.text
    assert "Acme shop (Shopify)" in page.text
    assert "shpat_panel_secret" not in page.text
    assert (await client.get("/orders?connection=not-an-id")).status_code == 400


async def test_search_matches_number_email_and_name(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    await new_order(
        client, acme, external_number="A-100", customer={"name": "Zoë Brandt", "email": "zoe@example.de"}
    )
    await new_order(
        client, acme, external_number="B-200", customer={"name": "Ana Ruiz", "email": "ana@example.com"}
    )

    by_number = await client.get("/orders?q=A-10")
    by_email = await client.get("/orders", params={"q": "ana@example"})
    by_name = await client.get("/orders", params={"q": "brandt"})
    nothing = await client.get("/orders", params={"q": "%"})

    assert numbers_in(by_number.text) == ["A-100"]
    assert numbers_in(by_email.text) == ["B-200"]
    assert numbers_in(by_name.text) == ["A-100"]
    assert 'value="brandt"' in by_name.text
    assert numbers_in(nothing.text) == [] and "No orders match" in nothing.text


async def test_older_orders_page_through_with_the_filters_kept(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages_orders, "PAGE_SIZE", 2)
    await signed_in(client, hub, acme)
    for n in range(1, 6):
        await new_order(client, acme, external_number=f"N-{n}")
    await new_order(client, acme, external_number="X-1", status="pending")

    seen: list[str] = []
    url: str | None = "/orders?status=paid"
    while url is not None:
        page = await client.get(url)
        assert page.status_code == 200
        seen += numbers_in(page.text)
        found = re.search(r'<a class="button secondary" href="([^"]+)">Older orders</a>', page.text)
        url = unescape(found.group(1)) if found else None
        if url is not None:
            assert "status=paid" in url and "cursor=" in url

    assert seen == ["N-5", "N-4", "N-3", "N-2", "N-1"]
    assert "Newest orders" in page.text
    forged = await client.get("/orders?cursor=bm90LW91cnM")
    assert forged.status_code == 400 and "page from the newest orders again" in forged.text


async def test_the_live_block_of_the_list_answers_alone(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    await new_order(client, acme, external_number="L-1")

    block = await client.get("/orders", headers={"X-Live-Block": "orders"})

    assert block.status_code == 200
    assert numbers_in(block.text) == ["L-1"]
    assert "<html" not in block.text and "<form" not in block.text


# One order ----------------------------------------------------------------------------------------------------
async def seeded_order(client: httpx.AsyncClient, hub: Hub, owner: Tenant) -> tuple[str, str]:
    """An order from a Shopify connection shipping to Moscow, with a bought label, the payload it came in,
    a remote call and a failure on its timeline."""
    shop = await client.post("/api/v1/connections", json=SHOP, headers=owner.headers)
    assert shop.status_code == 201, shop.text
    shop_id = uuid.UUID(shop.json()["id"])
    order_id = await new_order(
        client,
        owner,
        external_number="#1042",
        connection_id=str(shop_id),
        customer={"name": "Иван Петров", "email": "ivan@example.ru"},
        shipping_address=MOSCOW,
        lines=[
            {
                "sku": "SAMOVAR-2",
                "title": "Самовар «Тула»",
                "quantity": 1,
                "unit_price": {"amount": "25.00", "currency": "EUR"},
            }
        ],
    )
    shipment_id = await bought_label(hub, owner, order_id)
    account_id, oid = uuid.UUID(owner.id), uuid.UUID(order_id)
    body = {"id": 1042, "name": "#1042", "access_token": "shpat_leaked_in_body", "email": "ivan@example.ru"}
    async with hub.db.transaction() as session:
        stored = await receive(
            session,
            account_id=account_id,
            connection_id=shop_id,
            kind="orders/create",
            dedup_key="orders/create:1042",
            headers={"X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": "c2lnbmF0dXJlLWxlYWs="},
            body=json.dumps(body).encode(),
        )
        inbox_row = await session.get(t.InboxMessage, stored.inbox_id)
        assert inbox_row is not None
        inbox_row.order_id = oid
        tenant = repo.Tenant(session, account_id)
        await tenant.add_event(
            oid, "inbox.processed", "Received orders/create", {"inbox_id": str(stored.inbox_id)}
        )
        await tenant.add_event(
            oid,
            "remote.call",
            "shippo: POST /transactions -> 201 in 312 ms",
            {
                "connector": "shippo",
                "method": "POST",
                "url": "https://api.goshippo.com/transactions?api_key=sk_live_never_shown",
                "status": 201,
                "duration_ms": 312,
                "attempt": 1,
                "error_kind": None,
            },
        )
        await tenant.add_event(
            oid,
            "shipping.label_failed",
            "Shippo refused the second parcel: the address is not deliverable",
            {"shipment_id": shipment_id},
            severity="error",
        )
    return order_id, shipment_id


async def test_the_order_page_shows_lines_address_shipment_label_and_timeline(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    order_id, shipment_id = await seeded_order(client, hub, acme)

    page = await client.get(f"/orders/{order_id}")

    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    html = page.text
    assert "Order #1042" in html and 'class="badge s-shipped"' not in html
    assert "Acme shop (Shopify)" in html
    # Lines and the address, non-Latin text as it is (escaped quotes aside).
    assert "SAMOVAR-2" in html and "Самовар «Тула»" in html and "25.00 EUR" in html
    assert "Иван Петров" in html and "ул. Тверская, д. 7" in html and "125009 Москва" in html
    assert "Russian Federation" in html
    # The shipment: service, tracking link, decision, label preview and download.
    label_url = f"/orders/{order_id}/shipments/{shipment_id}/label"
    assert "usps Priority Mail" in html and 'class="badge h-label_purchased"' in html
    assert f'href="https://tools.usps.com/go/TrackConfirmAction?tLabels={TRACKING}"' in html
    assert "Rule &#39;Russia&#39; chose the cheapest of 3 rates" in html
    assert f'<iframe class="preview" src="{label_url}"' in html
    assert f'href="{label_url}" download' in html
    assert f'href="/orders/{order_id}/packing-slip.pdf"' in html
    assert f'action="/orders/{order_id}/shipments/{shipment_id}/void"' in html
    # The timeline: what came in (redacted), what went out, what failed, oldest first.
    assert 'data-live="timeline"' in html
    timeline = html[html.index('<ol class="timeline">') :]
    assert timeline.index("Order #1042 created") < timeline.index("Received orders/create")
    assert timeline.index("Received orders/create") < timeline.index("shippo: POST /transactions")
    assert "&#34;name&#34;: &#34;#1042&#34;" in timeline  # the payload's JSON, escaped for HTML
    assert "x-shopify-topic" in timeline
    assert (
        "<code>POST https://api.goshippo.com/transactions?api_key=[redacted]</code> → 201 in 312 ms"
        in timeline
    )
    assert '<li class="sev-error">' in timeline and "the address is not deliverable" in timeline
    for secret in (
        "shpat_leaked_in_body",
        "c2lnbmF0dXJlLWxlYWs=",
        "sk_live_never_shown",
        "shpat_panel_secret",
    ):
        assert secret not in html


async def test_the_timeline_block_answers_alone(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    await signed_in(client, hub, acme)
    order_id, _ = await seeded_order(client, hub, acme)

    block = await client.get(f"/orders/{order_id}", headers={"X-Live-Block": "timeline"})

    assert block.status_code == 200
    assert block.text.lstrip().startswith('<ol class="timeline">')
    assert (
        "Received orders/create" in block.text and "<iframe" not in block.text and "<html" not in block.text
    )


async def test_an_unknown_order_is_the_panels_404_page(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)

    for url in (f"/orders/{uuid.uuid4()}", "/orders/not-an-id", f"/orders/{uuid.uuid4()}/packing-slip.pdf"):
        page = await client.get(url)
        assert page.status_code == 404, url
        assert "Order not found" in page.text and 'role="alert"' in page.text


# Files --------------------------------------------------------------------------------------------------------
async def test_the_label_opens_inline_as_the_stored_pdf(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    order_id = await new_order(client, acme, shipping_address=MOSCOW)
    shipment_id = await bought_label(hub, acme, order_id)

    label = await client.get(f"/orders/{order_id}/shipments/{shipment_id}/label")

    assert label.status_code == 200
    assert label.headers["content-type"] == "application/pdf"
    assert label.headers["content-disposition"] == f'inline; filename="label-{TRACKING}.pdf"'
    assert label.headers["cache-control"] == "no-store"
    assert label.content.startswith(b"%PDF")
    assert f"TRACKING #: {TRACKING}" in pdf_text(label.content)
    other = await new_order(client, acme, external_number="M-2")
    wrong_order = await client.get(f"/orders/{other}/shipments/{shipment_id}/label")
    assert wrong_order.status_code == 404 and "Shipment not found" in wrong_order.text


async def test_the_packing_slip_is_a_pdf_with_the_address(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    order_id = await new_order(client, acme, external_number="M-77", shipping_address=MOSCOW)

    slip = await client.get(f"/orders/{order_id}/packing-slip.pdf")

    assert slip.status_code == 200
    assert slip.headers["content-type"] == "application/pdf"
    assert slip.headers["content-disposition"] == 'inline; filename="packing-slip-M-77.pdf"'
    assert slip.content.startswith(b"%PDF")
    text = pdf_text(slip.content)
    assert "Packing slip" in text and "M-77" in text and "125009 Москва" in text


async def test_a_voided_label_is_not_handed_out(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    await signed_in(client, hub, acme)
    order_id = await new_order(client, acme)
    shipment_id = await bought_label(hub, acme, order_id)
    async with hub.db.transaction() as session:
        shipment = await session.get(t.Shipment, uuid.UUID(shipment_id))
        assert shipment is not None
        shipment.status = m.ShipmentStatus.VOIDED.value

    label = await client.get(f"/orders/{order_id}/shipments/{shipment_id}/label")
    page = await client.get(f"/orders/{order_id}")

    assert label.status_code == 410 and "must not be used" in label.text
    assert "<iframe" not in page.text and "Void label" not in page.text
    assert 'class="badge h-voided"' in page.text


# Actions ------------------------------------------------------------------------------------------------------
async def test_ship_now_asks_to_ship_and_says_so(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    csrf = await signed_in(client, hub, acme)
    order_id = await new_order(client, acme)
    page = await client.get(f"/orders/{order_id}")
    assert f'action="/orders/{order_id}/ship"' in page.text and "No shipments yet" in page.text

    answer = await client.post(f"/orders/{order_id}/ship", data={"csrf_token": csrf})

    assert answer.status_code == 303
    assert answer.headers["location"].startswith(f"/orders/{order_id}?notice=")
    assert await jobs(hub, order_id, SHIP_JOB) == 1
    back = await client.get(answer.headers["location"])
    assert "Asked to ship; labels appear here when bought." in back.text
    again = await client.get(
        (await client.post(f"/orders/{order_id}/ship", data={"csrf_token": csrf})).headers["location"]
    )
    assert "asked to ship already" in again.text
    assert await jobs(hub, order_id, SHIP_JOB) == 1


async def test_ship_now_refused_for_an_order_that_does_not_ship(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    csrf = await signed_in(client, hub, acme)
    order_id = await new_order(client, acme, status="pending")
    page = await client.get(f"/orders/{order_id}")
    assert f'action="/orders/{order_id}/ship"' not in page.text

    answer = await client.post(f"/orders/{order_id}/ship", data={"csrf_token": csrf})

    back = await client.get(answer.headers["location"])
    assert 'class="error" role="alert">Not shipped: a pending order is not shipped' in back.text
    assert await jobs(hub, order_id, SHIP_JOB) == 0
    buying = await new_order(client, acme, external_number="M-2")
    await bought_label(hub, acme, buying, status=m.ShipmentStatus.LABEL_PENDING)
    page = await client.get(f"/orders/{buying}")
    assert f'action="/orders/{buying}/ship"' not in page.text and "Void label" not in page.text


async def test_void_label_asks_to_void_and_says_so(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    csrf = await signed_in(client, hub, acme)
    order_id = await new_order(client, acme)
    shipment_id = await bought_label(hub, acme, order_id)

    answer = await client.post(f"/orders/{order_id}/shipments/{shipment_id}/void", data={"csrf_token": csrf})

    assert answer.status_code == 303
    assert await jobs(hub, order_id, VOID_JOB) == 1
    back = await client.get(answer.headers["location"])
    assert f"Asked to void the label {TRACKING}" in back.text


async def test_actions_without_the_csrf_token_are_refused_and_change_nothing(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    order_id = await new_order(client, acme)
    shipped_order = await new_order(client, acme, external_number="M-2")
    shipment_id = await bought_label(hub, acme, shipped_order)

    ship = await client.post(f"/orders/{order_id}/ship", data={"csrf_token": "x" * 43})
    void = await client.post(f"/orders/{shipped_order}/shipments/{shipment_id}/void", data={})

    assert ship.status_code == 403 and "Form refused" in ship.text
    assert void.status_code == 403 and "Form refused" in void.text
    assert await jobs(hub, order_id, SHIP_JOB) == 0
    assert await jobs(hub, shipped_order, VOID_JOB) == 0


# Accounts -----------------------------------------------------------------------------------------------------
async def test_another_accounts_orders_stay_out_of_sight_and_out_of_reach(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, globex: Tenant
) -> None:
    theirs = await new_order(client, globex, external_number="G-1", customer={"name": "Globex buyer"})
    their_shipment = await bought_label(hub, globex, theirs)
    csrf = await signed_in(client, hub, acme)
    await new_order(client, acme, external_number="A-1")

    listed = await client.get("/orders")
    searched = await client.get("/orders?q=G-1")
    assert numbers_in(listed.text) == ["A-1"] and "Globex buyer" not in listed.text
    assert numbers_in(searched.text) == []
    for url in (
        f"/orders/{theirs}",
        f"/orders/{theirs}/packing-slip.pdf",
        f"/orders/{theirs}/shipments/{their_shipment}/label",
    ):
        answer = await client.get(url)
        assert answer.status_code == 404, url
        assert "Order not found" in answer.text and b"%PDF" not in answer.content

    ship = await client.post(f"/orders/{theirs}/ship", data={"csrf_token": csrf})
    void = await client.post(f"/orders/{theirs}/shipments/{their_shipment}/void", data={"csrf_token": csrf})
    assert ship.status_code == 404 and void.status_code == 404
    assert await jobs(hub, theirs, SHIP_JOB) == 0 and await jobs(hub, theirs, VOID_JOB) == 0

"""Documents through the API: an order's shipments with their label links, the label file itself from the blob
store, and the order's packing slip; another account's order or shipment is a 404."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pypdf

from crossdock import model as m
from crossdock.hub import Hub
from crossdock.sandbox.labels import LabelData, render_pdf, render_png
from crossdock.store import repo
from crossdock.store import tables as t
from tests.support import Tenant, order_body

TRACKING = "9400111899223197428490"


def label_file(tracking: str, fmt: m.LabelFormat) -> bytes:
    data = LabelData(
        carrier="USPS",
        service="Priority Mail",
        tracking_number=tracking,
        sender=["Acme", "Hafenstr. 1", "20457 Hamburg"],
        recipient=["Ana Ruiz", "Calle Mayor 1", "28013 Madrid"],
        created_at=datetime(2025, 3, 1, tzinfo=UTC),
    )
    return render_png(data) if fmt is m.LabelFormat.PNG else render_pdf(data)


async def add_shipment(
    hub: Hub,
    owner: Tenant,
    order_id: str,
    *,
    status: m.ShipmentStatus = m.ShipmentStatus.LABEL_PURCHASED,
    tracking: str | None = TRACKING,
    label: m.LabelFormat | None = m.LabelFormat.PDF,
) -> tuple[str, str | None]:
    """A shipment of the order with one parcel and, when `label` is given, a label stored in the hub's blob
    store. Returns the shipment's id and the label's blob key."""
    account_id = uuid.UUID(owner.id)
    blob_key = hub.blobs.put(label_file(tracking or "NONE", label)) if label else None
    async with hub.db.transaction() as session:
        shipment = t.Shipment(
            account_id=account_id,
            order_id=uuid.UUID(order_id),
            status=status.value,
            carrier="usps",
            service_code="usps_priority",
            tracking_number=tracking,
            tracking_url=f"https://tools.usps.com/go/TrackConfirmAction?tLabels={tracking}"
            if tracking
            else None,
            rate={
                "carrier": "usps",
                "service_code": "usps_priority",
                "price": {"amount": "7.90", "currency": "USD"},
            },
            rate_minor=790,
            rate_currency="USD",
            decision="cheapest of 3 rates",
        )
        shipment.parcels = [
            t.Parcel(
                account_id=account_id,
                position=0,
                weight_g=Decimal("850"),
                length_mm=Decimal("300"),
                width_mm=Decimal("200"),
                height_mm=Decimal("100"),
                reference="parcel 1",
            )
        ]
        session.add(shipment)
        await session.flush()
        if label and blob_key:
            session.add(
                t.Label(
                    account_id=account_id,
                    shipment_id=shipment.id,
                    format=label.value,
                    blob_key=blob_key,
                    size=len(hub.blobs.get(blob_key)),
                    tracking_number=tracking,
                )
            )
        return str(shipment.id), blob_key


async def new_order(client: httpx.AsyncClient, owner: Tenant, **overrides: object) -> str:
    created = await client.post("/api/v1/orders", json=order_body(**overrides), headers=owner.headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


# Labels ---------------------------------------------------------------------------------------------------
async def test_a_label_downloads_as_the_pdf_the_service_made(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    shipment_id, _key = await add_shipment(hub, acme, await new_order(client, acme))

    response = await client.get(f"/api/v1/shipments/{shipment_id}/label", headers=acme.headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == f'inline; filename="label-{TRACKING}.pdf"'
    assert f"TRACKING #: {TRACKING}" in pdf_text(response.content)


async def test_a_png_label_keeps_its_media_type(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    shipment_id, key = await add_shipment(
        hub, acme, await new_order(client, acme), tracking="1Z999AA10123456784", label=m.LabelFormat.PNG
    )

    response = await client.get(f"/api/v1/shipments/{shipment_id}/label", headers=acme.headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'inline; filename="label-1Z999AA10123456784.png"'
    assert key is not None and response.content == hub.blobs.get(key)
    assert response.content.startswith(b"\x89PNG")


async def test_a_shipment_without_a_label_is_404_naming_its_status(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    order_id = await new_order(client, acme)
    shipment_id, _ = await add_shipment(
        hub, acme, order_id, status=m.ShipmentStatus.LABEL_PENDING, tracking=None, label=None
    )

    response = await client.get(f"/api/v1/shipments/{shipment_id}/label", headers=acme.headers)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert f"shipment {shipment_id} has no label yet; it is label_pending" in problem["detail"]
    assert problem["errors"][0]["field"] == "label"


async def test_a_voided_label_is_gone(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    order_id = await new_order(client, acme)
    shipment_id, _ = await add_shipment(hub, acme, order_id, status=m.ShipmentStatus.VOIDED)

    response = await client.get(f"/api/v1/shipments/{shipment_id}/label", headers=acme.headers)

    assert response.status_code == 410
    assert "voided and must not be used" in response.json()["detail"]
    assert f"/api/v1/orders/{order_id}/ship" in response.json()["detail"]


async def test_a_label_file_missing_from_the_blob_store_is_a_problem_without_paths(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    shipment_id, key = await add_shipment(hub, acme, await new_order(client, acme))
    assert key is not None
    (hub.blobs.root / key[:2] / key).unlink()

    response = await client.get(f"/api/v1/shipments/{shipment_id}/label", headers=acme.headers)

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:crossdock:problem:blob-missing"
    assert "blob store directory (CROSSDOCK_BLOB_DIR) is missing the file" in problem["detail"]
    assert key in problem["detail"]
    assert str(hub.blobs.root) not in response.text and "Traceback" not in response.text


# Shipments ------------------------------------------------------------------------------------------------
async def test_an_orders_shipments_carry_parcels_rate_tracking_and_a_label_link(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    order_id = await new_order(client, acme)
    bought, _ = await add_shipment(hub, acme, order_id)
    pending, _ = await add_shipment(
        hub, acme, order_id, status=m.ShipmentStatus.LABEL_PENDING, tracking=None, label=None
    )
    async with hub.db.transaction() as session:
        session.add(
            t.TrackingEvent(
                account_id=uuid.UUID(acme.id),
                shipment_id=uuid.UUID(bought),
                status="in_transit",
                occurred_at=datetime(2025, 3, 2, 8, 0, tzinfo=UTC),
                description="Departed USPS facility",
                location="Chicago, IL",
            )
        )

    response = await client.get(f"/api/v1/orders/{order_id}/shipments", headers=acme.headers)

    assert response.status_code == 200, response.text
    items = {s["id"]: s for s in response.json()["items"]}
    assert list(items) == [bought, pending]
    first = items[bought]
    assert first["status"] == "label_purchased" and first["carrier"] == "usps"
    assert first["service_code"] == "usps_priority" and first["tracking_number"] == TRACKING
    assert first["price"] == {"amount": "7.90", "currency": "USD"}
    assert first["rate"]["service_code"] == "usps_priority"
    assert first["parcels"] == [
        {
            "weight": {"value": "850", "unit": "g"},
            "dimensions": {
                "length": {"value": "300", "unit": "mm"},
                "width": {"value": "200", "unit": "mm"},
                "height": {"value": "100", "unit": "mm"},
            },
            "reference": "parcel 1",
        }
    ]
    assert first["label_url"] == f"/api/v1/shipments/{bought}/label"
    assert first["label"]["format"] == "pdf" and first["label"]["url"] == first["label_url"]
    assert [(e["status"], e["location"]) for e in first["events"]] == [("in_transit", "Chicago, IL")]
    assert items[pending]["label_url"] is None and items[pending]["label"] is None
    assert items[pending]["events"] == []

    followed = await client.get(first["label_url"], headers=acme.headers)
    assert followed.status_code == 200 and TRACKING in pdf_text(followed.content)


async def test_an_order_without_shipments_lists_none(client: httpx.AsyncClient, acme: Tenant) -> None:
    order_id = await new_order(client, acme)

    response = await client.get(f"/api/v1/orders/{order_id}/shipments", headers=acme.headers)

    assert response.status_code == 200 and response.json() == {"items": []}


# Packing slips --------------------------------------------------------------------------------------------
JAPANESE_ADDRESS = {
    "first_name": "花子",
    "last_name": "山田",
    "line1": "神南1-2-3",
    "city": "渋谷区",
    "postal_code": "150-0041",
    "country": "JP",
}
CYRILLIC_SENDER = {
    "first_name": "Иван",
    "last_name": "Петров",
    "line1": "ул. Тверская, 7",
    "city": "Москва",
    "postal_code": "125009",
    "country": "RU",
}


async def test_a_packing_slip_has_the_order_its_lines_and_the_policys_sender(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    saved = await client.put(
        "/api/v1/shipping/policy",
        json={"version": 0, "policy": {"ship_from": CYRILLIC_SENDER}},
        headers=acme.headers,
    )
    assert saved.status_code == 200, saved.text
    lines = [
        {"sku": "MUG-1", "title": "Mug", "quantity": 2},
        {"sku": "TEA-200", "title": "抹茶", "quantity": 5},
        {"sku": "CARD-1", "title": "Gift card", "quantity": 1, "requires_shipping": False},
    ]
    order_id = await new_order(
        client, acme, external_number="#1001", shipping_address=JAPANESE_ADDRESS, lines=lines
    )
    await add_shipment(hub, acme, order_id)

    response = await client.get(f"/api/v1/orders/{order_id}/packing-slip", headers=acme.headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == 'inline; filename="packing-slip-1001.pdf"'
    text = pdf_text(response.content)
    rows = text.splitlines()
    assert "Order #1001" in text
    assert "1 MUG-1 Mug 2" in rows and "2 TEA-200 抹茶 5" in rows
    assert "3 CARD-1 Gift card (does not ship) 1" in rows
    assert "Items to ship: 7" in text
    assert "花子 山田" in text and "150-0041 渋谷区" in text
    assert "Иван Петров" in text and "125009 Москва" in text
    assert f"usps usps_priority: tracking {TRACKING}" in text


async def test_a_packing_slip_names_the_channel_and_its_reference(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    shop = await client.post(
        "/api/v1/connections",
        json={
            "connector": "shopify",
            "name": "Acme shop",
            "settings": {"shop": "acme-docs.myshopify.com"},
            "secrets": {"access_token": "shpat_docs"},
        },
        headers=acme.headers,
    )
    assert shop.status_code == 201, shop.text
    async with hub.db.transaction() as session:
        row = await repo.Tenant(session, uuid.UUID(acme.id)).create_order(
            m.Order(
                status=m.OrderStatus.PAID,
                currency="EUR",
                lines=[m.OrderLine(sku="MUG-1", title="Mug", quantity=1)],
                connection_id=uuid.UUID(shop.json()["id"]),
                external_id="450789469",
                external_number="#1002",
                placed_at=datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
            ),
            source="shopify",
        )
        order_id = row.id

    response = await client.get(f"/api/v1/orders/{order_id}/packing-slip", headers=acme.headers)

    assert response.status_code == 200, response.text
    text = pdf_text(response.content)
    assert "Shopify order 450789469" in text and "2025-03-01" in text
    assert "No shipping address on this order" in text


# Isolation ------------------------------------------------------------------------------------------------
async def test_another_accounts_order_and_shipment_are_404(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, globex: Tenant
) -> None:
    order_id = await new_order(client, acme)
    shipment_id, _ = await add_shipment(hub, acme, order_id)

    for url in (
        f"/api/v1/orders/{order_id}/packing-slip",
        f"/api/v1/orders/{order_id}/shipments",
        f"/api/v1/shipments/{shipment_id}/label",
    ):
        response = await client.get(url, headers=globex.headers)
        assert response.status_code == 404, (url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert TRACKING not in response.text
        mine = await client.get(url, headers=acme.headers)
        assert mine.status_code == 200, (url, mine.text)

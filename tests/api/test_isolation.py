"""Every /api/v1 route, called with account B's token against account A's objects, answers 404 or nothing."""

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from crossdock.api.app import create_app
from crossdock.engine.jobs import enqueue
from crossdock.engine.syncruns import start_run
from crossdock.hub import Hub
from crossdock.sandbox.labels import LabelData, render_pdf
from crossdock.store import tables as t
from tests.support import Tenant, order_body


async def seed(client: httpx.AsyncClient, hub: Hub, owner: Tenant) -> dict[str, str]:
    conn = await client.post(
        "/api/v1/connections",
        json={"connector": "shippo", "name": "A's Shippo", "secrets": {"api_token": "shippo_test_secret_A"}},
        headers=owner.headers,
    )
    order = await client.post("/api/v1/orders", json=order_body(), headers=owner.headers)
    product = await client.post(
        "/api/v1/products", json={"title": "A", "variants": [{"sku": "A-1"}]}, headers=owner.headers
    )
    await client.put("/api/v1/stock-levels", json={"sku": "A-1", "available": 4}, headers=owner.headers)
    endpoint = await client.post(
        "/api/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/a", "event_types": ["order.created"]},
        headers=owner.headers,
    )
    fulfillment = await client.post(
        f"/api/v1/orders/{order.json()['id']}/fulfillments",
        json={"lines": [{"sku": "MUG-1", "quantity": 1}], "carrier": "DHL", "tracking_number": "A-1"},
        headers=owner.headers,
    )
    assert fulfillment.status_code == 201, fulfillment.text
    policy = await client.put(
        "/api/v1/shipping/policy",
        json={"version": 0, "policy": {"rules": [{"match": {"countries": ["DE"]}}], "auto_ship": True}},
        headers=owner.headers,
    )
    assert policy.status_code == 200, policy.text
    delivery_id = await failed_delivery(hub, owner, endpoint.json()["id"])
    shipment_id = await bought_shipment(hub, owner, order.json()["id"])
    await stored_label(hub, owner, shipment_id)
    job_id, run_id = await job_and_sync_run(hub, owner, conn.json()["id"])
    return {
        "job_id": str(job_id),
        "run_id": str(run_id),
        "connection_id": conn.json()["id"],
        "order_id": order.json()["id"],
        "fulfillment_id": fulfillment.json()["id"],
        "product_id": product.json()["id"],
        "endpoint_id": endpoint.json()["id"],
        "delivery_id": str(delivery_id),
        "shipment_id": str(shipment_id),
    }


async def failed_delivery(hub: Hub, owner: Tenant, endpoint_id: str) -> uuid.UUID:
    """A delivery of A's endpoint that has used up its attempts, so redelivering it would be allowed."""
    async with hub.db.transaction() as session:
        delivery = t.WebhookDelivery(
            account_id=uuid.UUID(owner.id),
            endpoint_id=uuid.UUID(endpoint_id),
            event_type="order.created",
            body="{}",
            status="failed",
            attempts=10,
        )
        session.add(delivery)
        await session.flush()
        return delivery.id


async def bought_shipment(hub: Hub, owner: Tenant, order_id: str) -> uuid.UUID:
    """A shipment of A's order with its label bought (voidable, were the routes not scoped)."""
    async with hub.db.transaction() as session:
        shipment = t.Shipment(
            account_id=uuid.UUID(owner.id),
            order_id=uuid.UUID(order_id),
            status="label_purchased",
            carrier="USPS",
            service_code="usps_priority",
            tracking_number="9400100000000000000000",
            external_id="txn-a",
        )
        session.add(shipment)
        await session.flush()
        return shipment.id


async def stored_label(hub: Hub, owner: Tenant, shipment_id: uuid.UUID) -> None:
    """The shipment's label file in the blob store (downloadable, were the routes not scoped)."""
    data = render_pdf(
        LabelData(
            carrier="USPS",
            service="Priority Mail",
            tracking_number="9400100000000000000000",
            sender=["A"],
            recipient=["A's customer"],
            created_at=datetime(2025, 3, 1, tzinfo=UTC),
        )
    )
    async with hub.db.transaction() as session:
        session.add(
            t.Label(
                account_id=uuid.UUID(owner.id),
                shipment_id=shipment_id,
                format="pdf",
                blob_key=hub.blobs.put(data),
                size=len(data),
                tracking_number="9400100000000000000000",
            )
        )


async def job_and_sync_run(hub: Hub, owner: Tenant, connection_id: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A waiting job of A's (cancellable, were the routes not scoped) and a sync run of A's connection."""
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session,
            account_id=uuid.UUID(owner.id),
            kind="sync.orders",
            payload={"connection_id": connection_id},
        )
        run = await start_run(
            session, account_id=uuid.UUID(owner.id), connection_id=uuid.UUID(connection_id), stream="orders"
        )
    assert job_id is not None
    return job_id, run.id


# Requests an intruder may send to each route; a new route must be added here or the test fails.
BODIES: dict[tuple[str, str], dict[str, object] | None] = {
    ("GET", "/api/v1/accounts/me"): None,
    ("POST", "/api/v1/connections"): None,
    ("GET", "/api/v1/connections"): None,
    ("GET", "/api/v1/connections/{connection_id}"): None,
    ("PATCH", "/api/v1/connections/{connection_id}"): {"name": "stolen", "secrets": {"api_token": "x"}},
    ("DELETE", "/api/v1/connections/{connection_id}"): None,
    ("GET", "/api/v1/orders"): None,
    ("POST", "/api/v1/orders"): None,
    ("GET", "/api/v1/orders/{order_id}"): None,
    ("POST", "/api/v1/orders/{order_id}/cancel"): {"reason": "intruder"},
    ("GET", "/api/v1/orders/{order_id}/timeline"): None,
    ("POST", "/api/v1/orders/{order_id}/fulfillments"): {"carrier": "UPS", "tracking_number": "1Z"},
    ("GET", "/api/v1/orders/{order_id}/fulfillments"): None,
    ("PATCH", "/api/v1/orders/{order_id}/fulfillments/{fulfillment_id}"): {"tracking_number": "1Z"},
    ("POST", "/api/v1/products"): None,
    ("GET", "/api/v1/products"): None,
    ("GET", "/api/v1/products/{product_id}"): None,
    ("GET", "/api/v1/stock-levels"): None,
    ("PUT", "/api/v1/stock-levels"): None,
    ("POST", "/api/v1/webhook-endpoints"): None,
    ("GET", "/api/v1/webhook-endpoints"): None,
    ("GET", "/api/v1/webhook-endpoints/{endpoint_id}"): None,
    ("PATCH", "/api/v1/webhook-endpoints/{endpoint_id}"): {
        "url": "https://evil.example.com/",
        "enabled": False,
    },
    ("DELETE", "/api/v1/webhook-endpoints/{endpoint_id}"): None,
    ("POST", "/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): None,
    ("GET", "/api/v1/webhook-endpoints/{endpoint_id}/deliveries"): None,
    ("POST", "/api/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver"): None,
    ("GET", "/api/v1/jobs"): None,
    ("GET", "/api/v1/jobs/{job_id}"): None,
    ("POST", "/api/v1/jobs/{job_id}/retry"): None,
    ("POST", "/api/v1/jobs/{job_id}/cancel"): None,
    ("GET", "/api/v1/sync-runs"): None,
    ("GET", "/api/v1/sync-runs/{run_id}"): None,
    ("POST", "/api/v1/orders/{order_id}/ship"): None,
    ("POST", "/api/v1/shipments/{shipment_id}/void"): None,
    ("GET", "/api/v1/orders/{order_id}/shipments"): None,
    ("GET", "/api/v1/orders/{order_id}/packing-slip"): None,
    ("GET", "/api/v1/shipments/{shipment_id}/label"): None,
    ("GET", "/api/v1/shipping/policy"): None,
    ("PUT", "/api/v1/shipping/policy"): None,
    ("POST", "/api/v1/rates/quote"): {
        "destination": {"country": "ES", "postal_code": "28013"},
        "items": [
            {
                "sku": "MUG-1",
                "quantity": 1,
                "weight": {"value": "350", "unit": "g"},
                "price": {"amount": "12.50", "currency": "EUR"},
            }
        ],
        "budget_ms": 500,
    },
}
# Routes that create in the caller's own account: checked separately below (they must not touch A's data).
CREATES = {
    ("POST", "/api/v1/connections"),
    ("POST", "/api/v1/orders"),
    ("POST", "/api/v1/products"),
    ("PUT", "/api/v1/stock-levels"),
    ("POST", "/api/v1/webhook-endpoints"),
    ("PUT", "/api/v1/shipping/policy"),
}


def api_routes(hub: Hub) -> list[tuple[str, str]]:
    spec = create_app(hub).openapi()
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    ]


async def test_every_route_is_scoped_to_the_callers_account(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, globex: Tenant
) -> None:
    ids = await seed(client, hub, acme)
    routes = api_routes(hub)
    missing = [r for r in routes if r not in BODIES]
    assert not missing, f"add these routes to the isolation test: {missing}"
    checked = 0
    for method, path in routes:
        if (method, path) in CREATES:
            continue
        url = path.format(**ids)
        response = await client.request(method, url, json=BODIES[(method, path)], headers=globex.headers)
        if "{" in path:
            assert response.status_code == 404, (method, path, response.status_code, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        else:
            assert response.status_code == 200, (method, path, response.text)
            body = response.json()
            if "items" in body:
                assert body["items"] == [], (method, path, body)
            elif "policy" in body:
                assert body["version"] == 0 and body["policy"]["rules"] == [], (method, path, body)
            elif "rates" in body:  # a quote asks only the caller's own connections: B has none
                assert body["rates"] == [] and body["left_out"] == [], (method, path, body)
            else:
                assert body["id"] == globex.id
        checked += 1
    assert checked >= 11

    # A's objects are untouched: the connection keeps its name and secret, the order is not cancelled.
    conn = (await client.get(f"/api/v1/connections/{ids['connection_id']}", headers=acme.headers)).json()
    assert conn["name"] == "A's Shippo" and conn["secret_names"] == ["api_token"]
    order = (await client.get(f"/api/v1/orders/{ids['order_id']}", headers=acme.headers)).json()
    assert order["status"] == "partially_shipped"  # by A's own fulfillment in seed(), not cancelled
    fulfillments = (
        await client.get(f"/api/v1/orders/{ids['order_id']}/fulfillments", headers=acme.headers)
    ).json()["items"]
    assert [f["tracking_number"] for f in fulfillments] == ["A-1"]
    stock = (await client.get("/api/v1/stock-levels", headers=acme.headers)).json()["items"]
    assert stock[0]["available"] == 4
    endpoint = (
        await client.get(f"/api/v1/webhook-endpoints/{ids['endpoint_id']}", headers=acme.headers)
    ).json()
    assert endpoint["url"] == "https://hooks.example.com/a" and endpoint["enabled"] is True
    assert endpoint["previous_secret_expires_at"] is None  # the intruder's rotation did not happen
    deliveries = await client.get(
        f"/api/v1/webhook-endpoints/{ids['endpoint_id']}/deliveries", headers=acme.headers
    )
    assert [d["status"] for d in deliveries.json()["items"]] == ["failed"]
    job = (await client.get(f"/api/v1/jobs/{ids['job_id']}", headers=acme.headers)).json()
    assert job["status"] == "queued" and job["cancel_requested"] is False  # the intruder's cancel did nothing
    runs = (await client.get("/api/v1/sync-runs", headers=acme.headers)).json()["items"]
    assert [r["id"] for r in runs] == [ids["run_id"]]


async def test_creating_with_the_same_keys_stays_in_the_callers_account(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, globex: Tenant
) -> None:
    await seed(client, hub, acme)
    # B's webhook endpoint for the same URL is B's alone.
    created = await client.post(
        "/api/v1/webhook-endpoints", json={"url": "https://hooks.example.com/a"}, headers=globex.headers
    )
    assert created.status_code == 201
    a_endpoints = (await client.get("/api/v1/webhook-endpoints", headers=acme.headers)).json()["items"]
    assert [e["id"] for e in a_endpoints] != [created.json()["id"]] and len(a_endpoints) == 1
    # The same SKU is free in another account (unique per account), and B's stock write does not change A's.
    product = await client.post(
        "/api/v1/products", json={"title": "B", "variants": [{"sku": "A-1"}]}, headers=globex.headers
    )
    assert product.status_code == 201
    await client.put("/api/v1/stock-levels", json={"sku": "A-1", "available": 99}, headers=globex.headers)
    a_stock = (await client.get("/api/v1/stock-levels", headers=acme.headers)).json()["items"]
    assert a_stock[0]["available"] == 4
    # B saving its first shipping policy neither sees nor replaces A's.
    mine = await client.put(
        "/api/v1/shipping/policy", json={"version": 0, "policy": {"auto_ship": False}}, headers=globex.headers
    )
    assert mine.status_code == 200 and mine.json()["version"] == 1
    a_policy = (await client.get("/api/v1/shipping/policy", headers=acme.headers)).json()
    assert a_policy["policy"]["auto_ship"] is True and len(a_policy["policy"]["rules"]) == 1


@pytest.mark.parametrize("bogus", [str(uuid.uuid4())])
async def test_unknown_ids_are_404_not_500(client: httpx.AsyncClient, acme: Tenant, bogus: str) -> None:
    for url in (f"/api/v1/orders/{bogus}", f"/api/v1/connections/{bogus}", f"/api/v1/products/{bogus}"):
        assert (await client.get(url, headers=acme.headers)).status_code == 404
    assert (await client.get("/api/v1/orders/not-a-uuid", headers=acme.headers)).status_code == 422

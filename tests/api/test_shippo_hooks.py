"""Shippo webhooks into /hooks/{connection_id}: the Shippo sandbox buys a label and moves its tracking, its
webhooks reach the hub with the connection's ?token=, land in the inbox and are applied by a worker: tracking
events stored, the shipment and its order delivered. A missing or wrong token is refused and nothing stored;
duplicates and reordering end where one in-order delivery ends; refunds void, failures are told, updates for
labels crossdock did not buy are ignored, and what cannot be read is quarantined with its field and reason."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from crossdock.api.app import create_app
from crossdock.flows.tracking import SHIPPO_UPDATE
from crossdock.hub import Hub
from crossdock.sandbox.common import FaultSpec, SandboxConfig
from crossdock.sandbox.shippo import ShippoState
from crossdock.sandbox.shippo import create_app as create_sandbox
from crossdock.security.signatures import shippo_signature
from crossdock.store import repo
from crossdock.store import tables as t
from tests.engine.support import eventually, fast, running_worker, timeline
from tests.flows.test_tracking import Shipped, shipped_order, state

TOKEN = "shippo_test_0123456789abcdef"
AUTH = {"Authorization": f"ShippoToken {TOKEN}"}
HOOK_TOKEN = "hook-token-3c1e5a9b7d"
SF = {"name": "Shawn Ippotle", "street1": "215 Clayton St.", "city": "San Francisco", "state": "CA",
      "zip": "94117", "country": "US", "email": "shippotle@example.com"}  # fmt: skip
NYC = {"name": "Mr Hippo", "street1": "350 5th Ave", "city": "New York", "state": "NY", "zip": "10118",
       "country": "US"}  # fmt: skip
PARCEL = {
    "length": "10",
    "width": "8",
    "height": "4",
    "distance_unit": "in",
    "weight": "2",
    "mass_unit": "lb",
}


@dataclass
class Setup:
    account_id: uuid.UUID
    connection_id: uuid.UUID

    def url(self, token: str | None = HOOK_TOKEN) -> str:
        query = f"?token={token}" if token is not None else ""
        return f"http://hub.test/hooks/{self.connection_id}{query}"


async def connect(hub: Hub, *, webhook_token: str | None = HOOK_TOKEN, **secrets: str) -> Setup:
    values = {"api_token": TOKEN, **secrets}
    if webhook_token is not None:
        values["webhook_token"] = webhook_token
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, "Acme")
        connection = await repo.Tenant(session, account.id).create_connection(
            connector="shippo", name="Acme on Shippo", vault=hub.vault, secrets=values
        )
    return Setup(account.id, connection.id)


@dataclass
class Sandbox:
    app: Starlette
    client: httpx.AsyncClient

    @property
    def state(self) -> ShippoState:
        state: ShippoState = self.app.state.sandbox
        return state

    async def buy_label(self, **body: Any) -> dict[str, Any]:
        shipment = await self.client.post(
            "/shipments",
            json={"address_from": SF, "address_to": NYC, "parcels": [PARCEL], "async": False},
            headers=AUTH,
        )
        assert shipment.status_code == 201, shipment.text
        rate = shipment.json()["rates"][0]["object_id"]
        response = await self.client.post("/transactions", json={"rate": rate, **body}, headers=AUTH)
        assert response.status_code == 201, response.text
        await self.state.settle()
        done = await self.client.get(f"/transactions/{response.json()['object_id']}", headers=AUTH)
        transaction: dict[str, Any] = done.json()
        return transaction

    async def advance(self, tracking_number: str, status: str | None = None) -> None:
        body = {"status": status} if status else {}
        response = await self.client.post(f"/_sandbox/tracks/{tracking_number}/advance", json=body)
        assert response.status_code == 200, response.text

    async def delivered(self) -> None:
        await self.state.settle()
        await self.state.webhooks.drain()


@pytest.fixture
async def sandboxes(hub: Hub) -> AsyncIterator[Any]:
    """Make Shippo sandboxes whose webhooks go, in process, to this hub's /hooks endpoint."""
    made: list[Sandbox] = []

    async def make(setup: Setup | None, faults: str = "", **extra: str) -> Sandbox:
        config = SandboxConfig(
            seed=5,
            token=TOKEN,
            webhook_url=setup.url() if setup else None,
            faults=FaultSpec.parse(faults),
            extra={"async_delay_s": "0.02", **extra},
        )
        app = create_sandbox(config)
        state: ShippoState = app.state.sandbox
        state.webhooks.transport = httpx.ASGITransport(app=create_app(hub))
        state.webhooks.retry_delay_s = 0.01
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test")
        made.append(Sandbox(app, client))
        return made[-1]

    yield make
    for sandbox in made:
        await sandbox.client.aclose()
        await sandbox.state.stop()
        await sandbox.state.webhooks.stop()


@pytest.fixture
async def hub_client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hub.test"
    ) as client:
        yield client


async def count(hub: Hub, table: Any, *where: Any) -> int:
    async with hub.db.session() as session:
        return int(
            (await session.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


async def inbox(hub: Hub, connection_id: uuid.UUID) -> list[t.InboxMessage]:
    async with hub.db.session() as session:
        rows = await session.scalars(
            select(t.InboxMessage)
            .where(t.InboxMessage.connection_id == connection_id)
            .order_by(t.InboxMessage.received_at, t.InboxMessage.id)
        )
        return list(rows.all())


async def settled(hub: Hub) -> None:
    """Run a worker until no stored payload waits to be processed."""

    async def done() -> bool:
        return await count(hub, t.InboxMessage, t.InboxMessage.status == "received") == 0

    async with running_worker(fast(hub)):
        await eventually(done)


async def our_shipment(hub: Hub, setup: Setup, transaction: dict[str, Any], **columns: Any) -> Shipped:
    """The shipment the label flow stores for a Shippo purchase, on a shipped order."""
    values = {
        "external_id": transaction["object_id"],
        "tracking_number": transaction["tracking_number"],
        "tracking_url": transaction["tracking_url_provider"],
        "carrier": transaction["rate"]["provider"],
        "service_code": transaction["rate"]["servicelevel_token"],
        **columns,
    }
    return await shipped_order(
        hub, account_id=setup.account_id, connection_id=setup.connection_id, parcels=[values]
    )


def track_body(number: str, status: str, *, transaction: str | None = None) -> bytes:
    entry = {
        "object_id": uuid.uuid4().hex,
        "status": status,
        "status_details": "Your shipment has been delivered.",
        "status_date": "2025-03-04T10:00:00Z",
        "location": {"city": "New York", "state": "NY", "zip": "10118", "country": "US"},
    }
    data = {
        "carrier": "usps",
        "tracking_number": number,
        "transaction": transaction,
        "tracking_status": entry,
        "tracking_history": [entry],
    }
    return json.dumps({"event": "track_updated", "test": True, "data": data}).encode()


# -- end to end --------------------------------------------------------------------------------------------------
async def test_sandbox_label_tracked_to_delivery_delivers_the_order(hub: Hub, sandboxes: Any) -> None:
    setup = await connect(hub)
    sandbox: Sandbox = await sandboxes(setup)
    # Bought asynchronously: Shippo's transaction_created (QUEUED) and transaction_updated (SUCCESS) come before
    # the label flow has stored the shipment, so they name no shipment of ours yet.
    transaction = await sandbox.buy_label(metadata="crossdock:not-stored-yet")
    assert transaction["status"] == "SUCCESS"
    await sandbox.delivered()
    await settled(hub)
    shipped = await our_shipment(hub, setup, transaction)
    # Hours apart, as a parcel moves (in the same millisecond the steps would tie on time).
    sandbox.state.clock_offset += timedelta(hours=3)
    await sandbox.advance(transaction["tracking_number"])  # TRANSIT
    # Each update processed before the next arrives, as hours apart they would be. Two processed at once may
    # be applied either way round: the later one's history carries the earlier event, and whichever takes the
    # shipment's lock first stores both, so the timeline would tell both in one entry.
    await sandbox.delivered()
    await settled(hub)
    sandbox.state.clock_offset += timedelta(hours=3)
    await sandbox.advance(transaction["tracking_number"])  # DELIVERED
    await sandbox.delivered()
    assert [d.status for d in sandbox.state.webhooks.deliveries] == [200, 200, 200, 200]

    await settled(hub)

    final = await state(hub, shipped)
    assert final["order"] == "delivered"
    assert final["shipments"] == [(transaction["tracking_number"], "delivered")]
    assert [e[1] for e in final["events"]] == ["pre_transit", "in_transit", "delivered"]
    rows = await inbox(hub, setup.connection_id)
    assert [r.status for r in rows] == ["processed"] * 4
    assert [r.order_id for r in rows[:2]] == [None, None]  # the purchase's own updates: not ours yet
    summaries = [e.summary for e in await timeline(hub, shipped.order_id) if e.kind == "tracking.updated"]
    provider = transaction["rate"]["provider"]
    assert summaries[-1].startswith(f"{provider} {transaction['tracking_number']} was delivered in New York")
    assert len(summaries) == 2


async def in_order_and_faulty(hub: Hub, sandboxes: Any, faults: str) -> tuple[dict[str, Any], Sandbox, Setup]:
    setup = await connect(hub)
    sandbox: Sandbox = await sandboxes(None, faults)
    transaction = await sandbox.buy_label(**{"async": False})
    shipped = await our_shipment(hub, setup, transaction)
    sandbox.state.config.webhook_url = setup.url()
    for _ in range(2):
        # Hours apart, as a parcel moves: steps in the same millisecond would tie on their time and be ordered
        # by arrival, which is what the faulty delivery changes.
        sandbox.state.clock_offset += timedelta(hours=3)
        await sandbox.advance(transaction["tracking_number"])
    await sandbox.delivered()
    await settled(hub)
    return await state(hub, shipped), sandbox, setup


def _shape(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "order": result["order"],
        "shipments": result["shipments"],
        "events": [e[1] for e in result["events"]],
    }


async def test_duplicated_and_reordered_deliveries_end_where_one_in_order_delivery_ends(
    hub: Hub, sandboxes: Any
) -> None:
    clean, clean_sandbox, _ = await in_order_and_faulty(hub, sandboxes, "")
    # Seed 25 holds the in-transit update back until the delivered one went out, and sends the latter twice.
    faulty, faulty_sandbox, setup = await in_order_and_faulty(
        hub, sandboxes, "dup_webhooks=0.5,reorder_webhooks=0.5,seed=25"
    )

    def sent(sandbox: Sandbox) -> list[str]:
        return [
            json.loads(d.body)["data"]["tracking_status"]["status"] for d in sandbox.state.webhooks.deliveries
        ]

    assert sent(clean_sandbox) == ["TRANSIT", "DELIVERED"]
    assert sent(faulty_sandbox) == ["DELIVERED", "TRANSIT", "DELIVERED"]
    rows = await inbox(hub, setup.connection_id)
    assert sorted(r.status for r in rows) == ["duplicate", "processed", "processed"]

    assert _shape(faulty) == _shape(clean)
    assert _shape(clean)["order"] == "delivered"
    assert _shape(clean)["events"] == ["pre_transit", "in_transit", "delivered"]


async def test_a_refunded_label_voids_its_shipment(hub: Hub, sandboxes: Any) -> None:
    setup = await connect(hub)
    sandbox: Sandbox = await sandboxes(setup)
    transaction = await sandbox.buy_label(**{"async": False})
    shipped = await our_shipment(hub, setup, transaction)
    response = await sandbox.client.post(
        "/refunds", json={"transaction": transaction["object_id"]}, headers=AUTH
    )
    assert response.status_code == 201, response.text
    await sandbox.delivered()
    await settled(hub)

    assert (await state(hub, shipped))["shipments"] == [(transaction["tracking_number"], "voided")]
    voided = [e for e in await timeline(hub, shipped.order_id) if e.kind == "shipment.voided"]
    assert len(voided) == 1 and "Shippo refunded the label" in voided[0].summary
    assert transaction["object_id"] in voided[0].summary


async def test_a_failed_purchase_is_told_on_the_timeline_with_shippos_messages(
    hub: Hub, sandboxes: Any
) -> None:
    setup = await connect(hub)
    # The label flow's shipment while Shippo buys: it knows the purchase only by the key it sent as metadata.
    shipped = await shipped_order(
        hub,
        account_id=setup.account_id,
        connection_id=setup.connection_id,
        parcels=[
            {
                "status": "label_pending",
                "external_id": None,
                "tracking_number": None,
                "idempotency_key": "k-7",
            }
        ],
        order_status="ready_to_ship",
    )
    sandbox: Sandbox = await sandboxes(setup, fail_labels="1")
    transaction = await sandbox.buy_label(metadata="crossdock:k-7")
    assert transaction["status"] == "ERROR"
    await sandbox.delivered()
    await settled(hub)

    errors = [e for e in await timeline(hub, shipped.order_id) if e.kind == "shipping.label_error"]
    assert len(errors) == 1 and errors[0].severity == "error"
    assert "carrier_timeout" in errors[0].summary and "did not answer in time" in errors[0].summary
    assert (await state(hub, shipped))["shipments"] == [(None, "label_pending")]


async def test_with_hmac_provisioned_signed_deliveries_pass_and_forged_ones_are_refused(
    hub: Hub, sandboxes: Any, hub_client: httpx.AsyncClient
) -> None:
    setup = await connect(hub, webhook_hmac_secret="hmac-secret-9f2")
    sandbox: Sandbox = await sandboxes(setup, hmac_secret="hmac-secret-9f2")
    transaction = await sandbox.buy_label(**{"async": False})
    await sandbox.delivered()
    assert [d.status for d in sandbox.state.webhooks.deliveries] == [200]
    assert "shippo-auth-signature" in {k.lower() for k in sandbox.state.webhooks.deliveries[0].headers}

    body = track_body(transaction["tracking_number"], "DELIVERED")
    forged = shippo_signature(body, "not-the-secret", int(time.time()))
    for headers in ({"Shippo-Auth-Signature": forged}, {}):
        response = await hub_client.post(setup.url(), content=body, headers=headers)
        assert response.status_code == 401
        assert "webhook_hmac_secret" in response.json()["detail"]
        assert "hmac-secret-9f2" not in response.text
    assert await count(hub, t.InboxMessage, t.InboxMessage.connection_id == setup.connection_id) == 1


# -- the endpoint --------------------------------------------------------------------------------------------------
async def test_without_a_webhook_token_the_hook_says_how_to_set_one(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    setup = await connect(hub, webhook_token=None)
    response = await hub_client.post(setup.url(token="anything"), content=track_body("9400", "TRANSIT"))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert "webhook_token" in detail and f"/hooks/{setup.connection_id}?token=" in detail
    assert await count(hub, t.InboxMessage) == 0


async def test_a_missing_or_wrong_token_is_refused_and_nothing_is_stored(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    setup = await connect(hub)
    body = track_body("9400", "TRANSIT")
    for url in (
        setup.url(token=None),
        setup.url(token="wrong"),
        setup.url(token=HOOK_TOKEN + "x"),
        setup.url(""),
    ):
        response = await hub_client.post(url, content=body)
        assert response.status_code == 401, url
        assert "?token=" in response.json()["detail"] and HOOK_TOKEN not in response.text
    assert await count(hub, t.InboxMessage) == 0


async def test_the_same_body_twice_is_stored_once_and_its_repeat_as_a_duplicate(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    setup = await connect(hub)
    body = track_body("9400111899223197428490", "TRANSIT")
    first = await hub_client.post(setup.url(), content=body, headers={"Content-Type": "application/json"})
    again = await hub_client.post(setup.url(), content=body, headers={"Content-Type": "application/json"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    rows = await inbox(hub, setup.connection_id)
    assert [(r.kind, r.status) for r in rows] == [(SHIPPO_UPDATE, "received"), (SHIPPO_UPDATE, "duplicate")]
    assert all(HOOK_TOKEN not in json.dumps(r.headers) for r in rows)


async def test_an_update_for_a_label_crossdock_did_not_buy_is_acknowledged_and_ignored(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    setup = await connect(hub)
    shipped = await shipped_order(hub, account_id=setup.account_id, connection_id=setup.connection_id)
    before = await state(hub, shipped)
    response = await hub_client.post(setup.url(), content=track_body("9405500000000000000000", "DELIVERED"))
    assert response.status_code == 200
    await settled(hub)

    rows = await inbox(hub, setup.connection_id)
    assert [(r.status, r.error, r.order_id) for r in rows] == [("processed", None, None)]
    assert await state(hub, shipped) == before
    assert await count(hub, t.TrackingEvent) == 0


async def test_what_cannot_be_read_is_quarantined_with_its_field_and_reason(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    setup = await connect(hub)
    shipped = await shipped_order(
        hub,
        account_id=setup.account_id,
        connection_id=setup.connection_id,
        parcels=[{"tracking_number": "9400111899223197428490"}],
    )
    unreadable = track_body("9400111899223197428490", "LOST_IN_SPACE")
    for body in (unreadable, b"<html>not json</html>"):
        assert (await hub_client.post(setup.url(), content=body)).status_code == 200
    await settled(hub)

    rows = await inbox(hub, setup.connection_id)
    assert [r.status for r in rows] == ["quarantined", "quarantined"]
    assert rows[0].error is not None and "data.tracking_status.status" in rows[0].error
    assert "'LOST_IN_SPACE' is not a Shippo tracking status" in rows[0].error
    assert rows[0].order_id == shipped.order_id
    assert rows[1].error is not None and "(body)" in rows[1].error and "is not JSON" in rows[1].error
    told = [e for e in await timeline(hub, shipped.order_id) if e.kind == "tracking.quarantined"]
    assert len(told) == 1 and told[0].severity == "error" and "LOST_IN_SPACE" in told[0].summary
    assert (await state(hub, shipped))["shipments"] == [("9400111899223197428490", "label_purchased")]


async def test_batch_events_are_acknowledged_and_ignored(hub: Hub, hub_client: httpx.AsyncClient) -> None:
    setup = await connect(hub)
    body = json.dumps({"event": "batch_purchased", "test": True, "data": {"object_id": "b1"}}).encode()
    assert (await hub_client.post(setup.url(), content=body)).status_code == 200
    await settled(hub)
    assert [(r.status, r.error) for r in await inbox(hub, setup.connection_id)] == [("processed", None)]

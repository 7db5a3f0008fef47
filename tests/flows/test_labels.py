"""From an order on a channel to a label and the channel's fulfillment, end to end against the sandboxes.

An order created in the Shopify sandbox is pulled, the account's rules choose the Shippo sandbox's cheapest
rate, the label is bought there once, and the fulfillment that reaches the Shopify sandbox carries the tracking
number Shippo issued. A purchase whose answer was lost is found at Shippo, not bought again; planning and buying
twice buy once; a cancelled order's waiting purchase is cancelled and a bought label is voided; an order no rule
can ship fails with the reasons on its timeline.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pypdf
import pytest
from sqlalchemy import select

from crossdock import model as m
from crossdock.connectors.shippo.mapping import metadata_for
from crossdock.engine import sync
from crossdock.engine.jobs import JobContext, enqueue
from crossdock.engine.queue import retry_job
from crossdock.flows.labels import BUY_JOB, SHIP_JOB, buy_job, ship_job
from crossdock.hub import Hub
from crossdock.sandbox.common import run_in_thread
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from crossdock.store.types import utcnow
from tests.connectors.test_shippo_client import LIVE_TOKEN, ORIGIN, Front, Shippo, an_order, sandbox_app
from tests.engine.fulfil_support import Channel, serve_channel
from tests.engine.processes import start_worker, stop_all, worker_env
from tests.engine.support import eventually, statements_sent, timeline, transactions_sent
from tests.flows.support import PACKING, jobs_of, put_policy, run_all, shipments_of
from tests.support import Tenant as Account
from tests.support import new_account


@pytest.fixture
async def shopify() -> AsyncIterator[Channel]:
    async with serve_channel("shopify") as served:
        yield served


@pytest.fixture
async def shippo_sandbox() -> AsyncIterator[Shippo]:
    app = sandbox_app()
    front = Front(app)
    with run_in_thread(front) as url:
        remote = Shippo(url, front, app.state.sandbox)
        yield remote
        await remote.admin.aclose()


@dataclass
class Setup:
    account: Account
    shopify_id: uuid.UUID
    shippo_id: uuid.UUID


async def set_up(
    hub: Hub,
    client: httpx.AsyncClient,
    shopify: Channel,
    shippo: Shippo,
    *,
    auto_ship: bool,
    rules: Any = None,
    packing: dict[str, Any] | None = None,
) -> Setup:
    account = await new_account(hub, "Acme")
    account_id = uuid.UUID(account.id)
    shopify_id = await shopify.connect(hub, account_id)
    async with hub.db.transaction() as session:
        row = await Tenant(session, account_id).create_connection(
            connector="shippo",
            name="Shippo",
            vault=hub.vault,
            settings={"from_address": ORIGIN},
            base_url=shippo.url,
            secrets={"api_token": LIVE_TOKEN},
        )
    rules = rules if rules is not None else [{"connection_id": str(row.id), "strategy": "cheapest"}]
    await put_policy(client, account, auto_ship=auto_ship, rules=rules, packing=packing)
    return Setup(account, shopify_id, row.id)


async def new_shopify_order(hub: Hub, shopify: Channel, setup: Setup, **fields: Any) -> tuple[uuid.UUID, str]:
    """An order placed in the Shopify sandbox now (with these Shopify order fields), pulled into crossdock; its
    id here and at Shopify."""
    r = await shopify.admin.post(
        "/_sandbox/orders", json={"order": {"shipping_address": {"country_code": "US"}, **fields}}
    )
    assert r.status_code == 201, r.text
    external_id = str(r.json()["order"]["id"])
    run = await sync.run_pull(
        hub, uuid.UUID(setup.account.id), setup.shopify_id, since=utcnow() - timedelta(hours=1)
    )
    assert run.status == "succeeded", run.error
    async with hub.db.session() as session:
        order_id = await session.scalar(
            select(t.Order.id).where(
                t.Order.connection_id == setup.shopify_id, t.Order.external_id == external_id
            )
        )
    assert order_id is not None
    return order_id, external_id


async def purchases_for(shippo: Shippo, hub: Hub, order_id: uuid.UUID) -> list[dict[str, Any]]:
    """The Shippo transactions bought for this order's shipments (the sandbox's other paid orders are shipped
    too), found by the metadata each purchase carries."""
    keys = {metadata_for(s.idempotency_key or "") for s in await shipments_of(hub, order_id)}
    return [x for x in await shippo.transactions() if x["status"] == "SUCCESS" and x.get("metadata") in keys]


async def test_a_shopify_order_ends_with_the_tracking_shippo_issued_on_shopify(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, shippo_sandbox: Shippo
) -> None:
    setup = await set_up(hub, client, shopify, shippo_sandbox, auto_ship=True)
    order_id, external_id = await new_shopify_order(hub, shopify, setup)
    await run_all(hub, setup.account.id)

    purchases = await purchases_for(shippo_sandbox, hub, order_id)
    assert len(purchases) == 1
    tracking = purchases[0]["tracking_number"]
    on_shopify = await shopify.shipments(external_id)
    assert [s.tracking_number for s in on_shopify] == [tracking]

    (shipment,) = await shipments_of(hub, order_id)
    assert shipment.status == "label_purchased"
    assert shipment.tracking_number == tracking and shipment.external_id == purchases[0]["object_id"]
    assert shipment.decision is not None and shipment.decision.startswith("rule 1: cheapest -> ")
    async with hub.db.session() as session:
        order = await session.get(t.Order, order_id)
        label = (await session.scalars(select(t.Label).where(t.Label.shipment_id == shipment.id))).one()
    assert order is not None and order.status == "shipped"
    pdf = pypdf.PdfReader(io.BytesIO(hub.blobs.get(label.blob_key)))
    assert len(pdf.pages) >= 1 and label.format == "pdf"

    events = {e.kind: e.summary for e in await timeline(hub, order_id)}
    assert events["shipping.planned"].startswith("rule 1: cheapest -> ")
    assert f"tracking {tracking}" in events["shipping.label_bought"]
    assert "fulfillment.pushed" in events


async def test_a_purchase_whose_answer_was_lost_is_found_at_shippo_and_not_bought_again(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, shippo_sandbox: Shippo
) -> None:
    setup = await set_up(hub, client, shopify, shippo_sandbox, auto_ship=False)
    order_id, external_id = await new_shopify_order(hub, shopify, setup)
    shippo_sandbox.front.lose_next_purchase = True
    asked = await client.post(f"/api/v1/orders/{order_id}/ship", headers=setup.account.headers)
    assert asked.status_code == 202, asked.text
    await run_all(hub, setup.account.id)
    assert shippo_sandbox.front.lose_next_purchase is False  # the purchase was made and its answer lost
    # The first attempt's answer never came back; its retry waits out a backoff the test does not sit through.
    (buy,) = await jobs_of(hub, order_id, BUY_JOB)
    if buy.status == "failed":
        async with hub.db.transaction() as session:
            row = await session.get(t.Job, buy.id)
            assert row is not None
            row.run_at = utcnow()
        await run_all(hub, setup.account.id)

    keys = {metadata_for(s.idempotency_key or "") for s in await shipments_of(hub, order_id)}
    assert len([x for x in await shippo_sandbox.transactions() if x.get("metadata") in keys]) == 1
    purchases = await purchases_for(shippo_sandbox, hub, order_id)
    assert len(purchases) == 1
    (shipment,) = await shipments_of(hub, order_id)
    assert shipment.status == "label_purchased" and shipment.external_id == purchases[0]["object_id"]
    summaries = [e.summary for e in await timeline(hub, order_id) if e.kind == "shipping.label_bought"]
    # The connector looked the purchase up by its idempotency key when the answer was lost (or the retry did).
    assert len(summaries) == 1 and f"tracking {purchases[0]['tracking_number']}" in summaries[0]
    assert [s.tracking_number for s in await shopify.shipments(external_id)] == [
        purchases[0]["tracking_number"]
    ]


async def test_asking_twice_and_running_twice_buy_one_label(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, shippo_sandbox: Shippo
) -> None:
    setup = await set_up(hub, client, shopify, shippo_sandbox, auto_ship=False)
    order_id, _ = await new_shopify_order(hub, shopify, setup)
    assert await jobs_of(hub, order_id, SHIP_JOB) == []  # not automatic: nothing queued by the import

    url = f"/api/v1/orders/{order_id}/ship"
    first = await client.post(url, headers=setup.account.headers)
    again = await client.post(url, headers=setup.account.headers)
    assert first.status_code == 202 and first.json()["queued"] is True
    assert again.status_code == 202 and again.json() == {"job_id": None, "queued": False}
    await run_all(hub, setup.account.id)
    # Labels bought: asking again for a shipped order is refused, and a replayed purchase job buys nothing.
    refused = await client.post(url, headers=setup.account.headers)
    assert refused.status_code == 409 and "shipped" in refused.json()["detail"]
    (shipment,) = await shipments_of(hub, order_id)
    async with hub.db.transaction() as session:
        await enqueue(
            session,
            account_id=uuid.UUID(setup.account.id),
            kind=BUY_JOB,
            payload={"shipment_id": str(shipment.id)},
            order_id=order_id,
        )
        await enqueue(
            session,
            account_id=uuid.UUID(setup.account.id),
            kind=SHIP_JOB,
            payload={"order_id": str(order_id), "requested_by": "automatic shipping"},
            order_id=order_id,
        )
    await run_all(hub, setup.account.id)
    assert len(await purchases_for(shippo_sandbox, hub, order_id)) == 1
    assert len(await shipments_of(hub, order_id)) == 1


async def test_a_failed_purchase_retried_by_hand_buys_one_label_and_a_replay_does_not(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, shippo_sandbox: Shippo
) -> None:
    setup = await set_up(hub, client, shopify, shippo_sandbox, auto_ship=True)
    assert (
        await shippo_sandbox.admin.post("/_sandbox/settings", json={"fail_labels": True})
    ).status_code == 200
    order_id, external_id = await new_shopify_order(hub, shopify, setup)
    await run_all(hub, setup.account.id)
    (shipment,) = await shipments_of(hub, order_id)
    (dead,) = await jobs_of(hub, order_id, BUY_JOB)
    assert shipment.status == "failed" and dead.status == "dead"
    assert shipment.error is not None and "Shippo could not buy the label" in shipment.error

    # A replayed purchase job (not the one that failed) does not try again.
    async with hub.db.transaction() as session:
        await enqueue(
            session,
            account_id=uuid.UUID(setup.account.id),
            kind=BUY_JOB,
            payload={"shipment_id": str(shipment.id)},
            order_id=order_id,
        )
    await run_all(hub, setup.account.id)
    assert (await shipments_of(hub, order_id))[0].status == "failed"
    assert "shipping.not_retried" in {e.kind for e in await timeline(hub, order_id)}

    # The carrier answers again and a person retries the dead job: one label, on Shopify too.
    await shippo_sandbox.admin.post("/_sandbox/settings", json={"fail_labels": False})
    async with hub.db.transaction() as session:
        await retry_job(session, dead.id, uuid.UUID(setup.account.id))
    await run_all(hub, setup.account.id)
    (shipment,) = await shipments_of(hub, order_id)
    assert shipment.status == "label_purchased" and shipment.error is None
    purchases = await purchases_for(shippo_sandbox, hub, order_id)
    assert len(purchases) == 1
    assert [s.tracking_number for s in await shopify.shipments(external_id)] == [
        purchases[0]["tracking_number"]
    ]
    assert "shipping.label_retried" in {e.kind for e in await timeline(hub, order_id)}


async def test_the_failed_purchases_of_a_two_parcel_order_retried_by_hand_both_buy_their_label(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, shippo_sandbox: Shippo
) -> None:
    # Two 1 kg units in parcels of at most 1.5 kg (100 g of packaging): one parcel, one shipment each.
    packing = {**PACKING, "max_weight": {"value": "1500", "unit": "g"}}
    setup = await set_up(hub, client, shopify, shippo_sandbox, auto_ship=True, packing=packing)
    assert (
        await shippo_sandbox.admin.post("/_sandbox/settings", json={"fail_labels": True})
    ).status_code == 200
    anvils = [{"sku": "ANVIL-1KG", "title": "Anvil", "price": "25.00", "quantity": 2, "grams": 1000}]
    order_id, _ = await new_shopify_order(hub, shopify, setup, line_items=anvils)
    await run_all(hub, setup.account.id)
    dead = await jobs_of(hub, order_id, BUY_JOB)
    assert [s.status for s in await shipments_of(hub, order_id)] == ["failed", "failed"]
    assert [j.status for j in dead] == ["dead", "dead"]

    # Each dead job is the one that failed its own shipment, whichever failed last.
    await shippo_sandbox.admin.post("/_sandbox/settings", json={"fail_labels": False})
    async with hub.db.transaction() as session:
        for job in dead:
            await retry_job(session, job.id, uuid.UUID(setup.account.id))
    await run_all(hub, setup.account.id)
    assert [s.status for s in await shipments_of(hub, order_id)] == ["label_purchased", "label_purchased"]
    assert len(await purchases_for(shippo_sandbox, hub, order_id)) == 2
    assert "shipping.not_retried" not in {e.kind for e in await timeline(hub, order_id)}


async def test_an_order_placed_long_ago_is_not_shipped_automatically(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, shippo_sandbox: Shippo
) -> None:
    setup = await set_up(hub, client, shopify, shippo_sandbox, auto_ship=True)
    async with hub.db.transaction() as session:
        row = await Tenant(session, uuid.UUID(setup.account.id)).create_order(
            an_order(status=m.OrderStatus.PAID, placed_at=utcnow() - timedelta(days=30))
        )
    assert await jobs_of(hub, row.id, SHIP_JOB) == []
    (skipped,) = [e for e in await timeline(hub, row.id) if e.kind == "shipping.not_automatic"]
    assert skipped.summary.startswith("Not shipped automatically: the order was placed more than 7 days ago")
    assert "ship it from its page" in skipped.summary


async def test_a_cancelled_order_voids_its_bought_label(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, shippo_sandbox: Shippo
) -> None:
    setup = await set_up(hub, client, shopify, shippo_sandbox, auto_ship=True)
    order_id, _ = await new_shopify_order(hub, shopify, setup)
    await run_all(hub, setup.account.id)
    # A refund after shipping (the order is shipped, so it can no longer be cancelled, only refunded).
    async with hub.db.transaction() as session:
        tenant = Tenant(session, uuid.UUID(setup.account.id))
        await tenant.transition_order(await tenant.get_order(order_id), m.OrderStatus.REFUNDED, reason="test")
    await run_all(hub, setup.account.id)
    (shipment,) = await shipments_of(hub, order_id)
    assert shipment.status == "voided"
    refunds = list((await shippo_sandbox.admin.get("/_sandbox/refunds")).json())
    assert [r["transaction"] for r in refunds] == [shipment.external_id]
    assert any(e.kind == "shipping.label_voided" for e in await timeline(hub, order_id))


async def test_a_waiting_purchase_is_cancelled_with_its_order(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, shippo_sandbox: Shippo
) -> None:
    setup = await set_up(hub, client, shopify, shippo_sandbox, auto_ship=True)
    order_id, _ = await new_shopify_order(hub, shopify, setup)
    (ship,) = await jobs_of(hub, order_id, SHIP_JOB)
    assert ship.status == "queued" and ship.cancel_with_order
    cancelled = await client.post(
        f"/api/v1/orders/{order_id}/cancel", json={"reason": "customer"}, headers=setup.account.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    await run_all(hub, setup.account.id)
    (ship,) = await jobs_of(hub, order_id, SHIP_JOB)
    assert ship.status == "cancelled"
    assert await shipments_of(hub, order_id) == []


async def test_an_order_no_rule_can_ship_fails_with_the_reasons_on_its_timeline(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, shippo_sandbox: Shippo
) -> None:
    setup = await set_up(
        hub, client, shopify, shippo_sandbox, auto_ship=True, rules=[{"match": {"countries": ["DE"]}}]
    )
    order_id, _ = await new_shopify_order(hub, shopify, setup)
    await run_all(hub, setup.account.id)
    (ship,) = await jobs_of(hub, order_id, SHIP_JOB)
    assert ship.status == "dead" and "no shipping service chosen" in (ship.last_error or "")
    (failed,) = [e for e in await timeline(hub, order_id) if e.kind == "shipping.failed"]
    assert failed.severity == "error"
    assert "rule 1: the shipment goes to US, not DE" in failed.summary
    assert await shippo_sandbox.transactions() == []


@dataclass
class KillsOnPurchase:
    """In front of the Shippo sandbox: the first label purchase reaches Shippo, which buys the label, and the
    worker that sent it is SIGKILLed before the answer is sent: the purchase's outcome dies with the process."""

    app: Any
    pid: int | None = None
    killed: bool = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        purchase = (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].rstrip("/") == "/transactions"
        )
        if not purchase or self.killed or self.pid is None:
            await self.app(scope, receive, send)
            return
        self.killed = True

        async def discard(_message: Any) -> None:
            return None

        await self.app(scope, receive, discard)
        os.kill(self.pid, signal.SIGKILL)


async def test_a_worker_killed_during_the_label_purchase_leaves_one_label(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, tmp_path: Path
) -> None:
    app = sandbox_app()
    front = KillsOnPurchase(app)
    outer = Front(front)
    with run_in_thread(outer) as url:
        shippo = Shippo(url, outer, app.state.sandbox)
        setup = await set_up(hub, client, shopify, shippo, auto_ship=True)
        order_id, external_id = await new_shopify_order(hub, shopify, setup)
        env = worker_env(hub, lease_s=2.0)
        env.update(CROSSDOCK_ALLOW_PRIVATE_URLS="true", CROSSDOCK_SYNC_SCHEDULE="false")
        log = tmp_path / "workers.log"
        processes: list[subprocess.Popen[bytes]] = []
        try:
            first = start_worker(env, concurrency=1, log=log)
            processes.append(first)
            front.pid = first.pid
            await eventually(lambda: _exited(first), within_s=60)
            assert front.killed and first.returncode == -signal.SIGKILL, log.read_text(errors="replace")[
                -3000:
            ]
            (shipment,) = await shipments_of(hub, order_id)
            assert shipment.status == "label_pending" and shipment.purchase_started_at is not None
            processes.append(start_worker(env, concurrency=1, log=log))

            async def bought() -> bool:
                (row,) = await shipments_of(hub, order_id)
                return row.status == "label_purchased" and bool(await shopify.shipments(external_id))

            await eventually(bought, within_s=60)
        finally:
            stop_all(processes)
        purchases = await purchases_for(shippo, hub, order_id)
        await shippo.admin.aclose()
    assert len(purchases) == 1
    (shipment,) = await shipments_of(hub, order_id)
    assert shipment.external_id == purchases[0]["object_id"]
    assert [s.tracking_number for s in await shopify.shipments(external_id)] == [
        purchases[0]["tracking_number"]
    ]
    (buy,) = await jobs_of(hub, order_id, BUY_JOB)
    assert buy.status == "succeeded" and buy.attempts == 2


async def _exited(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is not None


def _job_context(hub: Hub, setup: Setup, kind: str, order_id: uuid.UUID) -> JobContext:
    account_id = uuid.UUID(setup.account.id)
    return JobContext(hub, uuid.uuid4(), kind, account_id, attempt=1, order_id=order_id, worker_id="test")


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_on_postgresql_planning_and_buying_a_label_read_outside_transactions_and_read_the_order_once_to_store(
    hub: Hub, client: httpx.AsyncClient, shopify: Channel, shippo_sandbox: Shippo
) -> None:
    setup = await set_up(hub, client, shopify, shippo_sandbox, auto_ship=False)
    order_id, _ = await new_shopify_order(hub, shopify, setup)

    # Planning: the connections the rules name and those to ask for rates are read without a transaction
    # around either; the order is read, then its shipments written, in a transaction each.
    with transactions_sent(hub) as control:
        await ship_job(_job_context(hub, setup, SHIP_JOB, order_id), {"order_id": str(order_id)})
    (shipment,) = await shipments_of(hub, order_id)
    assert shipment.status == "label_pending"
    assert control.count("BEGIN ISOLATION LEVEL READ COMMITTED") == 2 and "ROLLBACK" not in control

    # Buying: the mark before the purchase is sent is a statement of its own. Storing the label reads the
    # order once (found by its shipment, locked, with its lines) and records the fulfillment against it,
    # without a savepoint and without reading the fulfillment back after its INSERT.
    with transactions_sent(hub) as control, statements_sent(hub) as statements:
        await buy_job(_job_context(hub, setup, BUY_JOB, order_id), {"shipment_id": str(shipment.id)})
    (shipment,) = await shipments_of(hub, order_id)
    [purchase] = await purchases_for(shippo_sandbox, hub, order_id)
    assert shipment.status == "label_purchased" and shipment.tracking_number == purchase["tracking_number"]
    assert control.count("BEGIN ISOLATION LEVEL READ COMMITTED") == 2  # the read before buying; the storing
    order_reads = [sql for sql in statements if sql.startswith("SELECT orders.")]
    assert len(order_reads) == 2, order_reads  # the read before buying; the lock to store
    assert "FOR UPDATE" in order_reads[1] and "FROM shipments" in order_reads[1]
    assert not [sql for sql in statements if sql.startswith(("SAVEPOINT", "SELECT fulfillments."))]
    async with hub.db.session() as session:
        order = await session.get(t.Order, order_id)
        [fulfillment] = (
            await session.scalars(select(t.Fulfillment).where(t.Fulfillment.order_id == order_id))
        ).all()
    assert order is not None and order.status == "shipped"
    assert (fulfillment.shipment_id, fulfillment.tracking_number) == (
        shipment.id,
        purchase["tracking_number"],
    )
    assert fulfillment.status == "pending"  # its push is queued

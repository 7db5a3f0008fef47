"""The Failures page: the account's dead jobs and quarantined payloads, each retried or discarded with the
session's CSRF token; another account's are neither listed nor touched."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from crossdock.engine import inbox
from crossdock.engine.sync import SYNC_JOB
from crossdock.hub import Hub
from crossdock.sandbox.common import Faults, SandboxConfig, WebhookSender
from crossdock.sandbox.shopify.state import ShopState
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.flows.support import run_all
from tests.support import Tenant, order_body
from tests.web.support import signed_in

SHOP = "failures-test.myshopify.com"


def shopify_order() -> dict[str, Any]:
    """One order as Shopify's REST API sends it, from the sandbox's generator."""
    config = SandboxConfig(seed=7, orders=1, extra={"shop": SHOP})
    faults = Faults(config.faults)
    shop = ShopState(config, faults, WebhookSender(faults))
    return shop.render(next(iter(shop.orders())))


async def add_shop(client: httpx.AsyncClient, who: Tenant, name: str) -> str:
    made = await client.post(
        "/api/v1/connections",
        json={
            "connector": "shopify",
            "name": name,
            "settings": {"shop": SHOP},
            "secrets": {"access_token": "shpat_failures"},
        },
        headers=who.headers,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def dead_job(
    hub: Hub, who: Tenant, connection_id: str, *, order_id: str | None = None, error: str = "boom"
) -> str:
    now = utcnow()
    job = t.Job(
        account_id=uuid.UUID(who.id),
        kind=SYNC_JOB,
        payload={"connection_id": connection_id, "trigger": "schedule"},
        status="dead",
        attempts=10,
        max_attempts=10,
        run_at=now - timedelta(minutes=5),
        order_id=uuid.UUID(order_id) if order_id else None,
        last_error=error,
        cancel_requested=False,
        created_at=now - timedelta(hours=1),
        started_at=now - timedelta(minutes=6),
        finished_at=now - timedelta(minutes=5),
    )
    async with hub.db.transaction() as session:
        session.add(job)
    return str(job.id)


async def quarantined(
    hub: Hub,
    who: Tenant,
    connection_id: str,
    body: dict[str, Any],
    *,
    kind: str = "shopify.order",
    reason: str,
) -> str:
    row = t.InboxMessage(
        account_id=uuid.UUID(who.id),
        connection_id=uuid.UUID(connection_id),
        kind=kind,
        dedup_key=f"pull:{body.get('id')}:1",
        headers={"x-crossdock-source": "pull"},
        body=json.dumps(body).encode(),
        status="quarantined",
        error=reason,
        received_at=utcnow() - timedelta(minutes=2),
        processed_at=utcnow() - timedelta(minutes=2),
    )
    async with hub.db.transaction() as session:
        session.add(row)
    return str(row.id)


async def job(hub: Hub, ident: str) -> t.Job:
    async with hub.db.session() as session:
        row = await session.get(t.Job, uuid.UUID(ident))
    assert row is not None
    return row


async def payload(hub: Hub, ident: str) -> t.InboxMessage:
    async with hub.db.session() as session:
        row = await session.get(t.InboxMessage, uuid.UUID(ident))
    assert row is not None
    return row


async def test_nothing_failed_says_so(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    await signed_in(client, hub, acme)
    page = await client.get("/failures")
    assert page.status_code == 200 and "Nothing has failed." in page.text
    assert 'data-live="failures"' in page.text


async def test_dead_jobs_and_quarantined_payloads_are_listed_with_the_remotes_words(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    shop = await add_shop(client, acme, "Acme shop")
    order = await client.post("/api/v1/orders", json=order_body(), headers=acme.headers)
    order_id = order.json()["id"]
    job_id = await dead_job(
        hub, acme, shop, order_id=order_id, error="Shopify answered 422: fulfillment_order is closed"
    )
    shopify_id = await quarantined(
        hub, acme, shop, shopify_order(), reason="shipping_address.country_code: 'XX' is not a country"
    )
    # A kind no processor of this hub reads (a connector that is not installed).
    unknown_id = await quarantined(
        hub, acme, shop, {"orderId": "12-345"}, kind="woocommerce.order", reason="line_items: is empty"
    )
    await signed_in(client, hub, acme)
    page = (await client.get("/failures")).text

    assert "Nothing has failed" not in page
    row = page[page.index(f'<tr id="j-{job_id}">') :].split("</tr>")[0]
    assert SYNC_JOB in row and f'<a href="/orders/{order_id}">Order M-1001</a>' in row
    assert f'href="/connections#c-{shop}"' in row and "Acme shop" in row
    assert "<td>10</td>" in row and "Shopify answered 422: fulfillment_order is closed" in row
    assert (
        f'action="/failures/jobs/{job_id}/retry"' in row
        and f'action="/failures/jobs/{job_id}/discard"' in row
    )
    q = page[page.index(f'<tr id="q-{shopify_id}">') :].split("</tr>")[0]
    assert "shopify.order" in q and "Acme shop" in q and "from a pull" in q
    assert "&#39;XX&#39; is not a country" in q
    assert f'action="/failures/payloads/{shopify_id}/retry"' in q
    other = page[page.index(f'<tr id="q-{unknown_id}">') :].split("</tr>")[0]
    assert "/retry" not in other and "cannot read this kind again" in other and "/discard" in other
    region = await client.get("/failures", headers={"X-Live-Block": "failures"})
    assert region.status_code == 200 and f'id="j-{job_id}"' in region.text and "<html" not in region.text


async def test_retrying_a_dead_job_queues_it_again_and_discarding_one_puts_it_aside(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    shop = await add_shop(client, acme, "Acme shop")
    retried = await dead_job(hub, acme, shop, error="Shopify answered 503")
    csrf = await signed_in(client, hub, acme)
    answer = await client.post(f"/failures/jobs/{retried}/retry", data={"csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/failures?notice=")
    row = await job(hub, retried)
    assert row.status == "queued" and row.max_attempts > row.attempts and row.finished_at is None
    page = await client.get(answer.headers["location"])
    assert "queued again" in page.text and retried not in page.text and "Nothing has failed." in page.text
    again = await client.post(f"/failures/jobs/{retried}/retry", data={"csrf_token": csrf})
    assert again.status_code == 409 and "only dead, cancelled or failed jobs can be retried" in again.text

    # A second dead pull of the same connection: the first, queued again, already does its work.
    await client.post(f"/failures/jobs/{retried}/discard", data={"csrf_token": csrf})
    discarded = await dead_job(hub, acme, shop, error="Shopify answered 401: reinstall the app")
    gone = await client.post(f"/failures/jobs/{discarded}/discard", data={"csrf_token": csrf})
    assert gone.status_code == 303
    row = await job(hub, discarded)
    assert row.status == "cancelled" and "reinstall the app" in (row.last_error or "")
    assert discarded not in (await client.get("/failures")).text


async def test_retrying_a_quarantined_payload_processes_it_again(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    shop = await add_shop(client, acme, "Acme shop")
    body = shopify_order()
    ident = await quarantined(hub, acme, shop, body, reason="line_items: a mapping bug, fixed since")
    csrf = await signed_in(client, hub, acme)
    answer = await client.post(f"/failures/payloads/{ident}/retry", data={"csrf_token": csrf})
    assert (
        answer.status_code == 303 and "processed again" in (await client.get(answer.headers["location"])).text
    )
    assert (await payload(hub, ident)).status == "received"
    assert ident not in (await client.get("/failures")).text

    await run_all(hub, acme.id)
    row = await payload(hub, ident)
    assert row.status == "processed" and row.order_id is not None
    async with hub.db.session() as session:
        order = await session.get(t.Order, row.order_id)
    assert order is not None and order.account_id == uuid.UUID(acme.id)


async def test_a_discarded_payload_leaves_the_list_and_is_purged_with_the_others(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    shop = await add_shop(client, acme, "Acme shop")
    ident = await quarantined(hub, acme, shop, {"id": 1}, reason="body: not an order")
    csrf = await signed_in(client, hub, acme)
    answer = await client.post(f"/failures/payloads/{ident}/discard", data={"csrf_token": csrf})
    assert answer.status_code == 303
    assert (await payload(hub, ident)).status == inbox.DISCARDED
    assert "Nothing has failed." in (await client.get("/failures")).text
    refused = await client.post(f"/failures/payloads/{ident}/retry", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "only quarantined payloads" in refused.text
    async with hub.db.transaction() as session:
        assert await inbox.purge(session, older_than=utcnow() + timedelta(seconds=1)) == 1


async def test_every_action_is_refused_without_the_csrf_token(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    shop = await add_shop(client, acme, "Acme shop")
    job_id = await dead_job(hub, acme, shop)
    inbox_id = await quarantined(hub, acme, shop, shopify_order(), reason="bad")
    await signed_in(client, hub, acme)
    for path in (
        f"/failures/jobs/{job_id}/retry",
        f"/failures/jobs/{job_id}/discard",
        f"/failures/payloads/{inbox_id}/retry",
        f"/failures/payloads/{inbox_id}/discard",
    ):
        answer = await client.post(path, data={})
        assert answer.status_code == 403 and "Reload the page" in answer.text, path
    assert (await job(hub, job_id)).status == "dead"
    assert (await payload(hub, inbox_id)).status == "quarantined"
    async with hub.db.session() as session:
        assert (await session.scalars(select(t.Job).where(t.Job.kind == inbox.PROCESS_JOB))).all() == []


async def test_another_accounts_failures_are_neither_listed_nor_touched(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, globex: Tenant
) -> None:
    theirs = await add_shop(client, globex, "Globex shop")
    job_id = await dead_job(hub, globex, theirs, error="Globex's own trouble")
    inbox_id = await quarantined(hub, globex, theirs, shopify_order(), reason="Globex's bad payload")
    csrf = await signed_in(client, hub, acme)
    page = (await client.get("/failures")).text
    assert "Nothing has failed." in page and "Globex" not in page
    for path in (
        f"/failures/jobs/{job_id}/retry",
        f"/failures/jobs/{job_id}/discard",
        f"/failures/payloads/{inbox_id}/retry",
        f"/failures/payloads/{inbox_id}/discard",
        "/failures/jobs/not-an-id/retry",
    ):
        answer = await client.post(path, data={"csrf_token": csrf})
        assert answer.status_code == 404 and "not found" in answer.text and "Globex" not in answer.text, path
    assert (await job(hub, job_id)).status == "dead"
    assert (await payload(hub, inbox_id)).status == "quarantined"

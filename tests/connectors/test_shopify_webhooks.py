"""Shopify webhooks into /hooks/{connection_id}: signed deliveries from the Shopify sandbox land as canonical
orders; forged ones are refused and not stored; duplicates and reordering end where one in-order delivery
ends; what does not map is quarantined with its field and reason."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select, update

from crossdock.api.app import create_app
from crossdock.engine.connect import ConnectionRefused, update_secrets
from crossdock.hub import Hub
from crossdock.sandbox.common import Faults, SandboxConfig, WebhookSender
from crossdock.sandbox.common.faults import FaultSpec
from crossdock.sandbox.shopify.state import ShopState
from crossdock.security.signatures import shopify_webhook_signature
from crossdock.store import repo
from crossdock.store import tables as t
from tests.connectors.test_shopify_mapping import ORDER
from tests.engine.support import eventually, fast, running_worker, timeline

SECRET = "shpss_webhook_secret"


@dataclass
class Setup:
    account_id: uuid.UUID
    connection_id: uuid.UUID
    url: str


async def _connection(hub: Hub) -> Setup:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, "Acme")
        tenant = repo.Tenant(session, account.id)
        connection = await tenant.create_connection(connector="shopify", name="Acme shop", vault=hub.vault)
        await tenant.set_secret(connection, "api_secret", SECRET, hub.vault)
    return Setup(account.id, connection.id, f"http://hub.test/hooks/{connection.id}")


def _shop(hub: Hub, url: str, faults: str = "") -> ShopState:
    config = SandboxConfig(webhook_url=url, client_secret=SECRET, faults=FaultSpec.parse(faults))
    spec = Faults(config.faults)
    transport = httpx.ASGITransport(app=create_app(hub))
    return ShopState(config, spec, WebhookSender(spec, transport=transport, retry_delay_s=0.01))


@pytest.fixture
async def hub_client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hub.test"
    ) as client:
        yield client


async def _count(hub: Hub, table: Any, **where: Any) -> int:
    async with hub.db.session() as session:
        stmt = select(func.count()).select_from(table).filter_by(**where)
        return int((await session.execute(stmt)).scalar_one())


async def _settled(hub: Hub) -> None:
    async def done() -> bool:
        return await _count(hub, t.InboxMessage, status="received") == 0

    async with running_worker(fast(hub)):
        await eventually(done)


async def _orders(hub: Hub, account_id: uuid.UUID) -> list[t.Order]:
    async with hub.db.session() as session:
        stmt = select(t.Order).where(t.Order.account_id == account_id).order_by(t.Order.external_id)
        return list((await session.scalars(stmt)).all())


def _signed(body: bytes, topic: str, webhook_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": shopify_webhook_signature(body, SECRET),
        "X-Shopify-Webhook-Id": webhook_id,
    }


async def test_sandbox_orders_created_updated_and_cancelled_land_as_canonical_orders(hub: Hub) -> None:
    setup = await _connection(hub)
    shop = _shop(hub, setup.url)
    kept = shop.create_order({"financial_status": "paid"})
    shop.update_order(kept, {"note": "Leave at the door"})
    gone = shop.create_order({"financial_status": "pending"})
    shop.cancel_order(gone)
    await shop.sender.drain()
    assert all(d.status == 200 for d in shop.sender.deliveries)
    await _settled(hub)

    rows = {row.external_id: row for row in await _orders(hub, setup.account_id)}
    assert set(rows) == {str(kept.id), str(gone.id)}
    assert (rows[str(kept.id)].status, rows[str(kept.id)].notes) == ("paid", "Leave at the door")
    assert rows[str(gone.id)].status == "cancelled"
    assert await _count(hub, t.Binding) == 2


async def test_a_forged_signature_is_refused_and_nothing_is_stored(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    setup = await _connection(hub)
    body = b'{"id": 1}'
    headers = _signed(body, "orders/create", "w-1")
    headers["X-Shopify-Hmac-Sha256"] = shopify_webhook_signature(body, "not-the-secret")
    response = await hub_client.post(setup.url, content=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    unsigned = {k: v for k, v in headers.items() if k != "X-Shopify-Hmac-Sha256"}
    assert (await hub_client.post(setup.url, content=body, headers=unsigned)).status_code == 401
    assert await _count(hub, t.InboxMessage) == 0


async def test_during_a_secret_rotation_both_secrets_sign_until_the_old_one_is_removed(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    setup = await _connection(hub)
    await update_secrets(
        hub,
        setup.account_id,
        setup.connection_id,
        {"api_secret": "shpss_rotated", "api_secret_previous": SECRET},
    )
    body = json.dumps(ORDER).encode()

    def signed_with(secret: str, webhook_id: str) -> dict[str, str]:
        headers = _signed(body, "orders/create", webhook_id)
        headers["X-Shopify-Hmac-Sha256"] = shopify_webhook_signature(body, secret)
        return headers

    old = await hub_client.post(setup.url, content=body, headers=signed_with(SECRET, "w-old"))
    new = await hub_client.post(setup.url, content=body, headers=signed_with("shpss_rotated", "w-new"))
    assert (old.status_code, new.status_code) == (200, 200)

    await update_secrets(hub, setup.account_id, setup.connection_id, {"api_secret_previous": ""})
    late = await hub_client.post(setup.url, content=body, headers=signed_with(SECRET, "w-late"))
    assert late.status_code == 401
    assert await _count(hub, t.InboxMessage) == 2
    with pytest.raises(ConnectionRefused, match="cannot be removed"):
        await update_secrets(hub, setup.account_id, setup.connection_id, {"access_token": ""})


async def test_an_unknown_connection_is_not_found_and_nothing_is_stored(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    await _connection(hub)
    body = b'{"id": 1}'
    response = await hub_client.post(
        f"/hooks/{uuid.uuid4()}", content=body, headers=_signed(body, "orders/create", "w-1")
    )
    assert response.status_code == 404
    assert await _count(hub, t.InboxMessage) == 0


async def test_duplicated_and_reordered_deliveries_end_like_one_in_order_delivery(hub: Hub) -> None:
    setup = await _connection(hub)
    shop = _shop(hub, setup.url, "dup_webhooks=1,reorder_webhooks=0.5,seed=3")
    order = shop.create_order({"financial_status": "pending"})
    shop.update_order(order, {"note": "first"})
    shop.update_order(order, {"financial_status": "paid", "note": "second"})
    await shop.sender.drain()
    assert any(d.duplicate for d in shop.sender.deliveries)
    await _settled(hub)
    # Replaying every recorded delivery again, newest first, changes nothing.
    async with httpx.AsyncClient(transport=shop.sender.transport, base_url="http://hub.test") as client:
        for delivery in reversed(shop.sender.deliveries):
            headers = {**delivery.headers, "X-Shopify-Webhook-Id": f"replay-{uuid.uuid4()}"}
            assert (
                await client.post(delivery.url, content=delivery.body, headers=headers)
            ).status_code == 200
    await _settled(hub)

    rows = await _orders(hub, setup.account_id)
    assert len(rows) == 1
    assert (rows[0].status, rows[0].notes) == ("paid", "second")
    assert await _count(hub, t.Binding) == 1


async def test_an_unmappable_payload_is_quarantined_on_the_inbox_row_and_the_orders_timeline(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    setup = await _connection(hub)
    shop = _shop(hub, setup.url)
    order = shop.create_order({"financial_status": "paid"})
    await shop.sender.drain()
    await _settled(hub)
    payload = json.loads(shop.sender.deliveries[0].body)
    payload["shipping_address"]["country_code"] = "XX"
    payload["shipping_address"]["country"] = "Nowhere"
    payload["updated_at"] = "2099-01-01T00:00:00Z"
    body = json.dumps(payload).encode()
    response = await hub_client.post(
        setup.url, content=body, headers=_signed(body, "orders/updated", "w-bad")
    )
    assert response.status_code == 200
    await _settled(hub)

    async with hub.db.session() as session:
        row = (await session.scalars(select(t.InboxMessage).filter_by(dedup_key="w-bad"))).one()
    assert row.status == "quarantined"
    assert row.error is not None
    assert "shipping_address" in row.error
    rows = await _orders(hub, setup.account_id)
    assert [r.external_id for r in rows] == [str(order.id)]
    assert rows[0].shipping_address is not None
    assert rows[0].shipping_address["country"] != "XX"
    errors = [e for e in await timeline(hub, rows[0].id) if e.severity == "error"]
    assert len(errors) == 1
    assert "shipping_address" in errors[0].summary


async def test_a_body_over_the_size_limit_is_refused_and_nothing_is_stored(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    setup = await _connection(hub)
    body = b'{"note": "' + b"x" * hub.settings.max_body_bytes + b'"}'
    response = await hub_client.post(setup.url, content=body, headers=_signed(body, "orders/create", "w-big"))
    assert response.status_code == 413
    assert await _count(hub, t.InboxMessage) == 0


async def test_a_secret_changed_by_another_process_is_accepted_at_once_and_a_removed_connection_is_not_found(
    hub: Hub, hub_client: httpx.AsyncClient
) -> None:
    """The route keeps a connection's keys in memory for a few seconds (engine/hook_keys.py). A secret set by
    another process (here written to the table directly, as `crossdock connections update` in a shell would,
    unseen by this process) is accepted on the first delivery it signs, because a failed check reads the keys
    again; a connection removed by another process is answered 404, nothing stored."""
    setup = await _connection(hub)
    body = json.dumps(ORDER).encode()
    assert (
        await hub_client.post(setup.url, content=body, headers=_signed(body, "orders/create", "w-1"))
    ).status_code == 200

    key_id, ciphertext = hub.vault.seal(
        "shpss_elsewhere",
        account_id=str(setup.account_id),
        connection_id=str(setup.connection_id),
        name="api_secret",
    )
    async with hub.db.transaction() as session:
        await session.execute(
            update(t.ConnectionSecret)
            .where(
                t.ConnectionSecret.connection_id == setup.connection_id,
                t.ConnectionSecret.name == "api_secret",
            )
            .values(key_id=key_id, ciphertext=ciphertext)
        )
    await asyncio.sleep(1.1)  # the keys were read over a second ago: a failed check may read them again
    headers = _signed(body, "orders/create", "w-2")
    headers["X-Shopify-Hmac-Sha256"] = shopify_webhook_signature(body, "shpss_elsewhere")
    assert (await hub_client.post(setup.url, content=body, headers=headers)).status_code == 200

    async with hub.db.transaction() as session:
        await session.execute(delete(t.Connection).where(t.Connection.id == setup.connection_id))
    response = await hub_client.post(
        setup.url, content=body, headers={**headers, "X-Shopify-Webhook-Id": "w-3"}
    )
    assert response.status_code == 404
    assert await _count(hub, t.InboxMessage) == 0  # removed with its connection; w-3 never stored

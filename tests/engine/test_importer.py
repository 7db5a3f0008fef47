"""The importer: one order and one binding per remote order, older versions skipped, same-second changes
applied, statuses only moved forward, unmappable payloads quarantined with their field and reason."""

from __future__ import annotations

import asyncio
import copy
import uuid
from typing import Any

from sqlalchemy import func, select

from crossdock.connectors.shopify import map_order
from crossdock.engine.importer import ImportResult, Outcome, import_order
from crossdock.hub import Hub
from crossdock.model import OrderStatus
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from tests.connectors.test_shopify_mapping import ORDER
from tests.engine.support import new_shop, timeline


def _payload(**changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(ORDER)
    payload.update(changes)
    return payload


async def _import(hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID, payload: Any) -> ImportResult:
    async with hub.db.transaction() as session:
        return await import_order(
            session, Tenant(session, account_id), connection_id, map_order(payload), source="Shopify"
        )


async def _order(hub: Hub, order_id: uuid.UUID | None) -> t.Order:
    assert order_id is not None
    async with hub.db.session() as session:
        row = await session.get(t.Order, order_id)
        assert row is not None
        return row


async def _count(hub: Hub, table: Any) -> int:
    async with hub.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_new_remote_order_is_created_paid_with_its_binding_and_timeline(hub: Hub) -> None:
    shop = await new_shop(hub)
    result = await _import(hub, shop.account_id, shop.connection_id, _payload())
    assert result.outcome is Outcome.CREATED
    row = await _order(hub, result.order_id)
    assert (row.status, row.external_id, row.connection_id) == (
        "paid",
        "820982911946154508",
        shop.connection_id,
    )
    async with hub.db.session() as session:
        binding = (await session.scalars(select(t.Binding))).one()
    assert binding.canonical_id == row.id
    assert binding.external_version == map_order(ORDER).external_version
    summaries = [e.summary for e in await timeline(hub, row.id)]
    assert any(s.endswith("created (Shopify), status paid") for s in summaries)
    assert any(s.startswith("Imported from Shopify #1001") for s in summaries)


async def test_the_same_version_twice_is_skipped_and_an_older_one_changes_nothing(hub: Hub) -> None:
    shop = await new_shop(hub)
    first = await _import(hub, shop.account_id, shop.connection_id, _payload(note="v2"))
    again = await _import(hub, shop.account_id, shop.connection_id, _payload(note="v2"))
    older = await _import(
        hub, shop.account_id, shop.connection_id, _payload(note="v1", updated_at="2024-03-14T09:27:09-04:00")
    )
    assert (first.outcome, again.outcome, older.outcome) == (
        Outcome.CREATED,
        Outcome.SKIPPED,
        Outcome.SKIPPED,
    )
    assert (await _order(hub, first.order_id)).notes == "v2"
    assert await _count(hub, t.Binding) == 1


async def test_two_changes_within_one_second_are_both_applied(hub: Hub) -> None:
    shop = await new_shop(hub)
    first = await _import(hub, shop.account_id, shop.connection_id, _payload(note="first"))
    second = await _import(hub, shop.account_id, shop.connection_id, _payload(note="second"))
    assert second.outcome is Outcome.UPDATED
    assert "notes" in second.summary
    assert (await _order(hub, first.order_id)).notes == "second"


async def test_a_channel_behind_our_flow_does_not_move_the_order_back(hub: Hub) -> None:
    shop = await new_shop(hub)
    created = await _import(hub, shop.account_id, shop.connection_id, _payload())
    async with hub.db.transaction() as session:
        tenant = Tenant(session, shop.account_id)
        row = await tenant.get_order(created.order_id or uuid.uuid4())
        await tenant.transition_order(row, OrderStatus.READY_TO_SHIP)
    later = await _import(
        hub, shop.account_id, shop.connection_id, _payload(note="x", updated_at="2024-03-14T09:30:00-04:00")
    )
    assert later.outcome is Outcome.UPDATED
    assert (await _order(hub, created.order_id)).status == "ready_to_ship"
    shipped = await _import(
        hub,
        shop.account_id,
        shop.connection_id,
        _payload(note="x", fulfillment_status="fulfilled", updated_at="2024-03-14T09:31:00-04:00"),
    )
    assert shipped.outcome is Outcome.UPDATED
    assert (await _order(hub, created.order_id)).status == "shipped"


async def test_a_cancelled_remote_order_is_cancelled_here(hub: Hub) -> None:
    shop = await new_shop(hub)
    created = await _import(hub, shop.account_id, shop.connection_id, _payload())
    await _import(
        hub,
        shop.account_id,
        shop.connection_id,
        _payload(cancelled_at="2024-03-14T10:00:00-04:00", updated_at="2024-03-14T10:00:00-04:00"),
    )
    assert (await _order(hub, created.order_id)).status == "cancelled"


async def test_an_unmappable_order_is_quarantined_and_named_on_the_existing_orders_timeline(hub: Hub) -> None:
    shop = await new_shop(hub)
    bad_address = {**ORDER["shipping_address"], "country_code": "XX", "country": "Nowhere"}
    fresh = await _import(hub, shop.account_id, shop.connection_id, _payload(shipping_address=bad_address))
    assert fresh.outcome is Outcome.QUARANTINED
    assert fresh.order_id is None
    assert any(p.field.startswith("shipping_address") for p in fresh.problems)
    assert await _count(hub, t.Order) == 1  # the shop's own order only

    created = await _import(hub, shop.account_id, shop.connection_id, _payload())
    later = await _import(
        hub,
        shop.account_id,
        shop.connection_id,
        _payload(shipping_address=bad_address, updated_at="2024-03-14T11:00:00-04:00"),
    )
    assert later.outcome is Outcome.QUARANTINED
    assert later.order_id == created.order_id
    assert "shipping_address" in later.reason
    row = await _order(hub, created.order_id)
    assert row.shipping_address is not None
    assert row.shipping_address["country"] == "US"
    errors = [e for e in await timeline(hub, row.id) if e.severity == "error"]
    assert len(errors) == 1
    assert "shipping_address" in errors[0].summary


async def test_two_concurrent_imports_of_one_new_order_make_one_order_and_one_binding(hub: Hub) -> None:
    shop = await new_shop(hub)
    results = await asyncio.gather(
        *(_import(hub, shop.account_id, shop.connection_id, _payload(note=f"n{i}")) for i in range(4))
    )
    assert sorted(r.outcome for r in results).count(Outcome.CREATED) == 1
    assert len({r.order_id for r in results}) == 1
    assert await _count(hub, t.Binding) == 1
    assert await _count(hub, t.Order) == 2  # the shop's own order and the imported one

"""The importer: one order and one binding per remote order, older versions skipped, same-second changes
applied, statuses only moved forward, unmappable payloads quarantined with their field and reason."""

from __future__ import annotations

import asyncio
import copy
import uuid
from contextvars import ContextVar, Token
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.connectors.base import Mapped
from crossdock.connectors.shopify import map_order
from crossdock.engine.importer import ImportResult, Outcome, import_order, import_orders
from crossdock.hub import Hub
from crossdock.model import OrderStatus
from crossdock.store import tables as t
from crossdock.store.repo import EnteredOrder, Tenant, on_order_status
from tests.connectors.test_shopify_mapping import ORDER
from tests.engine.support import new_shop, timeline


def _payload(**changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(ORDER)
    payload.update(changes)
    return payload


# What the store's order-status hooks were told while a test watches: (order id, status, placed at, and how many
# of the order's lines the hook's session finds stored).
_ENTERED: ContextVar[list[tuple[uuid.UUID, OrderStatus, datetime | None, int]] | None] = ContextVar(
    "entered", default=None
)


@on_order_status
async def _watch_entered(
    session: AsyncSession, tenant: Tenant, order: EnteredOrder, status: OrderStatus
) -> None:
    seen = _ENTERED.get()
    if seen is not None:
        stored_lines = await session.scalar(
            select(func.count()).select_from(t.OrderLine).where(t.OrderLine.order_id == order.id)
        )
        seen.append((order.id, status, order.placed_at, int(stored_lines or 0)))


def _watching() -> tuple[list[tuple[uuid.UUID, OrderStatus, datetime | None, int]], Token[Any]]:
    seen: list[tuple[uuid.UUID, OrderStatus, datetime | None, int]] = []
    return seen, _ENTERED.set(seen)


async def _import_page(
    hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID, records: list[Mapped]
) -> list[ImportResult]:
    async with hub.db.transaction() as session:
        return await import_orders(
            session, Tenant(session, account_id), connection_id, records, source="Shopify"
        )


async def _bindings_by_id(hub: Hub) -> dict[str, t.Binding]:
    async with hub.db.session() as session:
        return {row.external_id: row for row in (await session.scalars(select(t.Binding))).all()}


async def _binding(hub: Hub) -> t.Binding:
    async with hub.db.session() as session:
        return (await session.scalars(select(t.Binding))).one()


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


async def test_a_new_remote_order_is_created_paid_with_its_binding_and_one_timeline_event(hub: Hub) -> None:
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
    # One event tells the arrival: from which connection and remote order, at which version, in what status.
    events = await timeline(hub, row.id)
    assert [(e.kind, e.summary) for e in events] == [
        ("order.imported", "Imported from Shopify #1001, status paid")
    ]
    assert events[0].detail == {
        "connection_id": str(shop.connection_id),
        "external_id": "820982911946154508",
        "version": binding.external_version,
        "status": "paid",
    }


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


async def test_one_new_order_twice_in_a_page_is_created_once_then_updated_to_the_later_version(
    hub: Hub,
) -> None:
    shop = await new_shop(hub)
    later = map_order(_payload(note="later", updated_at="2024-03-14T09:30:00-04:00"))
    results = await _import_page(
        hub, shop.account_id, shop.connection_id, [map_order(_payload(note="first")), later]
    )
    assert [r.outcome for r in results] == [Outcome.CREATED, Outcome.UPDATED]
    assert results[0].order_id == results[1].order_id
    assert (await _order(hub, results[0].order_id)).notes == "later"
    binding = await _binding(hub)
    assert (binding.canonical_id, binding.external_version) == (results[0].order_id, later.external_version)
    assert await _count(hub, t.Order) == 2  # the shop's own order and the imported one
    kinds = [e.kind for e in await timeline(hub, results[0].order_id)]
    assert kinds == ["order.imported", "order.updated"]


async def test_a_page_whose_first_copy_of_a_new_order_does_not_map_creates_it_from_the_copy_that_does(
    hub: Hub,
) -> None:
    shop = await new_shop(hub)
    bad_address = {**ORDER["shipping_address"], "country_code": "XX", "country": "Nowhere"}
    good = map_order(_payload(updated_at="2024-03-14T09:30:00-04:00"))
    results = await _import_page(
        hub, shop.account_id, shop.connection_id, [map_order(_payload(shipping_address=bad_address)), good]
    )
    assert [r.outcome for r in results] == [Outcome.QUARANTINED, Outcome.CREATED]
    binding = await _binding(hub)
    assert (binding.canonical_id, binding.external_version) == (results[1].order_id, good.external_version)


async def test_the_store_status_hooks_get_each_new_order_of_a_page_once_it_is_stored_with_its_lines(
    hub: Hub,
) -> None:
    shop = await new_shop(hub)
    records = [map_order(_payload(id=820982911946154508 + i, name=f"#{1001 + i}")) for i in range(3)]
    records[2] = map_order(_payload(id=820982911946154510, name="#1003", financial_status="pending"))
    seen, token = _watching()
    try:
        results = await _import_page(hub, shop.account_id, shop.connection_id, records)
    finally:
        _ENTERED.reset(token)
    assert [r.outcome for r in results] == [Outcome.CREATED] * 3
    placed = [record.value.placed_at if record.value else None for record in records]
    assert placed[0] is not None
    lines = len(ORDER["line_items"])
    assert seen == [
        (results[0].order_id, OrderStatus.PAID, placed[0], lines),
        (results[1].order_id, OrderStatus.PAID, placed[1], lines),
        (results[2].order_id, OrderStatus.PENDING, placed[2], lines),
    ]


async def test_a_new_order_paid_and_changed_later_in_its_page_moves_on_and_runs_the_hooks_for_each_status(
    hub: Hub,
) -> None:
    shop = await new_shop(hub)
    items = copy.deepcopy(ORDER["line_items"])
    items[0]["quantity"] = items[0]["current_quantity"] = items[0]["quantity"] + 2
    records = [
        map_order(_payload(financial_status="pending")),
        map_order(_payload(id=820982911946154599, name="#1099")),
        map_order(_payload(line_items=items, updated_at="2024-03-14T09:30:00-04:00")),
    ]
    seen, token = _watching()
    try:
        results = await _import_page(hub, shop.account_id, shop.connection_id, records)
    finally:
        _ENTERED.reset(token)
    assert [r.outcome for r in results] == [Outcome.CREATED, Outcome.CREATED, Outcome.UPDATED]
    order_id = results[0].order_id
    assert results[2].order_id == order_id
    assert [(entered[0], entered[1]) for entered in seen] == [
        (order_id, OrderStatus.PENDING),
        (results[1].order_id, OrderStatus.PAID),
        (order_id, OrderStatus.PAID),
    ]
    async with hub.db.session() as session:
        row = await Tenant(session, shop.account_id).get_order(order_id or uuid.uuid4())
        assert row.status == "paid"
        assert [line.quantity for line in row.lines] == [item["quantity"] for item in items]
    kinds = [e.kind for e in await timeline(hub, order_id or uuid.uuid4())]
    assert kinds == ["order.imported", "order.status_changed", "order.updated"]
    binding = (await _bindings_by_id(hub))["820982911946154508"]
    assert binding.external_version == records[2].external_version


async def test_a_credential_in_a_remote_version_is_redacted_on_the_imported_event(hub: Hub) -> None:
    shop = await new_shop(hub)
    mapped = replace(map_order(_payload()), external_version="https://x.example/o?access_token=shpat_leak")
    result = (await _import_page(hub, shop.account_id, shop.connection_id, [mapped]))[0]
    assert result.outcome is Outcome.CREATED
    (event,) = await timeline(hub, result.order_id or uuid.uuid4())
    assert event.detail["version"] == "https://x.example/o?access_token=[redacted]"
    assert "shpat_leak" not in str(event.detail)

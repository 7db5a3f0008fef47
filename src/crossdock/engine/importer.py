"""The importer: one mapped remote order -> the canonical order, through its binding.

The steps follow the OCA connector's importer (STYLE.md), with a unique index instead of check-then-insert:
1. take the binding for (connection, "order", external id): INSERT ... ON CONFLICT DO NOTHING decides which
   of two concurrent imports creates it, then the row is locked (FOR UPDATE on PostgreSQL; SQLite has one
   writer, which the insert already made us);
2. skip when the stored version is newer, or equal with the same content (Shopify and Amazon versions have
   whole-second resolution, so two changes in one second share a version and only the content tells them
   apart);
3. quarantine what did not map: no change to the order, the problems on its timeline when it exists;
4. create or update the canonical order, move its status forward one legal step at a time, record the version.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crossdock import model as m
from crossdock.connectors.base import Mapped, MappingProblem
from crossdock.engine.timeline import add_event
from crossdock.store import tables as t
from crossdock.store.convert import order_row
from crossdock.store.repo import Tenant
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for

S = m.OrderStatus
ORDER = "order"

# How far along crossdock's own flow an order is. A channel that reports an earlier state (paid, while we are
# ready to ship) is behind us, not a reason to move back; cancelled and refunded are reached from anywhere the
# state machine allows.
_PROGRESS: dict[m.OrderStatus, int] = {
    S.PENDING: 0,
    S.PAID: 1,
    S.READY_TO_SHIP: 2,
    S.PARTIALLY_SHIPPED: 3,
    S.SHIPPED: 4,
    S.DELIVERED: 5,
}
_ORDER_COLUMNS = (
    "connection_id",
    "external_id",
    "external_number",
    "currency",
    "customer_name",
    "customer_email",
    "customer_phone",
    "shipping_address",
    "billing_address",
    "subtotal_minor",
    "shipping_minor",
    "tax_minor",
    "discount_minor",
    "total_minor",
    "placed_at",
    "notes",
    "tags",
)
_LINE_COLUMNS = (
    "external_id",
    "sku",
    "title",
    "quantity",
    "unit_price_minor",
    "weight_g",
    "requires_shipping",
)


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    SKIPPED = "skipped"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class ImportResult:
    """What one import did, for sync-run counts and the inbox row."""

    outcome: Outcome
    order_id: uuid.UUID | None = None
    summary: str = ""
    problems: list[MappingProblem] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """The problems as one line, for the inbox row's error."""
        return "; ".join(f"{p.field}: {p.reason}" for p in self.problems)


def _newer(stored: str | None, incoming: str | None) -> int:
    """-1 when incoming is older than stored, 0 equal, 1 newer (or nothing stored to compare with).

    Versions are the remote's updated_at rendered by the connector's Reader as sortable ISO text, so equal-length
    strings compare in time order."""
    if stored is None or incoming is None:
        return 1
    if incoming < stored:
        return -1
    return 0 if incoming == stored else 1


def _content(row: t.Order) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.isoformat() if hasattr(value, "isoformat") else value

    doc: dict[str, Any] = {name: plain(getattr(row, name)) for name in _ORDER_COLUMNS}
    doc["lines"] = [
        {name: plain(getattr(line, name)) for name in _LINE_COLUMNS} for line in sorted_lines(row)
    ]
    return doc


def sorted_lines(row: t.Order) -> list[t.OrderLine]:
    return sorted(row.lines or [], key=lambda line: line.position)


def _status_steps(current: m.OrderStatus, target: m.OrderStatus) -> list[m.OrderStatus] | None:
    """The legal steps from current to target, [] when the channel is behind or equal, None when impossible."""
    if current == target:
        return []
    forward = current in _PROGRESS and _PROGRESS.get(target, -1) > _PROGRESS[current]
    if target not in (S.CANCELLED, S.REFUNDED) and not forward:
        return []
    try:
        return m.path_to(current, target)
    except m.IllegalTransition:
        return None


async def _bindings(
    session: AsyncSession, tenant: Tenant, connection_id: uuid.UUID, external_ids: list[str]
) -> dict[str, tuple[t.Binding, bool]]:
    """The locked bindings of these orders, and whether this import created each: one multi-row
    INSERT ... ON CONFLICT DO NOTHING, then one SELECT (FOR UPDATE on PostgreSQL; SQLite has one writer, which
    the insert already made us)."""
    wanted = list(dict.fromkeys(external_ids))
    if not wanted:
        return {}
    proposed = {external_id: uuid.uuid4() for external_id in wanted}
    now = utcnow()
    stmt: Any = insert_for(session, t.Binding).values(
        [
            {
                "id": uuid.uuid4(),
                "account_id": tenant.account_id,
                "connection_id": connection_id,
                "kind": ORDER,
                "external_id": external_id,
                "canonical_id": canonical_id,
                "synced_at": now,
            }
            for external_id, canonical_id in proposed.items()
        ]
    )
    await session.execute(stmt.on_conflict_do_nothing())
    query = select(t.Binding).where(
        t.Binding.connection_id == connection_id,
        t.Binding.kind == ORDER,
        t.Binding.external_id.in_(wanted),
    )
    if session.get_bind().dialect.name == "postgresql":
        # In one order, so two pages that share orders lock them the same way round.
        query = query.order_by(t.Binding.external_id).with_for_update()
    rows = (await session.scalars(query.execution_options(populate_existing=True))).all()
    return {row.external_id: (row, row.canonical_id == proposed[row.external_id]) for row in rows}


async def _existing_orders(
    session: AsyncSession, tenant: Tenant, order_ids: list[uuid.UUID]
) -> dict[uuid.UUID, t.Order]:
    if not order_ids:
        return {}
    rows = (
        await session.scalars(
            tenant.scoped(t.Order).options(selectinload(t.Order.lines)).where(t.Order.id.in_(order_ids))
        )
    ).all()
    return {row.id: row for row in rows}


async def _problem_event(
    session: AsyncSession, tenant: Tenant, order_id: uuid.UUID, problems: list[MappingProblem], source: str
) -> None:
    await add_event(
        session,
        account_id=tenant.account_id,
        order_id=order_id,
        kind="order.quarantined",
        summary=f"Not imported from {source}: " + "; ".join(f"{p.field}: {p.reason}" for p in problems),
        detail={"problems": [{"field": p.field, "reason": p.reason} for p in problems]},
        severity="error",
    )


async def _move_status(
    session: AsyncSession, tenant: Tenant, row: t.Order, target: m.OrderStatus, source: str
) -> None:
    current = S(row.status)
    steps = _status_steps(current, target)
    if steps is None:
        await add_event(
            session,
            account_id=tenant.account_id,
            order_id=row.id,
            kind="order.status_not_followed",
            summary=f"{source} says {target}, but an order cannot go from {current} to {target}; left {current}",
            detail={"from": current, "to": target},
            severity="warning",
        )
        return
    for step in steps:
        await tenant.transition_order(row, step, reason=f"{source} says {target}")


async def import_order(
    session: AsyncSession, tenant: Tenant, connection_id: uuid.UUID, mapped: Mapped, *, source: str
) -> ImportResult:
    """Import one mapped order in the caller's transaction. `source` names the channel ("Shopify")."""
    return (await import_orders(session, tenant, connection_id, [mapped], source=source))[0]


async def import_orders(
    session: AsyncSession, tenant: Tenant, connection_id: uuid.UUID, records: list[Mapped], *, source: str
) -> list[ImportResult]:
    """Import a page of mapped orders in the caller's transaction, one result per record, in order. Bindings
    and stored orders are read for the whole page at once and nothing is flushed per record, so a page costs a
    few statements rather than a few per order."""
    ids = [r.external_id for r in records if r.external_id is not None]
    bindings = await _bindings(session, tenant, connection_id, ids)
    stored = await _existing_orders(
        session, tenant, [binding.canonical_id for binding, fresh in bindings.values() if not fresh]
    )
    repeats = Counter(ids)
    results: list[ImportResult] = []
    for mapped in records:
        if mapped.external_id is None:
            problems = mapped.problems or [
                MappingProblem("id", "is missing; an order cannot be bound without it")
            ]
            results.append(
                ImportResult(Outcome.QUARANTINED, summary=f"Not imported from {source}", problems=problems)
            )
            continue
        binding, fresh = bindings[mapped.external_id]
        existing = None if fresh else stored.get(binding.canonical_id)
        result = await _import_one(session, tenant, connection_id, mapped, binding, existing, source=source)
        if (
            result.outcome is Outcome.CREATED
            and result.order_id is not None
            and repeats[mapped.external_id] > 1
        ):
            # The same order again later in this page is an update of the one just made.
            bindings[mapped.external_id] = (binding, False)
            created = await session.get(t.Order, result.order_id)
            if created is not None:
                stored[result.order_id] = created
        results.append(result)
    return results


async def _import_one(
    session: AsyncSession,
    tenant: Tenant,
    connection_id: uuid.UUID,
    mapped: Mapped,
    binding: t.Binding,
    existing: t.Order | None,
    *,
    source: str,
) -> ImportResult:
    assert mapped.external_id is not None
    if mapped.problems or mapped.value is None:
        problems = mapped.problems or [MappingProblem("order", "could not be mapped")]
        if existing is not None:
            await _problem_event(session, tenant, existing.id, problems, source)
        summary = f"Not imported from {source}: " + "; ".join(f"{p.field}: {p.reason}" for p in problems)
        return ImportResult(
            Outcome.QUARANTINED,
            order_id=existing.id if existing is not None else None,
            summary=summary,
            problems=problems,
        )

    order = mapped.value.model_copy(
        update={"connection_id": connection_id, "external_id": mapped.external_id}
    )
    label = f"{source} {order.external_number or '#' + mapped.external_id}"

    if existing is None:
        # A new order starts where the channel has it: the path from pending is legal for every status
        # (model.path_to), so it is stored in that status at once rather than walked there one flush at a time.
        row = await tenant.create_order(order, source=source, connection_checked=True)
        binding.canonical_id = row.id
        binding.external_version, binding.synced_at = mapped.external_version, utcnow()
        summary = f"Imported from {label}"
        await add_event(
            session,
            account_id=tenant.account_id,
            order_id=row.id,
            kind="order.imported",
            summary=summary,
            detail={"external_id": mapped.external_id, "version": mapped.external_version},
        )
        return ImportResult(Outcome.CREATED, order_id=row.id, summary=summary)

    skipped = ImportResult(Outcome.SKIPPED, order_id=existing.id, summary=f"Up to date with {label}")
    direction = _newer(binding.external_version, mapped.external_version)
    if direction < 0:
        return skipped
    before = _content(existing)
    incoming = _content(order_row(order, tenant.account_id))
    steps = _status_steps(S(existing.status), order.status)
    if before == incoming and not steps:
        # A newer version that changes nothing we keep (a remote-only field): remember it, change nothing.
        binding.external_version = mapped.external_version
        return skipped

    changed = sorted(name for name in before if before[name] != incoming[name])
    if changed:
        await tenant.update_order(existing, order)
    await _move_status(session, tenant, existing, order.status, source)
    binding.external_version, binding.synced_at = mapped.external_version, utcnow()
    summary = f"Updated from {label}: " + (", ".join(changed) if changed else f"status {existing.status}")
    await add_event(
        session,
        account_id=tenant.account_id,
        order_id=existing.id,
        kind="order.updated",
        summary=summary,
        detail={"changed": changed, "version": mapped.external_version},
    )
    return ImportResult(Outcome.UPDATED, order_id=existing.id, summary=summary)

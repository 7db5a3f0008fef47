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

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, insert, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from crossdock import model as m
from crossdock.connectors.base import Mapped, MappingProblem
from crossdock.engine.timeline import add_event
from crossdock.logs import redact_text
from crossdock.store import tables as t
from crossdock.store.convert import line_values, order_row, order_values
from crossdock.store.repo import INSERT_EVENT, Tenant
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for

S = m.OrderStatus
ORDER = "order"
# The tables themselves: a page's new rows go in through Core executemany, not the ORM's unit of work.
_BINDINGS = cast(Table, t.Binding.__table__)
_ORDERS = cast(Table, t.Order.__table__)
_LINES = cast(Table, t.OrderLine.__table__)

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


def _maps(mapped: Mapped) -> bool:
    return not mapped.problems and mapped.value is not None


@dataclass
class _Binding:
    """One order's binding as a page's import sees it; what changes is written once, when the page is done."""

    id: uuid.UUID
    canonical_id: uuid.UUID
    external_version: str | None
    fresh: bool  # this import inserted it, naming the order it is about to create
    changed: bool = False

    def record(self, version: str | None, canonical_id: uuid.UUID | None = None) -> None:
        self.external_version, self.changed = version, True
        if canonical_id is not None:
            self.canonical_id = canonical_id


async def _bindings(
    session: AsyncSession, tenant: Tenant, connection_id: uuid.UUID, records: list[Mapped]
) -> dict[str, _Binding]:
    """Take the bindings of these orders, locked, in one statement: INSERT ... ON CONFLICT DO UPDATE ...
    RETURNING. The unique index decides which of two concurrent imports creates a binding, and finds each
    existing row (so the plan does not depend on the table's statistics); the no-op update locks it as FOR
    UPDATE would on PostgreSQL (SQLite has one writer, which the insert already made us). The rows go in
    external id order, so two pages that share orders lock them the same way round.

    A new binding is written whole: it names the order the page will create for it (its id) with the version of
    the first record that maps, which is the one that creates it."""
    first: dict[str, Mapped] = {}
    for mapped in records:
        if mapped.external_id is None:
            continue
        seen = first.get(mapped.external_id)
        if seen is None or (not _maps(seen) and _maps(mapped)):
            first[mapped.external_id] = mapped
    if not first:
        return {}
    now = utcnow()
    proposed = {
        external_id: {
            "id": uuid.uuid4(),
            "account_id": tenant.account_id,
            "connection_id": connection_id,
            "kind": ORDER,
            "external_id": external_id,
            "canonical_id": uuid.uuid4(),
            "external_version": mapped.external_version if _maps(mapped) else None,
            "synced_at": now,
        }
        for external_id, mapped in sorted(first.items())
    }
    # One executemany: SQLAlchemy sends it as one multi-row INSERT from a statement compiled once.
    rows = (await session.execute(_take_bindings(session), list(proposed.values()))).all()
    return {
        row.external_id: _Binding(
            id=row.id,
            canonical_id=row.canonical_id,
            external_version=row.external_version,
            fresh=row.canonical_id == proposed[row.external_id]["canonical_id"],
        )
        for row in rows
    }


_TAKE_BINDINGS: dict[str, Any] = {}


def _take_bindings(session: AsyncSession) -> Any:
    """The bindings' INSERT ... ON CONFLICT DO UPDATE ... RETURNING for this session's kind of database, built
    once: a statement is immutable, so building it again for every page only repeated work."""
    dialect = session.get_bind().dialect.name
    if dialect not in _TAKE_BINDINGS:
        table = _BINDINGS
        stmt: Any = insert_for(session, table)
        _TAKE_BINDINGS[dialect] = stmt.on_conflict_do_update(
            index_elements=[table.c.connection_id, table.c.kind, table.c.external_id],
            set_={"kind": stmt.excluded.kind},
        ).returning(table.c.id, table.c.external_id, table.c.canonical_id, table.c.external_version)
    return _TAKE_BINDINGS[dialect]


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


async def import_stored(
    session: AsyncSession, row: t.InboxMessage, read: Callable[[Any], Mapped], *, source: str
) -> ImportResult:
    """Import the order a stored inbound payload holds (a webhook's body, a quarantined pulled record), in the
    caller's transaction: the body as JSON, mapped by `read`. A body that is not JSON is a mapping problem naming
    `body`, quarantined like any other."""
    try:
        payload = json.loads(row.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        mapped = Mapped(
            problems=[MappingProblem("body", f"is not JSON ({exc}); {source} sends an order as JSON")]
        )
    else:
        mapped = read(payload)
    return await import_order(
        session, Tenant(session, row.account_id), row.connection_id, mapped, source=source
    )


async def import_orders(
    session: AsyncSession, tenant: Tenant, connection_id: uuid.UUID, records: list[Mapped], *, source: str
) -> list[ImportResult]:
    """Import a page of mapped orders in the caller's transaction, one result per record, in order. Bindings
    and stored orders are read for the whole page at once, and new orders are written with one multi-row insert
    each for orders, lines and timeline events, so a page costs a few statements rather than a few per order."""
    bindings = await _bindings(session, tenant, connection_id, records)
    stored = await _existing_orders(
        session, tenant, [binding.canonical_id for binding in bindings.values() if not binding.fresh]
    )
    page = _Page(session, tenant, connection_id, source, stored)
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
        results.append(await page.import_one(mapped, bindings[mapped.external_id]))
    await page.write_new()
    changed = [
        {
            "id": b.id,
            "canonical_id": b.canonical_id,
            "external_version": b.external_version,
            "synced_at": utcnow(),
        }
        for b in bindings.values()
        if b.changed
    ]
    if changed:
        await session.execute(update(t.Binding), changed)
    return results


@dataclass(frozen=True, slots=True)
class _Entered:
    """A new order of the page as the store's status hooks are told of it (store.repo.EnteredOrder), from the
    values just inserted."""

    id: uuid.UUID
    account_id: uuid.UUID
    connection_id: uuid.UUID | None
    placed_at: datetime | None


class _Page:
    """One page's import: updates go through the ORM as they come; new orders are gathered as rows and written
    together (write_new)."""

    def __init__(
        self,
        session: AsyncSession,
        tenant: Tenant,
        connection_id: uuid.UUID,
        source: str,
        stored: dict[uuid.UUID, t.Order],
    ) -> None:
        self.session, self.tenant, self.connection_id, self.source = session, tenant, connection_id, source
        self.connection_text = str(connection_id)
        self.stored = stored
        self.orders: list[dict[str, Any]] = []
        self.lines: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.entered: dict[uuid.UUID, m.OrderStatus] = {}
        # The orders (and lines) this page has written, by order id, until a later record of the page needs one
        # as a session row: the hooks do not, and building one per new order cost as much as inserting it.
        self.written: dict[uuid.UUID, dict[str, Any]] = {}
        self.written_lines: list[dict[str, Any]] = []

    async def existing(self, binding: _Binding) -> t.Order | None:
        order_id = binding.canonical_id
        if order_id in self.entered:
            # The same order again later in this page: an update of the one just made, which is written first.
            await self.write_new()
        row = self.stored.get(order_id)
        if row is None and order_id in self.written:
            row = self.stored[order_id] = self.row_written(self.written.pop(order_id))
        return row

    async def write_new(self) -> None:
        """Insert the gathered new orders, their lines and their timeline events, then run the store's status
        hooks for them, once for all and in the order they were created, as create_order does for one order."""
        if not self.orders:
            return
        await self.session.execute(insert(_ORDERS), self.orders)
        if self.lines:
            await self.session.execute(insert(_LINES), self.lines)
        await self.session.execute(INSERT_EVENT, self.events)
        orders, entered = self.orders, self.entered
        self.written.update((values["id"], values) for values in orders)
        self.written_lines.extend(self.lines)
        self.orders, self.lines, self.events, self.entered = [], [], [], {}
        await self.tenant.orders_entered(
            [
                (
                    _Entered(
                        values["id"], values["account_id"], values["connection_id"], values["placed_at"]
                    ),
                    entered[values["id"]],
                )
                for values in orders
            ]
        )

    def row_written(self, values: dict[str, Any]) -> t.Order:
        """An order this page wrote, as the session's own row with its lines, for a later record of the page
        that updates it: made from the values just inserted rather than read back, since a read by id needs
        table statistics to be planned well (on a table PostgreSQL had not analysed yet it scanned the whole
        account, and a backfill of 100k orders slowed threefold)."""
        lines: list[t.OrderLine] = []
        for line_row in self.written_lines:
            if line_row["order_id"] == values["id"]:
                line = t.OrderLine(**line_row)
                make_transient_to_detached(line)  # stored already: the session takes it as loaded, not as new
                lines.append(line)
        row = t.Order(**values)
        make_transient_to_detached(row)
        set_committed_value(row, "lines", lines)
        self.session.add(row)
        return row

    def create(self, order: m.Order, mapped: Mapped, binding: _Binding, label: str) -> ImportResult:
        """Gather a new order's rows and event. `order` is the mapped value as the connector made it: the
        connection and the external id are set on its row here (a copy of the model to set them cost more
        than the rest of its row)."""
        # A new order starts where the channel has it: the path from pending is legal for every status
        # (model.path_to), so it is stored in that status at once rather than walked there.
        if binding.fresh:
            order_id = binding.canonical_id  # the binding was inserted naming it
            if binding.external_version != mapped.external_version:
                binding.record(mapped.external_version)
        else:
            # Bound before without an order (it was quarantined): the binding now names the new one.
            order_id = uuid.uuid4()
            binding.record(mapped.external_version, order_id)
        account_id, now = self.tenant.account_id, utcnow()
        self.orders.append(
            {
                "id": order_id,
                "account_id": account_id,
                "status": order.status.value,
                "created_at": now,
                "updated_at": now,
                **order_values(order),
                "connection_id": self.connection_id,
                "external_id": mapped.external_id,
            }
        )
        for position, line in enumerate(order.lines):
            self.lines.append(
                {
                    "id": uuid.uuid4(),
                    "account_id": account_id,
                    "order_id": order_id,
                    "position": position,
                    "shipped_quantity": 0,
                    **line_values(line),
                }
            )
        summary, external_id, version = f"Imported from {label}", mapped.external_id, mapped.external_version
        assert external_id is not None  # import_one's caller quarantines a record without one
        # One event tells the whole arrival: where from (connection, external id, version) and in what status.
        self.events.append(
            {
                "id": uuid.uuid4(),
                "account_id": account_id,
                "order_id": order_id,
                "at": now,
                "kind": "order.imported",
                "severity": "info",
                "summary": redact_text(f"{summary}, status {order.status.value}"),
                # What logs.redact makes of this detail, spelled out: no key is a sensitive name, and only the
                # remote's own text (its id and version) can carry a credential; a connection id and a status
                # cannot. Redacting the whole document cost more than building the rest of the event.
                "detail": {
                    "connection_id": self.connection_text,
                    "external_id": redact_text(external_id),
                    "version": version and redact_text(version),
                    "status": order.status.value,
                },
            }
        )
        self.entered[order_id] = order.status
        return ImportResult(Outcome.CREATED, order_id=order_id, summary=summary)

    async def import_one(self, mapped: Mapped, binding: _Binding) -> ImportResult:
        assert mapped.external_id is not None
        session, tenant, source = self.session, self.tenant, self.source
        existing = await self.existing(binding)
        if not _maps(mapped):
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

        assert mapped.value is not None
        label = f"{source} {mapped.value.external_number or '#' + mapped.external_id}"
        if existing is None:
            return self.create(mapped.value, mapped, binding, label)
        order = mapped.value.model_copy(
            update={"connection_id": self.connection_id, "external_id": mapped.external_id}
        )

        skipped = ImportResult(Outcome.SKIPPED, order_id=existing.id, summary=f"Up to date with {label}")
        direction = _newer(binding.external_version, mapped.external_version)
        if direction < 0:
            return skipped
        before = _content(existing)
        incoming = _content(order_row(order, tenant.account_id))
        steps = _status_steps(S(existing.status), order.status)
        if before == incoming and not steps:
            # A newer version that changes nothing we keep (a remote-only field): remember it, change nothing.
            if binding.external_version != mapped.external_version:
                binding.record(mapped.external_version)
            return skipped

        changed = sorted(name for name in before if before[name] != incoming[name])
        if changed:
            await tenant.update_order(existing, order)
        await _move_status(session, tenant, existing, order.status, source)
        binding.record(mapped.external_version)
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

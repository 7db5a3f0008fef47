"""Repositories. Tenant data is reached only through Tenant(session, account_id): every query it builds
filters on the account, so no code path can read or change another account's rows."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Select, Table, and_, bindparam, delete, event, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crossdock import model as m
from crossdock.logs import redact, redact_text
from crossdock.security.tokens import display_prefix, hash_token, new_token
from crossdock.security.vault import Vault
from crossdock.store import tables as t
from crossdock.store.convert import apply_order, order_row, stored_grams
from crossdock.store.types import utcnow
from crossdock.store.upsert import upsert

Row = TypeVar("Row", bound=t.Base)
SEVERITIES = ("info", "warning", "error")


def event_row(
    account_id: uuid.UUID,
    order_id: uuid.UUID,
    kind: str,
    summary: str,
    detail: dict[str, Any] | None = None,
    severity: str = "info",
) -> dict[str, Any]:
    """A timeline event's column values, redacted (see Tenant.add_event), for INSERT_EVENT."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, not {severity!r}")
    return {
        "id": uuid.uuid4(),
        "at": utcnow(),
        "account_id": account_id,
        "order_id": order_id,
        "kind": kind,
        "summary": redact_text(summary),
        "detail": redact(detail or {}),
        "severity": severity,
    }


# A timeline event inserted without the ORM's unit of work (on an autocommit connection, say), with event_row.
EVENTS = cast(Table, t.TimelineEvent.__table__)
INSERT_EVENT = insert(EVENTS)


def bound_columns(table: Table, prefix: str, **instead: Any) -> dict[str, Any]:
    """A row of `table` as bound parameters named `<prefix><column>` (see `prefixed`), for a statement that
    writes it beside another (a WITH query's): a column named in `instead` takes that expression."""
    return {
        column.name: instead[column.name]
        if column.name in instead
        else bindparam(f"{prefix}{column.name}", type_=column.type)
        for column in table.c
    }


def prefixed(prefix: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row's values (event_row's, say) as the parameters of bound_columns(table, prefix)."""
    return {f"{prefix}{name}": value for name, value in row.items()}


class NotFound(LookupError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__(f"{what} {ident} does not exist in this account")
        self.what = what
        self.ident = ident


class Conflict(ValueError):
    """The request is well formed but clashes with what is stored (a duplicate SKU, an illegal transition)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class EnteredOrder(Protocol):
    """What a status hook is told of the order. A session row (t.Order) is one; so is the importer's view of an
    order it has just inserted in bulk, for which building a session row only to run the hooks cost as much as
    inserting the order. Either way the order is stored once the hook's session flushes (a hook that enqueues a
    job naming it flushes first), and a hook that needs more of it reads it by id."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def account_id(self) -> uuid.UUID: ...

    @property
    def connection_id(self) -> uuid.UUID | None: ...

    @property
    def placed_at(self) -> datetime | None: ...


# What the layers above do when an order enters a status (the shipping flow buys labels for a paid order and
# voids them for a cancelled one). They register here, so that the store never imports them; a hook runs in the
# transaction that changes the order and may only add to it (enqueue jobs, write the timeline).
OrderStatusHook = Callable[[AsyncSession, "Tenant", EnteredOrder, m.OrderStatus], Awaitable[None]]
# The same for several orders at once, (order, status) in the order they were stored: an import of a page runs
# the hooks once for all its new orders, so that a hook that reads the database can read once for all of them.
OrdersStatusHook = Callable[
    [AsyncSession, "Tenant", Sequence[tuple[EnteredOrder, m.OrderStatus]]], Awaitable[None]
]
_status_hooks: list[OrdersStatusHook] = []
_one_by_one: dict[OrderStatusHook, OrdersStatusHook] = {}


def on_order_status(hook: OrderStatusHook) -> OrderStatusHook:
    """Register `hook(session, tenant, order, status)` to run whenever an order is created in or moved to a
    status (given several orders, it runs for each in turn). Registering the same function twice keeps one."""
    if hook not in _one_by_one:

        async def each(
            session: AsyncSession, tenant: Tenant, entered: Sequence[tuple[EnteredOrder, m.OrderStatus]]
        ) -> None:
            for order, status in entered:
                await hook(session, tenant, order, status)

        _one_by_one[hook] = each
        _status_hooks.append(each)
    return hook


def on_orders_status(hook: OrdersStatusHook) -> OrdersStatusHook:
    """Register `hook(session, tenant, [(order, status), ...])`, given at once every order that entered a
    status in one step (one order, or the new orders of an imported page), to do for each what a hook of
    on_order_status would. Registering the same function twice keeps one."""
    if hook not in _status_hooks:
        _status_hooks.append(hook)
    return hook


# Counts commits that changed a connection's secrets or removed a connection, in this process. Whoever keeps
# decrypted secrets in memory (engine/hook_keys.py) compares it to drop what a change made stale at once.
_secrets_generation = 0


def secrets_generation() -> int:
    return _secrets_generation


def _secrets_changed(session: AsyncSession) -> None:
    # Counted when the transaction commits: a cache that reloads meanwhile reads the old values under the
    # old count, and the new count makes them stale.
    if not event.contains(session.sync_session, "after_commit", _count_secrets_change):
        event.listen(session.sync_session, "after_commit", _count_secrets_change)


def _count_secrets_change(_session: object) -> None:
    global _secrets_generation
    _secrets_generation += 1


# Accounts and token lookup: the only functions that are not scoped to an account, because they find it.
async def create_account(session: AsyncSession, name: str) -> t.Account:
    if not name.strip():
        raise Conflict("an account needs a name", field="name")
    account = t.Account(name=name)
    session.add(account)
    await session.flush()
    return account


async def find_token(session: AsyncSession, token: str) -> tuple[t.ApiToken, t.Account] | None:
    """The unrevoked API token with this secret and its account, its use noted; None when there is none."""
    row = (
        await session.execute(
            select(t.ApiToken, t.Account)
            .join(t.Account, t.Account.id == t.ApiToken.account_id)
            .where(t.ApiToken.token_hash == hash_token(token), t.ApiToken.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    token_row, account = row
    now = utcnow()
    # Write the last-use time at most once a minute so reads do not turn into writes on every request.
    if token_row.last_used_at is None or (now - token_row.last_used_at).total_seconds() > 60:
        await session.execute(
            update(t.ApiToken).where(t.ApiToken.id == token_row.id).values(last_used_at=now)
        )
    return token_row, account


async def account_for_token(session: AsyncSession, token: str) -> t.Account | None:
    found = await find_token(session, token)
    return found[1] if found else None


async def get_account(session: AsyncSession, account_id: uuid.UUID) -> t.Account:
    account = await session.get(t.Account, account_id)
    if account is None:
        raise NotFound("account", account_id)
    return account


async def list_accounts(session: AsyncSession) -> Sequence[t.Account]:
    return (await session.scalars(select(t.Account).order_by(t.Account.created_at))).all()


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def encode_cursor(values: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise Conflict("cursor is not one this API issued; start again without it", field="cursor") from None
    if not isinstance(data, dict):
        raise Conflict("cursor is not one this API issued; start again without it", field="cursor")
    return data


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Built once (Tenant.connection_and_secrets): the connection, with one row per secret (none: one row of NULLs).
_CONNECTION_AND_SECRETS = (
    select(
        t.Connection,
        t.ConnectionSecret.name,
        t.ConnectionSecret.key_id,
        t.ConnectionSecret.ciphertext,
    )
    .outerjoin(
        t.ConnectionSecret,
        and_(
            t.ConnectionSecret.connection_id == t.Connection.id,
            t.ConnectionSecret.account_id == t.Connection.account_id,
        ),
    )
    .where(
        t.Connection.account_id == bindparam("account_id", type_=t.Connection.account_id.type),
        t.Connection.id == bindparam("connection_id", type_=t.Connection.id.type),
    )
)


class Tenant:
    """Everything one account may see or change."""

    def __init__(self, session: AsyncSession, account_id: uuid.UUID) -> None:
        self.session = session
        self.account_id = account_id

    def scoped(self, table: type[Row]) -> Select[Row]:
        return select(table).where(table.account_id == self.account_id)  # type: ignore[attr-defined]

    async def _one(self, table: type[Row], ident: uuid.UUID, what: str, *options: Any) -> Row:
        stmt = self.scoped(table).where(table.id == ident)  # type: ignore[attr-defined]
        if options:
            stmt = stmt.options(*options)
        row = (await self.session.scalars(stmt)).first()
        if row is None:
            raise NotFound(what, ident)
        return row

    # API tokens ------------------------------------------------------------------------------------------
    async def create_token(self, name: str) -> tuple[t.ApiToken, str]:
        token = new_token()
        row = t.ApiToken(
            account_id=self.account_id, name=name, prefix=display_prefix(token), token_hash=hash_token(token)
        )
        self.session.add(row)
        await self.session.flush()
        return row, token

    async def add_token(self, name: str, token: str) -> t.ApiToken:
        """Register a token chosen by the operator (make demo DEMO_TOKEN=...)."""
        if len(token) < 16:
            raise Conflict("a chosen token must be at least 16 characters", field="token")
        row = t.ApiToken(
            account_id=self.account_id, name=name, prefix=display_prefix(token), token_hash=hash_token(token)
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def list_tokens(self) -> Sequence[t.ApiToken]:
        return (await self.session.scalars(self.scoped(t.ApiToken).order_by(t.ApiToken.created_at))).all()

    async def revoke_token(self, token_id: uuid.UUID) -> t.ApiToken:
        row = await self._one(t.ApiToken, token_id, "token")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return row

    # Connections -------------------------------------------------------------------------------------------
    async def create_connection(
        self,
        *,
        connector: str,
        name: str,
        vault: Vault,
        settings: dict[str, Any] | None = None,
        base_url: str | None = None,
        secrets: dict[str, str] | None = None,
    ) -> t.Connection:
        row = t.Connection(
            id=uuid.uuid4(),
            account_id=self.account_id,
            connector=connector,
            name=name,
            settings=settings or {},
            base_url=base_url,
            status="active",
        )
        self.session.add(row)
        await self.session.flush()
        for key, value in (secrets or {}).items():
            await self.set_secret(row, key, value, vault)
        return row

    async def list_connections(self) -> Sequence[t.Connection]:
        return (await self.session.scalars(self.scoped(t.Connection).order_by(t.Connection.created_at))).all()

    async def get_connection(self, connection_id: uuid.UUID) -> t.Connection:
        return await self._one(t.Connection, connection_id, "connection")

    async def delete_connection(self, connection_id: uuid.UUID) -> None:
        row = await self.get_connection(connection_id)
        await self.session.delete(row)
        await self.session.flush()
        _secrets_changed(self.session)

    async def secret_names(self, connection_id: uuid.UUID) -> list[str]:
        stmt = self.scoped(t.ConnectionSecret).where(t.ConnectionSecret.connection_id == connection_id)
        return sorted(row.name for row in (await self.session.scalars(stmt)).all())

    async def set_secret(self, connection: t.Connection, name: str, value: str, vault: Vault) -> None:
        key_id, ciphertext = vault.seal(
            value, account_id=str(self.account_id), connection_id=str(connection.id), name=name
        )
        stmt = self.scoped(t.ConnectionSecret).where(
            t.ConnectionSecret.connection_id == connection.id, t.ConnectionSecret.name == name
        )
        existing = (await self.session.scalars(stmt)).first()
        if existing is None:
            self.session.add(
                t.ConnectionSecret(
                    account_id=self.account_id,
                    connection_id=connection.id,
                    name=name,
                    key_id=key_id,
                    ciphertext=ciphertext,
                )
            )
        else:
            existing.key_id, existing.ciphertext = key_id, ciphertext
        await self.session.flush()
        _secrets_changed(self.session)

    async def delete_secret(self, connection: t.Connection, name: str) -> None:
        await self.session.execute(
            delete(t.ConnectionSecret).where(
                t.ConnectionSecret.account_id == self.account_id,
                t.ConnectionSecret.connection_id == connection.id,
                t.ConnectionSecret.name == name,
            )
        )
        _secrets_changed(self.session)

    async def get_secrets(
        self, connection_id: uuid.UUID, vault: Vault, names: Sequence[str] | None = None
    ) -> dict[str, str]:
        """Decrypt a connection's secrets: all of them, or only `names` (decrypt no more than a caller needs)."""
        stmt = self.scoped(t.ConnectionSecret).where(t.ConnectionSecret.connection_id == connection_id)
        if names is not None:
            stmt = stmt.where(t.ConnectionSecret.name.in_(list(names)))
        return {
            row.name: vault.open(
                row.key_id,
                row.ciphertext,
                account_id=str(self.account_id),
                connection_id=str(connection_id),
                name=row.name,
            )
            for row in (await self.session.scalars(stmt)).all()
        }

    async def connection_and_secrets(
        self, connection_id: uuid.UUID, vault: Vault
    ) -> tuple[t.Connection, dict[str, str]]:
        """The connection and all its secrets, decrypted, in one read (get_connection and get_secrets take two):
        every job that calls a remote starts here. Raises NotFound for a connection of another account."""
        rows = (
            await self.session.execute(
                _CONNECTION_AND_SECRETS, {"account_id": self.account_id, "connection_id": connection_id}
            )
        ).all()
        if not rows:
            raise NotFound("connection", connection_id)
        secrets = {
            name: vault.open(
                key_id,
                ciphertext,
                account_id=str(self.account_id),
                connection_id=str(connection_id),
                name=name,
            )
            for _connection, name, key_id, ciphertext in rows
            if name is not None
        }
        return rows[0][0], secrets

    # Orders ------------------------------------------------------------------------------------------------
    def _orders(self) -> Select[t.Order]:
        return self.scoped(t.Order).options(selectinload(t.Order.lines))

    def orders_locked(self) -> Select[t.Order]:
        """This account's orders with their lines, each row locked FOR UPDATE until the transaction ends: what
        changes an order's shipments or fulfillments takes this lock first (add the condition)."""
        return self._orders().with_for_update()

    async def create_order(
        self, order: m.Order, *, source: str = "api", connection_checked: bool = False
    ) -> t.Order:
        """Add the order to this transaction. Nothing is flushed: its id is set here, and the rows go to the
        database together at the next flush (an import of a page writes its orders in a few batched statements).
        `connection_checked` says the caller already knows the connection is this account's."""
        if order.connection_id is not None and not connection_checked:
            await self.get_connection(order.connection_id)
        row = order_row(order, self.account_id)
        row.id = uuid.uuid4()
        row.status = order.status.value
        self.session.add(row)
        await self.add_event(
            row.id,
            "order.created",
            f"Order {row.external_number or row.id} created ({source}), status {row.status}",
        )
        await self.order_entered(row, order.status)
        return row

    async def order_entered(self, order: EnteredOrder, status: m.OrderStatus) -> None:
        """Run the registered status hooks for an order just created in, or moved to, `status`."""
        await self.orders_entered([(order, status)])

    async def orders_entered(self, entered: Sequence[tuple[EnteredOrder, m.OrderStatus]]) -> None:
        """Run the registered status hooks for orders just created in, or moved to, a status, each hook given
        them all before the next runs. Whoever stores orders without create_order or transition_order (a bulk
        import) calls this once their rows are written."""
        if not entered:
            return
        for hook in _status_hooks:
            await hook(self.session, self, entered)

    async def update_order(self, row: t.Order, order: m.Order) -> t.Order:
        apply_order(row, order)
        row.updated_at = utcnow()
        return row

    async def get_order(self, order_id: uuid.UUID) -> t.Order:
        row = (await self.session.scalars(self._orders().where(t.Order.id == order_id))).first()
        if row is None:
            raise NotFound("order", order_id)
        return row

    async def list_orders(
        self,
        *,
        status: m.OrderStatus | None = None,
        connection_id: uuid.UUID | None = None,
        updated_since: datetime | None = None,
        q: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        stmt = self._orders()
        if status is not None:
            stmt = stmt.where(t.Order.status == status.value)
        if connection_id is not None:
            stmt = stmt.where(t.Order.connection_id == connection_id)
        if updated_since is not None:
            stmt = stmt.where(t.Order.updated_at >= updated_since)
        if q:
            pattern = _like(q.strip())
            stmt = stmt.where(
                or_(
                    t.Order.external_number.ilike(pattern, escape="\\"),
                    t.Order.customer_email.ilike(pattern, escape="\\"),
                    t.Order.customer_name.ilike(pattern, escape="\\"),
                    t.Order.external_id == q.strip(),
                )
            )
        if cursor:
            data = decode_cursor(cursor)
            try:
                at = datetime.fromisoformat(data["u"])
                after_id = uuid.UUID(data["i"])
            except (KeyError, ValueError, TypeError):
                raise Conflict(
                    "cursor is not one this API issued; start again without it", field="cursor"
                ) from None
            stmt = stmt.where(
                or_(t.Order.updated_at < at, and_(t.Order.updated_at == at, t.Order.id < after_id))
            )
        stmt = stmt.order_by(t.Order.updated_at.desc(), t.Order.id.desc()).limit(limit + 1)
        rows = list((await self.session.scalars(stmt)).all())
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = encode_cursor({"u": last.updated_at.isoformat(), "i": str(last.id)})
        return Page(rows, next_cursor)

    async def count_orders_by_status(self) -> dict[str, int]:
        stmt = (
            select(t.Order.status, func.count())
            .where(t.Order.account_id == self.account_id)
            .group_by(t.Order.status)
        )
        return {status: count for status, count in (await self.session.execute(stmt)).all()}

    async def transition_order(
        self, row: t.Order, target: m.OrderStatus, *, reason: str | None = None
    ) -> None:
        current = m.OrderStatus(row.status)
        try:
            m.check_transition(current, target)
        except m.IllegalTransition as exc:
            raise Conflict(str(exc), field="status") from None
        row.status = target.value
        row.updated_at = utcnow()
        summary = f"Status {current} -> {target}" + (f": {reason}" if reason else "")
        await self.add_event(row.id, "order.status_changed", summary, {"from": current, "to": target})
        if target in (m.OrderStatus.CANCELLED, m.OrderStatus.REFUNDED):
            await self._cancel_jobs_of(row.id, f"order {target}")
        await self.order_entered(row, target)

    async def _cancel_jobs_of(self, order_id: uuid.UUID, why: str) -> None:
        """Cancel the order's waiting jobs that must not run for a cancelled order (enqueued with
        cancel_with_order, such as buying a label). A running one is left to finish: stopping a label purchase
        half way could leave a label bought that nobody records; its handler sees the order's status."""
        now = utcnow()
        cancelled = (
            await self.session.execute(
                update(t.Job)
                .where(
                    t.Job.order_id == order_id,
                    t.Job.account_id == self.account_id,
                    t.Job.cancel_with_order.is_(True),
                    t.Job.status.in_(t.JOB_WAITING),
                )
                .values(status="cancelled", finished_at=now, last_error=f"cancelled: {why}")
                .returning(t.Job.id, t.Job.kind)
                .execution_options(synchronize_session=False)
            )
        ).all()
        if cancelled:
            kinds = sorted({r.kind for r in cancelled})
            await self.add_event(
                order_id,
                "jobs.cancelled",
                f"Cancelled {len(cancelled)} waiting job(s) ({', '.join(kinds)}): {why}",
                {"job_ids": [str(r.id) for r in cancelled], "kinds": kinds},
            )

    # Timeline ----------------------------------------------------------------------------------------------
    async def add_event(
        self,
        order_id: uuid.UUID,
        kind: str,
        summary: str,
        detail: dict[str, Any] | None = None,
        severity: str = "info",
    ) -> t.TimelineEvent:
        """Add one event to an order's timeline in this transaction.

        `summary` is what a user reads; `detail` carries ids and numbers. Both are redacted on the way in,
        because a remote's error text may echo a token back.
        """
        event = t.TimelineEvent(**event_row(self.account_id, order_id, kind, summary, detail, severity))
        self.session.add(event)  # flushed with the rest of the transaction's work
        return event

    async def timeline(self, order_id: uuid.UUID) -> Sequence[t.TimelineEvent]:
        await self._one(t.Order, order_id, "order")
        stmt = self.scoped(t.TimelineEvent).where(t.TimelineEvent.order_id == order_id)
        return (await self.session.scalars(stmt.order_by(t.TimelineEvent.at, t.TimelineEvent.id))).all()

    # Catalog -----------------------------------------------------------------------------------------------
    async def create_product(self, product: m.Product) -> t.Product:
        if product.category_id is not None:
            await self._one(t.Category, product.category_id, "category")
        skus = [v.sku for v in product.variants]
        taken = (await self.session.scalars(self.scoped(t.Variant).where(t.Variant.sku.in_(skus)))).all()
        if taken:
            raise Conflict(
                f"sku '{taken[0].sku}' is already used by another variant in this account", field="variants"
            )
        row = t.Product(
            account_id=self.account_id,
            title=product.title,
            description=product.description,
            vendor=product.vendor,
            category_id=product.category_id,
            tags=list(product.tags),
        )
        row.variants = [
            t.Variant(
                account_id=self.account_id,
                sku=v.sku,
                title=v.title,
                price_minor=None if v.price is None else v.price.minor,
                currency=None if v.price is None else v.price.currency,
                weight_g=stored_grams(v.weight),
                barcode=v.barcode,
                tags=list(v.tags),
            )
            for v in sorted(product.variants, key=lambda variant: variant.sku)
        ]
        self.session.add(row)
        await self.session.flush()
        return row

    async def get_product(self, product_id: uuid.UUID) -> t.Product:
        return await self._one(t.Product, product_id, "product", selectinload(t.Product.variants))

    async def list_products(
        self, *, limit: int = 50, cursor: str | None = None, sku: str | None = None
    ) -> Page:
        stmt = self.scoped(t.Product).options(selectinload(t.Product.variants))
        if sku:
            stmt = stmt.where(
                t.Product.id.in_(
                    select(t.Variant.product_id).where(
                        t.Variant.account_id == self.account_id, t.Variant.sku == sku
                    )
                )
            )
        if cursor:
            data = decode_cursor(cursor)
            try:
                after = uuid.UUID(data["i"])
            except (KeyError, ValueError, TypeError):
                raise Conflict(
                    "cursor is not one this API issued; start again without it", field="cursor"
                ) from None
            stmt = stmt.where(t.Product.id > after)
        rows = list((await self.session.scalars(stmt.order_by(t.Product.id).limit(limit + 1))).all())
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor({"i": str(rows[-1].id)})
        return Page(rows, next_cursor)

    async def create_category(self, category: m.Category) -> t.Category:
        if category.parent_id is not None:
            await self._one(t.Category, category.parent_id, "category")
        row = t.Category(account_id=self.account_id, name=category.name, parent_id=category.parent_id)
        self.session.add(row)
        await self.session.flush()
        return row

    async def set_stock(self, level: m.StockLevel) -> t.StockLevel:
        await upsert(
            self.session,
            t.StockLevel,
            {
                "id": uuid.uuid4(),
                "account_id": self.account_id,
                "sku": level.sku,
                "location": level.location,
                "available": level.available,
                "updated_at": utcnow(),
            },
            conflict=("account_id", "sku", "location"),
            update=("available", "updated_at"),
        )
        stmt = self.scoped(t.StockLevel).where(
            t.StockLevel.sku == level.sku, t.StockLevel.location == level.location
        )
        return (await self.session.scalars(stmt.execution_options(populate_existing=True))).one()

    async def list_stock(
        self, *, sku: str | None = None, location: str | None = None, limit: int = 100
    ) -> Sequence[t.StockLevel]:
        stmt = self.scoped(t.StockLevel)
        if sku:
            stmt = stmt.where(t.StockLevel.sku == sku)
        if location:
            stmt = stmt.where(t.StockLevel.location == location)
        return (
            await self.session.scalars(stmt.order_by(t.StockLevel.sku, t.StockLevel.location).limit(limit))
        ).all()

"""Paid orders pushed to the shipping remotes that keep orders of their own (Shippo's Orders), once each.

A merchant who buys labels in Shippo's dashboard needs crossdock's orders there. When an order becomes paid
(or arrives ready to ship), every connection of the account whose connector has `orders.push` and whose
`push_orders` setting is on gets one job, `orders.push`, keyed by (connection, order):

1. The job does nothing when the order is already bound to a remote order on that connection: the binding
   (connection, kind "order", the remote's id) -> the order is the record of the push, so a second run, a
   replay or an order that is paid twice pushes nothing more.
2. Before the order is sent, a "push started" binding (connection, kind "order.push", the order's id) is
   committed in its own transaction. A job that finds it (a crash, a timeout, an answer lost after the request
   left) asks the remote for the order first (`find_order`) and sends it only when the remote has none.
3. The remote's id is bound to the order, the "started" mark removed and the push put on the order's timeline,
   in one transaction.

Remote errors follow the engine's table: the remote's refusal (4xx) is a permanent error whose words reach the
order's timeline through the dead job; 5xx and 429 are retried by the job's policy.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crossdock import model as m
from crossdock.connectors.base import PUSH_ORDERS, Capability, OrdersPush, setting_flag
from crossdock.connectors.registry import SPECS, get_spec
from crossdock.engine.connections import open_connector
from crossdock.engine.errors import ConfigurationError, PermanentError
from crossdock.engine.jobs import JobContext, RetryPolicy, enqueue, job
from crossdock.flows.policy import left_as_too_old, policy_in_transaction
from crossdock.store import tables as t
from crossdock.store.convert import row_order
from crossdock.store.repo import EnteredOrder, Tenant, on_order_status
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for

PUSH_JOB = "orders.push"
# (connection, "order", the remote's order id) -> the canonical order: the order is at the remote.
PUSHED = "order"
# (connection, "order.push", the canonical order's id) -> the order: a push was sent, its outcome maybe unknown.
STARTED = "order.push"

S = m.OrderStatus
# Statuses in which an order is paid and not yet shipped: the moment a merchant needs it in the remote's list.
PUSHABLE = (S.PAID, S.READY_TO_SHIP)
_TARGETS = "crossdock.flows.order_push.targets"


def _pushers() -> tuple[str, ...]:
    return tuple(
        name for name, spec in SPECS.items() if Capability.ORDERS_PUSH in spec.capabilities and spec.factory
    )


# -- reacting to orders ------------------------------------------------------------------------------------------
@on_order_status
async def _order_paid(
    session: AsyncSession, tenant: Tenant, row: EnteredOrder, status: m.OrderStatus
) -> None:
    if status not in PUSHABLE:
        return
    targets = await _targets(session, tenant.account_id)
    if not targets:
        return
    policy = await policy_in_transaction(session, tenant.account_id)
    if await left_as_too_old(
        tenant, policy, row, kind="orders.not_pushed", not_done="Not pushed to the shipping service"
    ):
        return
    await session.flush()  # the order row, before the jobs that name it
    for connection_id, problem in targets:
        if problem is not None:
            await tenant.add_event(row.id, "orders.not_pushed", problem, severity="warning")
            continue
        if await _bound(session, connection_id, row.id) is not None:
            continue  # pushed already (an order paid a second time)
        await enqueue_push(session, tenant.account_id, connection_id, row.id)


async def _targets(session: AsyncSession, account_id: uuid.UUID) -> list[tuple[uuid.UUID, str | None]]:
    """The account's connections that push orders, read once per transaction (an import of a page asks for
    every order): (connection id, None), or (connection id, why not) when its push_orders setting is unreadable."""
    cache: dict[uuid.UUID, list[tuple[uuid.UUID, str | None]]] = session.info.setdefault(_TARGETS, {})
    if account_id not in cache:
        rows = (
            await session.execute(
                select(t.Connection.id, t.Connection.settings).where(
                    t.Connection.account_id == account_id, t.Connection.connector.in_(_pushers())
                )
            )
        ).all()
        targets: list[tuple[uuid.UUID, str | None]] = []
        for connection_id, settings in rows:
            try:
                if setting_flag(settings or {}, PUSH_ORDERS):
                    targets.append((connection_id, None))
            except ValueError as exc:
                targets.append((connection_id, f"Not pushed to connection {connection_id}: {exc}"))
        cache[account_id] = targets
    return cache[account_id]


async def _bound(session: AsyncSession, connection_id: uuid.UUID, order_id: uuid.UUID) -> str | None:
    """The remote id this order was pushed as on this connection, if it was."""
    return await session.scalar(
        select(t.Binding.external_id)
        .where(
            t.Binding.connection_id == connection_id,
            t.Binding.kind == PUSHED,
            t.Binding.canonical_id == order_id,
        )
        .limit(1)
    )


async def enqueue_push(
    session: AsyncSession, account_id: uuid.UUID, connection_id: uuid.UUID, order_id: uuid.UUID
) -> uuid.UUID | None:
    """Queue the push of one order to one connection; None when it is queued already. A push still waiting
    when the order is cancelled or refunded is cancelled with it."""
    key = f"order-push:{connection_id}:{order_id}"
    return await enqueue(
        session,
        account_id=account_id,
        kind=PUSH_JOB,
        payload={"connection_id": str(connection_id), "order_id": str(order_id)},
        queueing_key=key,
        lock_key=key,
        order_id=order_id,
        cancel_with_order=True,
    )


# -- pushing -----------------------------------------------------------------------------------------------------
@job(PUSH_JOB, retry=RetryPolicy(max_attempts=8, base_s=15.0, cap_s=3600.0), timeout_s=120)
async def push_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    assert ctx.account_id is not None
    connection_id = uuid.UUID(payload["connection_id"])
    order_id = uuid.UUID(payload["order_id"])
    async with ctx.session() as session:
        tenant = Tenant(session, ctx.account_id)
        if await _bound(session, connection_id, order_id) is not None:
            return  # pushed already: this run is a repeat
        connection = (
            await session.scalars(tenant.scoped(t.Connection).where(t.Connection.id == connection_id))
        ).first()
        order_row = (
            await session.scalars(
                tenant.scoped(t.Order).options(selectinload(t.Order.lines)).where(t.Order.id == order_id)
            )
        ).first()
        if connection is None or order_row is None:
            return  # removed since: nothing to push, or nowhere to push it
        started = await session.scalar(
            select(t.Binding.synced_at).where(
                t.Binding.connection_id == connection_id,
                t.Binding.kind == STARTED,
                t.Binding.external_id == str(order_id),
            )
        )
        try:
            wanted = setting_flag(connection.settings or {}, PUSH_ORDERS)
        except ValueError as exc:
            raise ConfigurationError(f"the connection cannot push orders: {exc}") from None
        if not wanted and started is None:
            await tenant.add_event(
                order_id,
                "orders.not_pushed",
                f"Not pushed to {connection.name}: its push_orders setting was turned off",
            )
            return
        if S(order_row.status) in (S.CANCELLED, S.REFUNDED) and started is None:
            await tenant.add_event(
                order_id,
                "orders.not_pushed",
                f"Not pushed to {connection.name}: the order is {order_row.status}",
            )
            return
        order = row_order(order_row)
        # Shippo needs the time the order was placed; an order made without one was placed when it was stored.
        order = order.model_copy(update={"placed_at": order.placed_at or order_row.created_at})
        session.expunge_all()
    async with open_connector(ctx.hub, ctx.account_id, connection_id) as (row, connector):
        title = get_spec(row.connector).title
        if not isinstance(connector, OrdersPush):
            raise ConfigurationError(f"{title} connections do not take orders")
        remote_id = await connector.find_order(order) if started is not None else None
        found = remote_id is not None
        if remote_id is None:
            async with ctx.session() as session:
                await _mark_started(session, ctx.account_id, connection_id, order_id)
            remote_id = await connector.push_order(order)
    await _record(ctx, connection_id, order, remote_id, title, found=found)


async def _mark_started(
    session: AsyncSession, account_id: uuid.UUID, connection_id: uuid.UUID, order_id: uuid.UUID
) -> None:
    stmt: Any = insert_for(session, t.Binding).values(
        id=uuid.uuid4(),
        account_id=account_id,
        connection_id=connection_id,
        kind=STARTED,
        external_id=str(order_id),
        canonical_id=order_id,
        synced_at=utcnow(),
    )
    await session.execute(stmt.on_conflict_do_nothing())  # a retry keeps the first mark


async def _record(
    ctx: JobContext, connection_id: uuid.UUID, order: m.Order, remote_id: str, title: str, *, found: bool
) -> None:
    """Bind the remote order to ours, clear the "started" mark and say so on the timeline, together."""
    assert ctx.account_id is not None and order.id is not None
    async with ctx.session() as session:
        tenant = Tenant(session, ctx.account_id)
        stmt: Any = insert_for(session, t.Binding).values(
            id=uuid.uuid4(),
            account_id=ctx.account_id,
            connection_id=connection_id,
            kind=PUSHED,
            external_id=remote_id,
            canonical_id=order.id,
            synced_at=utcnow(),
        )
        inserted = (await session.execute(stmt.on_conflict_do_nothing().returning(t.Binding.id))).scalar()
        if inserted is None:
            # The unique (connection, kind, external id) caught a remote order bound before: to another order
            # (a lookup matched an order that is not ours), or to this one (nothing more to record).
            owner = await session.scalar(
                select(t.Binding.canonical_id).where(
                    t.Binding.connection_id == connection_id,
                    t.Binding.kind == PUSHED,
                    t.Binding.external_id == remote_id,
                )
            )
            if owner != order.id:
                raise PermanentError(
                    f"{title} order {remote_id} is already the push of another crossdock order ({owner}); "
                    f"look for order {order.external_number or order.id} in {title} before retrying this job"
                )
        await session.execute(
            delete(t.Binding).where(
                t.Binding.connection_id == connection_id,
                t.Binding.kind == STARTED,
                t.Binding.external_id == str(order.id),
            )
        )
        if inserted is None:
            return
        how = "Found the order already created" if found else "Created the order"
        await tenant.add_event(
            order.id,
            "orders.pushed",
            f"{how} at {title} (order {remote_id})",
            {"connection_id": str(connection_id), "remote_id": remote_id, "job_id": str(ctx.job_id)},
        )

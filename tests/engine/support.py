"""Helpers for the job-engine tests: an account with a connection and an order, an in-process worker run until
a condition holds, and a remote on 127.0.0.1 that honours idempotency keys."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import event, select
from sqlalchemy.util import await_
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crossdock import model as m
from crossdock.engine.jobs import JOBS_CHANNEL
from crossdock.engine.worker import Worker
from crossdock.hub import Hub
from crossdock.sandbox.common.server import run_in_thread
from crossdock.store import repo
from crossdock.store import tables as t


@dataclass
class Shop:
    account_id: uuid.UUID
    connection_id: uuid.UUID
    order_id: uuid.UUID


async def new_shop(hub: Hub, name: str = "Acme") -> Shop:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, name)
        tenant = repo.Tenant(session, account.id)
        connection = await tenant.create_connection(connector="shopify", name=f"{name} shop", vault=hub.vault)
        order = await tenant.create_order(
            m.Order.model_validate(
                {
                    "status": "paid",
                    "currency": "EUR",
                    "external_number": "1001",
                    "lines": [{"sku": "MUG-1", "title": "Mug", "quantity": 1}],
                }
            )
        )
    return Shop(account.id, connection.id, order.id)


def fast(hub: Hub, *, lease_s: float = 30.0) -> Hub:
    """Worker timings for tests: quick polls; the lease only as short as the test needs."""
    hub.settings.worker_poll_s = 0.05
    hub.settings.worker_lease_s = lease_s
    hub.settings.worker_heartbeat_s = min(0.2, lease_s / 3)
    hub.settings.worker_grace_s = 5.0
    return hub


@asynccontextmanager
async def running_worker(hub: Hub, **kwargs: Any) -> AsyncIterator[Worker]:
    worker = Worker(hub, **kwargs)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)


async def eventually(check: Callable[[], Awaitable[bool]], *, within_s: float = 20.0) -> None:
    """Wait until check() is true; fail after within_s (a bound against hanging, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def jobs_notifications(hub: Hub) -> AsyncIterator[list[str]]:
    """The NOTIFYs on the workers' channel meanwhile (PostgreSQL), heard on a connection of their own."""
    notified: list[str] = []
    listener = await asyncpg.connect(hub.db.engine.url.set(drivername="postgresql").render_as_string(False))
    await listener.add_listener(JOBS_CHANNEL, lambda *args: notified.append(args[2]))
    try:
        yield notified
    finally:
        await listener.close()


@contextmanager
def statements_sent(hub: Hub, starting: str = "") -> Iterator[list[str]]:
    """The SQL statements the hub's engine sends meanwhile (those that start with `starting`)."""
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith(starting):
            statements.append(statement)

    event.listen(hub.db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(hub.db.engine.sync_engine, "before_cursor_execute", seen)


@contextmanager
def queries_heard(hub: Hub, keep: Callable[[str], bool] = lambda _query: True) -> Iterator[list[str]]:
    """What the driver hears meanwhile (the queries `keep` keeps, stripped of spaces and a final ";"), on the
    connections the hub's engine hands out meanwhile.

    PostgreSQL: asyncpg's query loggers, which hear what is sent as a query of its own (transaction control, an
    executemany, a statement sent with the driver's own fetch), but not a run of a statement SQLAlchemy prepared:
    `statements_sent` has those. SQLite: the sqlite3 module's trace callback, which hears every statement the
    database runs, the module's implicit BEGIN included; it is left on the connection, hearing nothing once the
    block has ended (setting it runs on the driver's thread, which a block's end cannot wait for); a connection
    has one trace callback, so on SQLite one block listens at a time."""
    sent: list[str] = []
    attached: list[Any] = []
    listening = True

    def heard_text(text: str) -> None:
        text = text.strip().rstrip(";")
        if listening and keep(text):
            sent.append(text)

    def heard(query: Any) -> None:
        heard_text(query.query)

    def checkout(dbapi_connection: Any, _record: object, _proxy: object) -> None:
        driver = dbapi_connection.driver_connection
        if driver in attached:
            return
        attached.append(driver)
        if hub.db.dialect == "postgresql":
            driver.add_query_logger(heard)
        else:
            await_(driver.set_trace_callback(heard_text))

    event.listen(hub.db.engine.sync_engine, "checkout", checkout)
    try:
        yield sent
    finally:
        listening = False
        event.remove(hub.db.engine.sync_engine, "checkout", checkout)
        if hub.db.dialect == "postgresql":
            for driver in attached:
                driver.remove_query_logger(heard)


@contextmanager
def transactions_sent(hub: Hub) -> Iterator[list[str]]:
    """PostgreSQL: the transaction control (BEGIN, COMMIT, ROLLBACK) the driver sends meanwhile, each a round trip
    of its own (`queries_heard`)."""
    with queries_heard(hub, lambda text: text.startswith(("BEGIN", "COMMIT", "ROLLBACK"))) as sent:
        yield sent


async def job_row(hub: Hub, job_id: uuid.UUID | None) -> t.Job:
    assert job_id is not None
    async with hub.db.session() as session:
        row = await session.get(t.Job, job_id)
    assert row is not None
    return row


async def status_is(hub: Hub, job_id: uuid.UUID | None, *statuses: str) -> bool:
    return (await job_row(hub, job_id)).status in statuses


async def timeline(hub: Hub, order_id: uuid.UUID) -> list[t.TimelineEvent]:
    async with hub.db.session() as session:
        stmt = select(t.TimelineEvent).where(t.TimelineEvent.order_id == order_id)
        return list((await session.scalars(stmt.order_by(t.TimelineEvent.at, t.TimelineEvent.id))).all())


@dataclass
class IdempotentRemote:
    """Records one effect per Idempotency-Key and answers a repeated key with the first answer, like
    Stripe or Shippo do; counts every request so a test can see the repeats."""

    effects: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)

    def app(self) -> Starlette:
        async def effect(request: Request) -> Response:
            key = request.headers.get("idempotency-key")
            if not key:
                return JSONResponse({"error": "Idempotency-Key required"}, status_code=400)
            self.requests[key] = self.requests.get(key, 0) + 1
            if key not in self.effects:
                self.effects[key] = {"id": f"eff_{len(self.effects) + 1}", "body": await request.json()}
            return JSONResponse(self.effects[key])

        async def malformed(request: Request) -> Response:
            return Response(b"<html>502 Bad Gateway</html>", media_type="application/json")

        return Starlette(routes=[Route("/effects", effect, methods=["POST"]), Route("/malformed", malformed)])


@contextmanager
def serve(remote: IdempotentRemote) -> Iterator[str]:
    with run_in_thread(remote.app(), host="127.0.0.1", port=0) as url:
        yield url

"""The inbox: every inbound payload is stored before it is acknowledged or processed.

`receive` stores a webhook body (with its headers) or a pulled page and enqueues its processing in the same
transaction, so an acknowledged payload is never lost and is processed once it commits. The first payload with
a (connection, kind, dedup key) is the original; a repeat is stored as its duplicate and not processed again.
Payloads are kept for CROSSDOCK_INBOX_RETENTION_DAYS so `crossdock replay` can derive orders again after a
mapping fix; processing goes through bindings and upserts, so running it twice changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Dialect, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from crossdock.engine.errors import JobError, PermanentError
from crossdock.engine.inbox_pg import BatchStatement
from crossdock.engine.inbox_sqlite import SqliteBatch
from crossdock.engine.jobs import (
    JobContext,
    RetryPolicy,
    enqueue,
    job,
    job_values,
    wake_workers,
)
from crossdock.engine.periodic import periodic
from crossdock.engine.timeline import add_event
from crossdock.logs import REDACTED, get_logger, redact_text
from crossdock.store import tables as t
from crossdock.store.db import Database, driver_connection
from crossdock.store.repo import Conflict, NotFound
from crossdock.store.types import new_ids, utcnow
from crossdock.store.upsert import insert_for

log = get_logger(__name__)

PROCESS_JOB = "inbox.process"
PURGE_JOB = "inbox.purge"
# A payload that did not map (its `error` says why), and one an operator put aside instead of retrying it.
QUARANTINED = "quarantined"
DISCARDED = "discarded"

# Headers that prove or grant something (signatures, tokens, cookies) are not kept: a stored payload must not
# be replayable against the remote or the hub, and it is shown to operators.
_SENSITIVE_HEADER = re.compile(
    r"(authorization|signature|hmac|token|secret|cookie|password|api[-_]?key|credential|x-amz-security)", re.I
)


@dataclass(frozen=True)
class InboxResult:
    stored: bool
    duplicate: bool
    # This delivery's row; for a duplicate, original_id names the payload that is processed.
    inbox_id: uuid.UUID
    original_id: uuid.UUID


def clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for name, value in headers.items():
        stored_name, sensitive = _header_name(name)
        cleaned[stored_name] = REDACTED if sensitive else redact_text(str(value))
    return cleaned


@functools.lru_cache(maxsize=1024)
def _header_name(name: str) -> tuple[str, bool]:
    """A header's name as stored, and whether its value is withheld. Every webhook sends the same few names, so
    each is decided once (bounded: the names are the sender's choice)."""
    return name.lower(), _SENSITIVE_HEADER.search(name) is not None


async def receive(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    connection_id: uuid.UUID,
    kind: str,
    dedup_key: str,
    headers: Mapping[str, str],
    body: bytes,
) -> InboxResult:
    """Store one inbound payload and enqueue its processing, in the caller's transaction (commit, then
    acknowledge). A payload whose dedup key was seen before is stored as a duplicate and not processed."""
    owner = await session.scalar(select(t.Connection.account_id).where(t.Connection.id == connection_id))
    if owner != account_id:
        raise NotFound("connection", connection_id)
    values = _row_values(Delivery(account_id, connection_id, kind, dedup_key, headers, body), utcnow())
    # The unique index decides which delivery is the original; a concurrent twin waits for it and does nothing.
    # If the original's transaction rolled back meanwhile, no original exists and this delivery becomes it.
    for _ in range(3):
        row_id = uuid.uuid4()
        stmt: Any = insert_for(session, t.InboxMessage).values(id=row_id, status="received", **values)
        inserted = (
            await session.execute(stmt.on_conflict_do_nothing().returning(t.InboxMessage.id))
        ).scalar()
        if inserted is not None:
            await enqueue_processing(session, account_id=account_id, inbox_id=row_id)
            return InboxResult(stored=True, duplicate=False, inbox_id=row_id, original_id=row_id)
        original = await session.scalar(
            select(t.InboxMessage.id).where(
                t.InboxMessage.connection_id == connection_id,
                t.InboxMessage.kind == kind,
                t.InboxMessage.dedup_key == dedup_key,
                t.InboxMessage.duplicate_of.is_(None),
            )
        )
        if original is None:
            continue
        session.add(t.InboxMessage(id=row_id, status="duplicate", duplicate_of=original, **values))
        await session.flush()
        return InboxResult(stored=True, duplicate=True, inbox_id=row_id, original_id=original)
    raise RuntimeError("the inbox could neither store nor find the original of this payload")


@dataclass(frozen=True)
class Delivery:
    """One inbound payload for InboxWriter.store: what `receive` takes, for a connection the caller has checked."""

    account_id: uuid.UUID
    connection_id: uuid.UUID
    kind: str
    dedup_key: str
    headers: Mapping[str, str]
    body: bytes


class InboxWriter:
    """Stores the deliveries that arrive together in one transaction (group commit), and answers each once that
    transaction has committed.

    A webhook's way in is one insert into the inbox and one into the job queue; on its own transaction the
    begin, the commit and the statements' round trips cost several times the rows. Here the first delivery
    starts a writer task; the deliveries that come while it writes wait for the next transaction, which stores
    all of them with one statement per table. Nothing changes for the sender: its request is answered only
    after its payload and processing job have committed, exactly as with `receive`.

    Redeliveries (a dedup key stored already, or twice in one batch) are stored in the same transaction as
    duplicates of their original, as `receive` stores them. A batch that fails as a whole (a connection deleted
    meanwhile, the database gone) is stored again one delivery at a time through `receive`, each on a
    transaction of its own, so one delivery's trouble is its own error and never its neighbours'.
    """

    def __init__(self, db: Database, *, max_batch: int = 200) -> None:
        self.db = db
        self.max_batch = max_batch
        self._waiting: list[tuple[Delivery, asyncio.Future[InboxResult]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._statement: BatchStatement | SqliteBatch | None = None

    async def store(self, delivery: Delivery) -> InboxResult:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[InboxResult] = loop.create_future()
        self._waiting.append((delivery, answer))
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._writer = loop.create_task(self._write_all(), name="inbox-writer")
        return await answer

    async def _write_all(self) -> None:
        # Runs until nothing waits, then ends: a writer exists only while deliveries arrive. Nothing is awaited
        # between the last look at the queue and the end, or a delivery queued meanwhile would wait for nobody
        # (`store` starts a writer only when none runs); hence a look again once the connection is given back.
        while self._waiting:
            await self._write_run()

    async def _write_run(self) -> None:
        # One connection for all the batches that come one after the other, so the pool's checkout (and on
        # PostgreSQL its pre-ping) and the look for its driver's connection are paid once per run rather than once
        # per batch; a batch that fails gives the connection back.
        connection: AsyncConnection | None = None
        driver: Any = None
        postgresql = self.db.dialect == "postgresql"
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                try:
                    if connection is None:
                        connection = await self.db.engine.connect()
                        if postgresql:
                            await connection.execution_options(isolation_level="AUTOCOMMIT")
                        driver = await driver_connection(connection)
                    stored = await self._write_statement(connection.dialect, driver, batch)
                except Exception as exc:
                    # The error's type only: a database error's text carries the statement's parameters (the
                    # bodies).
                    log.warning(
                        "inbox: a batch of deliveries failed together; storing each on its own",
                        deliveries=len(batch),
                        error=type(exc).__name__,
                    )
                    stored = {}
                    if connection is not None:
                        # Not given back to the pool: the batch went through the driver itself, so SQLAlchemy did
                        # not see its error and cannot tell a broken connection from a sound one.
                        gone = connection
                        connection = None
                        await gone.invalidate()
                        await gone.close()
                for delivery, answer in batch:
                    result = stored.get(id(delivery))
                    if result is None:
                        try:
                            result = await self._write_one(delivery)
                        except Exception as exc:
                            if not answer.done():
                                answer.set_exception(exc)
                            continue
                    if not answer.done():  # the sender may have gone away; its payload is stored all the same
                        answer.set_result(result)
        finally:
            if connection is not None:
                await connection.close()

    async def _write_statement(
        self, dialect: Dialect, driver: Any, batch: list[tuple[Delivery, asyncio.Future[InboxResult]]]
    ) -> dict[int, InboxResult]:
        """The batch in one statement on PostgreSQL (engine/inbox_pg.py), in one transaction of a few statements
        on SQLite (engine/inbox_sqlite.py); committed when this returns."""
        rows, job_ids = _new_rows(batch)
        jobs = [_process_job_values(row, job_id) for row, job_id in zip(rows, job_ids, strict=True)]
        if self._statement is None:
            kind = BatchStatement if dialect.name == "postgresql" else SqliteBatch
            self._statement = kind(dialect, list(rows[0]), list(jobs[0]))
        originals = await self._statement.execute(driver, rows, jobs)
        if any(original == row_id for row_id, original in originals.items()):
            wake_workers()
        results: dict[int, InboxResult] = {}
        for (delivery, _), row in zip(batch, rows, strict=True):
            original = originals.get(row["id"])
            if original is not None:
                results[id(delivery)] = InboxResult(True, original != row["id"], row["id"], original)
        return results

    async def _write_one(self, delivery: Delivery) -> InboxResult:
        async with self.db.transaction() as session:
            return await receive(
                session,
                account_id=delivery.account_id,
                connection_id=delivery.connection_id,
                kind=delivery.kind,
                dedup_key=delivery.dedup_key,
                headers=delivery.headers,
                body=delivery.body,
            )


def _new_rows(
    batch: list[tuple[Delivery, asyncio.Future[InboxResult]]],
) -> tuple[list[dict[str, Any]], list[uuid.UUID]]:
    """A batch's inbox rows, each with a new id, and a new id for each one's processing job: all the ids from one
    read of the random source."""
    now = utcnow()
    ids = new_ids(2 * len(batch))
    row_ids, job_ids = ids[: len(batch)], ids[len(batch) :]
    rows = [
        {"id": row_id, **_row_values(delivery, now)}
        for row_id, (delivery, _) in zip(row_ids, batch, strict=True)
    ]
    return rows, job_ids


def _process_job_values(row: dict[str, Any], job_id: uuid.UUID) -> dict[str, Any]:
    """The processing job's row for a stored delivery's inbox row."""
    return job_values(
        job_id=job_id,
        account_id=row["account_id"],
        kind=PROCESS_JOB,
        payload={"inbox_id": str(row["id"]), "replay": False},
        queueing_key=f"inbox:{row['id']}",
    )


def _row_values(delivery: Delivery, now: datetime) -> dict[str, Any]:
    return {
        "account_id": delivery.account_id,
        "connection_id": delivery.connection_id,
        "kind": delivery.kind,
        "dedup_key": delivery.dedup_key,
        "headers": clean_headers(delivery.headers),
        "body": bytes(delivery.body),
        "received_at": now,
    }


async def enqueue_processing(
    session: AsyncSession, *, account_id: uuid.UUID, inbox_id: uuid.UUID, replay: bool = False
) -> uuid.UUID | None:
    # One waiting processing job per payload: replaying twice before the first replay ran queues it once.
    return await enqueue(
        session,
        account_id=account_id,
        kind=PROCESS_JOB,
        payload={"inbox_id": str(inbox_id), "replay": replay},
        queueing_key=f"inbox:{inbox_id}",
    )


# Processing ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Processed:
    """What a processor made of a payload: the order it concerns (for the timeline) and a one-line summary."""

    order_id: uuid.UUID | None = None
    summary: str | None = None
    # Why the payload could not be applied (the fields at fault). The row is marked quarantined with it and the
    # processor's own writes (an error on the order's timeline) commit; a fixed mapping applies it on replay.
    quarantined: str | None = None


Processor = Callable[[AsyncSession, JobContext, t.InboxMessage], Awaitable[Processed]]
PROCESSORS: dict[str, Processor] = {}


def processor(kind: str) -> Callable[[Processor], Processor]:
    """Register how payloads of `kind` are processed. The processor runs in the transaction that marks the
    payload processed; it must be idempotent (bindings, upserts), because replay runs it again."""

    def register(fn: Processor) -> Processor:
        PROCESSORS[kind] = fn
        return fn

    return register


@job(PROCESS_JOB, retry=RetryPolicy(max_attempts=8, base_s=5.0, cap_s=3600.0), timeout_s=300)
async def process_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    inbox_id = uuid.UUID(payload["inbox_id"])
    try:
        # One read of the row (its payload is the bulk of it), locked for the processing.
        async with ctx.session() as session:
            row = await session.get(t.InboxMessage, inbox_id, with_for_update=_pg(session))
            if row is None:
                log.info("inbox payload was purged before processing", inbox_id=str(inbox_id))
                return
            fn = PROCESSORS.get(row.kind)
            if fn is None:
                raise PermanentError(
                    f"crossdock does not know how to process inbound '{row.kind}' payloads; "
                    "is the connector installed and up to date?"
                )
            result = await fn(session, ctx, row)
            row.status, row.error, row.processed_at = "processed", None, utcnow()
            if result.quarantined is not None:
                row.status, row.error = "quarantined", redact_text(result.quarantined)[:4000]
            row.order_id = result.order_id or row.order_id
            if result.order_id is not None and result.quarantined is None:
                again = " again (replay)" if payload.get("replay") else ""
                await add_event(
                    session,
                    account_id=row.account_id,
                    order_id=result.order_id,
                    kind="inbox.processed",
                    summary=(result.summary or f"Received {row.kind}") + again,
                    detail={
                        "inbox_id": str(row.id),
                        "kind": row.kind,
                        "received_at": row.received_at.isoformat(),
                    },
                )
    except Exception as exc:
        message = exc.message if isinstance(exc, JobError) else f"{type(exc).__name__}: {exc}"
        async with ctx.session() as session:
            await session.execute(
                update(t.InboxMessage)
                .where(t.InboxMessage.id == inbox_id)
                .values(
                    status="failed" if isinstance(exc, PermanentError) else "received",
                    error=redact_text(message)[:4000],
                )
            )
        raise


def _pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# Replay and retention ------------------------------------------------------------------------------------------
async def replay(
    session: AsyncSession,
    *,
    connection_id: uuid.UUID,
    since: datetime | None = None,
    account_id: uuid.UUID | None = None,
) -> int:
    """Enqueue processing again for the connection's stored payloads (originals only), received since `since`.
    Returns how many were queued. account_id None is the operator's CLI (any account)."""
    stmt = select(t.InboxMessage.id, t.InboxMessage.account_id).where(
        t.InboxMessage.connection_id == connection_id, t.InboxMessage.duplicate_of.is_(None)
    )
    if account_id is not None:
        stmt = stmt.where(t.InboxMessage.account_id == account_id)
    if since is not None:
        stmt = stmt.where(t.InboxMessage.received_at >= since)
    count = 0
    for inbox_id, owner in (await session.execute(stmt.order_by(t.InboxMessage.received_at))).all():
        if await enqueue_processing(session, account_id=owner, inbox_id=inbox_id, replay=True):
            count += 1
    return count


async def _quarantined(session: AsyncSession, inbox_id: uuid.UUID, account_id: uuid.UUID) -> t.InboxMessage:
    row = await session.scalar(
        select(t.InboxMessage).where(t.InboxMessage.id == inbox_id, t.InboxMessage.account_id == account_id)
    )
    if row is None:
        raise NotFound("inbox payload", inbox_id)
    if row.status != QUARANTINED:
        raise Conflict(
            f"inbox payload {inbox_id} is {row.status}; only quarantined payloads can be retried or discarded",
            field="status",
        )
    return row


async def retry_payload(
    session: AsyncSession, *, inbox_id: uuid.UUID, account_id: uuid.UUID
) -> t.InboxMessage:
    """Process one quarantined payload again (after its data or the mapping was fixed), in the caller's
    transaction. It waits as received until its job runs, which quarantines it again if it still does not map."""
    row = await _quarantined(session, inbox_id, account_id)
    if row.kind not in PROCESSORS:
        raise Conflict(
            f"crossdock cannot process '{row.kind}' payloads again; fix the record at the remote and the next "
            "pull reads it anew",
            field="kind",
        )
    await enqueue_processing(session, account_id=account_id, inbox_id=row.id, replay=True)
    row.status = "received"
    await session.flush()
    return row


async def discard_payload(
    session: AsyncSession, *, inbox_id: uuid.UUID, account_id: uuid.UUID
) -> t.InboxMessage:
    """Put a quarantined payload aside: it leaves the failures and is purged with the others at the end of the
    retention period. Its dedup key stays taken, so the same delivery or pulled version is not quarantined anew."""
    row = await _quarantined(session, inbox_id, account_id)
    row.status = DISCARDED
    await session.flush()
    return row


async def purge(session: AsyncSession, *, older_than: datetime, batch: int = 1000, once: bool = False) -> int:
    """Delete payloads received before `older_than` that need nothing more (processed, quarantined, discarded,
    failed, duplicates). Payloads still waiting to be processed are kept whatever their age. `once` deletes one
    batch only."""
    total = 0
    while True:
        ids = (
            await session.scalars(
                select(t.InboxMessage.id)
                .where(
                    t.InboxMessage.received_at < older_than,
                    t.InboxMessage.status.in_(("processed", QUARANTINED, DISCARDED, "failed", "duplicate")),
                )
                .limit(batch)
            )
        ).all()
        if not ids:
            return total
        await session.execute(
            delete(t.InboxMessage)
            .where(t.InboxMessage.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
        total += len(ids)
        if once:
            return total


@job(PURGE_JOB, retry=RetryPolicy(max_attempts=3, base_s=60.0, cap_s=600.0), timeout_s=1800)
async def purge_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    days = ctx.hub.settings.inbox_retention_days
    cutoff = utcnow() - timedelta(days=days)
    deleted = 0
    # One short transaction per batch: a long delete would hold SQLite's only write lock for its whole length.
    while True:
        async with ctx.session() as session:
            batch = await purge(session, older_than=cutoff, batch=1000, once=True)
        deleted += batch
        if batch == 0:
            break
    log.info("inbox purged", deleted=deleted, retention_days=days)


periodic(PURGE_JOB, every_s=3600)

"""Jobs: kinds and their retry policies, enqueueing in the caller's transaction, and what a handler receives.

A job kind is registered with @job(kind); its handler is `async def handler(ctx, payload) -> None`. Jobs are
rows of the application database (tables.Job), enqueued in the same transaction as the change that causes them,
so a change and its side effects commit or vanish together. The queue's promises are partial unique indexes,
never checks: one waiting job per queueing key, one running job per lock key, one periodic run per tick.
The worker (engine/worker.py) claims, runs, retries and dead-letters them.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func, literal, text
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.store import tables as t
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for

if TYPE_CHECKING:
    from crossdock.hub import Hub


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits a uniform time in [0, min(cap, base * 2**(n-1))].

    Full jitter spreads the retries of many jobs that failed together (a remote outage) instead of sending them
    back in waves; see "Exponential Backoff And Jitter", AWS Architecture Blog, 2015. A Retry-After from the
    remote is a floor: the next attempt never comes sooner than the remote asked.
    """

    max_attempts: int = 8
    base_s: float = 2.0
    cap_s: float = 3600.0

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** max(attempt - 1, 0))
        return (rng or _rng).uniform(0.0, ceiling)

    def delay_s(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        return max(retry_after or 0.0, self.backoff_s(attempt, rng))


_rng = random.Random()


@dataclass
class JobContext:
    """What a running handler knows about itself, and how it reaches the database."""

    hub: Hub
    job_id: uuid.UUID
    kind: str
    # None only for maintenance jobs that serve every account (the inbox purge, schedulers).
    account_id: uuid.UUID | None
    attempt: int
    order_id: uuid.UUID | None
    worker_id: str

    async def timeline(
        self,
        order_id: uuid.UUID,
        kind: str,
        summary: str,
        detail: dict[str, Any] | None = None,
        severity: str = "info",
    ) -> None:
        """Add an event to an order's timeline on its own, committed at once (it stays even if the job fails)."""
        from crossdock.engine.timeline import add_event

        if self.account_id is None:
            raise ValueError(f"job {self.kind} belongs to no account and cannot write an order's timeline")
        async with self.autocommit() as session:
            await add_event(
                session,
                account_id=self.account_id,
                order_id=order_id,
                kind=kind,
                summary=summary,
                detail={"job_id": str(self.job_id), "attempt": self.attempt, **(detail or {})},
                severity=severity,
            )

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        return self.hub.db.transaction()

    def autocommit(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session without a transaction: each statement commits as it runs (Database.autocommit_session).
        For a job's reads, and for a write that is one statement: on PostgreSQL that saves the BEGIN and the
        COMMIT (or ROLLBACK) a transaction would cost, two round trips of the three. Never for writes that
        must stand or fall together."""
        return self.hub.db.autocommit_session()


Handler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class JobKind:
    kind: str
    handler: Handler
    retry: RetryPolicy
    timeout_s: float


REGISTRY: dict[str, JobKind] = {}


def job(
    kind: str, *, retry: RetryPolicy | None = None, timeout_s: float = 300
) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as the handler of job kind `kind`."""

    def register(handler: Handler) -> Handler:
        known = REGISTRY.get(kind)
        name = f"{handler.__module__}.{handler.__qualname__}"
        # Re-importing a module registers the same handler again; two different handlers for one kind is a bug.
        if known is not None and f"{known.handler.__module__}.{known.handler.__qualname__}" != name:
            raise ValueError(f"job kind {kind!r} is already registered by another handler")
        REGISTRY[kind] = JobKind(kind, handler, retry or RetryPolicy(), timeout_s)
        return handler

    return register


def policy_for(kind: str) -> RetryPolicy:
    known = REGISTRY.get(kind)
    return known.retry if known is not None else RetryPolicy()


async def enqueue(
    session: AsyncSession,
    *,
    account_id: uuid.UUID | None,
    kind: str,
    payload: dict[str, Any],
    queueing_key: str | None = None,
    lock_key: str | None = None,
    priority: int = 0,
    run_at: datetime | None = None,
    order_id: uuid.UUID | None = None,
    periodic_task: str | None = None,
    periodic_tick: int | None = None,
    cancel_with_order: bool = False,
) -> uuid.UUID | None:
    """Add a job in the caller's transaction (nothing is committed here). Returns its id, or None when the
    same work is already waiting (same queueing key) or this periodic tick was already enqueued.

    Keys are global, so they name what they protect including its id (``sync:<connection id>``,
    ``order:<order id>``). Higher priority runs first among jobs that are due. `cancel_with_order` marks work
    that must not happen once its order is cancelled or refunded (buying a label): such a job still waiting
    then is cancelled with the order, in the same transaction.
    """
    if cancel_with_order and order_id is None:
        raise ValueError("cancel_with_order needs the order_id of the order the job belongs to")
    if run_at is not None and run_at.tzinfo is None:
        raise ValueError("run_at must be an aware datetime")
    stmt: Any = insert_for(session, t.Job).values(
        **job_values(
            account_id=account_id,
            kind=kind,
            payload=payload,
            queueing_key=queueing_key,
            lock_key=lock_key,
            priority=priority,
            run_at=run_at,
            order_id=order_id,
            periodic_task=periodic_task,
            periodic_tick=periodic_tick,
            cancel_with_order=cancel_with_order,
        )
    )
    # No conflict target: whichever partial unique index objects (waiting queueing key, periodic tick), the
    # database decides and the insert does nothing. Never check-then-insert: two enqueuers would both pass.
    stmt = stmt.on_conflict_do_nothing()
    notify = _notify_due(session)
    if notify:
        # The NOTIFY rides on the insert (run for the row it returns, so not at all when nothing is added): one
        # round trip instead of two.
        stmt = stmt.returning(t.Job.id, func.pg_notify(JOBS_CHANNEL, literal("")))
    else:
        stmt = stmt.returning(t.Job.id)
    job_id = (await session.execute(stmt)).scalar_one_or_none()
    if job_id is None:
        return None
    await _wake_on_commit(session, notified=notify)
    return job_id


# The columns a job takes from its enqueuer, with their values when not given.
_JOB_OPTIONS: dict[str, Any] = {
    "queueing_key": None,
    "lock_key": None,
    "priority": 0,
    "order_id": None,
    "periodic_task": None,
    "periodic_tick": None,
    "cancel_with_order": False,
}


def job_values(
    *,
    account_id: uuid.UUID | None,
    kind: str,
    payload: dict[str, Any],
    run_at: datetime | None = None,
    job_id: uuid.UUID | None = None,
    **options: Any,
) -> dict[str, Any]:
    """A new job's row: `options` are the enqueuer's choices among _JOB_OPTIONS; `job_id` a new id made by the
    caller (store.types.new_ids), or None for one made here."""
    now = utcnow()
    return {
        **_JOB_OPTIONS,
        **options,
        "id": job_id or uuid.uuid4(),
        "account_id": account_id,
        "kind": kind,
        "payload": payload,
        "status": "queued",
        "attempts": 0,
        "max_attempts": policy_for(kind).max_attempts,
        "run_at": run_at or now,
        "cancel_requested": False,
        "created_at": now,
    }


def _notify_due(session: AsyncSession) -> bool:
    """Whether this transaction has yet to notify the other processes' workers (PostgreSQL only)."""
    return (
        session.get_bind().dialect.name == "postgresql"
        and session.info.get(_NOTIFIED) is not session.get_transaction()
    )


async def _wake_on_commit(session: AsyncSession, *, notified: bool = False) -> None:
    """Wake this process's workers when the transaction commits, and on PostgreSQL notify the others' (unless
    the caller's statement has just done so)."""
    if not event.contains(session.sync_session, "after_commit", _wake_workers):
        event.listen(session.sync_session, "after_commit", _wake_workers)
    if notified:
        session.info[_NOTIFIED] = session.get_transaction()
    elif _notify_due(session):
        # Delivered when the transaction commits, and not at all if it rolls back (PostgreSQL NOTIFY): once per
        # transaction, however many jobs it enqueues.
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": JOBS_CHANNEL})
        session.info[_NOTIFIED] = session.get_transaction()


# Workers in this process wait on these between polls; a commit that enqueued a job wakes them at once, so work
# enqueued by the API of a `crossdock serve` runs without waiting for the next poll. On PostgreSQL the commit
# also notifies JOBS_CHANNEL, which wakes the workers of other processes (engine.worker listens); on SQLite
# other processes poll.
JOBS_CHANNEL = "crossdock_jobs"
_NOTIFIED = "crossdock.jobs.notified"  # session.info: the transaction that has notified JOBS_CHANNEL already
_wakers: set[asyncio.Event] = set()


def add_waker(waker: asyncio.Event) -> None:
    _wakers.add(waker)


def remove_waker(waker: asyncio.Event) -> None:
    _wakers.discard(waker)


def _wake_workers(_session: object) -> None:
    for waker in list(_wakers):
        waker.set()


def wake_workers() -> None:
    """Wake this process's workers at once, after a commit that enqueued jobs without a session (the inbox
    writer's one-statement batches on PostgreSQL, which notify JOBS_CHANNEL themselves)."""
    _wake_workers(None)
